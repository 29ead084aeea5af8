import Foundation
import XCTest

/// Compares a command's standard output with Tests/CLITests/Snapshots/NAME.txt; set
/// DEBERTA_RECORD_SNAPSHOTS=1 to (re)write the snapshot instead.
func assertSnapshot(_ output: String, named name: String, file: StaticString = #filePath, line: UInt = #line) throws {
    let path = repositoryRoot + "/Tests/CLITests/Snapshots/\(name).txt"
    if ProcessInfo.processInfo.environment["DEBERTA_RECORD_SNAPSHOTS"] == "1" {
        try output.write(toFile: path, atomically: true, encoding: .utf8)
        return
    }
    guard let expected = try? String(contentsOfFile: path, encoding: .utf8) else {
        XCTFail("no snapshot \(path); run with DEBERTA_RECORD_SNAPSHOTS=1 to record it", file: file, line: line)
        return
    }
    if let difference = snapshotDifference(output, expected) {
        XCTFail("output differs from snapshot \(name): \(difference)\n--- output:\n\(output)", file: file, line: line)
    }
}

/// The snapshots of commands that run a model were recorded with the AVX2 kernels (`--kernels avx2`), which
/// give the same bits on every x86-64 CPU with AVX2; the AVX-512 kernels sum in another order and differ in
/// the last digits of full-precision scores (their accuracy is what PipelineFixtureTests checks).
func snapshotArguments(_ args: [String]) -> [String] {
    guard let command = args.first, command != "tokenize" else { return args }
    #if arch(x86_64)
    return args + ["--kernels", "avx2"]
    #else
    return args
    #endif
}

