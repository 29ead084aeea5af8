import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Runs `deberta` with a deadline (a hang is a failure, not a stuck test run), optional standard input
/// (bytes through a pipe, or a file), output captured in files (no pipe can fill up).
struct TimedResult {
    var status: Int32
    var stdout: Data
    var stderr: String
    var seconds: Double
    var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
    /// The trimmed standard error, which must be exactly one line.
    var message: String { stderr.trimmingCharacters(in: .whitespacesAndNewlines) }
}

func runDeberta(_ arguments: [String], stdin: Data? = nil, stdinFile: String? = nil, environment: [String: String] = [:],
                timeout: Double = 60, executable: String = debertaExecutable, file: StaticString = #filePath, line: UInt = #line) throws -> TimedResult {
    let dir = try temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    FileManager.default.createFile(atPath: dir + "/out", contents: nil)
    FileManager.default.createFile(atPath: dir + "/err", contents: nil)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    process.currentDirectoryURL = URL(fileURLWithPath: repositoryRoot)
    if !environment.isEmpty {
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
    }
    let out = FileHandle(forWritingAtPath: dir + "/out")!, err = FileHandle(forWritingAtPath: dir + "/err")!
    process.standardOutput = out
    process.standardError = err
    var input: Pipe?
    if let stdinFile {
        process.standardInput = FileHandle(forReadingAtPath: stdinFile)!
    } else if stdin != nil {
        input = Pipe()
        process.standardInput = input
    }
    let started = Date()
    try process.run()
    if let input, let stdin {
        signal(SIGPIPE, SIG_IGN)
        let writer = input.fileHandleForWriting
        DispatchQueue.global().async {
            try? writer.write(contentsOf: stdin)
            try? writer.close()
        }
    }
    while process.isRunning && Date().timeIntervalSince(started) < timeout { usleep(10_000) }
    if process.isRunning {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        XCTFail("deberta \(arguments) did not finish within \(timeout) s", file: file, line: line)
    }
    process.waitUntilExit()
    try out.close(); try err.close()
    return TimedResult(status: process.terminationStatus,
                       stdout: FileManager.default.contents(atPath: dir + "/out") ?? Data(),
                       stderr: String(decoding: FileManager.default.contents(atPath: dir + "/err") ?? Data(), as: UTF8.self),
                       seconds: Date().timeIntervalSince(started))
}

/// Every file under `dir` with its bytes (symbolic links as "-> target"): "nothing changed" is equality.
func snapshotTree(_ dir: String) throws -> [String: Data] {
    var out: [String: Data] = [:]
    let fm = FileManager.default
    for name in try fm.contentsOfDirectory(atPath: dir) {
        let path = dir + "/" + name
        let attributes = try fm.attributesOfItem(atPath: path)
        if attributes[.type] as? FileAttributeType == .typeSymbolicLink {
            out[name] = Data(("-> " + (try fm.destinationOfSymbolicLink(atPath: path))).utf8)
        } else if attributes[.type] as? FileAttributeType == .typeDirectory {
            for (k, v) in try snapshotTree(path) { out[name + "/" + k] = v }
        } else if attributes[.type] as? FileAttributeType == .typeRegular {
            out[name] = try Data(contentsOf: URL(fileURLWithPath: path))
        } else {
            out[name] = Data("special".utf8)
        }
    }
    return out
}

/// The failure contract: exit status 1, exactly one line on standard error holding every fragment and no
/// raw control character, nothing on standard output.
func assertRefused(_ r: TimedResult, _ fragments: [String], status: Int32 = 1, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(r.status, status, "stderr: \(r.stderr)", file: file, line: line)
    XCTAssertEqual(r.message.split(separator: "\n", omittingEmptySubsequences: false).count, 1, "one line: \(r.stderr)", file: file, line: line)
    XCTAssertFalse(r.message.unicodeScalars.contains { $0.value < 0x20 && $0 != "\t" }, "raw control character in \(r.stderr.debugDescription)", file: file, line: line)
    for f in fragments { XCTAssertTrue(r.message.contains(f), "'\(r.message)' does not mention '\(f)'", file: file, line: line) }
}

func makeFIFO(_ path: String) throws {
    guard mkfifo(path, 0o644) == 0 else { throw NSError(domain: "mkfifo", code: Int(errno)) }
}

