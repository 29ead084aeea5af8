import CProtobufC
import Foundation
import XCTest
@_exported import TestSupport

/// Runs the built `deberta` executable, as a user would.
struct CommandResult {
    var status: Int32
    var stdout: String
    var stderr: String
}


/// The products folder holds the test bundle and the `deberta` executable side by side.
let debertaExecutable: String = {
    let candidates = [
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("deberta").path,
        Bundle.main.bundleURL.appendingPathComponent("deberta").path,
        repositoryRoot + "/.build/debug/deberta",
    ]
    return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates[0]
}()

func deberta(_ arguments: [String], environment: [String: String] = [:]) throws -> CommandResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: debertaExecutable)
    process.arguments = arguments
    if !environment.isEmpty {
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
    }
    process.currentDirectoryURL = URL(fileURLWithPath: repositoryRoot)
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let stdout = out.fileHandleForReading.readDataToEndOfFile()
    let stderr = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return CommandResult(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self), stderr: String(decoding: stderr, as: UTF8.self))
}

func temporaryDirectory() throws -> String { try TestSupport.temporaryDirectory(prefix: "deberta-cli") }

let modelNames = ["v3-mlm", "v2-conv-seqcls", "v2-sep-c2p-tokcls", "v2-qa-sharded", "v2-mc-bin-sharded", "v1-mlm", "v1-seqcls-noarch", "v3-rtd"]

