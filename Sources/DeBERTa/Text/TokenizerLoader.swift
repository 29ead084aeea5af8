import Checkpoint
import Foundation
import Tokenizers

extension TextEncoder {
    /// The tokenizer a model directory ships: `spm.model` (SentencePiece, DeBERTa-v2/v3), `tokenizer.json`
    /// (Unigram or BPE), or `vocab.json` + `merges.txt` (byte-level BPE, DeBERTa v1); special-token ids from
    /// added_tokens.json, the tokenizer's vocabulary or tokenizer.json's added tokens.
    public static func load(files: ModelFiles, config: DebertaConfig) throws -> TextEncoder {
        try load(directory: files.directory, tokenizerFiles: files.tokenizerFiles, config: config)
    }

    /// The tokenizer of a directory that holds only tokenizer files (what AutoTokenizer reads), with
    /// config.json when present (its vocabulary size, positions and pad id); no weights are needed.
    public static func load(directory: String) throws -> TextEncoder {
        let dir = directory.hasSuffix("/") ? directory : directory + "/"
        func isFile(_ p: String) -> Bool {
            var isDirectory: ObjCBool = false
            return FileManager.default.fileExists(atPath: p, isDirectory: &isDirectory) && !isDirectory.boolValue
        }
        let present = ModelFiles.tokenizerFileNames.map { dir + $0 }.filter(isFile)
        let configPath = dir + "config.json"
        let config = isFile(configPath) ? try DebertaConfig.load(path: configPath) : nil
        return try load(directory: directory, tokenizerFiles: present, config: config)
    }

    static func load(directory: String, tokenizerFiles: [String], config: DebertaConfig?) throws -> TextEncoder {
        let dir = directory.hasSuffix("/") ? directory : directory + "/"
        func path(_ name: String) -> String? {
            let p = dir + name
            return tokenizerFiles.contains(p) ? p : nil
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
            throw DebertaError(.io, file: directory, "no tokenizer files: expected spm.model, tokenizer.json, or vocab.json with merges.txt")
        }

        var added: [String: Int] = [:]
        if let file = path("added_tokens.json"), case let .object(members) = try readJSONFile(file) {
            for (k, v) in members { if let id = v.intValue { added[k] = id } }
        }
        for (k, id) in jsonAdded where added[k] == nil { added[k] = id }
        func lookup(_ text: String) -> Int? { added[text] ?? tokenizer.id(of: text) }
        let where_ = tokenizerFiles.first ?? directory
        guard let cls = lookup("[CLS]"), let sep = lookup("[SEP]") else {
            throw DebertaError(.malformedFile, file: where_, "the tokenizer has no [CLS] or [SEP] token")
        }
        let pad = lookup("[PAD]") ?? config?.padTokenId ?? 0
        let unk = lookup("[UNK]") ?? 0
        let mask = lookup(SpecialTokens.maskText)
        var inText: [(String, Int)] = [("[CLS]", cls), ("[SEP]", sep), ("[PAD]", pad), ("[UNK]", unk)]
        if let mask { inText.append((SpecialTokens.maskText, mask)) }
        for (text, id) in inText where id >= (config?.vocabSize ?? Int.max) {
            throw DebertaError(.malformedFile, file: where_, "special token \(text) has id \(id), outside the model's vocabulary of \(config?.vocabSize ?? 0)")
        }

        // Absolute position embeddings bound the input; tokenizer_config.json's model_max_length can only
        // lower that bound (a placeholder such as 1e30 or 999999 never sizes anything). A model with only
        // relative positions takes the whole text, as transformers runs it.
        var maxLength: Int?
        if let config, config.positionBiasedInput || !config.relativeAttention {
            maxLength = config.maxPositionEmbeddings
            if let file = path("tokenizer_config.json"), let m = try readJSONFile(file)["model_max_length"]?.intValue, m > 2, m < config.maxPositionEmbeddings {
                maxLength = m
            }
        }
        return TextEncoder(tokenizer: tokenizer,
                           special: SpecialTokens(cls: cls, sep: sep, pad: pad, unk: unk, mask: mask,
                                                  inText: inText.sorted { $0.0.count > $1.0.count }),
                           maxLength: maxLength)
    }
}