/// A listening Unix socket at `path` (closed when the test process ends).
func makeSocket(_ path: String) throws {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        let bytes = Array(path.utf8.prefix(raw.count - 1))
        raw.copyBytes(from: bytes)
        raw[bytes.count] = 0
    }
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
    guard fd >= 0, bound == 0 else { throw NSError(domain: "socket", code: Int(errno)) }
}

/// A safetensors file holding only `input_ids` I64 [batch, length], every id `id`.
func writeInputs(_ path: String, batch: Int, length: Int, id: Int64 = 5) throws {
    let n = batch * length * 8
    var header = Array(#"{"input_ids":{"dtype":"I64","shape":[\#(batch),\#(length)],"data_offsets":[0,\#(n)]}}"#.utf8)
    while header.count % 8 != 0 { header.append(0x20) }
    var data = Data()
    withUnsafeBytes(of: UInt64(header.count).littleEndian) { data.append(contentsOf: $0) }
    data.append(contentsOf: header)
    var values = [Int64](repeating: id.littleEndian, count: batch * length)
    values.withUnsafeBytes { data.append(contentsOf: $0) }
    try data.write(to: URL(fileURLWithPath: path))
}

let mlmFixture = "Fixtures/models/v3-mlm"
let mlmReference = "Fixtures/models/v3-mlm/reference.safetensors"

/// Inputs: regular files (or model directories) only, `-` for standard input; a FIFO without a writer, a
/// device or a socket is refused at once with a message, never read or waited on.
final class InputKindTests: XCTestCase {
    func testSpecialFilesAreRefusedEverywhere() throws {
        let dir = try temporaryDirectory()
        try makeFIFO(dir + "/fifo")
        try makeSocket(dir + "/socket")
        let specials: [(String, String)] = [(dir + "/fifo", "FIFO"), ("/dev/zero", "character device"), (dir + "/socket", "socket")]
        for (path, kind) in specials {
            let commands: [[String]] = [
                ["run", mlmFixture, "--inputs", path, "--output", dir + "/out.safetensors"],
                ["run", path, "--inputs", mlmReference, "--output", dir + "/out.safetensors"],
                ["verify", mlmFixture, path],
                ["inspect", path],
                ["convert", path, dir + "/dst"],
                ["fill-mask", mlmFixture, "--input", path],
                ["embed", path, "hello"],
            ]
            for command in commands {
                let r = try runDeberta(command, timeout: 20)
                assertRefused(r, [path, kind])
                XCTAssertLessThan(r.seconds, 15, "\(command) took \(r.seconds) s")
                XCTAssertTrue(r.stdout.isEmpty, "\(command)")
            }
        }
        XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: dir)), ["fifo", "socket"], "something was written")
    }

    func testAFIFOInsideAModelDirectoryIsRefused() throws {
        for file in ["config.json", "spm.model", "model.safetensors"] {
            let model = try temporaryDirectory() + "/model"
            try FileManager.default.copyItem(atPath: repositoryRoot + "/" + mlmFixture, toPath: model)
            try FileManager.default.removeItem(atPath: model + "/" + file)
            try makeFIFO(model + "/" + file)
            for command in [["inspect", model], ["tokenize", model, "--text", "hi"], ["run", model, "--inputs", mlmReference, "--output", model + "/out"],
                            ["convert", model, model + "-converted"]] {
                let r = try runDeberta(command, timeout: 20)
                if command[0] == "tokenize" && file == "model.safetensors" {
                    // tokenize reads only the tokenizer files (and config.json): the weights are never opened.
                    XCTAssertEqual(r.status, 0, r.stderr)
                    continue
                }
                assertRefused(r, [model + "/" + file, "FIFO"])
            }
            XCTAssertFalse(FileManager.default.fileExists(atPath: model + "/out"))
            XCTAssertFalse(FileManager.default.fileExists(atPath: model + "-converted"))
        }
    }

    func testStandardInputIsReadForDash() throws {
        let reference = try Data(contentsOf: URL(fileURLWithPath: repositoryRoot + "/" + mlmReference))
        let dir = try temporaryDirectory()
        let fromFile = try runDeberta(["run", mlmFixture, "--inputs", mlmReference, "--output", dir + "/a.safetensors"])
        XCTAssertEqual(fromFile.status, 0, fromFile.stderr)
        let written = try Data(contentsOf: URL(fileURLWithPath: dir + "/a.safetensors"))
        // Written to standard output: the same bytes as the file.
        let toStdout = try runDeberta(["run", mlmFixture, "--inputs", mlmReference, "--output", "-"])
        XCTAssertEqual(toStdout.status, 0, toStdout.stderr)
        XCTAssertEqual(toStdout.stdout, written)
        XCTAssertTrue(toStdout.stderr.contains("last_hidden_state"), "the summary goes to standard error: \(toStdout.stderr)")
        // Read from a pipe: the same tensors (the metadata names the inputs "-").
        let piped = try runDeberta(["run", mlmFixture, "--inputs", "-", "--output", "-"], stdin: reference)
        XCTAssertEqual(piped.status, 0, piped.stderr)
        func dataBuffer(_ d: Data) -> Data {
            let n = d.prefix(8).withUnsafeBytes { Int($0.loadUnaligned(as: UInt64.self)) }
            return d.subdata(in: 8 + n ..< d.count)
        }
        XCTAssertEqual(dataBuffer(piped.stdout), dataBuffer(written))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["a.safetensors"])
        // Garbage on standard input names it.
        let garbage = try runDeberta(["run", mlmFixture, "--inputs", "-", "--output", dir + "/b.safetensors"], stdin: Data("not safetensors".utf8))
        assertRefused(garbage, ["standard input"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["a.safetensors"])
    }
}

