import CZlib
import Foundation
import XCTest

@testable import Checkpoint

#if canImport(Glibc)
import Glibc
#endif

/// Raw deflate of `count` zero bytes, streamed through zlib one MiB at a time (a 1 GiB bomb is ~1 MB).
func deflatedZeros(count: Int) -> [UInt8] {
    var s = z_stream()
    precondition(deflateInit2_(&s, 9, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK)
    defer { deflateEnd(&s) }
    let zeros = [UInt8](repeating: 0, count: 1 << 20)
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 20)
    var left = count
    repeat {
        let n = min(left, zeros.count)
        left -= n
        let flush = left == 0 ? Z_FINISH : Z_NO_FLUSH
        zeros.withUnsafeBufferPointer { z in
            s.next_in = UnsafeMutablePointer(mutating: z.baseAddress)
            s.avail_in = uInt(n)
            repeat {
                chunk.withUnsafeMutableBufferPointer { c in
                    s.next_out = c.baseAddress
                    s.avail_out = uInt(c.count)
                    _ = deflate(&s, flush)
                    out += c[0 ..< c.count - Int(s.avail_out)]
                }
            } while s.avail_out == 0
        }
    } while left > 0
    return out
}

/// Writes `bytes` to `name` in a fresh temporary directory; returns (directory, path).
func writeTemporary(_ name: String, _ bytes: [UInt8]) throws -> (String, String) {
    let dir = try temporaryDirectory()
    let path = dir + "/" + name
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    return (dir, path)
}

/// Runs `body`, which must throw a DebertaError of `kind` whose message names `file` (and mentions
/// `fragment`), within `seconds`.
func assertError<T>(_ kind: DebertaError.Kind, file: String, mentioning fragment: String, within seconds: Double = 5,
                    _ body: () throws -> T, sourceFile: StaticString = #filePath, line: UInt = #line) {
    let start = Date()
    do {
        _ = try body()
        XCTFail("expected a \(kind) error mentioning '\(fragment)'", file: sourceFile, line: line)
    } catch let e as DebertaError {
        XCTAssertEqual(e.kind, kind, "\(e)", file: sourceFile, line: line)
        XCTAssertEqual(e.file, file, "\(e)", file: sourceFile, line: line)
        XCTAssertTrue(e.description.hasPrefix(file), "\(e)", file: sourceFile, line: line)
        XCTAssertTrue(e.description.lowercased().contains(fragment.lowercased()), "'\(e)' does not mention '\(fragment)'", file: sourceFile, line: line)
        XCTAssertFalse(e.description.contains("\n"), file: sourceFile, line: line)
    } catch {
        XCTFail("unexpected error type \(error)", file: sourceFile, line: line)
    }
    XCTAssertLessThan(Date().timeIntervalSince(start), seconds, "took too long", file: sourceFile, line: line)
}

final class HostileInputTests: XCTestCase {
    // MARK: deflate bombs and allocations

    func testFiveDeflatedGigabyteStoragesAreRefusedBeforeInflating() throws {
        let gib = 1 << 30
        let bomb = deflatedZeros(count: gib)
        let keys = (0 ..< 5).map(String.init)
        let pickle = stateDictPickle(keys.map { key in ("w\(key)", { $0.tensor("FloatStorage", key: key, numel: gib / 4, shape: [gib / 4]) }) })
        var items = [ZipItem(name: "archive/data.pkl", data: pickle)]
        items += keys.map { ZipItem(name: "archive/data/\($0)", data: [], deflated: (bomb, gib)) }
        items.append(ZipItem(name: "archive/version", data: Array("3\n".utf8)))
        let archive = makeZip(items)
        XCTAssertLessThan(archive.count, 8 << 20)
        let (dir, path) = try writeTemporary("pytorch_model.bin", archive)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        assertError(.limit, file: path, mentioning: "zip bomb", within: 3) { try TensorStore.open(weights: path) }
        XCTAssertEqual(try directoryEntries(dir), ["pytorch_model.bin"])
    }

    func testOneStorageThatFitsTheBudgetStillInflates() throws {
        // 1 MiB of zeros in a small file: under the 64 MiB slack, so a legitimate small deflated model loads.
        let n = 1 << 20
        let pickle = stateDictPickle([("w", { $0.tensor("FloatStorage", key: "0", numel: n / 4, shape: [n / 4]) })])
        let items = [ZipItem(name: "archive/data.pkl", data: pickle), ZipItem(name: "archive/data/0", data: [], deflated: (deflatedZeros(count: n), n))]
        let sd = try TorchCheckpoint.load(ByteRegion(storage: ByteStorage.copy(makeZip(items))), file: "small.bin")
        XCTAssertEqual(sd.tensors.first?.byteCount, n)
    }

