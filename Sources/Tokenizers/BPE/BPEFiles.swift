import Checkpoint

/// What the BPE files say, before ids are resolved: the vocabulary in file order, the merges with the
/// line (or array index) each came from, and the pipeline settings around the model.
struct BPEDefinition {
    var file: String
    var vocab: [(token: [UInt8], id: Int)] = []
    /// (left, right, where): `where` names the line or element for error messages.
    var merges: [(left: [UInt8], right: [UInt8], location: String)] = []
    var unknownToken: String?
    var fuseUnknown = false
    var ignoreMerges = false
    var addPrefixSpace = false
    var useRegex = true
    var lowercase = false
    /// One entry per post-processor that trims offsets: the add_prefix_space it trims with.
    var trimPasses: [Bool] = []
    var addedTokens: [ByteLevelBPETokenizer.AddedToken] = []
}

/// The largest token id accepted for added tokens (they are kept in dictionaries).
let maxTokenId = Int(Int32.max)

/// The largest model id accepted for a vocabulary of `count` tokens: ids index dense per-id tables,
/// so a small file naming id 4,000,000,000 must not make us allocate for it. Real vocabularies are
/// dense (ids 0 ..< count); this allows some gaps.
func maxModelId(count: Int) -> Int { min(maxTokenId, max(4 * count, 1 << 20)) }

enum BPEFiles {
    // MARK: vocab.json + merges.txt

    static func readVocabJSON(_ path: String) throws -> [(token: [UInt8], id: Int)] {
        let json = try readJSONFile(path)
        guard case let .object(members) = json else {
            throw DebertaError(.malformedFile, file: path, "expected a JSON object mapping each token to its id, found \(kind(json))")
        }
        return try vocabEntries(members, file: path, context: "")
    }

    static func vocabEntries(_ members: [(String, JSONValue)], file: String, context: String) throws
        -> [(token: [UInt8], id: Int)]
    {
        var out: [(token: [UInt8], id: Int)] = []
        out.reserveCapacity(members.count)
        let limit = maxModelId(count: members.count)
        for (token, value) in members {
            guard let id = value.intValue, id >= 0 else {
                throw DebertaError(.malformedFile, file: file, "\(context)token \(JSONValue.quote(token)) has id \(value.serialized()), expected a non-negative integer")
            }
            guard id <= limit else {
                throw DebertaError(.malformedFile, file: file, "\(context)token \(JSONValue.quote(token)) has id \(id), more than the \(limit) accepted for a vocabulary of \(members.count) tokens")
            }
            out.append((Array(token.utf8), id))
        }
        return out
    }

    /// merges.txt as the tokenizers library reads it: lines split at "\n" (a trailing "\r" dropped, no
    /// empty last line after a final newline), lines starting with "#version" skipped, every other line
    /// exactly two tokens separated by one space.
    static func readMergesText(_ path: String) throws -> [(left: [UInt8], right: [UInt8], location: String)] {
        let bytes = try readSmallFile(path)
        guard String(validating: bytes, as: UTF8.self) != nil else {
            throw DebertaError(.malformedFile, file: path, "is not valid UTF-8 text")
        }
        var out: [(left: [UInt8], right: [UInt8], location: String)] = []
        var lineNumber = 0
        var start = 0
        let n = bytes.count
        while start < n {
            var end = start
            while end < n, bytes[end] != 0x0A { end += 1 }
            lineNumber += 1
            var lineEnd = end
            if lineEnd > start, bytes[lineEnd - 1] == 0x0D { lineEnd -= 1 }
            let line = bytes[start ..< lineEnd]
            start = end + 1
            if line.starts(with: Array("#version".utf8)) { continue }
            let parts = line.split(separator: 0x20, omittingEmptySubsequences: false)
            guard parts.count == 2 else {
                let shown = String(decoding: line.prefix(80), as: UTF8.self)
                throw DebertaError(.malformedFile, file: path, "line \(lineNumber): expected two tokens separated by one space, found \(JSONValue.quote(shown))")
            }
            out.append((Array(parts[0]), Array(parts[1]), "line \(lineNumber)"))
        }
        return out
    }

    // MARK: tokenizer.json