/// Outputs: `-` is standard output; anything at the path but a regular file is refused and left as it
/// was; writes go through a temporary beside the target; nothing is left behind on failure.
final class OutputTargetTests: XCTestCase {
    func testDevicesLinksFIFOsAndDirectoriesAreNeverReplaced() throws {
        let dir = try temporaryDirectory()
        try Data("old".utf8).write(to: URL(fileURLWithPath: dir + "/target"))
        try FileManager.default.createSymbolicLink(atPath: dir + "/link", withDestinationPath: dir + "/target")
        try FileManager.default.createSymbolicLink(atPath: dir + "/dangling", withDestinationPath: dir + "/nowhere")
        try makeFIFO(dir + "/fifo")
        try FileManager.default.createDirectory(atPath: dir + "/subdir", withIntermediateDirectories: false)
        try Data("{\"text\": \"a [MASK]\"}\n".utf8).write(to: URL(fileURLWithPath: dir + "/in.jsonl"))
        let before = try snapshotTree(dir)
        let targets: [(String, String)] = [
            ("/dev/full", "character device"), ("/dev/null", "character device"), ("/dev/stdout", "symbolic link"),
            (dir + "/link", "symbolic link"), (dir + "/dangling", "symbolic link"), (dir + "/fifo", "FIFO"), (dir + "/subdir", "directory"),
            (dir + "/missing/out", "does not exist"),
        ]
        for (target, kind) in targets {
            for command in [["run", mlmFixture, "--inputs", mlmReference, "--output", target],
                            ["fill-mask", mlmFixture, "--input", dir + "/in.jsonl", "--output", target]] {
                let r = try runDeberta(command, timeout: 20)
                assertRefused(r, [target, kind])
            }
        }
        XCTAssertEqual(try snapshotTree(dir), before, "an output replaced or left something")
        var st = stat()
        XCTAssertEqual(lstat("/dev/full", &st), 0)
        XCTAssertEqual(st.st_mode & S_IFMT, S_IFCHR, "/dev/full is still a device")
    }

    func testAFailedRunLeavesTheOldOutputAndNoTemporary() throws {
        let dir = try temporaryDirectory()
        try Data("old output".utf8).write(to: URL(fileURLWithPath: dir + "/out.safetensors"))
        try writeInputs(dir + "/bad.safetensors", batch: 1, length: 4, id: 1_000_000)  // outside the vocabulary
        let r = try runDeberta(["run", mlmFixture, "--inputs", dir + "/bad.safetensors", "--output", dir + "/out.safetensors"])
        assertRefused(r, [dir + "/bad.safetensors", "vocabulary"])
        XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: dir)), ["out.safetensors", "bad.safetensors"])
        XCTAssertEqual(try String(contentsOfFile: dir + "/out.safetensors", encoding: .utf8), "old output")
        // A good run replaces it (a regular file) and leaves no temporary.
        let ok = try runDeberta(["run", mlmFixture, "--inputs", mlmReference, "--output", dir + "/out.safetensors"])
        XCTAssertEqual(ok.status, 0, ok.stderr)
        XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: dir)), ["out.safetensors", "bad.safetensors"])
        XCTAssertNotEqual(try Data(contentsOf: URL(fileURLWithPath: dir + "/out.safetensors")), Data("old output".utf8))
    }
}

