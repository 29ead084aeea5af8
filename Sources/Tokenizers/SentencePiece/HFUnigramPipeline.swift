import Checkpoint

/// tokenizer.json (Unigram) path — placeholder until implemented.
struct HFUnigramPipeline: Sendable {
    let idToToken: [String]
    let unkID: Int?
    init(json: [UInt8], file: String) throws {
        throw CheckpointError(file: file, "tokenizer.json is not supported yet")
    }
    func isHole(_ id: Int) -> Bool { false }
    func encode(_ text: String) -> Encoding { Encoding() }
    func normalizeForDisplay(_ text: String) -> String { text }
}
