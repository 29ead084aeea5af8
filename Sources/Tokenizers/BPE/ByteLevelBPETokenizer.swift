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
                throw CheckpointError(file: vocabFile, "unk_token \(JSONValue.quote(unk)) is not in the vocabulary, which also lacks the character for byte 0x\(String(missing, radix: 16)): such bytes could not be encoded")
            }
        }

        var table = MergeTable(capacityFor: def.merges.count)
        for (rank, m) in def.merges.enumerated() {
            func resolve(_ t: [UInt8], _ what: String) throws -> Int32 {
                guard let id = ids[t] else {
                    let pair = String(decoding: m.left, as: UTF8.self) + " " + String(decoding: m.right, as: UTF8.self)
                    throw CheckpointError(file: def.file, "\(m.location): \(what) \(JSONValue.quote(String(decoding: t, as: UTF8.self))) of the merge \(JSONValue.quote(pair)) is not in the vocabulary")
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
        var work: [UInt8] = []
        var origin: [Int32] = []
        if lowercase {
            work.reserveCapacity(text.utf8.count + 1)
            origin.reserveCapacity(text.utf8.count + 1)
            for (k, u) in text.unicodeScalars.enumerated() {
                for v in u.properties.lowercaseMapping.unicodeScalars {
                    work.append(contentsOf: UTF8.encode(v)!)
                    origin.append(Int32(truncatingIfNeeded: k))
                }
            }
        } else {
            work.reserveCapacity(text.utf8.count + 1)
            work.append(contentsOf: text.utf8)
        }
        var prefixed = false
        if addPrefixSpace, let first = work.first, first != 0x20 {
            work.insert(0x20, at: 0)
            prefixed = true
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

    /// Maps scalar `k` of the working buffer to the original text's scalar whose span it takes.
    @inline(__always)
    private static func originalIndex(_ k: Int, prefixed: Bool, origin: UnsafeBufferPointer<Int32>) -> Int {
        // The added prefix space takes the span of the first character, as in the tokenizers library.
        let j = prefixed ? (k > 0 ? k - 1 : 0) : k
        return origin.isEmpty ? j : Int(origin[j])
    }

    private func encodeBuffer(_ buf: UnsafeBufferPointer<UInt8>, prefixed: Bool,
                              origin: UnsafeBufferPointer<Int32>) -> Encoding {
        var ids: [Int] = []
        var tokens: [String] = []
        var offsets: [Range<Int>] = []
        let estimate = buf.count / 3 + 4
        ids.reserveCapacity(estimate)
        tokens.reserveCapacity(estimate)
        offsets.reserveCapacity(estimate)

        var scratch = MergeScratch()
        var cache = WordCache()
        var scanner = GPT2Scanner(buf, useRegex: useRegex)
        let base = buf.baseAddress!

        tokenStrings.withUnsafeBufferPointer { strings in
            byteIds.withUnsafeBufferPointer { byteIds in
                // Appends one word's tokens given their byte lengths (which tile the word).
                func emit(_ w: PreToken, _ tokIds: UnsafeBufferPointer<Int32>, _ tokLens: UnsafeBufferPointer<Int32>) {
                    let n = w.byteEnd - w.byteStart
                    var pos = 0
                    if n == w.scalarCount {
                        for t in 0 ..< tokIds.count {
                            let id = Int(tokIds[t])
                            let len = Int(tokLens[t])
                            let s = Self.originalIndex(w.scalarStart + pos, prefixed: prefixed, origin: origin)
                            let e = Self.originalIndex(w.scalarStart + pos + len - 1, prefixed: prefixed, origin: origin) + 1
                            ids.append(id)
                            tokens.append(strings[id])
                            offsets.append(s ..< e)
                            pos += len
                        }
                        return
                    }
                    let word = base + w.byteStart
                    var leads = 0  // lead bytes in word[0 ..< pos]
                    for t in 0 ..< tokIds.count {
                        let id = Int(tokIds[t])
                        let len = Int(tokLens[t])
                        let first = leads + (word[pos] & 0xC0 != 0x80 ? 1 : 0) - 1
                        for q in pos ..< pos + len where word[q] & 0xC0 != 0x80 { leads += 1 }
                        let last = leads - 1
                        let s = Self.originalIndex(w.scalarStart + first, prefixed: prefixed, origin: origin)
                        let e = Self.originalIndex(w.scalarStart + last, prefixed: prefixed, origin: origin) + 1
                        ids.append(id)
                        tokens.append(strings[id])
                        offsets.append(s ..< e)
                        pos += len
                    }
                }

                func insertAndEmit(_ w: PreToken, _ p: UnsafeRawPointer, _ n: Int, _ h: UInt64, _ m: Int) {
                    scratch.ids.withUnsafeBufferPointer { sids in
                        scratch.lens.withUnsafeBufferPointer { slens in
                            let i = UnsafeBufferPointer(rebasing: sids[0 ..< m])
                            let l = UnsafeBufferPointer(rebasing: slens[0 ..< m])
                            cache.insert(p, n, hash: h, ids: i, lens: l)
                            emit(w, i, l)
                        }
                    }
                }

                while let w = scanner.next() {
                    let n = w.byteEnd - w.byteStart
                    let p = UnsafeRawPointer(base + w.byteStart)
                    let h = WordCache.hash(p, n)
                    if let (start, count) = cache.find(p, n, hash: h) {
                        cache.ids.withUnsafeBufferPointer { cids in
                            cache.lens.withUnsafeBufferPointer { clens in
                                emit(w, UnsafeBufferPointer(rebasing: cids[start ..< start + count]),
                                     UnsafeBufferPointer(rebasing: clens[start ..< start + count]))
                            }
                        }
                        continue
                    }
                    if ignoreMerges, let id = wholeWords[Array(UnsafeBufferPointer(start: base + w.byteStart, count: n))] {
                        scratch.reserve(1)
                        scratch.ids[0] = id
                        scratch.lens[0] = Int32(n)
                        insertAndEmit(w, p, n, h, 1)
                        continue
                    }
                    scratch.reserve(n)
                    var complete = true
                    for i in 0 ..< n {
                        let id = byteIds[Int(base[w.byteStart + i])]
                        if id < 0 { complete = false; break }
                        scratch.ids[i] = id
                        scratch.lens[i] = 1
                    }
                    if !complete {
                        appendWithMissingBytes(w, base: base, ids: &ids, tokens: &tokens, offsets: &offsets,
                                               scratch: &scratch, prefixed: prefixed, origin: origin)
                        continue
                    }
                    let m = merges.mergeWord(&scratch, count: n)
                    insertAndEmit(w, p, n, h, m)
                }

            }
        }
        return Encoding(ids: ids, tokens: tokens, offsets: offsets)
    }

    /// A word with a byte whose alphabet character is not in the vocabulary, done as the tokenizers
    /// library does it: the character becomes unk_token (consecutive ones fused with fuse_unk) or, with
    /// no unk_token, is dropped. Symbol lengths count bytes of the byte-level string (1 for printable
    /// ASCII, 2 for the other characters) and token offsets are read from the running sum of those
    /// lengths, so that a dropped character shifts later offsets exactly as it does there.
    private func appendWithMissingBytes(_ w: PreToken, base: UnsafePointer<UInt8>, ids: inout [Int],
                                        tokens: inout [String], offsets: inout [Range<Int>],
                                        scratch: inout MergeScratch, prefixed: Bool,
                                        origin: UnsafeBufferPointer<Int32>) {
        let word = UnsafeBufferPointer(start: base + w.byteStart, count: w.byteEnd - w.byteStart)
        let n = word.count
        scratch.reserve(n)
        var m = 0
        var pending: (id: Int32, len: Int32)? = nil
        func add(_ id: Int32, _ len: Int32) {
            scratch.ids[m] = id
            scratch.lens[m] = len
            m += 1
        }
        var normStart = [Int](repeating: 0, count: n)  // position of each byte's character in the byte-level string
        var total = 0
        for i in 0 ..< n {
            let b = word[i]
            let nl: Int32 = (0x21 ... 0x7E).contains(b) ? 1 : 2
            normStart[i] = total
            total += Int(nl)
            let id = byteIds[Int(b)]
            if id >= 0 {
                if let u = pending { add(u.id, u.len); pending = nil }
                add(id, nl)
            } else if unknownId >= 0 {
                if let u = pending {
                    if fuseUnknown {
                        pending = (u.id, u.len + nl)
                    } else {
                        add(u.id, u.len)
                        pending = (unknownId, nl)
                    }
                } else {
                    pending = (unknownId, nl)
                }
            }
        }
        if let u = pending { add(u.id, u.len) }
        let k = merges.mergeWord(&scratch, count: m)

        // byte index whose character covers byte-level position `q`
        func byteAt(_ q: Int) -> Int {
            var lo = 0, hi = n - 1
            while lo < hi {
                let mid = (lo + hi + 1) / 2
                if normStart[mid] <= q { lo = mid } else { hi = mid - 1 }
            }
            return lo
        }
        func scalarOf(_ byte: Int) -> Int {
            var leads = 0
            for q in 0 ... byte where word[q] & 0xC0 != 0x80 { leads += 1 }
            return leads - 1
        }
        var pos = 0
        for t in 0 ..< k {
            let id = Int(scratch.ids[t])
            let len = Int(scratch.lens[t])
            let first = scalarOf(byteAt(pos))
            let last = scalarOf(byteAt(pos + len - 1))
            ids.append(id)
            tokens.append(tokenStrings[id])
            offsets.append(Self.originalIndex(w.scalarStart + first, prefixed: prefixed, origin: origin)
                ..< Self.originalIndex(w.scalarStart + last, prefixed: prefixed, origin: origin) + 1)
            pos += len
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