/// convert: DST is built beside it and swapped in; a failure leaves it exactly as it was.
final class ConvertDestinationTests: XCTestCase {
    /// A copy of v3-mlm whose spm.model is a directory: it fails after model.safetensors has been written.
    func failingSource() throws -> String {
        let src = try temporaryDirectory() + "/src"
        try FileManager.default.copyItem(atPath: repositoryRoot + "/" + mlmFixture, toPath: src)
        try FileManager.default.removeItem(atPath: src + "/spm.model")
        try FileManager.default.createDirectory(atPath: src + "/spm.model", withIntermediateDirectories: false)
        return src
    }

    func existingModel() throws -> (parent: String, dst: String) {
        let parent = try temporaryDirectory()
        let dst = parent + "/dst"
        let r = try runDeberta(["convert", "Fixtures/models/v1-mlm", dst])
        XCTAssertEqual(r.status, 0, r.stderr)
        try Data("my notes".utf8).write(to: URL(fileURLWithPath: dst + "/README.md"))
        return (parent, dst)
    }

    func testAFailedConvertLeavesAnExistingDSTExactlyAsItWas() throws {
        let (parent, dst) = try existingModel()
        let before = try snapshotTree(parent)
        let r = try runDeberta(["convert", try failingSource(), dst])
        assertRefused(r, ["spm.model", "directory"])
        XCTAssertEqual(try snapshotTree(parent), before, "DST changed or a temporary was left")
    }

    func testAFailedConvertIntoANewDSTLeavesNothing() throws {
        let parent = try temporaryDirectory()
        let r = try runDeberta(["convert", try failingSource(), parent + "/dst"])
        assertRefused(r, ["spm.model"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: parent), [])
    }

