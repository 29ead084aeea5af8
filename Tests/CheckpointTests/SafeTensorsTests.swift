import Foundation
import XCTest
@_exported import TestSupport
@testable import Checkpoint

/// Builds a safetensors file from a header text and a data buffer, exactly as given (no fixing up).
func safetensorsBytes(header: String, data: [UInt8], declaredLength: UInt64? = nil) -> [UInt8] {
    let h = Array(header.utf8)
    var out: [UInt8] = []
    withUnsafeBytes(of: (declaredLength ?? UInt64(h.count)).littleEndian) { out += $0 }
    return out + h + data
}

func readSafeTensors(_ bytes: [UInt8]) throws -> SafeTensorsReader.Parsed {
    try SafeTensorsReader.read(ByteRegion(storage: .copy(bytes)), file: "test.safetensors")
}

func assertRefused(_ bytes: [UInt8], mentioning fragment: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertThrowsError(try readSafeTensors(bytes), file: file, line: line) { error in
        let text = "\(error)"
        XCTAssertTrue(text.contains(fragment), "error '\(text)' does not mention '\(fragment)'", file: file, line: line)
        XCTAssertTrue(text.hasPrefix("test.safetensors"), "error '\(text)' does not name the file", file: file, line: line)
    }
}

final class SafeTensorsReaderTests: XCTestCase {
    func testReadsTensorsInPlace() throws {
        let values: [Float] = [1, -2, 3.5, 0]
        let data = values.withUnsafeBytes { Array($0) } + [7, 8]
        let header = #"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"U8","shape":[2],"data_offsets":[16,18]}}"#
        let storage = ByteStorage.copy(safetensorsBytes(header: header, data: data))
        let parsed = try SafeTensorsReader.read(ByteRegion(storage: storage), file: "x")
        XCTAssertEqual(parsed.tensors.map(\.name), ["a", "b"])
        XCTAssertEqual(parsed.tensors[0].shape, [2, 2])
        XCTAssertEqual(parsed.tensors[0].floats(), values)
        XCTAssertEqual(parsed.tensors[1].int64s(), [7, 8])
        XCTAssertEqual(parsed.metadata.first?.1, "pt")
        // Views point into the storage: nothing was copied.
        XCTAssertTrue(parsed.tensors[0].region.storage === storage)
        XCTAssertEqual(parsed.tensors[0].region.offset, 8 + header.utf8.count)
    }

    func testAcceptsPaddedHeaderAndLeadingWhitespace() throws {
        let header = "  \n" + #"{"a":{"dtype":"I8","shape":[1],"data_offsets":[0,1]}}"# + "     "
        XCTAssertEqual(try readSafeTensors(safetensorsBytes(header: header, data: [0xFF])).tensors[0].int64s(), [-1])
    }

    func testEveryDtypeSize() throws {
        for dtype in DType.allCases {
            let header = #"{"t":{"dtype":"\#(dtype.rawValue)","shape":[3],"data_offsets":[0,\#(3 * dtype.size)]}}"#
            let parsed = try readSafeTensors(safetensorsBytes(header: header, data: [UInt8](repeating: 0, count: 3 * dtype.size)))
            XCTAssertEqual(parsed.tensors[0].dtype, dtype)
        }
    }

    func testZeroSizedAndScalarTensors() throws {
        let header = #"{"e":{"dtype":"F32","shape":[0,3],"data_offsets":[0,0]},"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}"#
        let parsed = try readSafeTensors(safetensorsBytes(header: header, data: [0, 0, 0x80, 0x3F]))
        XCTAssertEqual(parsed.tensors[0].elementCount, 0)
        XCTAssertEqual(parsed.tensors[1].floats(), [1])
    }

    func testRefusesShortFile() {
        assertRefused([], mentioning: "at least 8")
        assertRefused([1, 0, 0], mentioning: "at least 8")
    }

    func testRefusesHugeHeaderLength() {
        assertRefused(safetensorsBytes(header: "{}", data: [], declaredLength: 1_000_000_000_000), mentioning: "exceeds the limit")
        assertRefused(safetensorsBytes(header: "{}", data: [], declaredLength: UInt64.max), mentioning: "exceeds the limit")
    }

    func testRefusesHeaderPastEnd() {
        assertRefused(safetensorsBytes(header: "{}", data: [], declaredLength: 50), mentioning: "runs past the end")
    }

