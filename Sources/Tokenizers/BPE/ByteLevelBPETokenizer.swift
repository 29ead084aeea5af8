import Checkpoint

/// GPT-2 / RoBERTa / DeBERTa-v1 byte-level BPE, matching the tokenizers library's `Tokenizer.encode`
/// (ids, tokens and character offsets) for one text without special tokens.
///
/// Pipeline: optional Lowercase normalizer -> ByteLevel pre-tokenizer (an optional prefix space, the
/// GPT-2 regex, bytes mapped to the 256-character alphabet) -> BPE merges by rank -> offsets in the
/// original text, trimmed of spaces when the post-processor (ByteLevel or RobertaProcessing with
/// trim_offsets) would trim them. Added/special tokens in the text are not split out here: they are
/// listed in `addedTokens` for the caller.
public final class ByteLevelBPETokenizer: SubwordTokenizer {
    /// An entry of tokenizer.json's `added_tokens`.
    public struct AddedToken: Sendable, Equatable {
        public var content: String
        public var id: Int
        public var special: Bool
        public var lstrip: Bool
        public var rstrip: Bool
        public var singleWord: Bool
        public var normalized: Bool

        public init(content: String, id: Int, special: Bool = true, lstrip: Bool = false, rstrip: Bool = false,
                    singleWord: Bool = false, normalized: Bool = false) {
            self.content = content
            self.id = id
            self.special = special
            self.lstrip = lstrip
            self.rstrip = rstrip
            self.singleWord = singleWord
            self.normalized = normalized
        }
    }

    /// A space is put before a text that does not start with one (pre_tokenizer.add_prefix_space).
    public let addPrefixSpace: Bool
    /// Offsets exclude the spaces a token starts or ends with (post_processor.trim_offsets).
    public var trimOffsets: Bool { !trimPasses.isEmpty }
    /// Whether the GPT-2 regex splits the text (pre_tokenizer.use_regex); false: the text is one word.
    public let useRegex: Bool
    /// A Lowercase normalizer runs first.
    public let lowercase: Bool
    /// The model's unk_token, used for bytes whose character is not in the vocabulary.
    public let unknownToken: String?
    /// tokenizer.json's added_tokens (empty for vocab.json + merges.txt).
    public let addedTokens: [AddedToken]
    public let vocabularySize: Int
    /// Number of distinct merge rules.
    public var mergeCount: Int { merges.count }

    /// For each trimming post-processor, in order: the add_prefix_space it trims with.
    let trimPasses: [Bool]
    let fuseUnknown: Bool
    let ignoreMerges: Bool
    /// Token string of each model id ("" where the vocabulary has no such id).
    let tokenStrings: [String]
    let hasToken: [Bool]
    /// Model vocabulary keyed by the token's UTF-8 bytes (exact, unlike String's canonical equality).
    let tokenIds: [[UInt8]: Int32]
    /// The id of each byte's alphabet character, -1 when the vocabulary lacks it.
    let byteIds: [Int32]
    let unknownId: Int32
    let merges: MergeTable
    /// Leading and trailing 'Ġ' or whitespace characters of each id's token, for offset trimming.
    let leadingSpaces: [Int32]
    let trailingSpaces: [Int32]
    /// ignore_merges: whole words found in the vocabulary, keyed by the bytes they stand for.
    let wholeWords: [[UInt8]: Int32]
    let addedById: [Int: String]
    let addedByContent: [[UInt8]: Int]

    /// GPT-2 / DeBERTa-v1 files (`vocab.json`, `merges.txt`). The defaults are the settings of the
    /// tokenizer.json files transformers writes for these models: no prefix space, offsets not trimmed.
    /// `trimOffsets` trims as a ByteLevel post-processor whose own add_prefix_space is
    /// `processorAddPrefixSpace` (true in the tokenizers library's ByteLevelBPETokenizer, RoBERTa's
    /// converter passes the pre-tokenizer's value); it decides whether the first token keeps one leading space.
    public convenience init(vocabFile: String, mergesFile: String, addPrefixSpace: Bool = false,
                            trimOffsets: Bool = false, processorAddPrefixSpace: Bool = true) throws {
        var def = BPEDefinition(file: mergesFile)
        def.vocab = try BPEFiles.readVocabJSON(vocabFile)
        def.merges = try BPEFiles.readMergesText(mergesFile)
        def.addPrefixSpace = addPrefixSpace
        if trimOffsets { def.trimPasses = [processorAddPrefixSpace] }
        try self.init(definition: def, vocabFile: vocabFile)
    }