/// nil when `output` equals `expected` except that a printed decimal number may differ by one unit in its last
/// printed place (a value that lies near a rounding boundary of the printout can land on either side with
/// another summation order, e.g. a debug and a release build, or another CPU's kernels); otherwise the first
/// difference.
func snapshotDifference(_ output: String, _ expected: String) -> String? {
    let number = try! NSRegularExpression(pattern: #"-?[0-9]+\.[0-9]+(e[-+]?[0-9]+)?"#)
    func split(_ s: String) -> [(text: String, isNumber: Bool)] {
        let ns = s as NSString
        var parts: [(String, Bool)] = []
        var at = 0
        for m in number.matches(in: s, range: NSRange(location: 0, length: ns.length)) {
            parts.append((ns.substring(with: NSRange(location: at, length: m.range.location - at)), false))
            parts.append((ns.substring(with: m.range), true))
            at = m.range.location + m.range.length
        }
        parts.append((ns.substring(from: at), false))
        return parts
    }
    let a = split(output), b = split(expected)
    guard a.count == b.count else { return "different number of values (\(a.count / 2) vs \(b.count / 2))" }
    for (x, y) in zip(a, b) {
        if x.isNumber != y.isNumber || (!x.isNumber && x.text != y.text) { return "'\(x.text)' vs '\(y.text)'" }
        guard x.isNumber, x.text != y.text else { continue }
        // one unit in the last printed place of the snapshot's value (and of its exponent, if any)
        let mantissa = y.text.split(separator: "e").first!
        let decimals = mantissa.split(separator: ".").last!.count
        let exponent = y.text.contains("e") ? Double(y.text.split(separator: "e").last!)! : 0
        let unit = pow(10, Double(-decimals) + exponent)
        guard let u = Double(x.text), let v = Double(y.text), abs(u - v) <= unit * 1.01 else {
            return "\(x.text) vs \(y.text)"
        }
    }
    return nil
}

final class TextCommandTests: XCTestCase {
    func testSnapshotComparison() {
        XCTAssertNil(snapshotDifference("a 0.714270 b", "a 0.714271 b"))
        XCTAssertNil(snapshotDifference("x 1.25e-03", "x 1.26e-03"))
        XCTAssertNotNil(snapshotDifference("a 0.714269 b", "a 0.714271 b"))
        XCTAssertNotNil(snapshotDifference("a 0.714271 c", "a 0.714271 b"))
        XCTAssertNotNil(snapshotDifference("a 0.714271", "a 0.714271 0.5"))
        XCTAssertNotNil(snapshotDifference("x 1.28e-03", "x 1.26e-03"))
    }

    let mlm = "Fixtures/models/v3-mlm"

    func run(_ args: [String], file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let r = try deberta(snapshotArguments(args))
        XCTAssertEqual(r.status, 0, "\(args): \(r.stderr)", file: file, line: line)
        return r.stdout
    }

    func testTokenize() throws {
        try assertSnapshot(try run(["tokenize", mlm, "--text", "Paris is the [MASK] of France.", "--text", "ｆｕｌｌ－ｗｉｄｔｈ ﬁ café  🇫🇷"]), named: "tokenize")
        try assertSnapshot(try run(["tokenize", mlm, "--json", "--text", "Where is the market?", "--pair", "Behind the library."]), named: "tokenize-pair-json")
        // One JSON line per text, in order, from standard input.
        let process = Process()
        process.executableURL = URL(fileURLWithPath: debertaExecutable)
        process.arguments = ["tokenize", mlm, "--json"]
        process.currentDirectoryURL = URL(fileURLWithPath: repositoryRoot)
        let input = Pipe(), output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        input.fileHandleForWriting.write(Data("one\ntwo words\n\nthree\n".utf8))
        try input.fileHandleForWriting.close()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0)
        let lines = String(decoding: data, as: UTF8.self).split(separator: "\n")
        XCTAssertEqual(lines.count, 4)
        for line in lines {
            let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            XCTAssertNotNil(object["input_ids"]); XCTAssertNotNil(object["tokens"]); XCTAssertNotNil(object["offsets"])
        }
    }

    func testFillMask() throws {
        try assertSnapshot(try run(["fill-mask", mlm, "Paris is the [MASK] of France.", "--top-k", "3"]), named: "fill-mask")
        try assertSnapshot(try run(["fill-mask", mlm, "The [MASK] played in the [MASK].", "--json", "--top-k", "2"]), named: "fill-mask-json")
    }

    func testEmbed() throws {
        let out = try run(["embed", mlm, "--json", "--pooling", "cls", "hello", "a longer sentence here"])
        let lines = out.split(separator: "\n")
        XCTAssertEqual(lines.count, 2)
        for line in lines {
            let vector = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [Double])
            XCTAssertEqual(vector.count, 32)
        }
        try assertSnapshot(try run(["embed", mlm, "hello"]), named: "embed")
    }

    func testBatchModeKeepsOrderAndWritesJSONL() throws {
        let dir = try temporaryDirectory()
        let texts = (0 ..< 23).map { i in "the \(i) " + String(repeating: "park ", count: (i * 7) % 5) + "[MASK]." }
        try texts.map { "{\"text\": \"\($0)\"}" }.joined(separator: "\n").write(toFile: dir + "/in.jsonl", atomically: true, encoding: .utf8)
        let r = try deberta(["fill-mask", mlm, "--input", dir + "/in.jsonl", "--output", dir + "/out.jsonl", "--batch-size", "4", "--top-k", "1"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = try String(contentsOfFile: dir + "/out.jsonl", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, texts.count)
        for (line, text) in zip(lines, texts) {
            let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            XCTAssertEqual(object["text"] as? String, text)
            XCTAssertEqual(object["decoder"] as? String, "emd")
            XCTAssertNotNil(object["result"] as? [[String: Any]])
        }
        // The same predictions as one-at-a-time runs (batching and padding change nothing).
        let single = try run(["fill-mask", mlm, texts[5], "--json", "--top-k", "1"])
        let line = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(lines[5].utf8)) as? [String: Any])
        let batched = try XCTUnwrap(line["result"] as? [[String: Any]])
        let alone = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(single.utf8)) as? [[String: Any]])
        XCTAssertEqual(batched.map { $0["token"] as? Int }, alone.map { $0["token"] as? Int })
        XCTAssertEqual(batched.map { $0["sequence"] as? String }, alone.map { $0["sequence"] as? String })
        for (x, y) in zip(batched, alone) { XCTAssertEqual(x["score"] as? Double ?? 0, y["score"] as? Double ?? 1, accuracy: 1e-6) }
    }

    func testBadInputs() throws {
        let noMask = try deberta(["fill-mask", mlm, "there is no mask here"])
        XCTAssertEqual(noMask.status, 1)
        XCTAssertTrue(noMask.stderr.contains("no [MASK]"), noMask.stderr)
        // A model directory without tokenizer files.
        let dir = try temporaryDirectory() + "/model"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for f in ["config.json", "model.safetensors"] {
            try FileManager.default.copyItem(atPath: repositoryRoot + "/" + mlm + "/" + f, toPath: dir + "/" + f)
        }
        let noTokenizer = try deberta(["fill-mask", dir, "a [MASK]"])
        XCTAssertEqual(noTokenizer.status, 1)
        XCTAssertTrue(noTokenizer.stderr.contains("no tokenizer files"), noTokenizer.stderr)
        XCTAssertTrue(noTokenizer.stderr.contains(dir), noTokenizer.stderr)
        // A corrupt spm.model.
        try Data([1, 2, 3, 4, 5]).write(to: URL(fileURLWithPath: dir + "/spm.model"))
        let corrupt = try deberta(["tokenize", dir, "--text", "a"])
        XCTAssertEqual(corrupt.status, 1)
        XCTAssertTrue(corrupt.stderr.contains("spm.model"), corrupt.stderr)
        // A task the model has no head for.
        let wrongHead = try deberta(["classify", mlm, "a text"])
        XCTAssertEqual(wrongHead.status, 1)
        XCTAssertTrue(wrongHead.stderr.contains("sequence-classification"), wrongHead.stderr)
        // A batch file with a bad line names the file and the line.
        try "{\"text\": \"ok [MASK]\"}\nnot json\n".write(toFile: dir + "/in.jsonl", atomically: true, encoding: .utf8)
        // A relative-position model takes the whole text; past the EMD's positions the MLM head answers, with a warning.
        let long = try deberta(["fill-mask", mlm, String(repeating: "the river bank ", count: 20) + "[MASK]", "--json"])
        XCTAssertEqual(long.status, 0, long.stderr)
        XCTAssertTrue(long.stderr.contains("using the MLM head"), long.stderr)
        let emdTooLong = try deberta(["fill-mask", mlm, String(repeating: "the river bank ", count: 20) + "[MASK]", "--decoder", "emd"])
        XCTAssertEqual(emdTooLong.status, 1)
        XCTAssertTrue(emdTooLong.stderr.contains("Enhanced Mask Decoder takes at most"), emdTooLong.stderr)
        // An absolute-position model truncates with a warning; a [MASK] past its limit is an error.
        let cut = try deberta(["fill-mask", "Fixtures/models/v1-mlm", "[MASK] " + String(repeating: "the river bank ", count: 20), "--json"])
        XCTAssertEqual(cut.status, 0, cut.stderr)
        XCTAssertTrue(cut.stderr.contains("truncated to 64: dropped"), cut.stderr)
        let tooLong = try deberta(["fill-mask", "Fixtures/models/v1-mlm", String(repeating: "the river bank ", count: 20) + "[MASK]"])
        XCTAssertEqual(tooLong.status, 1)
        XCTAssertTrue(tooLong.stderr.contains("beyond the model's maximum"), tooLong.stderr)
        let badBatch = try deberta(["fill-mask", mlm, "--input", dir + "/in.jsonl"])
        XCTAssertEqual(badBatch.status, 1)
        XCTAssertTrue(badBatch.stderr.contains("line 2"), badBatch.stderr)
    }
}

