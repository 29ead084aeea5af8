import Foundation
import XCTest

/// Config fields the tasks read: problem_type, id2label of NLI models.
final class TaskConfigTests: XCTestCase {
    /// A copy of v2-conv-seqcls with config.json members replaced.
    func model(_ edit: (inout [String: Any]) -> Void) throws -> String {
        let dir = try temporaryDirectory() + "/model"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let src = repositoryRoot + "/Fixtures/models/v2-conv-seqcls/"
        for f in try FileManager.default.contentsOfDirectory(atPath: src) where !f.hasPrefix("reference") {
            try FileManager.default.copyItem(atPath: src + f, toPath: dir + "/" + f)
        }
        var config = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: src + "config.json"))) as? [String: Any])
        edit(&config)
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: dir + "/config.json"))
        return dir
    }

    func scores(_ args: [String]) throws -> [String: Double] {
        let r = try deberta(args + ["--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let list = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]])
        return Dictionary(uniqueKeysWithValues: list.map { ($0["label"] as! String, $0["score"] as! Double) })
    }

    func testProblemTypeMultiLabelMeansSigmoid() throws {
        let text = "The river flows past the town."
        let softmax = try scores(["classify", "Fixtures/models/v2-conv-seqcls", text])
        XCTAssertEqual(softmax.values.reduce(0, +), 1, accuracy: 1e-9)
        let raw = try scores(["classify", "Fixtures/models/v2-conv-seqcls", text, "--function-to-apply", "none"])
        let multi = try model { $0["problem_type"] = "multi_label_classification" }
        let sigmoid = try scores(["classify", multi, text])
        for (label, logit) in raw { XCTAssertEqual(sigmoid[label]!, 1 / (1 + exp(-logit)), accuracy: 1e-12, label) }
        let forced = try scores(["classify", multi, text, "--function-to-apply", "softmax"])
        for (label, p) in softmax { XCTAssertEqual(forced[label]!, p, accuracy: 1e-12, label) }
    }

    func testEntailmentOutsideTheClassifierIsAnError() throws {
        for (labels, expected) in [(["0": "neutral", "1": "other", "2": "contradiction", "5": "entailment"], "id 5"),
                                   (["-1": "entailment", "0": "neutral", "1": "other", "2": "contradiction"], "id -1")] {
            let dir = try model { $0["id2label"] = labels; $0["label2id"] = nil; $0["num_labels"] = 3 }
            let r = try deberta(["zero-shot", dir, "a text", "--labels", "a,b"])
            XCTAssertEqual(r.status, 1, r.stdout)
            XCTAssertTrue(r.stderr.contains("entailment label has \(expected)") || r.stderr.contains("id2label"), r.stderr)
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        }
    }

    func testTokenizeNeedsNoWeights() throws {
        let dir = try temporaryDirectory() + "/tok"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for f in ["spm.model", "added_tokens.json", "tokenizer_config.json", "special_tokens_map.json"] {
            try FileManager.default.copyItem(atPath: repositoryRoot + "/Fixtures/models/v3-mlm/" + f, toPath: dir + "/" + f)
        }
        let alone = try deberta(["tokenize", dir, "--json", "--text", "Paris is the [MASK] of France."])
        let full = try deberta(["tokenize", "Fixtures/models/v3-mlm", "--json", "--text", "Paris is the [MASK] of France."])
        XCTAssertEqual(alone.status, 0, alone.stderr)
        XCTAssertEqual(alone.stdout, full.stdout)
        let bpe = try temporaryDirectory() + "/bpe"
        try FileManager.default.createDirectory(atPath: bpe, withIntermediateDirectories: true)
        for f in ["vocab.json", "merges.txt"] {
            try FileManager.default.copyItem(atPath: repositoryRoot + "/Fixtures/models/v1-mlm/" + f, toPath: bpe + "/" + f)
        }
        let r = try deberta(["tokenize", bpe, "--json", "--text", "Hello [MASK] world!"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout, try deberta(["tokenize", "Fixtures/models/v1-mlm", "--json", "--text", "Hello [MASK] world!"]).stdout)
    }
}