    func testRefusesInvalidJSONAndUTF8() {
        assertRefused(safetensorsBytes(header: "{\"a\":", data: []), mentioning: "not valid JSON")
        assertRefused(safetensorsBytes(header: "[]", data: []), mentioning: "not a JSON object")
        var bad = safetensorsBytes(header: #"{"a\#u{e9}":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}"#, data: [])
        // Replace the two UTF-8 bytes of é with an invalid sequence.
        if let k = bad.firstIndex(of: 0xC3) { bad[k] = 0xFF }
        assertRefused(bad, mentioning: "not valid JSON")
    }

    func testRefusesDeepNesting() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        assertRefused(safetensorsBytes(header: #"{"a":"# + deep + "}", data: []), mentioning: "nesting")
    }

    func testRefusesDuplicateNames() {
        let header = #"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}"#
        assertRefused(safetensorsBytes(header: header, data: [1, 2]), mentioning: "twice")
    }

    func testRefusesOverlapGapAndSizeMismatch() {
        let overlap = #"{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}"#
        assertRefused(safetensorsBytes(header: overlap, data: [1, 2, 3]), mentioning: "overlap")
        let gap = #"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"b":{"dtype":"U8","shape":[1],"data_offsets":[2,3]}}"#
        assertRefused(safetensorsBytes(header: gap, data: [1, 2, 3]), mentioning: "gap")
        let notAtZero = #"{"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}"#
        assertRefused(safetensorsBytes(header: notAtZero, data: [1, 2]), mentioning: "gap")
        let size = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#
        assertRefused(safetensorsBytes(header: size, data: [1, 2, 3, 4]), mentioning: "needs 8 bytes")
        let trailing = #"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#
        assertRefused(safetensorsBytes(header: trailing, data: [1, 2]), mentioning: "not described")
        let truncated = #"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}"#
        assertRefused(safetensorsBytes(header: truncated, data: [1, 2]), mentioning: "truncated")
    }

    func testRefusesOverflowingShapesAndBadFields() {
        let overflow = #"{"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,0]}}"#
        assertRefused(safetensorsBytes(header: overflow, data: []), mentioning: "overflows")
        let negative = #"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}}"#
        assertRefused(safetensorsBytes(header: negative, data: []), mentioning: "non-negative")
        let fraction = #"{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,0]}}"#
        assertRefused(safetensorsBytes(header: fraction, data: []), mentioning: "non-negative integer")
        let dtype = #"{"a":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}}"#
        assertRefused(safetensorsBytes(header: dtype, data: [0]), mentioning: "unsupported dtype 'Q4'")
        let offsets = #"{"a":{"dtype":"U8","shape":[1],"data_offsets":[1,0]}}"#
        assertRefused(safetensorsBytes(header: offsets, data: [0]), mentioning: "data_offsets")
        let huge = #"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,99999999999999999999999]}}"#
        assertRefused(safetensorsBytes(header: huge, data: [0]), mentioning: "data_offsets")
        let metadata = #"{"__metadata__":{"k":1}}"#
        assertRefused(safetensorsBytes(header: metadata, data: []), mentioning: "__metadata__")
    }
}

final class SafeTensorsWriterTests: XCTestCase {
    func testAlignedLayoutAndRoundTrip() throws {
        let dir = try temporaryDirectory()
        let path = dir + "/out.safetensors"
        // Sizes chosen so that naive ordering would misalign: 3 bytes, 6 bytes, 64 bytes, 12 bytes, 8 bytes.
        let specs: [(String, DType, [Int])] = [
            ("odd_u8", .u8, [3]), ("half", .f16, [3]), ("block", .f32, [16]), ("three", .f32, [3]), ("long", .i64, [1]),
        ]
        var tensors: [OutputTensor] = []
        for (name, dtype, shape) in specs {
            let count = shape.reduce(1, *) * dtype.size
            let bytes = (0 ..< count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ name.count) }
            tensors.append(OutputTensor(name: name, dtype: dtype, shape: shape) { dst in bytes.withUnsafeBytes { dst.copyMemory(from: $0) } })
        }
        try SafeTensorsWriter.write(tensors, metadata: [("format", "pt")], to: path)
        let storage = try ByteStorage.map(path: path)
        let parsed = try SafeTensorsReader.read(ByteRegion(storage: storage), file: path)
        let headerLength = Int(storage.bytes.loadUnaligned(as: UInt64.self))
        XCTAssertEqual((8 + headerLength) % 64, 0, "data must start on a 64-byte boundary")
        for t in parsed.tensors {
            let start = t.region.offset - (8 + headerLength)
            if t.byteCount % 64 == 0 { XCTAssertEqual(start % 64, 0, t.name) }
            XCTAssertEqual(start % t.dtype.size, 0, t.name)
            let spec = specs.first { $0.0 == t.name }!
            XCTAssertEqual(t.dtype, spec.1)
            XCTAssertEqual(t.shape, spec.2)
            let expected = (0 ..< t.byteCount).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ t.name.count) }
            XCTAssertEqual(Array(t.bytes), expected, t.name)
        }
        XCTAssertEqual(Set(parsed.tensors.map(\.name)), Set(specs.map(\.0)))
        XCTAssertEqual(try directoryEntries(dir), ["out.safetensors"], "no temporary file may remain")
    }

    /// Gathered reads (embedding rows of a call): every piece gets its bytes whether or not its pages were in
    /// memory, out-of-range pieces are skipped, and a region's offsets are relative to the region.
    func testGatheredReadsCopyEveryPiece() throws {
        let dir = try temporaryDirectory()
        let path = dir + "/table.bin"
        let size = 3 * 65536 + 123
        let bytes = (0 ..< size).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 9) }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let storage = try ByteStorage.map(path: path)
        // Drop the file from the page cache where the system allows, so that some pieces miss.
        let fd = open(path, O_RDONLY)
        if fd >= 0 { _ = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED); close(fd) }
        let offsets = [0, 70_000, 5, 131_072 - 3, size - 40, 4096 * 17 + 1, 70_000]
        let count = 40
        var out = [UInt8](repeating: 0xAA, count: offsets.count * count + count)
        out.withUnsafeMutableBytes { dst in
            var pieces = offsets.enumerated().map { i, o in ByteStorage.Piece(offset: o, count: count, destination: dst.baseAddress! + i * count) }
            pieces.append(ByteStorage.Piece(offset: size - 10, count: count, destination: dst.baseAddress! + offsets.count * count))
            storage.copy(pieces: pieces)
        }
        for (i, o) in offsets.enumerated() {
            XCTAssertEqual(Array(out[i * count ..< (i + 1) * count]), Array(bytes[o ..< o + count]), "piece at \(o)")
        }
        XCTAssertEqual(Array(out[(offsets.count * count) ..< out.count]), [UInt8](repeating: 0xAA, count: count), "a piece past the end is skipped")
        let region = try XCTUnwrap(ByteRegion(storage: storage, offset: 1000, count: 50_000))
        var two = [UInt8](repeating: 0, count: 2 * count)
        two.withUnsafeMutableBytes { dst in
            region.copy(pieces: [ByteStorage.Piece(offset: 10, count: count, destination: dst.baseAddress!),
                                 ByteStorage.Piece(offset: 49_990, count: count, destination: dst.baseAddress! + count)])
        }
        XCTAssertEqual(Array(two[..<count]), Array(bytes[1010 ..< 1010 + count]))
        XCTAssertEqual(Array(two[count ..< 2 * count]), [UInt8](repeating: 0, count: count), "a piece past the region's end is skipped")
    }

    func testFailedWriteLeavesNothing() throws {
        let dir = try temporaryDirectory()
        let path = dir + "/out.safetensors"
        struct Boom: Error {}
        let tensors = [OutputTensor(name: "a", dtype: .f32, shape: [4]) { _ in throw Boom() }]
        XCTAssertThrowsError(try SafeTensorsWriter.write(tensors, metadata: [], to: path))
        XCTAssertEqual(try directoryEntries(dir), [])
    }
}