    func testInflatedTotalLimitIsStated() {
        assertError(.limit, file: "f.bin", mentioning: "32 × the archive's 1000 bytes") {
            try TorchCheckpoint.checkInflatedTotal(100 << 20, archiveBytes: 1000, file: "f.bin", available: 1 << 50)
        }
        assertError(.limit, file: "f.bin", mentioning: "16 GiB") {
            try TorchCheckpoint.checkInflatedTotal(17 << 30, archiveBytes: 1 << 40, file: "f.bin", available: 1 << 50)
        }
        assertError(.limit, file: "f.bin", mentioning: "half the 1000000000 bytes of memory available") {
            try TorchCheckpoint.checkInflatedTotal(600_000_000, archiveBytes: 1 << 40, file: "f.bin", available: 1_000_000_000)
        }
        XCTAssertNoThrow(try TorchCheckpoint.checkInflatedTotal(1 << 20, archiveBytes: 1000, file: "f.bin"))
    }

    func testDeflateStreamLongerThanItsDeclaredSizeIsRefused() {
        // The pickle declares 64 bytes; the stream inflates to 1 MiB.
        let pickle = stateDictPickle([("w", { $0.tensor("FloatStorage", key: "0", numel: 16, shape: [16]) })])
        let items = [ZipItem(name: "archive/data.pkl", data: pickle), ZipItem(name: "archive/data/0", data: [], deflated: (deflatedZeros(count: 1 << 20), 64))]
        assertError(.malformedFile, file: "long.bin", mentioning: "inflates to more than the 64 bytes") {
            try TorchCheckpoint.load(ByteRegion(storage: ByteStorage.copy(makeZip(items))), file: "long.bin")
        }
        // The central directory declares fewer bytes than the storage needs.
        let short = [ZipItem(name: "archive/data.pkl", data: pickle), ZipItem(name: "archive/data/0", data: [], deflated: (deflateRaw(f32Bytes(Array(repeating: 1, count: 16))), 10))]
        assertError(.malformedFile, file: "short.bin", mentioning: "declares 10 bytes uncompressed, expected at least 64") {
            try TorchCheckpoint.load(ByteRegion(storage: ByteStorage.copy(makeZip(short))), file: "short.bin")
        }
    }

    func testAllocationsSizedByAFileFailAsErrors() {
        assertError(.limit, file: "x.bin", mentioning: "bytes of memory are available") {
            try ByteStorage.allocate(count: Int.max / 2, file: "x.bin", what: "a buffer") { _ in }
        }
        assertError(.malformedFile, file: "x.bin", mentioning: "negative size") {
            try ByteStorage.allocate(count: -1, file: "x.bin", what: "a buffer") { _ in }
        }
        XCTAssertGreaterThan(MemoryBudget.available(), 1 << 20)
        XCTAssertEqual(MemoryBudget.field("A: 1\nMemAvailable:   123 kB\n", "MemAvailable:"), 123)
    }

    // MARK: shard indexes

    private func index(shards: Int, tensorsPerShard: Int = 1) -> [UInt8] {
        var s = "{\"metadata\": {\"total_size\": 0}, \"weight_map\": {"
        var first = true
        for k in 0 ..< shards {
            for t in 0 ..< tensorsPerShard {
                s += (first ? "" : ",") + "\"t\(k).\(t)\": \"model-\(k).safetensors\""
                first = false
            }
        }
        return Array((s + "}}").utf8)
    }

    func testIndexNaming200000ShardsIsRefusedQuickly() throws {
        // A 9 MB index: parsed once and refused (the quadratic code took hours); the time bound is loose
        // for a debug build on a loaded machine.
        let (dir, path) = try writeTemporary("model.safetensors.index.json", index(shards: 200_000))
        defer { try? FileManager.default.removeItem(atPath: dir) }
        assertError(.limit, file: path, mentioning: "more than \(CheckpointLimits.maxShards) shard files", within: 30) {
            try TensorStore.open(weights: path)
        }
        XCTAssertEqual(try directoryEntries(dir), ["model.safetensors.index.json"])
    }