    static func readTokenizerJSON(_ path: String) throws -> BPEDefinition {
        let json = try readJSONFile(path)
        guard case .object = json else {
            throw DebertaError(.malformedFile, file: path, "expected a JSON object (a tokenizer.json), found \(kind(json))")
        }
        var def = BPEDefinition(file: path)

        guard let model = json["model"], case .object = model else {
            throw DebertaError(.malformedFile, file: path, "has no \"model\" object")
        }
        if let type = model["type"], type != .null {
            guard type.stringValue == "BPE" else {
                throw DebertaError(.malformedFile, file: path, "model type is \(type.serialized()), not \"BPE\"")
            }
        }
        guard let vocab = model["vocab"]?.objectValue else {
            throw DebertaError(.malformedFile, file: path, "model.vocab must be an object mapping each token to its id")
        }
        def.vocab = try vocabEntries(vocab, file: path, context: "model.vocab: ")
        guard let merges = model["merges"]?.arrayValue else {
            throw DebertaError(.malformedFile, file: path, "model.merges must be an array")
        }
        for (k, m) in merges.enumerated() {
            if let s = m.stringValue {
                // the "a b" form, split as merges.txt lines are ("#version" entries skipped)
                let bytes = Array(s.utf8)
                if bytes.starts(with: Array("#version".utf8)) { continue }
                let parts = bytes.split(separator: 0x20, omittingEmptySubsequences: false)
                guard parts.count == 2 else {
                    throw DebertaError(.malformedFile, file: path, "model.merges[\(k)]: expected two tokens separated by one space, found \(JSONValue.quote(s))")
                }
                def.merges.append((Array(parts[0]), Array(parts[1]), "model.merges[\(k)]"))
            } else if let pair = m.arrayValue, pair.count == 2, let a = pair[0].stringValue, let b = pair[1].stringValue {
                def.merges.append((Array(a.utf8), Array(b.utf8), "model.merges[\(k)]"))
            } else {
                throw DebertaError(.malformedFile, file: path, "model.merges[\(k)]: expected \"a b\" or [\"a\", \"b\"], found \(m.serialized().prefix(80))")
            }
        }
        if let unk = model["unk_token"], unk != .null {
            guard let s = unk.stringValue else {
                throw DebertaError(.malformedFile, file: path, "model.unk_token must be a string or null, found \(unk.serialized())")
            }
            def.unknownToken = s
        }
        def.fuseUnknown = try optionalBool(model, "fuse_unk", file: path, context: "model") ?? false
        def.ignoreMerges = try optionalBool(model, "ignore_merges", file: path, context: "model") ?? false
        if try optionalBool(model, "byte_fallback", file: path, context: "model") == true {
            throw DebertaError(.unsupported, file: path, "model.byte_fallback is true: byte fallback (<0xNN> tokens) is not supported with a byte-level BPE")
        }
        if let d = model["dropout"], d != .null {
            guard let p = d.doubleValue else {
                throw DebertaError(.malformedFile, file: path, "model.dropout must be a number or null, found \(d.serialized())")
            }
            guard p == 0 else {
                throw DebertaError(.unsupported, file: path, "model.dropout is \(d.serialized()): BPE dropout makes tokenization random and is not supported")
            }
        }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let v = model[key], v != .null, v.stringValue != "" {
                throw DebertaError(.malformedFile, file: path, "model.\(key) is \(v.serialized()): only byte-level BPE (no subword prefix or suffix) is supported")
            }
        }