    func testConvertReplacesAnExistingModelAndKeepsOtherFiles() throws {
        let (parent, dst) = try existingModel()
        XCTAssertTrue(FileManager.default.fileExists(atPath: dst + "/vocab.json"))
        // A stale safetensors index and shard would shadow the new model.safetensors: replaced. A .bin is kept.
        try Data("{}".utf8).write(to: URL(fileURLWithPath: dst + "/model.safetensors.index.json"))
        try Data("x".utf8).write(to: URL(fileURLWithPath: dst + "/model-00001-of-00002.safetensors"))
        try FileManager.default.copyItem(atPath: repositoryRoot + "/Fixtures/models/v1-mlm/pytorch_model.bin", toPath: dst + "/pytorch_model.bin")
        let r = try runDeberta(["convert", mlmFixture, dst])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: parent), ["dst"], "a temporary or the old directory was left")
        let files = Set(try FileManager.default.contentsOfDirectory(atPath: dst))
        XCTAssertEqual(files, ["README.md", "pytorch_model.bin", "config.json", "model.safetensors", "spm.model", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"],
                       "the old model's tokenizer files and safetensors are gone, README.md and the .bin are kept")
        try FileManager.default.removeItem(atPath: dst + "/pytorch_model.bin")
        XCTAssertEqual(try String(contentsOfFile: dst + "/README.md", encoding: .utf8), "my notes")
        let inspect = try runDeberta(["inspect", dst, "--json"])
        XCTAssertTrue(inspect.stdoutText.contains(#""family":"deberta-v2""#), inspect.stdoutText)
        // Converting a model directory onto itself works too.
        let inPlace = try runDeberta(["convert", dst, dst, "--dtype", "f16"])
        XCTAssertEqual(inPlace.status, 0, inPlace.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: parent), ["dst"])
        XCTAssertTrue(try runDeberta(["inspect", dst, "--json"]).stdoutText.contains(#""dtype":"F16""#))
    }

    /// A write that fails part-way (a file-size limit, like a full disk): an error, the old DST and the old
    /// output untouched, no temporary.
    func testAWriteOverAFileSizeLimitLeavesEverythingAsItWas() throws {
        let (parent, dst) = try existingModel()
        try Data("old output".utf8).write(to: URL(fileURLWithPath: parent + "/out.safetensors"))
        let before = try snapshotTree(parent)
        func limited(_ arguments: [String]) throws -> TimedResult {
            // ulimit -f counts 512-byte blocks in sh: 512 KB; v3-mlm-trained's weights are 3.5 MB, its outputs 0.8 MB.
            try runDeberta(["-c", "ulimit -f 1024 && exec \"$0\" \"$@\"", debertaExecutable] + arguments, executable: "/bin/sh")
        }
        let convert = try limited(["convert", "Fixtures/models/v3-mlm-trained", dst])
        assertRefused(convert, [dst + "/model.safetensors", "File too large"])
        XCTAssertFalse(convert.message.contains(".deberta-tmp-"), "the message names DST, not the temporary: \(convert.message)")
        let run = try limited(["run", "Fixtures/models/v3-mlm-trained", "--inputs", "Fixtures/models/v3-mlm-trained/reference.safetensors", "--output", parent + "/out.safetensors"])
        assertRefused(run, [parent + "/out.safetensors", "File too large"])
        XCTAssertEqual(try snapshotTree(parent), before, "DST or the old output changed, or a temporary was left")
    }

    func testDSTThatIsALinkAFileOrHoldsADirectoryIsRefused() throws {
        let (parent, dst) = try existingModel()
        try FileManager.default.createSymbolicLink(atPath: parent + "/link", withDestinationPath: dst)
        try Data("keep".utf8).write(to: URL(fileURLWithPath: parent + "/file"))
        try FileManager.default.createDirectory(atPath: parent + "/withsub/sub", withIntermediateDirectories: true)
        let before = try snapshotTree(parent)
        for (target, fragment) in [(parent + "/link", "symbolic link"), (parent + "/file", "not a directory"),
                                   (parent + "/withsub", "subdirectory 'sub'"), (parent + "/missing/dst", "parent directory does not exist")] {
            let r = try runDeberta(["convert", mlmFixture, target])
            assertRefused(r, [target, fragment])
        }
        XCTAssertEqual(try snapshotTree(parent), before)
    }
}

/// SIGINT / SIGTERM during convert: the temporaries are removed, DST is unchanged, one line says so.
/// DEBERTA_TEST_CONVERT_PAUSE (read only by the executable) holds the convert at a stage for 60 s.
final class ConvertSignalTests: XCTestCase {
    func interrupt(stage: String, signal: Int32, existing: Bool) throws {
        let parent = try temporaryDirectory()
        let dst = parent + "/dst"
        if existing {
            let r = try runDeberta(["convert", "Fixtures/models/v1-mlm", dst])
            XCTAssertEqual(r.status, 0, r.stderr)
        }
        let before = try snapshotTree(parent)
        let errPath = try temporaryDirectory() + "/err"
        FileManager.default.createFile(atPath: errPath, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: debertaExecutable)
        process.arguments = ["convert", mlmFixture, dst]
        process.currentDirectoryURL = URL(fileURLWithPath: repositoryRoot)
        process.environment = ProcessInfo.processInfo.environment.merging(["DEBERTA_TEST_CONVERT_PAUSE": stage]) { _, new in new }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle(forWritingAtPath: errPath)!
        try process.run()
        // Wait for the pause: the temporary directory beside DST exists (with the weights, from "written" on).
        let started = Date()
        var temporary: String?
        while Date().timeIntervalSince(started) < 30 {
            if let text = try? String(contentsOfFile: errPath, encoding: .utf8), text.contains("paused \(stage)") {
                temporary = try FileManager.default.contentsOfDirectory(atPath: parent).first { $0.hasPrefix(".dst.") }
                break
            }
            usleep(20_000)
        }
        let found = try XCTUnwrap(temporary, "no temporary directory beside DST while paused")
        if stage != "created" {
            XCTAssertTrue(FileManager.default.fileExists(atPath: parent + "/" + found + "/model.safetensors"))
        }
        kill(process.processIdentifier, signal)
        process.waitUntilExit()
        let stderr = try String(contentsOfFile: errPath, encoding: .utf8)
        XCTAssertEqual(process.terminationStatus, 128 + signal, stderr)
        XCTAssertTrue(stderr.contains("interrupted by \(signal == SIGINT ? "SIGINT" : "SIGTERM")"), stderr)
        XCTAssertTrue(stderr.contains(found), "the message names the removed temporary: \(stderr)")
        XCTAssertEqual(try snapshotTree(parent), before, "DST changed or a temporary was left (\(stage), \(signal))")
    }

    func testSIGINTAfterTheWeightsAreWritten() throws {
        try interrupt(stage: "written", signal: SIGINT, existing: true)
        try interrupt(stage: "written", signal: SIGINT, existing: false)
    }

    func testSIGTERMBeforeTheSwapAndAtTheStart() throws {
        try interrupt(stage: "swap", signal: SIGTERM, existing: true)
        try interrupt(stage: "created", signal: SIGTERM, existing: false)
    }
}

/// Messages and tables escape control characters from file names, tensor names and texts; JSON output
/// stays valid JSON with them escaped.
final class EscapingTests: XCTestCase {
    func testFileNamesAreEscapedInMessages() throws {
        let dir = try temporaryDirectory()
        let name = "evil\u{1B}[2J\r\nError: forged line\u{9B}31m.safetensors"
        try Data("garbage".utf8).write(to: URL(fileURLWithPath: dir + "/" + name))
        for command in [["inspect", dir + "/" + name], ["convert", dir + "/" + name, dir + "/out\u{1B}[0m"]] {
            let r = try runDeberta(command)
            assertRefused(r, ["evil\\u{1b}[2J\\r\\nError: forged line\\u{9b}31m.safetensors"])
            XCTAssertFalse(r.stderr.unicodeScalars.contains { $0 == "\u{1B}" || $0 == "\u{9B}" || $0 == "\r" })
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), [name])
    }

    func testTensorNamesAndTextsAreEscapedInOutput() throws {
        let dir = try temporaryDirectory()
        let tensor = "w\u{1B}]0;title\u{07}\u{85}\u{2028}x"
        var header = Array(#"{"\#(tensor.unicodeScalars.map { $0.value < 0x20 ? String(format: "\\u%04x", $0.value) : String($0) }.joined())":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#.utf8)
        while header.count % 8 != 0 { header.append(0x20) }
        var data = Data()
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { data.append(contentsOf: $0) }
        data.append(contentsOf: header + [0, 0, 0, 0])
        try data.write(to: URL(fileURLWithPath: dir + "/t.safetensors"))
        let table = try runDeberta(["inspect", dir + "/t.safetensors"])
        XCTAssertEqual(table.status, 0, table.stderr)
        XCTAssertFalse(table.stdoutText.unicodeScalars.contains { $0 == "\u{1B}" || $0 == "\u{07}" || $0 == "\u{85}" || $0 == "\u{2028}" }, table.stdoutText.debugDescription)
        XCTAssertTrue(table.stdoutText.contains("w\\u{1b}]0;title\\u{7}\\u{85}\\u{2028}x"), table.stdoutText)
        let json = try runDeberta(["inspect", dir + "/t.safetensors", "--json"])
        XCTAssertEqual(json.status, 0, json.stderr)
        XCTAssertFalse(json.stdoutText.unicodeScalars.contains { $0 == "\u{1B}" || $0 == "\u{85}" || $0 == "\u{2028}" })
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: json.stdout) as? [String: Any])
        XCTAssertEqual((object["tensors"] as? [[String: Any]])?.first?["name"] as? String, tensor, "JSON escapes decode to the original name")
        // A text with control characters in a tokenize table and in a batch error.
        let tokens = try runDeberta(["tokenize", mlmFixture, "--text", "a\u{1B}[31mb\rc"])
        XCTAssertEqual(tokens.status, 0, tokens.stderr)
        XCTAssertFalse(tokens.stdoutText.unicodeScalars.contains { $0 == "\u{1B}" || $0 == "\r" }, tokens.stdoutText.debugDescription)
        try Data("{\"text\": \"ok [MASK]\"}\n{\"text\": \"no mask \\u001b[2J\\r\\nforged\"}\n".utf8).write(to: URL(fileURLWithPath: dir + "/in.jsonl"))
        let batch = try runDeberta(["fill-mask", mlmFixture, "--input", dir + "/in.jsonl"])
        assertRefused(batch, [dir + "/in.jsonl: line 2: ", "no [MASK]", "\\u{1b}[2J\\r\\nforged"])
    }
}