    func testShardIndexParsingIsLinear() throws {
        // The most shards allowed, and many tensors per shard. Quadratic code (a list search per entry, a
        // weight_map scan per shard) spends ~10^8 steps on the first case; linear code well under a second
        // (the bound is loose for a loaded machine running a debug build).
        for (shards, per) in [(CheckpointLimits.maxShards, 1), (100, 2_000)] {
            let bytes = index(shards: shards, tensorsPerShard: per)
            let start = Date()
            let parsed = try bytes.withUnsafeBytes { try TensorStore.parseShardIndex($0, file: "i.json") }
            XCTAssertLessThan(Date().timeIntervalSince(start), 15)
            XCTAssertEqual(parsed.shards.count, shards)
            XCTAssertEqual(parsed.entryCount, shards * per)
            XCTAssertEqual(parsed.tensorsByShard["model-0.safetensors"]?.count, per)
        }
    }

    func testShardIndexMissingShardNamesTheShard() throws {
        let (dir, path) = try writeTemporary("model.safetensors.index.json", index(shards: 3))
        defer { try? FileManager.default.removeItem(atPath: dir) }
        assertError(.io, file: dir + "/model-0.safetensors", mentioning: "cannot open") { try TensorStore.open(weights: path) }
    }

    // MARK: special files

    func testFIFOsDevicesSocketsAndDirectoriesAreRefused() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fifo = dir + "/model.safetensors"
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        // A FIFO with no writer: refused at once (a plain open would block forever).
        assertError(.io, file: fifo, mentioning: "is a FIFO", within: 2) { try TensorStore.open(weights: fifo) }
        assertError(.io, file: fifo, mentioning: "not a regular file", within: 2) { try readJSONFile(fifo) }
        assertError(.io, file: fifo, mentioning: "is a FIFO", within: 2) { try ByteStorage.map(path: fifo) }
        // Through a model directory: the weights entry is the FIFO.
        let files = try ModelFiles.resolve(dir)
        assertError(.io, file: fifo, mentioning: "is a FIFO", within: 2) { try TensorStore.open(weights: files.weights) }

        assertError(.io, file: "/dev/null", mentioning: "character device") { try TensorStore.open(weights: "/dev/null") }
        assertError(.io, file: "/dev/zero", mentioning: "character device") { try readSmallFile("/dev/zero") }
        assertError(.io, file: dir, mentioning: "is a directory") { try ByteStorage.map(path: dir) }