    /// A tokenizer.json whose model is BPE with a ByteLevel pre-tokenizer.
    public convenience init(tokenizerJSON path: String) throws {
        try self.init(definition: try BPEFiles.readTokenizerJSON(path), vocabFile: path)
    }

    init(definition def: BPEDefinition, vocabFile: String) throws {
        var ids: [[UInt8]: Int32] = [:]
        ids.reserveCapacity(def.vocab.count)
        var maxId = -1
        for (token, id) in def.vocab {
            ids[token] = Int32(id)
            maxId = max(maxId, id)
        }
        var strings = [String](repeating: "", count: maxId + 1)
        var present = [Bool](repeating: false, count: maxId + 1)
        for (token, id) in def.vocab where !present[id] {
            strings[id] = String(decoding: token, as: UTF8.self)
            present[id] = true
        }

        var byteIds = [Int32](repeating: -1, count: 256)
        for b in 0 ..< 256 {
            byteIds[b] = ids[Array(String(ByteLevelAlphabet.scalarForByte[b]).utf8)] ?? -1
        }
        var unknownId: Int32 = -1
        if let unk = def.unknownToken {
            unknownId = ids[Array(unk.utf8)] ?? -1
            if unknownId < 0, let missing = byteIds.firstIndex(of: -1) {
                throw DebertaError(.malformedFile, file: vocabFile, "unk_token \(JSONValue.quote(unk)) is not in the vocabulary, which also lacks the character for byte 0x\(String(missing, radix: 16)): such bytes could not be encoded")
            }
        }

        var table = MergeTable(capacityFor: def.merges.count)
        for (rank, m) in def.merges.enumerated() {
            func resolve(_ t: [UInt8], _ what: String) throws -> Int32 {
                guard let id = ids[t] else {
                    let pair = String(decoding: m.left, as: UTF8.self) + " " + String(decoding: m.right, as: UTF8.self)
                    throw DebertaError(.malformedFile, file: def.file, "\(m.location): \(what) \(JSONValue.quote(String(decoding: t, as: UTF8.self))) of the merge \(JSONValue.quote(pair)) is not in the vocabulary")
                }
                return id
            }
            let a = try resolve(m.left, "token")
            let b = try resolve(m.right, "token")
            let c = try resolve(m.left + m.right, "merged token")
            table.insert(a, b, rank: UInt32(rank), newId: c)
        }

        var leading = [Int32](repeating: 0, count: maxId + 1)
        var trailing = [Int32](repeating: 0, count: maxId + 1)
        func isSpace(_ u: Unicode.Scalar) -> Bool { u == "\u{120}" || u.properties.isWhitespace }
        for id in 0 ..< maxId + 1 where present[id] {
            let scalars = Array(strings[id].unicodeScalars)
            leading[id] = Int32(scalars.prefix { isSpace($0) }.count)
            trailing[id] = Int32(scalars.reversed().prefix { isSpace($0) }.count)
        }

        var whole: [[UInt8]: Int32] = [:]
        if def.ignoreMerges {
            for (token, id) in def.vocab {
                if let bytes = ByteLevelAlphabet.decode(String(decoding: token, as: UTF8.self)), whole[bytes] == nil {
                    whole[bytes] = Int32(id)
                }
            }
        }

        var addedById: [Int: String] = [:]
        var addedByContent: [[UInt8]: Int] = [:]
        var maxAdded = -1
        for t in def.addedTokens {
            addedById[t.id] = t.content
            addedByContent[Array(t.content.utf8)] = t.id
            maxAdded = max(maxAdded, t.id)
        }

        self.addPrefixSpace = def.addPrefixSpace
        self.useRegex = def.useRegex
        self.lowercase = def.lowercase
        self.unknownToken = def.unknownToken
        self.addedTokens = def.addedTokens
        self.vocabularySize = max(maxId, maxAdded) + 1
        self.trimPasses = def.trimPasses
        self.fuseUnknown = def.fuseUnknown
        self.ignoreMerges = def.ignoreMerges
        self.tokenStrings = strings
        self.hasToken = present
        self.tokenIds = ids
        self.byteIds = byteIds
        self.unknownId = unknownId
        self.merges = table
        self.leadingSpaces = leading
        self.trailingSpaces = trailing
        self.wholeWords = whole
        self.addedById = addedById
        self.addedByContent = addedByContent
    }