        try readNormalizer(json["normalizer"], into: &def, file: path, context: "normalizer")
        try readPreTokenizer(json["pre_tokenizer"], into: &def, file: path)
        try readPostProcessor(json["post_processor"], into: &def, file: path, context: "post_processor")
        def.addedTokens = try readAddedTokens(json["added_tokens"], file: path,
                                              modelSize: (def.vocab.map(\.id).max() ?? -1) + 1)
        return def
    }

    private static func readNormalizer(_ value: JSONValue?, into def: inout BPEDefinition, file: String, context: String) throws {
        guard let value, value != .null else { return }
        let type = value["type"]?.stringValue ?? "?"
        switch type {
        case "Lowercase":
            def.lowercase = true
        case "Sequence":
            guard let items = value["normalizers"]?.arrayValue else {
                throw DebertaError(.malformedFile, file: file, "\(context): a Sequence without a \"normalizers\" array")
            }
            for (k, item) in items.enumerated() {
                try readNormalizer(item, into: &def, file: file, context: "\(context).normalizers[\(k)]")
            }
        default:
            throw DebertaError(.unsupported, file: file, "\(context) \(JSONValue.quote(type)) is not supported (a byte-level BPE here takes no normalizer or Lowercase)")
        }
    }

    private static func readPreTokenizer(_ value: JSONValue?, into def: inout BPEDefinition, file: String) throws {
        guard let value, value != .null else {
            throw DebertaError(.malformedFile, file: file, "has no pre_tokenizer: a byte-level BPE needs a ByteLevel pre-tokenizer")
        }
        var byteLevels: [JSONValue] = []
        switch value["type"]?.stringValue {
        case "ByteLevel": byteLevels = [value]
        case "Sequence":
            guard let items = value["pretokenizers"]?.arrayValue else {
                throw DebertaError(.malformedFile, file: file, "pre_tokenizer: a Sequence without a \"pretokenizers\" array")
            }
            for (k, item) in items.enumerated() {
                guard item["type"]?.stringValue == "ByteLevel" else {
                    let t = item["type"]?.serialized() ?? item.serialized().prefix(60).description
                    throw DebertaError(.malformedFile, file: file, "pre_tokenizer.pretokenizers[\(k)] is \(t): only ByteLevel is supported")
                }
                byteLevels.append(item)
            }
        default:
            let t = value["type"]?.serialized() ?? value.serialized().prefix(60).description
            throw DebertaError(.malformedFile, file: file, "pre_tokenizer is \(t): only ByteLevel (alone or in a Sequence) is supported")
        }
        guard byteLevels.count == 1 else {
            throw DebertaError(.malformedFile, file: file, "pre_tokenizer has \(byteLevels.count) ByteLevel steps, expected exactly one")
        }
        let b = byteLevels[0]
        def.addPrefixSpace = try optionalBool(b, "add_prefix_space", file: file, context: "pre_tokenizer") ?? true
        def.useRegex = try optionalBool(b, "use_regex", file: file, context: "pre_tokenizer") ?? true
        // The pre-tokenizer's trim_offsets has no effect on encoding: only a post-processor trims.
    }

    private static func readPostProcessor(_ value: JSONValue?, into def: inout BPEDefinition, file: String, context: String) throws {
        guard let value, value != .null else { return }
        switch value["type"]?.stringValue {
        case "ByteLevel", "RobertaProcessing":
            // Both trim byte-level offsets (before adding any special token) when trim_offsets is set.
            let trim = try optionalBool(value, "trim_offsets", file: file, context: context) ?? true
            let prefix = try optionalBool(value, "add_prefix_space", file: file, context: context) ?? true
            if trim { def.trimPasses.append(prefix) }
        case "Sequence":
            for (k, item) in (value["processors"]?.arrayValue ?? []).enumerated() {
                try readPostProcessor(item, into: &def, file: file, context: "\(context).processors[\(k)]")
            }
        default:
            break  // TemplateProcessing, BertProcessing: special tokens only, offsets untouched
        }
    }

    /// `modelSize` is the model vocabulary's largest id + 1: an added token may extend it by at most the
    /// number of added tokens (ids size the vocabulary the tokenizer reports).
    private static func readAddedTokens(_ value: JSONValue?, file: String, modelSize: Int) throws -> [ByteLevelBPETokenizer.AddedToken] {
        guard let value, value != .null else { return [] }
        guard let items = value.arrayValue else {
            throw DebertaError(.malformedFile, file: file, "added_tokens must be an array, found \(kind(value))")
        }
        let idLimit = modelSize + items.count
        return try items.enumerated().map { k, item in
            guard let content = item["content"]?.stringValue, let id = item["id"]?.intValue, id >= 0, id <= maxTokenId else {
                throw DebertaError(.malformedFile, file: file, "added_tokens[\(k)]: expected {\"id\": non-negative integer, \"content\": string, ...}, found \(item.serialized().prefix(120))")
            }
            guard id < idLimit else {
                throw DebertaError(.malformedFile, file: file, field: "added_tokens[\(k)]", "added_tokens[\(k)] \(JSONValue.quote(String(content.prefix(80)))) has id \(id), expected an id below \(idLimit) (the model vocabulary's \(modelSize) ids plus the \(items.count) added tokens)")
            }
            let ctx = "added_tokens[\(k)]"
            return ByteLevelBPETokenizer.AddedToken(
                content: content, id: id,
                special: try optionalBool(item, "special", file: file, context: ctx) ?? false,
                lstrip: try optionalBool(item, "lstrip", file: file, context: ctx) ?? false,
                rstrip: try optionalBool(item, "rstrip", file: file, context: ctx) ?? false,
                singleWord: try optionalBool(item, "single_word", file: file, context: ctx) ?? false,
                normalized: try optionalBool(item, "normalized", file: file, context: ctx) ?? true)
        }
    }

    private static func optionalBool(_ object: JSONValue, _ key: String, file: String, context: String) throws -> Bool? {
        guard let v = object[key], v != .null else { return nil }
        guard let b = v.boolValue else {
            throw DebertaError(.malformedFile, file: file, "\(context).\(key) must be true or false, found \(v.serialized())")
        }
        return b
    }

    static func kind(_ v: JSONValue) -> String {
        switch v {
        case .null: return "null"
        case .bool: return "a boolean"
        case .number: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }
}
