import Checkpoint
import Foundation
import XCTest
@testable import DeBERTa

final class FixtureDetectionTests: XCTestCase {
    func testEveryFixtureOpensWithItsFamilyHeadAndFormat() throws {
        for fixture in fixtureModels {
            let model = try ModelCheckpoint.open(fixture.path)
            XCTAssertEqual(model.layout.family.rawValue, fixture.family, fixture.name)
            XCTAssertEqual(model.layout.head.rawValue, fixture.head, fixture.name)
            XCTAssertEqual(model.store.format.rawValue, fixture.format, fixture.name)
            XCTAssertNotNil(model.config, fixture.name)
            XCTAssertGreaterThan(model.store.tensors.count, 10, fixture.name)
        }
    }

    func testHeadWithoutArchitecturesComesFromNames() throws {
        for name in ["v1-seqcls-noarch", "v3-rtd"] {
            let model = try ModelCheckpoint.open(repositoryRoot + "/Fixtures/models/" + name)
            XCTAssertNil(model.config?.architectures, name)
            XCTAssertEqual(model.layout.headSource, "tensor names", name)
        }
    }
}

final class ConvertRoundTripTests: XCTestCase {
    /// Every source tensor is written under its transformers name with identical bytes, except tied
    /// duplicates (written once); nothing else is written; the layout is aligned.
    func testConvertKeepsEveryTensorBitExact() throws {
        for fixture in fixtureModels {
            let out = try temporaryDirectory() + "/converted"
            let report = try Converter.convert(source: fixture.path, destination: out, dtype: nil)
            let source = try ModelCheckpoint.open(fixture.path)
            let converted = try ModelCheckpoint.open(out)
            XCTAssertEqual(converted.store.format, .safetensors)
            XCTAssertEqual(converted.layout.head, source.layout.head, fixture.name)
            let dropped = Set(report.droppedTies.map(\.0))
            var expectedNames = Set<String>()
            for view in source.store.tensors where !dropped.contains(view.name) {
                let name = TensorNaming.canonical(view.name, layout: source.layout)
                expectedNames.insert(name)
                guard let written = converted.store[name] else {
                    XCTFail("\(fixture.name): \(name) not written")
                    continue
                }
                XCTAssertEqual(written.dtype, view.dtype, name)
                XCTAssertEqual(written.shape, view.shape, name)
                XCTAssertTrue(written.bytes.elementsEqual(view.bytes), "\(fixture.name): \(name) bytes differ")
            }
            XCTAssertEqual(Set(converted.store.names), expectedNames, fixture.name)
            for (droppedName, kept) in report.droppedTies {
                XCTAssertTrue(source.store[droppedName]!.bytes.elementsEqual(converted.store[kept]!.bytes), droppedName)
            }
            try assertAligned(out + "/model.safetensors")
            let metadata = Dictionary(uniqueKeysWithValues: converted.store.metadata)
            XCTAssertEqual(metadata["format"], "pt")
            XCTAssertEqual(metadata["source_format"], fixture.format)
            // Tokenizer files travel with the model.
            for file in source.files.tokenizerFiles {
                let name = URL(fileURLWithPath: file).lastPathComponent
                XCTAssertEqual(FileManager.default.contents(atPath: out + "/" + name), FileManager.default.contents(atPath: file), name)
            }
        }
    }

    func testArchitecturesFilledInWhenInferred() throws {
        let out = try temporaryDirectory() + "/converted"
        let report = try Converter.convert(source: repositoryRoot + "/Fixtures/models/v1-seqcls-noarch", destination: out, dtype: nil)
        XCTAssertEqual(report.architectureFilledIn, "DebertaForSequenceClassification")
        let config = try DebertaConfig.load(path: out + "/config.json")
        XCTAssertEqual(config.architectures, ["DebertaForSequenceClassification"])
        // Everything else in config.json is kept.
        let before = try readJSONFile(repositoryRoot + "/Fixtures/models/v1-seqcls-noarch/config.json")
        let after = try readJSONFile(out + "/config.json")
        for (key, value) in before.objectValue ?? [] where key != "dtype" && key != "torch_dtype" {
            XCTAssertEqual(after[key], value, key)
        }
    }

