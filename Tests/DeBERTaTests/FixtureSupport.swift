import Foundation
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