    // MARK: SubwordTokenizer

    public func id(of token: String) -> Int? {
        let bytes = Array(token.utf8)
        if let id = addedByContent[bytes] { return id }
        return tokenIds[bytes].map { Int($0) }
    }

    public func token(of id: Int) -> String? {
        if let s = addedById[id] { return s }
        guard id >= 0, id < hasToken.count, hasToken[id] else { return nil }
        return tokenStrings[id]
    }

    public func encode(_ text: String) -> Encoding {
        guard !text.isEmpty else { return Encoding() }
        // The prefix space goes before a text that does not start with U+0020 (Lowercase keeps the
        // first character a space or not).
        let prefixed = addPrefixSpace && text.utf8.first != 0x20
        var work: [UInt8] = []
        var origin: [Int32] = []
        work.reserveCapacity(text.utf8.count + 1)
        if prefixed { work.append(0x20) }
        if lowercase {
            origin.reserveCapacity(text.utf8.count)
            for (k, u) in text.unicodeScalars.enumerated() {
                if u.isASCII {
                    work.append(UInt8(u.value) | (u.properties.isUppercase ? 0x20 : 0))
                    origin.append(Int32(truncatingIfNeeded: k))
                    continue
                }
                // char by char, each of a character's lowercase characters spanning it (Rust's to_lowercase)
                for v in u.properties.lowercaseMapping.unicodeScalars {
                    work.append(contentsOf: UTF8.encode(v)!)
                    origin.append(Int32(truncatingIfNeeded: k))
                }
            }
        } else {
            work.append(contentsOf: text.utf8)
        }
        var out = work.withUnsafeBufferPointer { buf in
            origin.withUnsafeBufferPointer { org in
                encodeBuffer(buf, prefixed: prefixed, origin: org)
            }
        }
        for addPrefix in trimPasses { trim(&out, addPrefixSpace: addPrefix) }
        return out
    }

    // MARK: encoding

    /// Texts at least this long (in bytes) remember merged words for the rest of the call.
    static let cacheThreshold = 256

    private func encodeBuffer(_ buf: UnsafeBufferPointer<UInt8>, prefixed: Bool,
                              origin: UnsafeBufferPointer<Int32>) -> Encoding {
        tokenStrings.withUnsafeBufferPointer { strings in
            byteIds.withUnsafeBufferPointer { byteIds in
                merges.withView { view in
                    var encoder = WordEncoder(tokenizer: self, bytes: buf, strings: strings.baseAddress!,
                                              byteIds: byteIds.baseAddress!, merges: view, prefixed: prefixed, origin: origin)
                    encoder.run()
                    return Encoding(ids: encoder.ids, tokens: encoder.tokens, offsets: encoder.offsets)
                }
            }
        }
    }

    /// The ByteLevel post-processor's offset trimming (also RobertaProcessing's): drop the leading and
    /// trailing 'Ġ'/whitespace characters of each token from its span, except the one space the
    /// tokenizer itself put before the first word.
    private func trim(_ e: inout Encoding, addPrefixSpace: Bool) {
        for i in 0 ..< e.ids.count {
            let id = e.ids[i]
            var leading = Int(leadingSpaces[id])
            let trailing = Int(trailingSpaces[id])
            guard leading > 0 || trailing > 0 else { continue }
            var start = e.offsets[i].lowerBound
            var end = e.offsets[i].upperBound
            if leading > 0 {
                let isFirst = i == 0 || start == 0
                if isFirst && addPrefixSpace && leading == 1 { leading = 0 }
                start = min(start + leading, end)
            }
            if trailing > 0 && end >= trailing {
                end = max(end - trailing, start)
            }
            e.offsets[i] = start ..< end
        }
    }
}
