import Foundation

/// The repository root, found from this file's path.
let repositoryRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    while url.path != "/" {
        url.deleteLastPathComponent()
        if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { return url.path }
    }
    return FileManager.default.currentDirectoryPath
}()

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

func temporaryDirectory() throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("deberta-tests-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}
