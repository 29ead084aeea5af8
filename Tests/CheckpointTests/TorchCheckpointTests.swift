import CZlib
import Foundation
import XCTest

@testable import Checkpoint

// MARK: - Helpers: bytes, deflate, a tiny zip writer, a pickle builder

func le16(_ v: UInt16) -> [UInt8] { withUnsafeBytes(of: v.littleEndian, Array.init) }
func le32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian, Array.init) }
func le64(_ v: UInt64) -> [UInt8] { withUnsafeBytes(of: v.littleEndian, Array.init) }
func f32Bytes(_ xs: [Float]) -> [UInt8] { xs.flatMap { le32($0.bitPattern) } }
func f16Bytes(_ xs: [Float]) -> [UInt8] { xs.flatMap { le16(Float16($0).bitPattern) } }
func i64Bytes(_ xs: [Int64]) -> [UInt8] { xs.flatMap { le64(UInt64(bitPattern: $0)) } }

func crc32Of(_ bytes: [UInt8]) -> UInt32 {
    bytes.withUnsafeBufferPointer { UInt32(crc32(0, $0.baseAddress, uInt($0.count))) }
}

/// Raw deflate (no zlib header), as zip method 8 stores it.
func deflateRaw(_ input: [UInt8], level: Int32 = 9) -> [UInt8] {
    var s = z_stream()
    precondition(deflateInit2_(&s, level, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK)
    defer { deflateEnd(&s) }
    let bound = Int(deflateBound(&s, uLong(input.count))) + 64
    var out = [UInt8](repeating: 0, count: bound)
    input.withUnsafeBufferPointer { inp in
        out.withUnsafeMutableBufferPointer { o in
            s.next_in = UnsafeMutablePointer(mutating: inp.baseAddress)
            s.avail_in = uInt(inp.count)
            s.next_out = o.baseAddress
            s.avail_out = uInt(bound)
            precondition(deflate(&s, Z_FINISH) == Z_STREAM_END)
        }
    }
    return Array(out[0 ..< Int(s.total_out)])
}

struct ZipItem {
    var name: String
    var data: [UInt8]
    var deflate = false
    /// An already deflated payload and the size it inflates to (data is then ignored).
    var deflated: (payload: [UInt8], size: Int)? = nil
}

/// Writes a zip: stored entries aligned to 64 bytes with an "FB" padding extra field (as torch does),
/// deflated entries compressed with zlib; optionally in zip64 form (sizes in the zip64 extra field,
/// zip64 end-of-central-directory record and locator).
func makeZip(_ items: [ZipItem], zip64: Bool = false) -> [UInt8] {
    var out: [UInt8] = []
    var central: [UInt8] = []
    for item in items {
        let name = Array(item.name.utf8)
        let payload = item.deflated?.payload ?? (item.deflate ? deflateRaw(item.data) : item.data)
        let isDeflated = item.deflate || item.deflated != nil
        let size = item.deflated?.size ?? item.data.count
        let method: UInt16 = isDeflated ? 8 : 0
        let crc = item.deflated == nil ? crc32Of(item.data) : 0
        let offset = out.count
        var extra: [UInt8] = []
        if !isDeflated {
            let start = offset + 30 + name.count + 4
            let pad = (64 - start % 64) % 64
            extra = le16(0x4246) + le16(UInt16(pad)) + [UInt8](repeating: 0x5A, count: pad)
        }
        out += le32(0x0403_4B50) + le16(zip64 ? 45 : 20) + le16(0) + le16(method) + le16(0) + le16(0x21)
        out += le32(crc) + le32(UInt32(payload.count)) + le32(UInt32(truncatingIfNeeded: size))
        out += le16(UInt16(name.count)) + le16(UInt16(extra.count)) + name + extra + payload

        var cdExtra: [UInt8] = []
        var comp = UInt32(payload.count), uncomp = UInt32(truncatingIfNeeded: size), local = UInt32(offset)
        if zip64 || size >= 0xFFFF_FFFF {
            cdExtra = le16(1) + le16(24) + le64(UInt64(size)) + le64(UInt64(payload.count)) + le64(UInt64(offset))
            comp = 0xFFFF_FFFF; uncomp = 0xFFFF_FFFF; local = 0xFFFF_FFFF
        }
        central += le32(0x0201_4B50) + le16(zip64 ? 45 : 20) + le16(zip64 ? 45 : 20) + le16(0) + le16(method)
        central += le16(0) + le16(0x21) + le32(crc) + le32(comp) + le32(uncomp)
        central += le16(UInt16(name.count)) + le16(UInt16(cdExtra.count)) + le16(0) + le16(0) + le16(0) + le32(0)
        central += le32(local) + name + cdExtra
    }
    let cdOffset = out.count
    out += central
    if zip64 {
        let eocd64 = out.count
        out += le32(0x0606_4B50) + le64(44) + le16(45) + le16(45) + le32(0) + le32(0)
        out += le64(UInt64(items.count)) + le64(UInt64(items.count)) + le64(UInt64(central.count)) + le64(UInt64(cdOffset))
        out += le32(0x0706_4B50) + le32(0) + le64(UInt64(eocd64)) + le32(1)
        out += le32(0x0605_4B50) + le16(0) + le16(0) + le16(0xFFFF) + le16(0xFFFF) + le32(0xFFFF_FFFF) + le32(0xFFFF_FFFF) + le16(0)
    } else {
        out += le32(0x0605_4B50) + le16(0) + le16(0) + le16(UInt16(items.count)) + le16(UInt16(items.count))
        out += le32(UInt32(central.count)) + le32(UInt32(cdOffset)) + le16(0)
    }
    return out
}

/// Hand-written pickle byte sequences, opcode by opcode.
struct PickleBuilder {
    var bytes: [UInt8] = [0x80, 0x02]

    mutating func op(_ b: UInt8...) { bytes += b }
    mutating func mark() { op(0x28) }
    mutating func global(_ module: String, _ name: String) { op(0x63); bytes += Array("\(module)\n\(name)\n".utf8) }
    mutating func str(_ s: String) { op(0x58); bytes += le32(UInt32(s.utf8.count)) + Array(s.utf8) }
    mutating func int(_ v: Int) {
        if (0 ... 255).contains(v) { op(0x4B, UInt8(v)) }
        else if let i = Int32(exactly: v) { op(0x4A); bytes += le32(UInt32(bitPattern: i)) }
        else { op(0x8A, 8); bytes += le64(UInt64(bitPattern: Int64(v))) }
    }
    mutating func ints(_ xs: [Int]) { mark(); xs.forEach { int($0) }; op(0x74) }
    mutating func emptyOrderedDict() { global("collections", "OrderedDict"); op(0x29, 0x52) }
    /// ('storage', module.cls, key, 'cpu', numel[, None]) BINPERSID; the sixth item (no view) for the legacy format.
    mutating func persid(_ cls: String, _ key: String, _ numel: Int, module: String = "torch", legacy: Bool = false) {
        mark(); str("storage"); global(module, cls); str(key); str("cpu"); int(numel)
        if legacy { op(0x4E) }
        op(0x74, 0x51)
    }
    /// _rebuild_tensor_v2(persid, offset, size, stride, False, OrderedDict())
    mutating func tensor(_ cls: String, key: String, numel: Int, offset: Int = 0, shape: [Int], stride: [Int]? = nil, legacy: Bool = false) {
        global("torch._utils", "_rebuild_tensor_v2")
        mark()
        persid(cls, key, numel, legacy: legacy)
        int(offset); ints(shape); ints(stride ?? contiguousStrides(shape))
        op(0x89); emptyOrderedDict()
        op(0x74, 0x52)
    }
    mutating func stop() { op(0x2E) }
}

func contiguousStrides(_ shape: [Int]) -> [Int] {
    var s = [Int](repeating: 1, count: shape.count)
    var acc = 1
    for i in stride(from: shape.count - 1, through: 0, by: -1) { s[i] = acc; acc *= shape[i] }
    return s
}

/// A torch-style state dict pickle: OrderedDict() REDUCE, MARK key value ... SETITEMS, optional BUILD
/// of the `_metadata` attribute, STOP.
func stateDictPickle(metadata: Bool = true, _ items: [(String, (inout PickleBuilder) -> Void)]) -> [UInt8] {
    var p = PickleBuilder()
    p.emptyOrderedDict()
    p.op(0x71, 0) // BINPUT 0
    p.mark()
    for (name, value) in items {
        p.str(name)
        value(&p)
    }
    p.op(0x75) // SETITEMS
    if metadata {
        p.op(0x7D); p.str("_metadata"); p.emptyOrderedDict()
        p.mark(); p.str(""); p.op(0x7D); p.str("version"); p.int(1); p.op(0x73); p.op(0x75)
        p.op(0x73) // {'_metadata': OrderedDict({'': {'version': 1}})}
        p.op(0x62) // BUILD
    }
    p.stop()
    return p.bytes
}

func torchZip(_ pickle: [UInt8], storages: [(String, [UInt8])], deflate: Bool = false, top: String = "archive",
                      byteorder: String? = "little", extra: [ZipItem] = [], zip64: Bool = false) -> [UInt8] {
    var items = [ZipItem(name: "\(top)/data.pkl", data: pickle, deflate: deflate)]
    if let byteorder { items.append(ZipItem(name: "\(top)/byteorder", data: Array(byteorder.utf8), deflate: deflate)) }
    for (key, data) in storages { items.append(ZipItem(name: "\(top)/data/\(key)", data: data, deflate: deflate)) }
    items.append(ZipItem(name: "\(top)/version", data: Array("3\n".utf8), deflate: deflate))
    items.append(ZipItem(name: "\(top)/.data/serialization_id", data: Array("1234567890".utf8), deflate: deflate))
    return makeZip(items + extra, zip64: zip64)
}

private func load(_ bytes: [UInt8], file: String = "test.bin") throws -> TorchStateDict {
    try TorchCheckpoint.load(ByteRegion(storage: ByteStorage.copy(bytes)), file: file)
}

private func assertRefused(_ bytes: [UInt8], _ fragments: [String], file: StaticString = #filePath, line: UInt = #line) {
    do {
        let sd = try load(bytes)
        XCTFail("expected a refusal mentioning \(fragments), loaded \(sd.tensors.map(\.name))", file: file, line: line)
    } catch let e as DebertaError {
        let text = e.description.lowercased()
        XCTAssertTrue(fragments.contains { text.contains($0.lowercased()) }, "error '\(e.description)' does not mention any of \(fragments)", file: file, line: line)
    } catch {
        XCTFail("unexpected error type \(error)", file: file, line: line)
    }
}

private func floats(_ t: TensorView) -> [Float] { t.floats() }

/// The normal checkpoint several tests start from: w f32 [2,3], b f16 [3], ids i64 [2], step int.
private func normalCheckpoint(deflate: Bool = false, zip64: Bool = false) -> [UInt8] {
    let pickle = stateDictPickle([
        ("w", { $0.tensor("FloatStorage", key: "0", numel: 6, shape: [2, 3]) }),
        ("b", { $0.tensor("HalfStorage", key: "1", numel: 3, shape: [3]) }),
        ("ids", { $0.tensor("LongStorage", key: "2", numel: 2, shape: [2]) }),
        ("step", { $0.int(5) }),
    ])
    return torchZip(pickle, storages: [
        ("0", f32Bytes([1, 2, 3, 4, 5, 6])),
        ("1", f16Bytes([0.5, -1, 2])),
        ("2", i64Bytes([7, -9])),
    ], deflate: deflate, zip64: zip64)
}

/// SplitMix64: a deterministic generator for the fuzz test.
private struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

final class TorchCheckpointTests: XCTestCase {
    // MARK: normal loading

    func testNormalStateDict() throws {
        for (deflate, zip64) in [(false, false), (false, true), (true, false), (true, true)] {
            let sd = try load(normalCheckpoint(deflate: deflate, zip64: zip64))
            XCTAssertEqual(sd.format, "pytorch-zip")
            XCTAssertEqual(sd.tensors.map(\.name), ["w", "b", "ids"])
            XCTAssertEqual(sd.skipped, ["step"])
            XCTAssertEqual(sd.tensors[0].dtype, .f32)
            XCTAssertEqual(sd.tensors[0].shape, [2, 3])
            XCTAssertEqual(sd.tensors[0].floats(), [1, 2, 3, 4, 5, 6])
            XCTAssertEqual(sd.tensors[1].dtype, .f16)
            XCTAssertEqual(sd.tensors[1].floats(), [0.5, -1, 2])
            XCTAssertEqual(sd.tensors[2].int64s(), [7, -9])
        }
    }

    func testStoredTensorsAreZeroCopyAndAligned() throws {
        let bytes = normalCheckpoint()
        let storage = ByteStorage.copy(bytes)
        let sd = try TorchCheckpoint.load(ByteRegion(storage: storage), file: "t.bin")
        for t in sd.tensors {
            XCTAssertTrue(t.region.storage === storage, "\(t.name) should point into the file's bytes")
            XCTAssertEqual(t.region.offset % 64, 0)
        }
    }

    func testOrderedDictWithoutMetadataAndPlainDict() throws {
        let pickle = stateDictPickle(metadata: false, [("w", { $0.tensor("FloatStorage", key: "0", numel: 2, shape: [2]) })])
        XCTAssertEqual(try load(torchZip(pickle, storages: [("0", f32Bytes([1, 2]))])).tensors.count, 1)

        // A plain dict: EMPTY_DICT, SETITEM; no byteorder record; another top folder name.
        var p = PickleBuilder()
        p.op(0x7D); p.str("x"); p.tensor("FloatStorage", key: "k", numel: 1, shape: []); p.op(0x73); p.stop()
        let sd = try load(torchZip(p.bytes, storages: [("k", f32Bytes([4.5]))], top: "pytorch_model", byteorder: nil))
        XCTAssertEqual(sd.tensors.first?.shape, [])
        XCTAssertEqual(sd.tensors.first?.floats(), [4.5])
    }

    func testRebuildParameterAndFromTypeV2() throws {
        let pickle = stateDictPickle([
            ("p", { p in
                p.global("torch._utils", "_rebuild_parameter")
                p.mark()
                p.tensor("FloatStorage", key: "0", numel: 2, shape: [2])
                p.op(0x88); p.emptyOrderedDict()
                p.op(0x74, 0x52)
            }),
            ("q", { p in
                // _rebuild_from_type_v2(_rebuild_tensor_v2, torch.nn.parameter.Parameter, (args), {})
                p.global("torch._tensor", "_rebuild_from_type_v2")
                p.mark()
                p.global("torch._utils", "_rebuild_tensor_v2")
                p.global("torch.nn.parameter", "Parameter")
                p.mark(); p.persid("FloatStorage", "1", 1); p.int(0); p.ints([1]); p.ints([1]); p.op(0x89); p.emptyOrderedDict(); p.op(0x74)
                p.op(0x7D)
                p.op(0x74, 0x52)
            }),
        ])
        let sd = try load(torchZip(pickle, storages: [("0", f32Bytes([3, 4])), ("1", f32Bytes([9]))]))
        XCTAssertEqual(sd.tensors.map(\.name), ["p", "q"])
        XCTAssertEqual(sd.tensors[0].floats(), [3, 4])
        XCTAssertEqual(sd.tensors[1].floats(), [9])
    }

    func testRebuildTensorV3WithUntypedStorage() throws {
        let pickle = stateDictPickle([
            ("u16", { p in
                p.global("torch._utils", "_rebuild_tensor_v3")
                p.mark()
                p.persid("UntypedStorage", "0", 6, module: "torch.storage")
                p.int(0); p.ints([3]); p.ints([1]); p.op(0x89); p.emptyOrderedDict(); p.global("torch", "uint16")
                p.op(0x74, 0x52)
            }),
        ])
        let sd = try load(torchZip(pickle, storages: [("0", le16(1) + le16(2) + le16(60000))]))
        XCTAssertEqual(sd.tensors.first?.dtype, .u16)
        XCTAssertEqual(sd.tensors.first?.int64s(), [1, 2, 60000])
    }

    func testSharedStorageAliases() throws {
        let pickle = stateDictPickle([
            ("a", { p in p.tensor("FloatStorage", key: "0", numel: 6, shape: [2, 3]); p.op(0x71, 1) }),
            ("b", { $0.tensor("FloatStorage", key: "0", numel: 6, shape: [2, 3]) }),
            ("c", { $0.op(0x68, 1) }), // BINGET of a's tensor
            ("row", { $0.tensor("FloatStorage", key: "0", numel: 6, offset: 3, shape: [3]) }),
        ])
        let sd = try load(torchZip(pickle, storages: [("0", f32Bytes([1, 2, 3, 4, 5, 6]))]))
        XCTAssertEqual(sd.tensors.map(\.name), ["a", "b", "c", "row"])
        XCTAssertTrue(sd.tensors[0].aliases(sd.tensors[1]))
        XCTAssertTrue(sd.tensors[0].aliases(sd.tensors[2]))
        XCTAssertTrue(sd.tensors[3].region.storage === sd.tensors[0].region.storage)
        XCTAssertEqual(sd.tensors[3].region.offset, sd.tensors[0].region.offset + 12)
        XCTAssertEqual(sd.tensors[3].floats(), [4, 5, 6])
    }

    func testTransposedAndStridedViewsAreMaterialized() throws {
        // storage 0..5 as [2,3]; "t" is its transpose [3,2] strides (1,3); "s" takes every other column.
        let pickle = stateDictPickle([
            ("t", { $0.tensor("FloatStorage", key: "0", numel: 6, shape: [3, 2], stride: [1, 3]) }),
            ("s", { $0.tensor("FloatStorage", key: "0", numel: 6, offset: 0, shape: [2, 2], stride: [3, 2]) }),
            ("one", { $0.tensor("FloatStorage", key: "0", numel: 6, offset: 4, shape: [1, 2], stride: [999, 1]) }),
        ])
        let sd = try load(torchZip(pickle, storages: [("0", f32Bytes([0, 1, 2, 3, 4, 5]))]))
        XCTAssertEqual(sd.tensors[0].shape, [3, 2])
        XCTAssertEqual(sd.tensors[0].floats(), [0, 3, 1, 4, 2, 5])
        XCTAssertEqual(sd.tensors[1].floats(), [0, 2, 3, 5])
        XCTAssertEqual(sd.tensors[2].floats(), [4, 5]) // size-1 dim: its stride is irrelevant, still a view
    }

    func testBigEndianIsSwapped() throws {
        func be32(_ x: Float) -> [UInt8] { Array(le32(x.bitPattern).reversed()) }
        let pickle = stateDictPickle([
            ("w", { $0.tensor("FloatStorage", key: "0", numel: 2, shape: [2]) }),
            ("t", { $0.tensor("FloatStorage", key: "0", numel: 2, shape: [1, 2], stride: [2, 1]) }),
            ("b", { $0.tensor("ByteStorage", key: "1", numel: 2, shape: [2]) }),
        ])
        let sd = try load(torchZip(pickle, storages: [("0", be32(1.5) + be32(-2)), ("1", [7, 8])], byteorder: "big\n"))
        XCTAssertEqual(sd.tensors[0].floats(), [1.5, -2])
        XCTAssertTrue(sd.tensors[0].aliases(sd.tensors[1]) || sd.tensors[1].floats() == [1.5, -2])
        XCTAssertEqual(sd.tensors[2].int64s(), [7, 8])
    }

    func testWrappedStateDict() throws {
        for wrapper in ["state_dict", "model", "module"] {
            var p = PickleBuilder()
            p.op(0x7D); p.mark()
            p.str("epoch"); p.int(3)
            p.str(wrapper); p.op(0x7D); p.str("w"); p.tensor("FloatStorage", key: "0", numel: 1, shape: [1]); p.op(0x73)
            p.op(0x75); p.stop()
            let sd = try load(torchZip(p.bytes, storages: [("0", f32Bytes([2]))]))
            XCTAssertEqual(sd.tensors.map(\.name), ["w"], wrapper)
        }
    }

    func testEmptyStateDictIsRefused() {
        var p = PickleBuilder()
        p.emptyOrderedDict(); p.stop()
        assertRefused(torchZip(p.bytes, storages: []), ["no tensors"])
        var q = PickleBuilder()
        q.op(0x7D); q.str("step"); q.int(3); q.op(0x73); q.stop()
        assertRefused(torchZip(q.bytes, storages: []), ["no tensors"])
        var l = PickleBuilder()
        l.op(0x5D); l.stop()
        assertRefused(torchZip(l.bytes, storages: []), ["dict of tensors", "found a list"])
    }

    // MARK: tensor checks

    func testStrideZeroExpandToHugeSizeIsRefused() {
        let pickle = stateDictPickle([
            ("e", { $0.tensor("FloatStorage", key: "0", numel: 1, shape: [1 << 20, 1 << 20], stride: [0, 0]) }),
        ])
        assertRefused(torchZip(pickle, storages: [("0", f32Bytes([1]))]), ["strided view", "refusing to expand"])
        // A small expand is fine: 4x3 of one element.
        let small = stateDictPickle([("e", { $0.tensor("FloatStorage", key: "0", numel: 1, shape: [4, 3], stride: [0, 0]) })])
        XCTAssertEqual(try load(torchZip(small, storages: [("0", f32Bytes([7]))])).tensors.first?.floats(), [Float](repeating: 7, count: 12))
    }

    func testExtentPastStorageIsRefused() {
        let pickle = stateDictPickle([("w", { $0.tensor("FloatStorage", key: "0", numel: 4, offset: 2, shape: [3]) })])
        assertRefused(torchZip(pickle, storages: [("0", f32Bytes([1, 2, 3, 4]))]), ["reach element 4", "holds 4 elements"])
        let strided = stateDictPickle([("w", { $0.tensor("FloatStorage", key: "0", numel: 4, shape: [2, 2], stride: [3, 1]) })])
        assertRefused(torchZip(strided, storages: [("0", f32Bytes([1, 2, 3, 4]))]), ["holds 4 elements"])
        let overflow = stateDictPickle([("w", { $0.tensor("FloatStorage", key: "0", numel: 4, shape: [3], stride: [Int.max]) })])
        assertRefused(torchZip(overflow, storages: [("0", f32Bytes([1, 2, 3, 4]))]), ["overflow"])
    }

    func testNegativeSizeStrideOffsetAreRefused() {
        let negSize = stateDictPickle([("w", { $0.tensor("FloatStorage", key: "0", numel: 4, shape: [-1], stride: [1]) })])
        assertRefused(torchZip(negSize, storages: [("0", f32Bytes([1, 2, 3, 4]))]), ["negative size"])
        let negStride = stateDictPickle([("w", { $0.tensor("FloatStorage", key: "0", numel: 4, offset: 3, shape: [2], stride: [-1]) })])
        assertRefused(torchZip(negStride, storages: [("0", f32Bytes([1, 2, 3, 4]))]), ["negative stride"])
        let negOffset = stateDictPickle([("w", { $0.tensor("FloatStorage", key: "0", numel: 4, offset: -1, shape: [2]) })])
        assertRefused(torchZip(negOffset, storages: [("0", f32Bytes([1, 2, 3, 4]))]), ["negative storage offset"])
    }

    func testStorageRecordSizes() throws {
        let pickle = stateDictPickle([("w", { $0.tensor("FloatStorage", key: "0", numel: 4, shape: [4]) })])
        // Too short a record.
        assertRefused(torchZip(pickle, storages: [("0", f32Bytes([1, 2, 3]))]), ["holds 12 bytes, expected at least 16"])
        // A stored record longer than the storage is accepted (torch uses the first numel × size bytes).
        XCTAssertEqual(try load(torchZip(pickle, storages: [("0", f32Bytes([1, 2, 3, 4, 5]))])).tensors.first?.floats(), [1, 2, 3, 4])
        // A deflated record must inflate to exactly numel × size.
        assertRefused(torchZip(pickle, storages: [("0", f32Bytes([1, 2, 3, 4, 5]))], deflate: true), ["inflates to more than"])
        assertRefused(torchZip(pickle, storages: [("0", f32Bytes([1, 2, 3]))], deflate: true), ["declares 12 bytes uncompressed, expected at least 16"])
        // ... even when the central directory declares the right size.
        let short = [ZipItem(name: "archive/data.pkl", data: pickle), ZipItem(name: "archive/data/0", data: [], deflated: (deflateRaw(f32Bytes([1, 2, 3])), 16))]
        assertRefused(makeZip(short), ["inflates to 12 bytes, expected 16"])
        // Missing record.
        assertRefused(torchZip(pickle, storages: []), ["no 'archive/data/0' entry"])
        // The same key declared with two sizes.
        let twice = stateDictPickle([
            ("a", { $0.tensor("FloatStorage", key: "0", numel: 4, shape: [4]) }),
            ("b", { $0.tensor("FloatStorage", key: "0", numel: 3, shape: [3]) }),
        ])
        assertRefused(torchZip(twice, storages: [("0", f32Bytes([1, 2, 3, 4]))]), ["declared as both"])
    }

    // MARK: deflate and zip bombs

    func testDeflatedEntries() throws {
        let big = (0 ..< 1000).map { Float($0) / 7 }
        let pickle = stateDictPickle([("big", { $0.tensor("FloatStorage", key: "0", numel: 1000, shape: [10, 100]) })])
        let sd = try load(torchZip(pickle, storages: [("0", f32Bytes(big))], deflate: true))
        XCTAssertEqual(sd.tensors.first?.floats(), big)
    }

    func testZipBombIsRefusedQuickly() {
        let pickle = stateDictPickle([("w", { $0.tensor("FloatStorage", key: "0", numel: 16, shape: [16]) })])
        let bomb = [UInt8](repeating: 0, count: 32 << 20)
        var items = [ZipItem(name: "archive/data.pkl", data: pickle), ZipItem(name: "archive/data/0", data: bomb, deflate: true)]
        items.append(ZipItem(name: "archive/version", data: Array("3\n".utf8)))
        let archive = makeZip(items)
        XCTAssertLessThan(archive.count, 200_000)
        let start = Date()
        assertRefused(archive, ["zip bomb", "inflates to more than the 64 bytes"])
        XCTAssertLessThan(Date().timeIntervalSince(start), 2.0)
    }

    func testForgedHugeStorageBehindTinyDeflatedEntryIsRefusedBeforeAllocating() {
        // The pickle claims a 4 GiB storage; its deflated record is a few bytes: refused up front.
        let pickle = stateDictPickle([("w", { $0.tensor("FloatStorage", key: "0", numel: 1 << 30, shape: [1 << 30]) })])
        assertRefused(torchZip(pickle, storages: [("0", f32Bytes([1, 2]))], deflate: true), ["cannot inflate", "zip bomb"])
        // Same with a stored record: the record is smaller than the storage.
        assertRefused(torchZip(pickle, storages: [("0", f32Bytes([1, 2]))]), ["expected at least"])
    }

    // MARK: refused pickles

    private func evil(_ body: (inout PickleBuilder) -> Void) -> [UInt8] {
        var p = PickleBuilder()
        p.op(0x7D); p.str("weight")
        body(&p)
        p.op(0x73); p.stop()
        return torchZip(p.bytes, storages: [("0", f32Bytes([1, 2, 3, 4]))])
    }

    func testOsSystemReduceIsRefused() {
        assertRefused(evil { p in p.global("os", "system"); p.str("echo pwned"); p.op(0x85, 0x52) }, ["'os.system'"])
        assertRefused(evil { p in p.global("posix", "system"); p.str("echo pwned"); p.op(0x85, 0x52) }, ["'posix.system'"])
        // STACK_GLOBAL form.
        assertRefused(evil { p in p.str("os"); p.str("system"); p.op(0x93); p.str("echo"); p.op(0x85, 0x52) }, ["'os.system'"])
    }

    func testBuiltinsEvalGlobalIsRefused() {
        assertRefused(evil { p in p.global("builtins", "eval") }, ["'builtins.eval'"])
        assertRefused(evil { p in p.global("torch", "load") }, ["'torch.load'"])
        assertRefused(evil { p in p.global("torch._utils", "_rebuild_qtensor") }, ["'torch._utils._rebuild_qtensor'"])
    }

    func testRefusedOpcodes() {
        assertRefused(evil { p in p.mark(); p.str("echo pwned"); p.op(0x69); p.bytes += Array("os\nsystem\n".utf8) }, ["INST"])
        assertRefused(evil { p in p.mark(); p.global("collections", "OrderedDict"); p.op(0x6F) }, ["OBJ"])
        assertRefused(evil { p in p.op(0x82, 1) }, ["EXT1"])
        assertRefused(evil { p in p.op(0x83, 1, 0) }, ["EXT2"])
        assertRefused(evil { p in p.op(0x84, 1, 0, 0, 0) }, ["EXT4"])
        assertRefused(evil { p in p.op(0x8A, 10); p.bytes += [UInt8](repeating: 1, count: 10) }, ["LONG1 integer of 10 bytes"])
        // REDUCE of an allowed non-callable (a dtype), BUILD on a tensor, NEWOBJ of a storage class.
        assertRefused(evil { p in p.global("torch", "float32"); p.op(0x29, 0x52) }, ["REDUCE of torch.float32"])
        assertRefused(evil { p in p.tensor("FloatStorage", key: "0", numel: 4, shape: [4]); p.op(0x7D, 0x62) }, ["BUILD on a tensor"])
        assertRefused(evil { p in p.global("torch", "FloatStorage"); p.op(0x29, 0x81) }, ["NEWOBJ"])
        // _rebuild_from_type_v2 with a class that is not Tensor / Parameter.
        assertRefused(evil { p in
            p.global("torch._tensor", "_rebuild_from_type_v2"); p.mark()
            p.global("torch._utils", "_rebuild_tensor_v2"); p.global("collections", "OrderedDict")
            p.op(0x29, 0x7D, 0x74, 0x52)
        }, ["only torch.Tensor and torch.nn.parameter.Parameter"])
    }

    func testPersistentIdMustBeAStorageFiveTuple() {
        // 4-tuple
        assertRefused(evil { p in
            p.global("torch._utils", "_rebuild_tensor_v2"); p.mark()
            p.mark(); p.str("storage"); p.global("torch", "FloatStorage"); p.str("0"); p.str("cpu"); p.op(0x74, 0x51)
            p.int(0); p.ints([4]); p.ints([1]); p.op(0x89); p.emptyOrderedDict(); p.op(0x74, 0x52)
        }, ["persistent id with 4 items"])
        // Not a tuple.
        assertRefused(evil { p in p.str("storage"); p.op(0x51) }, ["persistent id of type str"])
        // Wrong tag, wrong class.
        assertRefused(evil { p in
            p.mark(); p.str("module"); p.global("torch", "FloatStorage"); p.str("0"); p.str("cpu"); p.int(4); p.op(0x74, 0x51)
        }, ["tagged 'module'"])
        assertRefused(evil { p in
            p.mark(); p.str("storage"); p.global("torch", "float32"); p.str("0"); p.str("cpu"); p.int(4); p.op(0x74, 0x51)
        }, ["expected a torch storage class"])
    }

    func testHugeDeclaredLengthsAreRefusedWithoutAllocating() {
        assertRefused(evil { p in p.op(0x58); p.bytes += le32(0xFFFF_FFF0) }, ["BINUNICODE declares 4294967280 bytes"])
        assertRefused(evil { p in p.op(0x8D); p.bytes += le64(1 << 62) }, ["BINUNICODE8 declares"])
        assertRefused(evil { p in p.op(0x8E); p.bytes += le64(UInt64.max) }, ["BINBYTES8 declares"])
        assertRefused(evil { p in p.op(0x42); p.bytes += le32(0x7FFF_FFFF) }, ["BINBYTES declares"])
        assertRefused(evil { p in p.op(0x54); p.bytes += le32(0x8000_0000) }, ["negative length"])
        assertRefused(evil { p in p.op(0x95); p.bytes += le64(1 << 40) }, ["FRAME declares"])
        assertRefused(evil { p in p.op(0x8C, 200); p.bytes += [0x41, 0x42] }, ["truncated"])
        assertRefused(evil { p in p.op(0x63); p.bytes += [UInt8](repeating: 0x41, count: 5000) }, ["longer than"])
    }

    func testDeepNestingIsBoundedAndNeverRecurses() {
        // 150,000 nested MARKs: refused by the mark bound.
        var marks = PickleBuilder()
        marks.bytes += [UInt8](repeating: 0x28, count: 150_000)
        marks.stop()
        assertRefused(torchZip(marks.bytes, storages: []), ["nested MARKs"])

        // 150,000 values on the stack: refused by the stack bound.
        var wide = PickleBuilder()
        wide.bytes += [UInt8](repeating: 0x4E, count: 150_000)
        wide.stop()
        assertRefused(torchZip(wide.bytes, storages: []), ["stack deeper"])

        // A tuple nested 1,000,000 deep: built and freed without recursion, then refused as not a dict.
        var deep = PickleBuilder()
        deep.op(0x29)
        deep.bytes += [UInt8](repeating: 0x85, count: 1_000_000)
        deep.stop()
        assertRefused(torchZip(deep.bytes, storages: []), ["found a tuple"])

        // Dicts nested 40,000 deep: no tensors anywhere.
        var dicts = PickleBuilder()
        for _ in 0 ..< 40_000 { dicts.op(0x7D); dicts.op(0x4B, 1) }
        dicts.op(0x7D)
        dicts.bytes += [UInt8](repeating: 0x73, count: 40_000)
        dicts.stop()
        assertRefused(torchZip(dicts.bytes, storages: []), ["no tensors"])

        // Lists nested 200,000 deep through APPEND, and a list appended to itself (a cycle).
        var lists = PickleBuilder()
        lists.op(0x7D); lists.str("x"); lists.op(0x5D, 0x71, 0, 0x68, 0, 0x61)
        for _ in 0 ..< 200_000 { lists.op(0x5D, 0x32, 0x61) }
        lists.op(0x73); lists.stop()
        // (DUP + APPEND of a list onto itself leaves the list: valid, no tensors.)
        assertRefused(torchZip(lists.bytes, storages: []), ["no tensors", "stack deeper"])
    }

    func testMalformedPickleStructure() {
        assertRefused(evil { p in p.op(0x52) }, ["REDUCE on a dict"])
        assertRefused(evil { p in p.op(0x30, 0x30, 0x52) }, ["REDUCE needs a value but the pickle stack is empty"])
        assertRefused(evil { p in p.op(0x30, 0x30, 0x30) }, ["POP on an empty stack"])
        assertRefused(evil { p in p.op(0x68, 9) }, ["never stored"])
        assertRefused(evil { p in p.op(0x75) }, ["without a MARK", "not a dict"])
        assertRefused(evil { p in p.op(0x4E, 0x4E, 0x73) }, ["SETITEM on a str"])
        assertRefused(evil { p in p.op(0xFF) }, ["unsupported pickle opcode 0xff"])
        var p = PickleBuilder()
        p.op(0x7D) // no STOP
        assertRefused(torchZip(p.bytes, storages: []), ["truncated"])
    }

    // MARK: archive layout

    func testTorchScriptLayoutIsRefused() {
        let pickle = stateDictPickle([("w", { $0.tensor("FloatStorage", key: "0", numel: 1, shape: [1]) })])
        let ts = torchZip(pickle, storages: [("0", f32Bytes([1]))], extra: [
            ZipItem(name: "archive/constants.pkl", data: [0x80, 0x02, 0x29, 0x2E]),
            ZipItem(name: "archive/code/__torch__.py", data: Array("def forward(self): pass\n".utf8), deflate: true),
        ])
        assertRefused(ts, ["TorchScript archive"])
        let codeOnly = torchZip(pickle, storages: [("0", f32Bytes([1]))], extra: [ZipItem(name: "archive/code/x.py", data: [1])])
        assertRefused(codeOnly, ["TorchScript archive"])
    }

    func testPathEscapeNamesAreRefused() {
        let pickle = stateDictPickle([("w", { $0.tensor("FloatStorage", key: "0", numel: 1, shape: [1]) })])
        for (name, why) in [("../evil", "'..' component"), ("archive/../../evil", "'..' component"), ("/etc/passwd", "absolute"),
                            ("archive\\..\\evil", "backslash"), ("C:/evil", "drive letter")] {
            assertRefused(torchZip(pickle, storages: [("0", f32Bytes([1]))], extra: [ZipItem(name: name, data: [1])]), [why])
        }
    }

    func testDuplicateEntryNamesAreRefused() {
        let pickle = stateDictPickle([("w", { $0.tensor("FloatStorage", key: "0", numel: 1, shape: [1]) })])
        let dup = torchZip(pickle, storages: [("0", f32Bytes([1]))], extra: [ZipItem(name: "archive/data/0", data: f32Bytes([9]))])
        assertRefused(dup, ["two zip entries named 'archive/data/0'"])
    }

    func testOtherLayoutProblems() {
        let pickle = stateDictPickle([("w", { $0.tensor("FloatStorage", key: "0", numel: 1, shape: [1]) })])
        assertRefused(torchZip(pickle, storages: [("0", f32Bytes([1]))], extra: [ZipItem(name: "other/x", data: [1])]), ["two top-level folders"])
        assertRefused(torchZip(pickle, storages: [("0", f32Bytes([1]))], extra: [ZipItem(name: "loose", data: [1])]), ["outside a top-level folder"])
        assertRefused(torchZip(pickle, storages: [("0", f32Bytes([1]))], byteorder: "middle"), ["byteorder 'middle'"])
        assertRefused(makeZip([ZipItem(name: "archive/version", data: [0x33])]), ["no 'archive/data.pkl'"])
        assertRefused(makeZip([]), ["empty zip"])
        assertRefused([], ["not a PyTorch checkpoint"])
        assertRefused(Array("hello world, not a checkpoint".utf8), ["not a PyTorch checkpoint"])
        var tar = [UInt8](repeating: 0, count: 1024)
        tar.replaceSubrange(257 ..< 262, with: Array("ustar".utf8))
        assertRefused(tar, ["tar checkpoint", "torch.save(torch.load(path), path2)"])
    }

    func testEncryptedAndUnsupportedMethodsAreRefused() {
        var z = normalCheckpoint()
        // Flip the central directory flags / method of the first entry.
        let cd = Self.firstCentralHeader(z)
        z[cd + 8] |= 1
        assertRefused(z, ["encrypted"])
        z = normalCheckpoint()
        z[cd + 10] = 12
        assertRefused(z, ["compression method 12"])
    }

    private static func firstCentralHeader(_ z: [UInt8]) -> Int {
        for i in 0 ..< z.count - 4 where z[i] == 0x50 && z[i + 1] == 0x4B && z[i + 2] == 0x01 && z[i + 3] == 0x02 { return i }
        return -1
    }

    // MARK: legacy format

    private func legacyCheckpoint(view: Bool = false) -> [UInt8] {
        var out: [UInt8] = [0x80, 0x02, 0x8A, 0x0A, 0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19, 0x2E]
        out += [0x80, 0x02, 0x4D, 0xE9, 0x03, 0x2E] // 1001
        var info = PickleBuilder()
        info.op(0x7D); info.str("little_endian"); info.op(0x88, 0x73); info.stop()
        out += info.bytes
        func pid(_ p: inout PickleBuilder, _ cls: String, _ key: String, _ numel: Int, view: (String, Int, Int)?) {
            p.mark(); p.str("storage"); p.global("torch", cls); p.str(key); p.str("cpu"); p.int(numel)
            if let view { p.mark(); p.str(view.0); p.int(view.1); p.int(view.2); p.op(0x74) } else { p.op(0x4E) }
            p.op(0x74, 0x51)
        }
        func tensor(_ p: inout PickleBuilder, _ cls: String, _ key: String, _ numel: Int, offset: Int, shape: [Int], stride: [Int], view: (String, Int, Int)? = nil) {
            p.global("torch._utils", "_rebuild_tensor_v2"); p.mark()
            pid(&p, cls, key, numel, view: view)
            p.int(offset); p.ints(shape); p.ints(stride); p.op(0x89); p.emptyOrderedDict(); p.op(0x74, 0x52)
        }
        var obj = PickleBuilder()
        obj.emptyOrderedDict(); obj.mark()
        obj.str("w"); tensor(&obj, "FloatStorage", "140", 6, offset: 0, shape: [2, 3], stride: [3, 1])
        obj.str("t"); tensor(&obj, "FloatStorage", "140", 6, offset: 0, shape: [3, 2], stride: [1, 3])
        obj.str("ids"); tensor(&obj, "LongStorage", "77", 2, offset: 0, shape: [2], stride: [1])
        if view { obj.str("v"); tensor(&obj, "FloatStorage", "140", 6, offset: 1, shape: [2], stride: [1], view: ("141", 2, 3)) }
        obj.op(0x75); obj.stop()
        out += obj.bytes
        var keys = PickleBuilder()
        keys.op(0x5D); keys.mark(); keys.str("140"); keys.str("77"); keys.op(0x65); keys.stop()
        out += keys.bytes
        out += le64(6) + f32Bytes([0, 1, 2, 3, 4, 5])
        out += le64(2) + i64Bytes([11, -12])
        return out
    }

    func testLegacyFormat() throws {
        let bytes = legacyCheckpoint(view: true)
        let storage = ByteStorage.copy(bytes)
        let sd = try TorchCheckpoint.load(ByteRegion(storage: storage), file: "legacy.bin")
        XCTAssertEqual(sd.format, "pytorch-legacy")
        XCTAssertEqual(sd.tensors.map(\.name), ["w", "t", "ids", "v"])
        XCTAssertEqual(sd.tensors[0].floats(), [0, 1, 2, 3, 4, 5])
        XCTAssertTrue(sd.tensors[0].region.storage === storage) // zero copy
        XCTAssertEqual(sd.tensors[1].floats(), [0, 3, 1, 4, 2, 5]) // transpose, materialized
        XCTAssertEqual(sd.tensors[2].int64s(), [11, -12])
        XCTAssertEqual(sd.tensors[3].floats(), [3, 4]) // view at element 2, tensor offset 1
    }

    func testLegacyProblems() {
        var wrongCount = legacyCheckpoint()
        let at = wrongCount.count - 8 - 16 - 8 - 24
        wrongCount.replaceSubrange(at ..< at + 8, with: le64(7))
        assertRefused(wrongCount, ["holds 7 elements, expected 6"])
        // A zip-style 5-tuple persistent id inside a legacy stream is refused.
        var out: [UInt8] = [0x80, 0x02, 0x8A, 0x0A, 0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19, 0x2E]
        out += [0x80, 0x02, 0x4D, 0xE9, 0x03, 0x2E, 0x80, 0x02, 0x7D, 0x2E]
        out += stateDictPickle([("w", { $0.tensor("FloatStorage", key: "0", numel: 1, shape: [1]) })])
        assertRefused(out, ["expected a 6-tuple"])
        var version = [UInt8](legacyCheckpoint())
        version[18] = 0xEA // 1002
        assertRefused(version, ["protocol version 1002"])
    }

    // MARK: robustness

    func testTruncationAtEveryOffsetThrows() {
        for sample in [normalCheckpoint(), normalCheckpoint(deflate: true, zip64: true), legacyCheckpoint(view: true)] {
            XCTAssertNoThrow(try load(sample))
            for n in 0 ..< sample.count {
                XCTAssertThrowsError(try load(Array(sample[0 ..< n])), "prefix of \(n) bytes loaded")
            }
        }
    }

    func testRandomByteFlipsLoadOrThrow() {
        var rng = SplitMix64(state: 0xDEB3_27A)
        let samples = [normalCheckpoint(), normalCheckpoint(deflate: true), legacyCheckpoint(view: true)]
        var loaded = 0, refused = 0
        for i in 0 ..< 2_000 {
            var bytes = samples[i % samples.count]
            let at = Int(rng.next() % UInt64(bytes.count))
            var flip = UInt8(truncatingIfNeeded: rng.next())
            if flip == 0 { flip = 0x80 }
            bytes[at] ^= flip
            do {
                let sd = try load(bytes)
                for t in sd.tensors { _ = t.bytes.reduce(0, &+) } // every view readable
                loaded += 1
            } catch is DebertaError {
                refused += 1
            } catch {
                XCTFail("non-DebertaError \(error)")
            }
        }
        XCTAssertEqual(loaded + refused, 2_000)
        XCTAssertGreaterThan(refused, 0)
    }

    // MARK: fixtures (generated by Tools/make_fixtures.py, when present)

    private static var fixtures: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/formats")
    }

    private func fixture(_ name: String) throws -> URL {
        let url = Self.fixtures.appendingPathComponent(name)
        guard FileManager.default.fileExists(atPath: url.path) else { throw XCTSkip("fixture \(name) not generated") }
        return url
    }

    /// name -> (dtype, shape, bytes) from a safetensors file, with a minimal header parser.
    private func readSafetensors(_ url: URL) throws -> [(String, String, [Int], [UInt8])] {
        let data = [UInt8](try Data(contentsOf: url))
        guard data.count >= 8 else { throw DebertaError(.malformedFile, file: url.path, "short safetensors") }
        let n = Int(data[0 ..< 8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << UInt64(8 * $1.offset) })
        let header = try JSONSerialization.jsonObject(with: Data(data[8 ..< 8 + n])) as? [String: Any] ?? [:]
        var out: [(String, String, [Int], [UInt8], Int)] = []
        for (name, value) in header where name != "__metadata__" {
            let info = value as? [String: Any] ?? [:]
            let offsets = (info["data_offsets"] as? [NSNumber] ?? []).map(\.intValue)
            let shape = (info["shape"] as? [NSNumber] ?? []).map(\.intValue)
            let bytes = Array(data[8 + n + offsets[0] ..< 8 + n + offsets[1]])
            out.append((name, info["dtype"] as? String ?? "?", shape, bytes, offsets[0]))
        }
        return out.sorted { $0.4 < $1.4 }.map { ($0.0, $0.1, $0.2, $0.3) }
    }

    func testGoodFixturesMatchExpected() throws {
        let names = ["dtypes", "noncontig", "wrapped_state_dict", "wrapped_model", "wrapped_module", "deflated", "bigendian", "legacy", "protocol4"]
        var checked = 0
        for name in names {
            let bin = Self.fixtures.appendingPathComponent("\(name).bin")
            let expected = Self.fixtures.appendingPathComponent("\(name).expected.safetensors")
            guard FileManager.default.fileExists(atPath: bin.path), FileManager.default.fileExists(atPath: expected.path) else { continue }
            let sd = try TorchCheckpoint.load(ByteRegion(storage: try ByteStorage.map(path: bin.path)), file: bin.path)
            XCTAssertEqual(sd.format, name == "legacy" ? "pytorch-legacy" : "pytorch-zip", name)
            let want = try readSafetensors(expected)
            XCTAssertEqual(Set(sd.tensors.map(\.name)), Set(want.map(\.0)), name)
            for (tensor, dtype, shape, bytes) in want {
                guard let got = sd.tensors.first(where: { $0.name == tensor }) else { XCTFail("\(name): missing \(tensor)"); continue }
                XCTAssertEqual(got.dtype.rawValue, dtype, "\(name).\(tensor)")
                XCTAssertEqual(got.shape, shape, "\(name).\(tensor)")
                XCTAssertEqual(Array(got.bytes), bytes, "\(name).\(tensor) bytes differ")
            }
            if name == "wrapped_state_dict" { XCTAssertEqual(sd.skipped, []) } // "epoch" is outside the unwrapped dict
            if name == "noncontig" {
                let a = sd.tensors.first { $0.name == "tied_a" }, b = sd.tensors.first { $0.name == "tied_b" }
                if let a, let b { XCTAssertTrue(a.aliases(b), "tied_a / tied_b should share bytes") }
            }
            checked += 1
        }
        if checked == 0 { throw XCTSkip("no format fixtures generated yet") }
    }

    func testEvilFixturesAreRefused() throws {
        let cases: [(String, [String])] = [
            ("evil_reduce_os_system.bin", ["'os.system'"]),
            ("evil_eval.bin", ["'builtins.eval'"]),
            ("evil_inst.bin", ["INST"]),
            ("evil_persid.bin", ["'os.system'", "persistent id"]),
            ("torchscript.pt", ["TorchScript archive"]),
            ("zipbomb.bin", ["zip bomb"]),
            ("path_escape.bin", ["'..' component"]),
            ("duplicate_entry.bin", ["two zip entries named"]),
        ]
        var checked = 0
        for (name, fragments) in cases {
            let url = Self.fixtures.appendingPathComponent(name)
            guard FileManager.default.fileExists(atPath: url.path) else { continue }
            let start = Date()
            XCTAssertThrowsError(try TorchCheckpoint.load(ByteRegion(storage: try ByteStorage.map(path: url.path)), file: url.path), name) { error in
                let text = (error as? DebertaError)?.description ?? "\(error)"
                XCTAssertTrue(fragments.contains { text.lowercased().contains($0.lowercased()) }, "\(name): '\(text)' does not mention \(fragments)")
            }
            XCTAssertLessThan(Date().timeIntervalSince(start), 5, name)
            checked += 1
        }
        if checked == 0 { throw XCTSkip("no evil fixtures generated yet") }
    }
}