/// Batch mode: `-` and pipes, --on-error stop|skip, file and line in every message, stated limits.
final class BatchModeTests: XCTestCase {
    let lines = [
        "{\"text\": \"the [MASK] runs.\"}",
        "",
        "{\"text\": 7}",
        "not json",
        "[\"an array\"]",
        "{\"text\": \"a [MASK] and a [MASK].\"}",
        "{\"text\": \"there is no mask\"}",
        "{\"text\": \"last [MASK]\"}",
    ]

    func testStandardInputAndPipes() throws {
        let good = lines.enumerated().filter { [0, 5, 7].contains($0.offset) }.map(\.element).joined(separator: "\n") + "\n"
        let piped = try runDeberta(["fill-mask", mlmFixture, "--input", "-", "--top-k", "1"], stdin: Data(good.utf8))
        XCTAssertEqual(piped.status, 0, piped.stderr)
        let out = piped.stdoutText.split(separator: "\n")
        XCTAssertEqual(out.count, 3, piped.stdoutText)
        XCTAssertTrue(out[2].contains("\"text\":\"last [MASK]\""), String(out[2]))
        // A regular file as standard input, and the same file by name, give the same bytes.
        let dir = try temporaryDirectory()
        try Data(good.utf8).write(to: URL(fileURLWithPath: dir + "/in.jsonl"))
        let redirected = try runDeberta(["fill-mask", mlmFixture, "--input", "-", "--top-k", "1"], stdinFile: dir + "/in.jsonl")
        let named = try runDeberta(["fill-mask", mlmFixture, "--input", dir + "/in.jsonl", "--top-k", "1"])
        XCTAssertEqual(redirected.stdout, piped.stdout)
        XCTAssertEqual(named.stdout, piped.stdout)
        // An empty standard input: no output, exit 0.
        let empty = try runDeberta(["fill-mask", mlmFixture, "--input", "-"], stdin: Data())
        XCTAssertEqual(empty.status, 0, empty.stderr)
        XCTAssertTrue(empty.stdout.isEmpty)
    }