        let socketPath = dir + "/s.sock"
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, b) in socketPath.utf8.enumerated() where i < raw.count - 1 { raw[i] = b }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        XCTAssertEqual(bound, 0)
        assertError(.io, file: socketPath, mentioning: "is a socket") { try ByteStorage.map(path: socketPath) }
        XCTAssertEqual(try directoryEntries(dir).sorted(), ["model.safetensors", "s.sock"])
    }

    // MARK: pickle, zip and safetensors bounds

    func testPickleStringOverTheLimitIsRefused() {
        var p = PickleBuilder()
        p.op(0x58); p.bytes += le32(UInt32(CheckpointLimits.maxPickleString + 1))
        p.bytes += [UInt8](repeating: 0x61, count: CheckpointLimits.maxPickleString + 1)
        p.stop()
        let storage = ByteStorage.copy(p.bytes)
        assertError(.malformedFile, file: "s.bin", mentioning: "longer than the limit") {
            try withExtendedLifetime(storage) { try PickleMachine(storage.bytes, file: "s.bin", what: "data.pkl", form: .zip).run() }
        }
    }

    func testPickleObjectCountIsBounded() {
        // EMPTY_TUPLE POP repeated: every opcode pair builds an object and keeps the stack flat (the
        // machine's limit lowered to 10,000 to keep the test fast; the real one is maxPickleObjects).
        var p = PickleBuilder()
        for _ in 0 ... 10_000 { p.bytes += [0x29, 0x30] }
        p.op(0x4E); p.stop()
        let storage = ByteStorage.copy(p.bytes)
        assertError(.malformedFile, file: "o.bin", mentioning: "more than 10000 objects") {
            try withExtendedLifetime(storage) { try PickleMachine(storage.bytes, file: "o.bin", what: "data.pkl", form: .zip, maxObjects: 10_000).run() }
        }
        XCTAssertNoThrow(try withExtendedLifetime(storage) { try PickleMachine(storage.bytes, file: "o.bin", what: "data.pkl", form: .zip, maxObjects: 10_002).run() })
        // Items stored into one list count too: EMPTY_LIST, then NONE APPEND repeated.
        var q = PickleBuilder()
        q.op(0x5D)
        for _ in 0 ..< 10_000 { q.op(0x4E, 0x61) }
        q.stop()
        let list = ByteStorage.copy(q.bytes)
        assertError(.malformedFile, file: "l.bin", mentioning: "more than 5000 objects") {
            try withExtendedLifetime(list) { try PickleMachine(list.bytes, file: "l.bin", what: "data.pkl", form: .zip, maxObjects: 5_000).run() }
        }
    }

    func testTensorWithTooManyDimensionsIsRefused() {
        let dims = [Int](repeating: 1, count: CheckpointLimits.maxTensorDimensions + 1)
        let pickle = stateDictPickle([("w", { $0.tensor("FloatStorage", key: "0", numel: 1, shape: dims) })])
        let items = [ZipItem(name: "archive/data.pkl", data: pickle), ZipItem(name: "archive/data/0", data: f32Bytes([1]))]
        assertError(.malformedFile, file: "d.bin", mentioning: "over the limit of \(CheckpointLimits.maxTensorDimensions)") {
            try TorchCheckpoint.load(ByteRegion(storage: ByteStorage.copy(makeZip(items))), file: "d.bin")
        }
        let shape = dims.map(String.init).joined(separator: ",")
        let header = "{\"w\":{\"dtype\":\"F32\",\"shape\":[\(shape)],\"data_offsets\":[0,4]}}"
        assertError(.limit, file: "d.safetensors", mentioning: "more than the limit of \(CheckpointLimits.maxTensorDimensions)") {
            try SafeTensorsReader.read(ByteRegion(storage: ByteStorage.copy(safetensorsBytes(header: header, data: f32Bytes([1])))), file: "d.safetensors")
        }
    }

    func testZipDeclaringMoreEntriesThanTheLimitIsRefused() {
        // A zip64 end record claiming two million entries in a few hundred bytes.
        var out = makeZip([ZipItem(name: "archive/data.pkl", data: [0x80, 0x02, 0x4E, 0x2E])])
        let eocd = out.count - 22
        let cdOffset = Int(out[eocd + 16]) | Int(out[eocd + 17]) << 8 | Int(out[eocd + 18]) << 16 | Int(out[eocd + 19]) << 24
        let cdSize = eocd - cdOffset
        out.removeLast(22)
        let z64 = out.count
        out += le32(0x0606_4B50) + le64(44) + le16(45) + le16(45) + le32(0) + le32(0)
        out += le64(2_000_000) + le64(2_000_000) + le64(UInt64(cdSize)) + le64(UInt64(cdOffset))
        out += le32(0x0706_4B50) + le32(0) + le64(UInt64(z64)) + le32(1)
        out += le32(0x0605_4B50) + le16(0) + le16(0) + le16(0xFFFF) + le16(0xFFFF) + le32(0xFFFF_FFFF) + le32(0xFFFF_FFFF) + le16(0)
        assertError(.limit, file: "z.bin", mentioning: "more than the limit of \(CheckpointLimits.maxZipEntries)") {
            try TorchCheckpoint.load(ByteRegion(storage: ByteStorage.copy(out)), file: "z.bin")
        }
    }

    func testShapesWhoseNonZeroDimensionsOverflowAreRefused() {
        XCTAssertNil(elementCount([1 << 40, 0, 1 << 40]))
        XCTAssertEqual(elementCount([1 << 40, 0, 3]), 0)
        XCTAssertEqual(elementCount([2, 3]), 6)
        let header = "{\"w\":{\"dtype\":\"F32\",\"shape\":[\(1 << 40),0,\(1 << 40)],\"data_offsets\":[0,0]}}"
        assertError(.tensor, file: "z.safetensors", mentioning: "overflows") {
            try SafeTensorsReader.read(ByteRegion(storage: ByteStorage.copy(safetensorsBytes(header: header, data: []))), file: "z.safetensors")
        }
    }

    func testJSONValueCountIsBounded() throws {
        let text = Array(("[" + Array(repeating: "0", count: 1_000).joined(separator: ",") + "]").utf8)
        XCTAssertThrowsError(try text.withUnsafeBytes { try JSONParser.parse($0, maxValues: 1_000) }) { error in
            XCTAssertTrue("\(error)".contains("more than 1000 values"), "\(error)")
        }
        XCTAssertEqual(try text.withUnsafeBytes { try JSONParser.parse($0, maxValues: 1_001) }.arrayValue?.count, 1_000)
    }
}