/// The task commands on the task fixtures (tokenizers shipped by Tools/make_fixtures.py, group task-tokenizers).
final class TaskCommandTests: XCTestCase {
    func run(_ args: [String], file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let r = try deberta(snapshotArguments(args))
        XCTAssertEqual(r.status, 0, "\(args): \(r.stderr)", file: file, line: line)
        return r.stdout
    }

    func testClassify() throws {
        try assertSnapshot(try run(["classify", "Fixtures/models/v2-conv-seqcls", "The river flows past the town.", "--pair", "Water moves."]), named: "classify")
        try assertSnapshot(try run(["classify", "Fixtures/models/v1-seqcls-noarch", "a short text", "--json"]), named: "classify-v1-json")
    }

    func testZeroShot() throws {
        try assertSnapshot(try run(["zero-shot", "Fixtures/models/v2-conv-seqcls", "The children played in the park.", "--labels", "sports,politics,music"]), named: "zero-shot")
        let multi = try run(["zero-shot", "Fixtures/models/v2-conv-seqcls", "The children played.", "--labels", "sports,politics", "--multi-label", "--json"])
        try assertSnapshot(multi, named: "zero-shot-multi-json")
        // Single-label scores sum to 1; multi-label scores are independent probabilities.
        let single = try run(["zero-shot", "Fixtures/models/v2-conv-seqcls", "The children played.", "--labels", "sports,politics", "--json"])
        let value = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(single.utf8)) as? [String: Any])
        XCTAssertEqual(Set(value["labels"] as? [String] ?? []), ["sports", "politics"])
        XCTAssertEqual((value["scores"] as? [Double])?.reduce(0, +) ?? 0, 1, accuracy: 1e-5)
        let bad = try deberta(["zero-shot", "Fixtures/models/v1-seqcls-noarch", "x", "--labels", "a,b"])
        XCTAssertEqual(bad.status, 1)
        XCTAssertTrue(bad.stderr.contains("no entailment label"), bad.stderr)
        let noLabels = try deberta(["zero-shot", "Fixtures/models/v2-conv-seqcls", "x", "--labels", ","])
        XCTAssertNotEqual(noLabels.status, 0)
    }

    func testNER() throws {
        let out = try run(["ner", "Fixtures/models/v2-sep-c2p-tokcls", "Anna lives in Paris near the river.", "--json"])
        try assertSnapshot(out, named: "ner-json")
        // Offsets slice the original text.
        let text = Array("Anna lives in Paris near the river.".unicodeScalars)
        let entities = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(out.utf8)) as? [[String: Any]])
        XCTAssertFalse(entities.isEmpty)
        for e in entities {
            let start = try XCTUnwrap(e["start"] as? Int), end = try XCTUnwrap(e["end"] as? Int)
            XCTAssertLessThan(start, end)
            // transformers' spans of "▁" pieces hold the space before the word; `word` is the decoded tokens.
            XCTAssertEqual(String(String.UnicodeScalarView(text[start ..< end])).trimmingCharacters(in: .whitespaces), e["word"] as? String)
        }
        // The five aggregation strategies: per-token entries carry entity and index, groups entity_group.
        for strategy in ["none", "simple", "first", "average", "max"] {
            let value = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(try run(["ner", "Fixtures/models/v2-sep-c2p-tokcls", "Anna lives in Paris near the river.", "--json", "--aggregation", strategy]).utf8)) as? [[String: Any]])
            for e in value { XCTAssertEqual(Set(e.keys), strategy == "none" ? ["entity", "score", "index", "word", "start", "end"] : ["entity_group", "score", "word", "start", "end"]) }
        }
    }

    func testQA() throws {
        let context = "The market is behind the library, near the old river bank."
        let out = try run(["qa", "Fixtures/models/v2-qa-sharded", "--question", "Where is the market?", "--context", context, "--json"])
        try assertSnapshot(out, named: "qa-json")
        let answer = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])
        let scalars = Array(context.unicodeScalars)
        let start = try XCTUnwrap(answer["start"] as? Int), end = try XCTUnwrap(answer["end"] as? Int)
        XCTAssertEqual(String(String.UnicodeScalarView(scalars[start ..< end])), answer["answer"] as? String)
        // A context longer than the window is split with a stride and still answered from the text.
        let long = String(repeating: "The river runs by the old town and the park. ", count: 30) + context
        let windowed = try run(["qa", "Fixtures/models/v2-qa-sharded", "--question", "Where is the market?", "--context", long, "--stride", "16", "--json"])
        let w = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(windowed.utf8)) as? [String: Any])
        let ls = Array(long.unicodeScalars)
        let ws = try XCTUnwrap(w["start"] as? Int), we = try XCTUnwrap(w["end"] as? Int)
        XCTAssertEqual(String(String.UnicodeScalarView(ls[ws ..< we])), w["answer"] as? String)
        // Batch mode.
        let dir = try temporaryDirectory()
        try "{\"question\": \"Where is the market?\", \"context\": \"\(context)\"}\n{\"question\": \"What runs?\", \"context\": \"The river runs.\"}\n"
            .write(toFile: dir + "/qa.jsonl", atomically: true, encoding: .utf8)
        let batch = try run(["qa", "Fixtures/models/v2-qa-sharded", "--input", dir + "/qa.jsonl"])
        XCTAssertEqual(batch.split(separator: "\n").count, 2)
        let first = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(batch.split(separator: "\n")[0].utf8)) as? [String: Any])
        XCTAssertEqual(first["question"] as? String, "Where is the market?")
        XCTAssertEqual(try JSONSerialization.data(withJSONObject: try XCTUnwrap(first["result"]), options: [.sortedKeys]),
                       try JSONSerialization.data(withJSONObject: answer, options: [.sortedKeys]))
        // A stride that does not fit the window is an error, not clamped.
        let badStride = try deberta(["qa", "Fixtures/models/v2-qa-sharded", "--question", "Where?", "--context", long, "--stride", "500"])
        XCTAssertEqual(badStride.status, 1)
        XCTAssertTrue(badStride.stderr.contains("stride"), badStride.stderr)
    }

    func testV1FillMaskWithBPE() throws {
        try assertSnapshot(try run(["fill-mask", "Fixtures/models/v1-mlm", "The river [MASK] past the town.", "--top-k", "3"]), named: "fill-mask-v1")
        try assertSnapshot(try run(["tokenize", "Fixtures/models/v1-mlm", "--json", "--text", "Hello [MASK] world!"]), named: "tokenize-v1-json")
    }
}