    func testStopNamesTheFileAndLineAndLeavesTheOutput() throws {
        let dir = try temporaryDirectory()
        try (lines.joined(separator: "\n") + "\n").write(toFile: dir + "/in.jsonl", atomically: true, encoding: .utf8)
        try Data("previous".utf8).write(to: URL(fileURLWithPath: dir + "/out.jsonl"))
        let r = try runDeberta(["fill-mask", mlmFixture, "--input", dir + "/in.jsonl", "--output", dir + "/out.jsonl"])
        assertRefused(r, [dir + "/in.jsonl: line 3: ", "\"text\""])
        XCTAssertEqual(try String(contentsOfFile: dir + "/out.jsonl", encoding: .utf8), "previous")
        XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: dir)), ["in.jsonl", "out.jsonl"])
        // From standard input the message says so; a task error names its line too.
        let fromStdin = try runDeberta(["fill-mask", mlmFixture, "--input", "-"], stdin: Data((lines[0] + "\n" + lines[6] + "\n").utf8))
        assertRefused(fromStdin, ["standard input: line 2: ", "no [MASK]"])
        let zeroShot = try runDeberta(["zero-shot", "Fixtures/models/v2-conv-seqcls", "--input", "-"],
                                      stdin: Data("{\"text\": \"a\", \"labels\": \"x,y\"}\n{\"text\": \"b\", \"labels\": []}\n".utf8))
        assertRefused(zeroShot, ["standard input: line 2: ", "--labels is empty"])
    }

    func testSkipWritesAnErrorObjectInPlace() throws {
        let dir = try temporaryDirectory()
        try (lines.joined(separator: "\n")).write(toFile: dir + "/in.jsonl", atomically: true, encoding: .utf8)
        let r = try runDeberta(["fill-mask", mlmFixture, "--input", dir + "/in.jsonl", "--output", dir + "/out.jsonl", "--on-error", "skip", "--batch-size", "2"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: dir)), ["in.jsonl", "out.jsonl"])
        let out = try String(contentsOfFile: dir + "/out.jsonl", encoding: .utf8).split(separator: "\n").map {
            try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
        XCTAssertEqual(out.count, 7, "one result per non-blank line")
        let expected: [(Int, String?)] = [(1, nil), (3, "invalidInput"), (4, "invalidInput"), (5, "invalidInput"), (6, nil), (7, "invalidInput"), (8, nil)]
        for (object, (line, errorType)) in zip(out, expected) {
            if let errorType {
                XCTAssertEqual(object["error_type"] as? String, errorType, "\(object)")
                XCTAssertEqual(object["line"] as? Int, line, "\(object)")
                XCTAssertFalse((object["error"] as? String ?? "").isEmpty)
            } else {
                XCTAssertNil(object["error"], "\(object)")
                XCTAssertNotNil(object["result"], "\(object)")
            }
        }
        XCTAssertTrue((out[5]["error"] as? String ?? "").contains("no [MASK]"))
        // Each good line's result equals a batch of that line alone.
        let single = try runDeberta(["fill-mask", mlmFixture, "a [MASK] and a [MASK].", "--json"])
        XCTAssertEqual(try JSONSerialization.jsonObject(with: single.stdout) as? NSArray, out[4]["result"] as? NSArray)
    }

    func testLongLineIsRefusedWhileReading() throws {
        let dir = try temporaryDirectory()
        // 50 MB on one line, between two good lines.
        var data = Data((lines[0] + "\n{\"text\": \"").utf8)
        data.append(Data(repeating: UInt8(ascii: "a"), count: 50 << 20))
        data.append(Data(("\"}\n" + lines[7] + "\n").utf8))
        try data.write(to: URL(fileURLWithPath: dir + "/big.jsonl"))
        let stop = try runDeberta(["fill-mask", mlmFixture, "--input", dir + "/big.jsonl", "--output", dir + "/out.jsonl"])
        assertRefused(stop, [dir + "/big.jsonl: line 2: ", "longer than 1,048,576 bytes"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out.jsonl"))
        let skip = try runDeberta(["fill-mask", mlmFixture, "--input", dir + "/big.jsonl", "--on-error", "skip", "--top-k", "1"])
        XCTAssertEqual(skip.status, 0, skip.stderr)
        let out = skip.stdoutText.split(separator: "\n")
        XCTAssertEqual(out.count, 3)
        XCTAssertTrue(out[1].contains("\"error_type\":\"limit\""), String(out[1]))
        XCTAssertTrue(out[2].contains("last [MASK]"), String(out[2]))
        // tokenize's standard input has the same line limit.
        let tokenize = try runDeberta(["tokenize", mlmFixture], stdinFile: dir + "/big.jsonl")
        assertRefused(tokenize, ["standard input: line 2: ", "longer than"])
    }
}

/// Limits on what one forward call of `deberta run` may hold: refused from the header, before any value is
/// read or anything allocated.
final class ForwardLimitTests: XCTestCase {
    func testOverLargeInputsFilesAreRefusedBeforeAllocating() throws {
        let dir = try temporaryDirectory()
        for (batch, length) in [(65_536, 16), (16, 65_536), (1, 131_073)] {
            let path = dir + "/in-\(batch)x\(length).safetensors"
            try writeInputs(path, batch: batch, length: length)
            let r = try runDeberta(["run", mlmFixture, "--inputs", path, "--output", dir + "/out.safetensors"], timeout: 30)
            assertRefused(r, [path, "\(batch) × \(length) tokens", "131,072 tokens"])
            XCTAssertLessThan(r.seconds, 10)
            // The same file as a reference for verify, and the same shape for bench.
            assertRefused(try runDeberta(["verify", mlmFixture, path], timeout: 30), [path, "\(batch) × \(length) tokens"])
            assertRefused(try runDeberta(["bench", mlmFixture, "--batch", "\(batch)", "--seq", "\(length)"], timeout: 30), ["\(batch) × \(length) tokens"])
            try FileManager.default.removeItem(atPath: path)
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), [])
        // At the limit's side a large file runs.
        try writeInputs(dir + "/ok.safetensors", batch: 64, length: 32)
        let ok = try runDeberta(["run", mlmFixture, "--inputs", dir + "/ok.safetensors", "--output", dir + "/out.safetensors"])
        XCTAssertEqual(ok.status, 0, ok.stderr)
    }
}
