import Checkpoint
import XCTest
@testable import DeBERTa

func config(_ json: String) throws -> DebertaConfig {
    try DebertaConfig.parse(Array(json.utf8), file: "config.json")
}

final class DebertaConfigTests: XCTestCase {
    func testTransformersDefaults() throws {
        let v2 = try config(#"{"model_type": "deberta-v2"}"#)
        XCTAssertEqual(v2.vocabSize, 128100)
        XCTAssertEqual(v2.hiddenSize, 1536)
        XCTAssertEqual(v2.numHiddenLayers, 24)
        XCTAssertEqual(v2.layerNormEps, 1e-7)
        XCTAssertEqual(v2.maxPositionEmbeddings, 512)
        XCTAssertEqual(v2.typeVocabSize, 0)
        XCTAssertTrue(v2.positionBiasedInput)
        XCTAssertFalse(v2.relativeAttention)
        XCTAssertEqual(v2.effectiveMaxRelativePositions, 512)
        XCTAssertEqual(v2.positionBuckets, -1)
        XCTAssertFalse(v2.shareAttKey)
        XCTAssertEqual(v2.normRelEbd, ["none"])
        XCTAssertEqual(v2.convKernelSize, 0)
        XCTAssertEqual(v2.convAct, "tanh")
        XCTAssertEqual(v2.embeddingSize, 1536)
        XCTAssertEqual(v2.attentionHeadSize, 64)
        XCTAssertEqual(v2.poolerHiddenSize, 1536)
        XCTAssertTrue(v2.legacy)
        XCTAssertEqual(v2.numLabels, 2)
        XCTAssertEqual(v2.id2label, [0: "LABEL_0", 1: "LABEL_1"])
        let v1 = try config(#"{"model_type": "deberta"}"#)
        XCTAssertEqual(v1.vocabSize, 50265)
        XCTAssertEqual(v1.hiddenSize, 768)
    }

    func testPosAttTypeStringOrList() throws {
        XCTAssertEqual(try config(#"{"pos_att_type": "P2C|c2p"}"#).posAttType, ["p2c", "c2p"])
        XCTAssertEqual(try config(#"{"pos_att_type": ["c2p"]}"#).posAttType, ["c2p"])
        XCTAssertEqual(try config(#"{"pos_att_type": null}"#).posAttType, [])
        let v3 = try config(#"{"model_type":"deberta-v2","relative_attention":true,"position_buckets":256,"max_relative_positions":-1,"norm_rel_ebd":"layer_norm","hidden_size":768,"num_attention_heads":12}"#)
        XCTAssertEqual(v3.relativeEmbeddingRows, 512)
        XCTAssertTrue(v3.normalizesRelativeEmbeddings)
        let v1 = try config(#"{"model_type":"deberta","relative_attention":true,"max_relative_positions":16,"position_buckets":8}"#)
        XCTAssertEqual(v1.relativeEmbeddingRows, 32, "v1 has no buckets")
    }

    func testLabels() throws {
        let c = try config(#"{"id2label": {"0": "entailment", "2": "contradiction", "1": "neutral"}}"#)
        XCTAssertEqual(c.numLabels, 3)
        XCTAssertEqual(c.id2label[2], "contradiction")
    }

    func testBadConfigsNameTheFileAndField() {
        let cases: [(String, DebertaError.Kind, String)] = [
            ("{", .malformedFile, "not valid JSON"),
            ("[]", .configField, "config.json"),
            (#"{"model_type": "bert"}"#, .configField, "not a DeBERTa model"),
            (#"{"hidden_size": "big"}"#, .configField, "hidden_size"),
            (#"{"num_attention_heads": 0}"#, .configField, "num_attention_heads"),
            (#"{"hidden_size": -5}"#, .configField, "hidden_size"),
            (#"{"pos_att_type": "c2p|x2y"}"#, .configField, "x2y"),
            (#"{"id2label": {"zero": "a"}}"#, .configField, "id2label"),
            (#"{"layer_norm_eps": 0}"#, .configField, "layer_norm_eps"),
        ]
        for (json, kind, fragment) in cases {
            let error = assertThrowsDebertaError(kind, try config(json), json)
            let text = error.map { "\($0)" } ?? ""
            XCTAssertTrue(text.hasPrefix("config.json"), "'\(text)' does not name the file")
            XCTAssertTrue(text.contains(fragment), "'\(text)' does not mention \(fragment)")
        }
    }

    func testDeeplyNestedConfigIsRefusedNotCrashing() {
        let deep = #"{"a": "# + String(repeating: "[", count: 200_000) + String(repeating: "]", count: 200_000) + "}"
        XCTAssertThrowsError(try config(deep))
    }
}

final class LayoutDetectionTests: XCTestCase {
    let v2Backbone = ["embeddings.word_embeddings.weight", "encoder.layer.0.attention.self.query_proj.weight"]
    let v1Backbone = ["embeddings.word_embeddings.weight", "encoder.layer.0.attention.self.in_proj.weight"]

    func detect(_ names: [String], _ json: String? = nil) throws -> ModelLayout {
        try ModelDetector.detect(names: names, config: try json.map(config), configFile: "config.json", weightsFile: "w")
    }

    func testHeadsFromNames() throws {
        func prefixed(_ names: [String]) -> [String] { names.map { "deberta." + $0 } }
        XCTAssertEqual(try detect(v2Backbone).head, .base)
        XCTAssertEqual(try detect(v2Backbone).backbonePrefix, "")
        XCTAssertEqual(try detect(prefixed(v2Backbone) + ["lm_predictions.lm_head.bias"]).head, .maskedLM)
        XCTAssertEqual(try detect(prefixed(v1Backbone) + ["cls.predictions.bias"]).head, .maskedLM)
        XCTAssertEqual(try detect(prefixed(v2Backbone) + ["mask_predictions.classifier.weight"]).head, .replacedTokenDetection)
        XCTAssertEqual(try detect(prefixed(v2Backbone) + ["qa_outputs.weight"]).head, .questionAnswering)
        XCTAssertEqual(try detect(prefixed(v2Backbone) + ["pooler.dense.weight", "classifier.weight"]).head, .sequenceClassification)
        XCTAssertEqual(try detect(prefixed(v2Backbone) + ["classifier.weight"]).head, .tokenClassification)
        let bert = try detect(v1Backbone.map { "bert." + $0 } + ["cls.predictions.bias"])
        XCTAssertEqual(bert.backbonePrefix, "bert.")
        XCTAssertEqual(bert.family, .deberta)
        XCTAssertEqual(bert.architecture, "DebertaForMaskedLM")
    }

    func testArchitecturesWinAndContradictionsAreRefused() throws {
        let names = v2Backbone.map { "deberta." + $0 } + ["pooler.dense.weight", "classifier.weight"]
        let mc = try detect(names, #"{"model_type":"deberta-v2","architectures":["DebertaV2ForMultipleChoice"]}"#)
        XCTAssertEqual(mc.head, .multipleChoice)
        XCTAssertEqual(mc.familySource, "config.json")
        assertThrowsDebertaError(.configField, try detect(names, #"{"model_type":"deberta"}"#))
        assertThrowsDebertaError(.configField, try detect(names, #"{"architectures":["DebertaV2ForQuestionAnswering"]}"#))
        assertThrowsDebertaError(.malformedFile, try detect(["encoder.layer.0.attention.self.query_proj.weight"]))
        assertThrowsDebertaError(.malformedFile, try detect(["embeddings.word_embeddings.weight"]))
    }

    func testCanonicalNames() throws {
        let layout = try detect(v1Backbone.map { "bert." + $0 } + ["cls.predictions.bias"])
        XCTAssertEqual(TensorNaming.canonical("bert.encoder.layer.0.output.LayerNorm.gamma", layout: layout), "deberta.encoder.layer.0.output.LayerNorm.weight")
        XCTAssertEqual(TensorNaming.canonical("cls.predictions.bias", layout: layout), "cls.predictions.bias")
        let bare = try detect(v2Backbone)
        XCTAssertEqual(TensorNaming.canonical("encoder.rel_embeddings.weight", layout: bare), "encoder.rel_embeddings.weight")
    }

    func testShapeMismatchesAreListed() throws {
        let c = try config(#"{"model_type":"deberta-v2","hidden_size":8,"num_attention_heads":2,"intermediate_size":16,"num_hidden_layers":1,"vocab_size":10,"num_labels":3}"#)
        let layout = ModelLayout(family: .debertaV2, head: .sequenceClassification, backbonePrefix: "deberta.", familySource: "test", headSource: "test")
        let shapes = WeightSchema(config: c, layout: layout)
        let problems = shapes.mismatches([
            ("deberta.embeddings.word_embeddings.weight", [10, 8]),
            ("deberta.encoder.layer.0.intermediate.dense.weight", [8, 8]),
            ("deberta.encoder.layer.1.output.dense.weight", [8, 16]),
            ("classifier.weight", [2, 8]),
        ])
        XCTAssertEqual(problems.count, 3, "\(problems)")
        XCTAssertTrue(problems[0].contains("[16, 8]"))
        XCTAssertTrue(problems[1].contains("layer 1"))
        XCTAssertTrue(problems[2].contains("[3, 8]"))
    }
}

final class ConfigRangeTests: XCTestCase {
    /// Values that would reach Int(NaN) in the log buckets, or index labels out of range, are refused up front.
    func testRangesThatWouldTrapLaterAreRefused() throws {
        let base = #""model_type":"deberta-v2","hidden_size":8,"num_attention_heads":2,"intermediate_size":16,"num_hidden_layers":1,"vocab_size":10,"relative_attention":true"#
        for extra in [#""position_buckets":1"#, #""position_buckets":4,"max_relative_positions":3"#,
                      #""num_labels":2,"id2label":{"0":"a","5":"entailment"}"#, #""num_labels":2,"id2label":{"-1":"a","0":"b"}"#,
                      #""num_labels":4000000000000"#] {
            let json = "{" + base + "," + extra + "}"
            assertThrowsDebertaError(.configField, try DebertaConfig.parse(Array(json.utf8), file: "config.json"), json)
        }
        for buckets in 2 ... 40 {
            for maxRel in [buckets / 2 + 2, buckets, 512] {
                let json = "{" + base + #","position_buckets":\#(buckets),"max_relative_positions":\#(maxRel)}"#
                if maxRel - 1 == buckets / 2 {
                    assertThrowsDebertaError(.configField, try DebertaConfig.parse(Array(json.utf8), file: "config.json"), json)
                    continue
                }
                let c = try DebertaConfig.parse(Array(json.utf8), file: "config.json")
                let rows = RelativePositions.rowsByDistance(length: 300, family: .debertaV2, config: c)
                XCTAssertTrue(rows.allSatisfy { $0 >= 0 && Int($0) < c.relativeEmbeddingRows }, json)
            }
        }
    }
}
