import Checkpoint
import Foundation
import XCTest
@testable import DeBERTa
@_exported import TestSupport


/// The committed fixture models (Tools/make_fixtures.py) and what each must be detected as.
struct FixtureModel {
    var name: String
    var family: String
    var head: String
    var format: String
    var path: String { repositoryRoot + "/Fixtures/models/" + name }
}

let fixtureModels: [FixtureModel] = [
    FixtureModel(name: "v3-mlm", family: "deberta-v2", head: "masked-lm", format: "safetensors"),
    FixtureModel(name: "v2-conv-seqcls", family: "deberta-v2", head: "sequence-classification", format: "safetensors"),
    FixtureModel(name: "v2-sep-c2p-tokcls", family: "deberta-v2", head: "token-classification", format: "safetensors"),
    FixtureModel(name: "v2-qa-sharded", family: "deberta-v2", head: "question-answering", format: "safetensors-sharded"),
    FixtureModel(name: "v2-mc-bin-sharded", family: "deberta-v2", head: "multiple-choice", format: "pytorch-zip-sharded"),
    FixtureModel(name: "v1-mlm", family: "deberta", head: "masked-lm", format: "pytorch-zip"),
    FixtureModel(name: "v1-seqcls-noarch", family: "deberta", head: "sequence-classification", format: "safetensors"),
    FixtureModel(name: "v3-rtd", family: "deberta-v2", head: "replaced-token-detection", format: "safetensors"),
]


/// A held-out batch (`input_ids`, `attention_mask`, `masked_positions`, as in v3-mlm-trained's
/// heldout.safetensors) through `model` with vocabulary logits at the masked rows only; `top1(name)` is the best
/// token of output `name` at each masked row, in row-major order.
struct MaskedForward {
    let outputs: ModelOutputs
    let attentionMask: [Int]
    let rows: [Int]

    init(_ model: DebertaModel, _ store: TensorStore) throws {
        let ids = try XCTUnwrap(store["input_ids"]?.int64s()).map(Int.init)
        attentionMask = try XCTUnwrap(store["attention_mask"]?.int64s()).map(Int.init)
        let masked = try XCTUnwrap(store["masked_positions"]?.int64s())
        let shape = try XCTUnwrap(store["input_ids"]).shape
        rows = masked.indices.filter { masked[$0] != 0 }
        outputs = try model.forward(ModelInputs(inputIds: ids, attentionMask: attentionMask, batch: shape[0], length: shape[1]), maskedLMRows: rows)
    }

    func top1(_ name: String) throws -> [Int] {
        let logits = try XCTUnwrap(outputs[name])
        let V = logits.shape[1]
        return (0 ..< rows.count).map { r in
            let row = logits.values[r * V ..< (r + 1) * V]
            return row.indices.max { row[$0] < row[$1] }! - r * V
        }
    }
}
