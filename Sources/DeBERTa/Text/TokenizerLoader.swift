import Checkpoint
import Tokenizers

extension TextEncoder {
    /// The tokenizer a model directory ships: `spm.model` (SentencePiece, DeBERTa-v2/v3), `tokenizer.json`
    /// (Unigram or BPE), or `vocab.json` + `merges.txt` (byte-level BPE, DeBERTa v1); special-token ids from
    /// added_tokens.json, the tokenizer's vocabulary or tokenizer.json's added tokens.
    public static func load(files: ModelFiles, config: DebertaConfig) throws -> TextEncoder {
        let dir = files.directory.hasSuffix("/") ? files.directory : files.directory + "/"
        func path(_ name: String) -> String? {
            let p = dir + name
            return files.tokenizerFiles.contains(p) ? p : nil
        }
        let tokenizer: any SubwordTokenizer
        var jsonAdded: [(String, Int)] = []
        if let spm = path("spm.model") {
            tokenizer = try SentencePieceTokenizer(modelFile: spm)
        } else if let json = path("tokenizer.json") {
            let value = try readJSONFile(json)
            for token in value["added_tokens"]?.arrayValue ?? [] {
                if let content = token["content"]?.stringValue, let id = token["id"]?.intValue { jsonAdded.append((content, id)) }
            }
            switch value["model"]?["type"]?.stringValue {
            case "Unigram": tokenizer = try SentencePieceTokenizer(tokenizerJSON: json)
            case "BPE": tokenizer = try ByteLevelBPETokenizer(tokenizerJSON: json)
            case let other: throw DebertaError(.unsupported, file: json, "tokenizer model type '\(other ?? "missing")' is not supported (Unigram or BPE)")
            }
        } else if let vocab = path("vocab.json"), let merges = path("merges.txt") {
            tokenizer = try ByteLevelBPETokenizer(vocabFile: vocab, mergesFile: merges)
        } else {
            throw DebertaError(.io, file: files.directory, "no tokenizer files: expected spm.model, tokenizer.json, or vocab.json with merges.txt")
        }

        var added: [String: Int] = [:]
        if let file = path("added_tokens.json"), case let .object(members) = try readJSONFile(file) {
            for (k, v) in members { if let id = v.intValue { added[k] = id } }
        }
        for (k, id) in jsonAdded where added[k] == nil { added[k] = id }
        func lookup(_ text: String) -> Int? { added[text] ?? tokenizer.id(of: text) }
        let where_ = files.tokenizerFiles.first ?? files.directory
        guard let cls = lookup("[CLS]"), let sep = lookup("[SEP]") else {
            throw DebertaError(.malformedFile, file: where_, "the tokenizer has no [CLS] or [SEP] token")
        }
        let pad = lookup("[PAD]") ?? config.padTokenId ?? 0
        let unk = lookup("[UNK]") ?? 0
        let mask = lookup(SpecialTokens.maskText)
        var inText: [(String, Int)] = [("[CLS]", cls), ("[SEP]", sep), ("[PAD]", pad), ("[UNK]", unk)]
        if let mask { inText.append((SpecialTokens.maskText, mask)) }
        for (text, id) in inText where id >= config.vocabSize {
            throw DebertaError(.malformedFile, file: where_, "special token \(text) has id \(id), outside the model's vocabulary of \(config.vocabSize)")
        }

        var maxLength = config.maxPositionEmbeddings
        if let file = path("tokenizer_config.json"), let m = try readJSONFile(file)["model_max_length"]?.intValue, m > 0, m < 1_000_000 {
            maxLength = config.positionBiasedInput ? min(m, config.maxPositionEmbeddings) : m
        }
        return TextEncoder(tokenizer: tokenizer,
                           special: SpecialTokens(cls: cls, sep: sep, pad: pad, unk: unk, mask: mask,
                                                  inText: inText.sorted { $0.0.count > $1.0.count }),
                           maxLength: maxLength)
    }
}