final class JSONParserTests: XCTestCase {
    func testParsesValues() throws {
        let v = try JSONParser.parse(#" {"a": [1, -2.5e3, true, false, null, "x\u00e9\ud83d\ude00\n"], "b": {}} "#)
        XCTAssertEqual(v["a"]?.arrayValue?.count, 6)
        XCTAssertEqual(v["a"]?.arrayValue?[0].intValue, 1)
        XCTAssertEqual(v["a"]?.arrayValue?[1].doubleValue, -2500)
        XCTAssertNil(v["a"]?.arrayValue?[1].intValue)
        XCTAssertEqual(v["a"]?.arrayValue?[5].stringValue, "xé😀\n")
    }

    func testRejectsMalformed() {
        for text in ["", "{", "[1,]", "{\"a\":1,}", "01", "1.", "-", "\"\\x\"", "\"\u{01}\"", "tru", "{} {}", "\"\\ud800\"", "{\"a\":1,\"a\":2}"] {
            XCTAssertThrowsError(try JSONParser.parse(text), text)
        }
    }

    func testSerializationRoundTrip() throws {
        let text = #"{"b":[1,2.5,"q\"\\\n\u0001"],"a":{"x":null,"y":true}}"#
        let v = try JSONParser.parse(text)
        XCTAssertEqual(try JSONParser.parse(v.serialized()), v)
        XCTAssertEqual(try JSONParser.parse(v.serialized(pretty: true)), v)
        XCTAssertEqual(v.serialized(), text.replacingOccurrences(of: #"\u0001"#, with: #"\u0001"#))
    }
}

// MARK: - Helpers shared by the tests of this target


func directoryEntries(_ path: String) throws -> [String] {
    try FileManager.default.contentsOfDirectory(atPath: path).sorted()
}


final class JSONKeyIdentityTests: XCTestCase {
    func testCanonicallyEquivalentKeysAreDistinct() throws {
        let v = try JSONParser.parse("{\"\u{e9}\": 1, \"e\u{301}\": 2}")
        XCTAssertEqual(v.objectValue?.count, 2)
    }
}

final class FormatSniffingTests: XCTestCase {
    /// A safetensors header length whose low byte is 0x80 (e.g. 1664 = 0x680) is still safetensors.
    func testHeaderLengthStartingWith0x80() throws {
        var header = #"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#
        while header.utf8.count < 0x680 { header += " " }
        let bytes = safetensorsBytes(header: header, data: [7])
        XCTAssertEqual(bytes[0], 0x80)
        let store = try TensorStore.read(ByteRegion(storage: .copy(bytes)), file: "x.safetensors")
        XCTAssertEqual(store.format, .safetensors)
        XCTAssertEqual(store["a"]?.int64s(), [7])
    }
}