    func testUpcastToF32IsExactAndDowncastRoundsToNearest() throws {
        for name in ["v2-conv-seqcls", "v2-sep-c2p-tokcls"] {
            let path = repositoryRoot + "/Fixtures/models/" + name
            let out = try temporaryDirectory() + "/f32"
            _ = try Converter.convert(source: path, destination: out, dtype: .f32)
            let source = try ModelCheckpoint.open(path)
            let converted = try ModelCheckpoint.open(out)
            var lowPrecision = 0
            for view in source.store.tensors {
                let written = try XCTUnwrap(converted.store[view.name])
                if view.dtype.isFloatingPoint {
                    XCTAssertEqual(written.dtype, .f32)
                    if view.dtype != .f32 { lowPrecision += 1 }
                    XCTAssertEqual(written.floats().map(\.bitPattern), view.floats().map(\.bitPattern), view.name)
                } else {
                    XCTAssertTrue(written.bytes.elementsEqual(view.bytes))
                }
            }
            XCTAssertGreaterThan(lowPrecision, 0, "\(name) should hold f16/bf16 tensors")
            // And back down: f32 -> the original low precision reproduces the original bits.
            let back = try temporaryDirectory() + "/back"
            let original = source.store.tensors.first { $0.dtype == .f16 || $0.dtype == .bf16 }!.dtype
            _ = try Converter.convert(source: out, destination: back, dtype: original)
            let again = try ModelCheckpoint.open(back)
            for view in source.store.tensors where view.dtype == original {
                XCTAssertTrue(again.store[view.name]!.bytes.elementsEqual(view.bytes), view.name)
            }
        }
    }

    func testScalarCastsMatchIEEE() {
        XCTAssertEqual(bf16FromFloat(1.0), 0x3F80)
        XCTAssertEqual(bf16FromFloat(Float(bitPattern: 0x3F80_8000)), 0x3F80, "ties round to even")
        XCTAssertEqual(bf16FromFloat(Float(bitPattern: 0x3F81_8000)), 0x3F82, "ties round to even")
        XCTAssertEqual(bf16FromFloat(Float(bitPattern: 0x3F80_8001)), 0x3F81)
        XCTAssertTrue(floatFromBF16(bf16FromFloat(.nan)).isNaN)
        XCTAssertEqual(floatFromBF16(bf16FromFloat(.infinity)), .infinity)
        XCTAssertEqual(f16FromFloat(65504), 0x7BFF)
        XCTAssertEqual(floatFromF16(0x0001), Float(bitPattern: 0x3380_0000), "smallest f16 subnormal")
        XCTAssertEqual(floatFromF8E4M3(0x38), 1.0)
        XCTAssertEqual(floatFromF8E4M3(0x7E), 448.0)
        XCTAssertTrue(floatFromF8E4M3(0x7F).isNaN)
        XCTAssertEqual(floatFromF8E4M3(0x01), 1.0 / 512)
        XCTAssertEqual(floatFromF8E5M2(0x3C), 1.0)
        XCTAssertEqual(floatFromF8E5M2(0x7B), 57344.0)
    }

    func assertAligned(_ path: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let storage = try ByteStorage.map(path: path)
        let headerEnd = 8 + Int(storage.bytes.loadUnaligned(as: UInt64.self))
        XCTAssertEqual(headerEnd % 64, 0, "data starts at \(headerEnd)", file: file, line: line)
        let parsed = try SafeTensorsReader.read(ByteRegion(storage: storage), file: path)
        for t in parsed.tensors {
            let start = t.region.offset - headerEnd
            if t.byteCount % 64 == 0 { XCTAssertEqual(start % 64, 0, t.name, file: file, line: line) }
            XCTAssertEqual(start % t.dtype.size, 0, t.name, file: file, line: line)
        }
    }
}