final class InspectCommandTests: XCTestCase {
    func testInspectJSONOnEveryFixture() throws {
        for name in modelNames {
            let r = try deberta(["inspect", "Fixtures/models/\(name)", "--json"])
            XCTAssertEqual(r.status, 0, "\(name): \(r.stderr)")
            let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], name)
            for key in ["format", "family", "head", "parameters", "tensors"] { XCTAssertNotNil(object[key], "\(name) lacks \(key)") }
            let tensors = try XCTUnwrap(object["tensors"] as? [[String: Any]])
            XCTAssertFalse(tensors.isEmpty)
            let parameters = tensors.reduce(0) { sum, t in sum + ((t["shape"] as? [Int]) ?? []).reduce(1, *) }
            XCTAssertEqual(object["parameters"] as? Int, parameters, name)
            XCTAssertEqual(r.stdout.split(separator: "\n").count, 1, "--json prints one line")
        }
    }

    func testInspectTableSnapshot() throws {
        let r = try deberta(["inspect", "Fixtures/models/v1-mlm"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = r.stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        XCTAssertEqual(Array(lines.prefix(3)), [
            "Fixtures/models/v1-mlm",
            "  format      pytorch-zip",
            "  files       Fixtures/models/v1-mlm/pytorch_model.bin",
        ])
        XCTAssertTrue(lines.contains("  family      deberta (from config.json)"))
        XCTAssertTrue(lines.contains("  head        masked-lm (from config.json architectures)"))
        XCTAssertTrue(lines.contains { $0.hasPrefix("deberta.embeddings.word_embeddings.weight") && $0.contains("F32") })
    }
}

final class ConvertCommandTests: XCTestCase {
    func testConvertBinToF16ThenInspect() throws {
        let out = try temporaryDirectory() + "/model"
        let r = try deberta(["convert", "Fixtures/models/v1-mlm", out, "--dtype", "f16"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("tied duplicate dropped: cls.predictions.decoder.weight") || !r.stdout.contains("decoder"), r.stdout)
        let i = try deberta(["inspect", out, "--json"])
        XCTAssertEqual(i.status, 0, i.stderr)
        XCTAssertTrue(i.stdout.contains(#""format":"safetensors""#))
        XCTAssertTrue(i.stdout.contains(#""dtype":"F16""#))
        XCTAssertFalse(i.stdout.contains(#""dtype":"F32""#))
    }

    func testBadDtypeIsAValidationError() throws {
        let r = try deberta(["convert", "Fixtures/models/v1-mlm", "/tmp/never", "--dtype", "f8"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("'f8'") && r.stderr.contains("'f32', 'f16', 'bf16', 'int8'"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/tmp/never"))
    }
}

final class BadInputCommandTests: XCTestCase {
    /// Every bad input: exit status 1, one error line naming the file, and no DST left behind.
    func assertFails(_ source: String, mentioning fragments: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        let inspect = try deberta(["inspect", source])
        XCTAssertEqual(inspect.status, 1, "inspect \(source): \(inspect.stdout)", file: file, line: line)
        XCTAssertTrue(inspect.stdout.isEmpty, file: file, line: line)
        let message = inspect.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertEqual(message.split(separator: "\n").count, 1, "one error line: \(message)", file: file, line: line)
        for fragment in fragments {
            XCTAssertTrue(message.contains(fragment), "'\(message)' does not mention '\(fragment)'", file: file, line: line)
        }
        let parent = try temporaryDirectory()
        let dst = parent + "/out"
        let convert = try deberta(["convert", source, dst])
        XCTAssertEqual(convert.status, 1, file: file, line: line)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: parent), [], "convert left files behind", file: file, line: line)
    }

    func modelCopy(_ name: String) throws -> String {
        let dir = try temporaryDirectory() + "/" + name
        try FileManager.default.copyItem(atPath: repositoryRoot + "/Fixtures/models/" + name, toPath: dir)
        return dir
    }

    func testMissingPath() throws {
        try assertFails("/nonexistent/model", mentioning: ["/nonexistent/model", "no such file"])
    }

    func testEmptyFile() throws {
        let path = try temporaryDirectory() + "/empty.safetensors"
        FileManager.default.createFile(atPath: path, contents: Data())
        try assertFails(path, mentioning: [path])
    }

    func testRandomBytes() throws {
        var generator = SystemRandomNumberGenerator()
        for ext in ["safetensors", "bin"] {
            let path = try temporaryDirectory() + "/random.\(ext)"
            FileManager.default.createFile(atPath: path, contents: Data((0 ..< 4096).map { _ in UInt8.random(in: 0 ... 255, using: &generator) }))
            try assertFails(path, mentioning: [path])
        }
    }

    func testDirectoryWithoutWeights() throws {
        let dir = try temporaryDirectory()
        FileManager.default.createFile(atPath: dir + "/config.json", contents: Data("{}".utf8))
        try assertFails(dir, mentioning: [dir, "no weights found"])
    }

    func testConfigThatIsNotJSON() throws {
        let dir = try modelCopy("v3-mlm")
        try Data("{ not json".utf8).write(to: URL(fileURLWithPath: dir + "/config.json"))
        try assertFails(dir, mentioning: [dir + "/config.json", "not valid JSON"])
    }

    func testShapesThatDisagreeWithTheConfig() throws {
        let dir = try modelCopy("v3-mlm")
        let configPath = dir + "/config.json"
        var config = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: configPath))) as? [String: Any])
        config["intermediate_size"] = (config["intermediate_size"] as! Int) * 2
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: configPath))
        try assertFails(dir, mentioning: ["shapes disagree", "intermediate.dense.weight"])
    }

    func testTruncatedWeights() throws {
        for name in ["v3-mlm", "v1-mlm"] {
            let dir = try modelCopy(name)
            let weights = dir + (name == "v1-mlm" ? "/pytorch_model.bin" : "/model.safetensors")
            let data = try Data(contentsOf: URL(fileURLWithPath: weights))
            try data.prefix(data.count / 2).write(to: URL(fileURLWithPath: weights))
            try assertFails(dir, mentioning: [weights])
        }
    }

    func testMissingShard() throws {
        let dir = try modelCopy("v2-qa-sharded")
        let shard = try FileManager.default.contentsOfDirectory(atPath: dir).first { $0.hasPrefix("model-0000") }!
        try FileManager.default.removeItem(atPath: dir + "/" + shard)
        try assertFails(dir, mentioning: [shard])
    }

    func testHugeSafetensorsHeaderLength() throws {
        let path = try temporaryDirectory() + "/huge.safetensors"
        var bytes = [UInt8]()
        withUnsafeBytes(of: UInt64(1_000_000_000_000).littleEndian) { bytes += $0 }
        bytes += Array("{}".utf8)
        FileManager.default.createFile(atPath: path, contents: Data(bytes))
        try assertFails(path, mentioning: ["exceeds the limit"])
    }

    func testConvertOntoAFileIsRefused() throws {
        let dst = try temporaryDirectory() + "/file"
        FileManager.default.createFile(atPath: dst, contents: Data("keep".utf8))
        let r = try deberta(["convert", "Fixtures/models/v3-mlm", dst])
        XCTAssertEqual(r.status, 1)
        XCTAssertEqual(try String(contentsOfFile: dst, encoding: .utf8), "keep")
    }
}

final class SystemLibraryTests: XCTestCase {
    func testProtobufCLinks() throws {
        let version = String(cString: protobuf_c_version())
        XCTAssertTrue(version.hasPrefix("1."), version)
    }
}

final class HostileCheckpointCommandTests: XCTestCase {
    /// Every attack file from Tools/make_fixtures.py: refused with one line naming the file and the reason,
    /// exit status 1, nothing executed, nothing written.
    func testAttackFilesAreRefused() throws {
        let marker = "/tmp/pwned"
        try? FileManager.default.removeItem(atPath: marker)
        let cases: [(String, String)] = [
            ("evil_reduce_os_system.bin", "os.system"),
            ("evil_eval.bin", "builtins.eval"),
            ("evil_inst.bin", "INST"),
            ("evil_persid.bin", "persistent id"),
            ("torchscript.pt", "TorchScript"),
            ("zipbomb.bin", "zip bomb"),
            ("path_escape.bin", "escape"),
            ("duplicate_entry.bin", "duplicate"),
        ]
        for (name, reason) in cases {
            let path = "Fixtures/formats/" + name
            let started = Date()
            let r = try deberta(["inspect", path])
            XCTAssertEqual(r.status, 1, "\(name): \(r.stdout)")
            let message = r.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
            XCTAssertEqual(message.split(separator: "\n").count, 1, message)
            XCTAssertTrue(message.contains(path), "\(message) does not name the file")
            XCTAssertTrue(message.lowercased().contains(reason.lowercased()), "\(name): '\(message)' does not say '\(reason)'")
            XCTAssertLessThan(Date().timeIntervalSince(started), 10, "\(name) took too long to refuse")
            let parent = try temporaryDirectory()
            let convert = try deberta(["convert", path, parent + "/out"])
            XCTAssertEqual(convert.status, 1)
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: parent), [])
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: marker), "a pickle ran code")
    }

    /// The good format fixtures (dtypes, views, wrappers, deflated, big-endian, legacy, protocol 4) inspect cleanly.
    func testFormatFixturesInspect() throws {
        for name in ["dtypes", "noncontig", "wrapped_state_dict", "wrapped_model", "wrapped_module", "deflated", "bigendian", "legacy", "protocol4"] {
            let r = try deberta(["inspect", "Fixtures/formats/\(name).bin", "--json"])
            XCTAssertEqual(r.status, 0, "\(name): \(r.stderr)")
            let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
            XCTAssertFalse((object["tensors"] as? [Any] ?? []).isEmpty, name)
        }
    }
}
