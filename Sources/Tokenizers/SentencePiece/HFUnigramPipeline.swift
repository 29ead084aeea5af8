import Checkpoint
import Foundation

/// The tokenizer.json (Hugging Face tokenizers library) path of `SentencePieceTokenizer`, for a `Unigram`
/// model: added tokens matched in the text, the normalizer, the pre-tokenizer and the model, with offsets
/// mapped back through the library's alignment rules. Mirrors `Tokenizer.encode(text,
/// add_special_tokens=False)` of tokenizers 0.23.
struct HFUnigramPipeline: Sendable {
    let idToToken: [String]
    private let isHoleTable: [Bool]
    let unkID: Int?
    let normalizer: HFNormalizer?
    let preTokenizer: HFPreTokenizer?
    let model: HFUnigramModel
    let addedRaw: HFAddedMatcher?
    let addedNormalized: HFAddedMatcher?

    init(json bytes: [UInt8], file: String) throws {
        let root: JSONValue
        do {
            root = try bytes.withUnsafeBytes { try JSONParser.parse($0) }
        } catch {
            throw DebertaError(.malformedFile, file: file, "not valid JSON: \(error)")
        }
        guard root.objectValue != nil else { throw DebertaError(.malformedFile, file: file, "tokenizer.json must be a JSON object") }
        func bad(_ what: String) -> DebertaError { DebertaError(.malformedFile, file: file, what) }

        // model
        guard let m = root["model"], m.objectValue != nil else { throw bad("no \"model\" object") }
        let type = m["type"]?.stringValue ?? (m["vocab"]?.arrayValue != nil ? "Unigram" : "")
        guard type == "Unigram" else {
            throw bad("model type \"\(type)\" is not supported by SentencePieceTokenizer (only Unigram)")
        }
        guard let vocabJSON = m["vocab"]?.arrayValue, !vocabJSON.isEmpty else { throw bad("model.vocab must be a non-empty array") }
        var vocab: [String] = []
        var scores: [Double] = []
        vocab.reserveCapacity(vocabJSON.count)
        scores.reserveCapacity(vocabJSON.count)
        for (i, entry) in vocabJSON.enumerated() {
            guard let pair = entry.arrayValue, pair.count == 2, let piece = pair[0].stringValue, let score = pair[1].doubleValue,
                  score.isFinite else {
                throw bad("model.vocab[\(i)] must be [piece, score]")
            }
            vocab.append(piece)
            scores.append(score)
        }
        var unk: Int?
        if let u = m["unk_id"], u != .null {
            guard let v = u.intValue, v >= 0, v < vocab.count else { throw bad("model.unk_id is not an index of the vocabulary") }
            unk = v
        }
        let byteFallback = m["byte_fallback"]?.boolValue ?? false
        model = HFUnigramModel(vocab: vocab, scores: scores, unkID: unk, byteFallback: byteFallback)
        unkID = unk

        // normalizer and pre-tokenizer
        normalizer = try root["normalizer"].flatMap { $0 == .null ? nil : try HFNormalizer.parse($0, file: file, path: "normalizer") }
        preTokenizer = try root["pre_tokenizer"].flatMap {
            $0 == .null ? nil : try HFPreTokenizer.parse($0, file: file, path: "pre_tokenizer")
        }

        // added tokens
        var tokens = vocab
        var hole = [Bool](repeating: false, count: vocab.count)
        var raw: [HFAddedToken] = []
        var normalizedTokens: [HFAddedToken] = []
        let addedJSON = root["added_tokens"]?.arrayValue ?? []
        // ids size the id -> token table: an added token may extend the vocabulary by at most the number
        // of added tokens (a small file naming id 16,777,215 must not allocate for it)
        let idLimit = vocab.count + addedJSON.count
        for (i, t) in addedJSON.enumerated() {
            guard let id = t["id"]?.intValue, id >= 0, let content = t["content"]?.stringValue, !content.isEmpty else {
                throw bad("added_tokens[\(i)] needs an id and a non-empty content")
            }
            guard id < idLimit else {
                throw DebertaError(.malformedFile, file: file, field: "added_tokens[\(i)]", "added_tokens[\(i)] \(JSONValue.quote(String(content.prefix(80)))) has id \(id), expected an id below \(idLimit) (the \(vocab.count) pieces of model.vocab plus the \(addedJSON.count) added tokens)")
            }
            let token = HFAddedToken(id: id, content: content,
                                     singleWord: t["single_word"]?.boolValue ?? false,
                                     lstrip: t["lstrip"]?.boolValue ?? false,
                                     rstrip: t["rstrip"]?.boolValue ?? false,
                                     normalized: t["normalized"]?.boolValue ?? !(t["special"]?.boolValue ?? false))
            if id >= tokens.count {
                hole += [Bool](repeating: true, count: id + 1 - tokens.count)
                tokens += [String](repeating: "", count: id + 1 - tokens.count)
            }
            tokens[id] = content
            hole[id] = false
            if token.normalized { normalizedTokens.append(token) } else { raw.append(token) }
        }
        idToToken = tokens
        isHoleTable = hole
        addedRaw = raw.isEmpty ? nil : HFAddedMatcher(tokens: raw, keys: raw.map { Array($0.content.utf8) })
        if normalizedTokens.isEmpty {
            addedNormalized = nil
        } else {
            let n = normalizer
            addedNormalized = HFAddedMatcher(tokens: normalizedTokens, keys: normalizedTokens.map { t in
                var s = HFAlignedString(Array(t.content.utf8))
                n?.apply(&s)
                return s.normalized
            })
        }
    }

    func isHole(_ id: Int) -> Bool { id >= 0 && id < isHoleTable.count && isHoleTable[id] }

    func normalizeForDisplay(_ text: String) -> String {
        var s = HFAlignedString(Array(text.utf8))
        normalizer?.apply(&s)
        return String(decoding: s.normalized, as: UTF8.self)
    }

    /// A piece of the text on its way through the pipeline; `id` is set for an added token.
    private struct Split {
        var string: HFAlignedString
        var id: Int?
    }

    func encode(_ text: String) -> Encoding {
        let input = Array(text.utf8)
        var splits = [Split(string: HFAlignedString(input), id: nil)]

        // 1. added tokens that match the raw text
        if let addedRaw {
            splits = splits.flatMap { s in
                addedRaw.split(s.string).map { Split(string: $0.0, id: $0.1) }
            }.filter { !$0.string.isEmpty }
        }
        // 2. normalize the other pieces, then match the normalized added tokens
        splits = splits.flatMap { s -> [Split] in
            guard s.id == nil else { return [s] }
            var str = s.string
            normalizer?.apply(&str)
            guard let addedNormalized else { return [Split(string: str, id: nil)] }
            return addedNormalized.split(str).map { Split(string: $0.0, id: $0.1) }
        }.filter { !$0.string.isEmpty }
        // 3. pre-tokenize
        if let preTokenizer {
            splits = splits.flatMap { s -> [Split] in
                guard s.id == nil else { return [s] }
                return preTokenizer.apply(s.string).map { Split(string: $0, id: nil) }
            }.filter { !$0.string.isEmpty }
        }
        // 4. the model, and offsets back to the input
        var result = Encoding()
        let converter = HFCharOffsets(input)
        for s in splits {
            let w = s.string
            if let id = s.id {
                result.ids.append(id)
                result.tokens.append(String(decoding: w.normalized, as: UTF8.self))
                result.offsets.append(converter.offsets(w, 0 ..< w.normalized.count))
                continue
            }
            for t in model.tokenize(w.normalized) {
                result.ids.append(t.id)
                result.tokens.append(t.token)
                result.offsets.append(converter.offsets(w, t.range))
            }
        }
        return result
    }
}

/// Byte offsets of a split -> Unicode scalar offsets of the input, as the library's
/// `BytesToCharOffsetConverter` (an end inside a character rounds down, an end at the input's end maps
/// to the scalar count; a start at the end leaves the byte offsets unconverted).
struct HFCharOffsets {
    private var charOf: [Int32]

    init(_ bytes: [UInt8]) {
        charOf = []
        charOf.reserveCapacity(bytes.count)
        var c: Int32 = -1
        for b in bytes {
            if b & 0xC0 != 0x80 { c += 1 }
            charOf.append(c)
        }
    }

    func offsets(_ w: HFAlignedString, _ normalizedRange: Range<Int>) -> Range<Int> {
        let o = w.originalRange(ofNormalized: normalizedRange) ?? normalizedRange
        let s = w.originalShift + o.lowerBound, e = w.originalShift + o.upperBound
        guard s < charOf.count else { return s ..< max(s, e) }
        let start = Int(charOf[s])
        let end: Int
        if e < charOf.count {
            end = Int(charOf[e])
        } else {
            end = (e >= 1 && e - 1 < charOf.count ? Int(charOf[e - 1]) : start) + 1
        }
        return start ..< max(start, end)
    }
}

// MARK: - Added tokens

struct HFAddedToken: Sendable {
    var id: Int
    var content: String
    var singleWord: Bool
    var lstrip: Bool
    var rstrip: Bool
    var normalized: Bool
}

/// Leftmost-longest matching of added tokens (the library's Aho-Corasick with `LeftmostLongest`), with
/// `single_word`, `lstrip` and `rstrip`.
struct HFAddedMatcher: Sendable {
    let tokens: [HFAddedToken]
    let trie: PieceTrie

    init(tokens: [HFAddedToken], keys: [[UInt8]]) {
        self.tokens = tokens
        trie = PieceTrie(keys: keys.enumerated().filter { !$0.element.isEmpty }.map { ($0.element, Int32($0.offset)) })
    }

    /// The string cut into pieces: added tokens (with their id) and the text between them.
    func split(_ s: HFAlignedString) -> [(HFAlignedString, Int?)] {
        let text = s.normalized
        if text.isEmpty { return [(s, nil)] }
        var pieces: [(Range<Int>, Int?)] = []
        var startOffset = 0
        var pos = 0
        text.withUnsafeBufferPointer { buf in
            while pos < buf.count {
                var best: (Int, Int32)?
                trie.forEachPrefix(buf, from: pos, to: buf.count) { len, v in best = (len, v) }
                guard let (len, index) = best else { pos += 1; continue }
                var start = pos
                var stop = pos + len
                pos = stop
                let token = tokens[Int(index)]
                if token.singleWord {
                    let startOK = start == 0 || !HFAddedMatcher.endsWithWord(text, start)
                    let stopOK = stop == text.count || !HFAddedMatcher.startsWithWord(text, stop)
                    if !startOK || !stopOK { continue }
                }
                if token.lstrip {
                    var k = start
                    while k > startOffset {  // not past the previous token: a run of spaces is walked once
                        var b = k - 1
                        while b > 0, text[b] & 0xC0 == 0x80 { b -= 1 }
                        guard decodeScalar(text, at: b).0.properties.isWhitespace else { break }
                        k = b
                    }
                    start = max(k, startOffset)
                }
                if token.rstrip {
                    while stop < text.count {
                        let (c, l) = decodeScalar(text, at: stop)
                        guard c.properties.isWhitespace else { break }
                        stop += l
                    }
                }
                if startOffset < start { pieces.append((startOffset ..< start, nil)) }
                pieces.append((start ..< stop, token.id))
                startOffset = stop
            }
        }
        if startOffset != text.count { pieces.append((startOffset ..< text.count, nil)) }
        return pieces.map { (s.slice($0.0), $0.1) }
    }

    private static func isWordScalar(_ c: Unicode.Scalar) -> Bool {
        c == "_" || c.properties.isAlphabetic || c.properties.numericType != nil
    }

    private static func endsWithWord(_ t: [UInt8], _ end: Int) -> Bool {
        var b = end - 1
        while b > 0, t[b] & 0xC0 == 0x80 { b -= 1 }
        return isWordScalar(decodeScalar(t, at: b).0)
    }

    private static func startsWithWord(_ t: [UInt8], _ start: Int) -> Bool {
        isWordScalar(decodeScalar(t, at: start).0)
    }
}

// MARK: - Model

/// The library's `Unigram` model: `encode_optimized` (Double scores; unknown characters score
/// `min_score - 10`, consecutive unknowns fused into one token), then byte fallback for unknown tokens
/// whose bytes all have `<0xXX>` pieces. Every vocabulary entry can match, whatever it is.
struct HFUnigramModel: Sendable {
    let vocab: [String]
    let scores: [Double]
    let ids: [String: Int]
    let trie: PieceTrie
    let minScore: Double
    let unkID: Int?
    let byteFallback: Bool
    let byteIDs: [Int]

    init(vocab: [String], scores: [Double], unkID: Int?, byteFallback: Bool) {
        self.vocab = vocab
        self.scores = scores
        var ids = [String: Int](minimumCapacity: vocab.count)
        for (i, p) in vocab.enumerated() { ids[p] = i }  // a later duplicate wins, as in the library's map
        self.ids = ids
        trie = PieceTrie(keys: ids.map { (Array($0.key.utf8), Int32($0.value)) }.filter { !$0.0.isEmpty })
        minScore = scores.min() ?? 0
        self.unkID = unkID
        self.byteFallback = byteFallback
        byteIDs = (0 ..< 256).map { ids[String(format: "<0x%02X>", $0)] ?? -1 }
    }

    struct Token {
        var id: Int
        var token: String
        var range: Range<Int>
    }

    func tokenize(_ text: [UInt8]) -> [Token] {
        let n = text.count
        if n == 0 { return [] }
        let unkScore = minScore - 10
        var bestScore = [Double](repeating: 0, count: n + 1)
        var startsAt = [Int](repeating: -1, count: n + 1)
        var bestID = [Int](repeating: -1, count: n + 1)
        text.withUnsafeBufferPointer { buf in
            var pos = 0
            while pos < n {
                let here = bestScore[pos]
                let mblen = min(utf8Length(buf[pos]), n - pos)
                var hasSingle = false
                trie.forEachPrefix(buf, from: pos, to: n) { len, v in
                    let k = pos + len
                    let candidate = scores[Int(v)] + here
                    if startsAt[k] == -1 || candidate > bestScore[k] {
                        bestScore[k] = candidate
                        startsAt[k] = pos
                        bestID[k] = Int(v)
                    }
                    if len == mblen { hasSingle = true }
                }
                if !hasSingle, let unk = unkID {
                    let k = pos + mblen
                    let candidate = unkScore + here
                    if startsAt[k] == -1 || candidate > bestScore[k] {
                        bestScore[k] = candidate
                        startsAt[k] = pos
                        bestID[k] = unk
                    }
                }
                pos += mblen
            }
        }
        // backtrack, fusing consecutive unknowns
        var pieces: [(Range<Int>, Int)] = []
        var end = n
        while end > 0 {
            let s = startsAt[end]
            if s < 0 { break }  // unreachable without an unk id: the rest cannot be tokenized
            if let unk = unkID, bestID[end] == unk, let last = pieces.last, last.1 == unk {
                pieces[pieces.count - 1].0 = s ..< last.0.upperBound
            } else {
                pieces.append((s ..< end, bestID[end]))
            }
            end = s
        }
        pieces.reverse()
        var out: [Token] = []
        out.reserveCapacity(pieces.count)
        for (r, id) in pieces {
            let string = String(decoding: text[r], as: UTF8.self)
            if let unk = unkID, id == unk, string != vocab[unk] {
                if let known = ids[string] {
                    out.append(Token(id: known, token: string, range: r))
                    continue
                }
                if byteFallback, text[r].allSatisfy({ byteIDs[Int($0)] >= 0 }) {
                    for b in text[r] { out.append(Token(id: byteIDs[Int(b)], token: vocab[byteIDs[Int(b)]], range: r)) }
                    continue
                }
            }
            out.append(Token(id: id, token: string, range: r))
        }
        return out
    }
}

// MARK: - Normalizers

enum HFPattern: Sendable {
    case string([UInt8])
    case regex(HFRegex)

    static func parse(_ v: JSONValue?, file: String, path: String) throws -> HFPattern {
        if let s = v?["String"]?.stringValue { return .string(Array(s.utf8)) }
        if let r = v?["Regex"]?.stringValue {
            do { return .regex(try HFRegex(r)) } catch let e as HFRegex.ParseError {
                throw DebertaError(e.isLimit ? .limit : .unsupported, file: file, field: path,
                                   "\(path): \(e.isLimit ? "regular expression over a limit" : "unsupported regular expression"): \(e)")
            }
        }
        throw DebertaError(.malformedFile, file: file, "\(path): pattern must be {\"String\": ...} or {\"Regex\": ...}")
    }

    /// Non-overlapping matches in `text`, as byte ranges, leftmost first.
    func matches(_ text: [UInt8]) -> [Range<Int>] {
        switch self {
        case let .string(p):
            guard !p.isEmpty, p.count <= text.count else { return [] }
            var out: [Range<Int>] = []
            var i = 0
            while i + p.count <= text.count {
                if text[i] == p[0], text[i ..< i + p.count].elementsEqual(p) {
                    out.append(i ..< i + p.count)
                    i += p.count
                } else {
                    i += 1
                }
            }
            return out
        case let .regex(re):
            var scalars: [Unicode.Scalar] = []
            var starts: [Int] = []
            var i = 0
            while i < text.count {
                let (c, l) = decodeScalar(text, at: i)
                scalars.append(c)
                starts.append(i)
                i += l
            }
            starts.append(text.count)
            return re.matches(in: scalars).map { starts[$0.lowerBound] ..< starts[$0.upperBound] }
        }
    }
}

indirect enum HFNormalizer: Sendable {
    case sequence([HFNormalizer])
    case strip(left: Bool, right: Bool)
    case precompiled(PrecompiledCharsmap)
    case replace(HFPattern, String)
    case unicode(Form)
    case lowercase
    case prepend(String)

    enum Form: Sendable { case nfc, nfd, nfkc, nfkd }

    static func parse(_ v: JSONValue, file: String, path: String) throws -> HFNormalizer {
        guard let type = v["type"]?.stringValue else { throw DebertaError(.malformedFile, file: file, "\(path): missing \"type\"") }
        switch type {
        case "Sequence":
            guard let list = v["normalizers"]?.arrayValue else { throw DebertaError(.malformedFile, file: file, "\(path).normalizers must be an array") }
            return .sequence(try list.enumerated().map { try parse($0.element, file: file, path: "\(path).normalizers[\($0.offset)]") })
        case "Strip":
            return .strip(left: v["strip_left"]?.boolValue ?? true, right: v["strip_right"]?.boolValue ?? true)
        case "Precompiled":
            guard let b64 = v["precompiled_charsmap"]?.stringValue, let data = Data(base64Encoded: b64) else {
                throw DebertaError(.malformedFile, file: file, "\(path).precompiled_charsmap must be base64")
            }
            return .precompiled(try PrecompiledCharsmap(blob: [UInt8](data), file: file))
        case "Replace":
            guard let content = v["content"]?.stringValue else { throw DebertaError(.malformedFile, file: file, "\(path).content must be a string") }
            return .replace(try HFPattern.parse(v["pattern"], file: file, path: path + ".pattern"), content)
        case "NFC": return .unicode(.nfc)
        case "NFD": return .unicode(.nfd)
        case "NFKC": return .unicode(.nfkc)
        case "NFKD": return .unicode(.nfkd)
        case "Lowercase": return .lowercase
        case "Prepend":
            guard let p = v["prepend"]?.stringValue else { throw DebertaError(.malformedFile, file: file, "\(path).prepend must be a string") }
            return .prepend(p)
        default:
            throw DebertaError(.unsupported, file: file, "\(path): normalizer \"\(type)\" is not supported")
        }
    }

    func apply(_ s: inout HFAlignedString) {
        switch self {
        case let .sequence(list):
            for n in list { n.apply(&s) }
        case let .strip(left, right):
            let chars = s.scalars()
            let n = chars.count
            var leading = 0, trailing = 0
            if left { while leading < n, chars[leading].0.properties.isWhitespace { leading += 1 } }
            if right { while trailing < n, chars[n - 1 - trailing].0.properties.isWhitespace { trailing += 1 } }
            guard leading > 0 || trailing > 0 else { return }
            var dest: [(Unicode.Scalar, Int)] = []
            for (i, c) in chars.enumerated() {
                if i < leading || i >= n - trailing { continue }
                dest.append((c.0, i == n - trailing - 1 ? -trailing : 0))
            }
            s.transformAll(with: dest, initialOffset: leading)
        case let .precompiled(cm):
            HFNormalizer.precompiled(cm, &s)
        case let .replace(pattern, content):
            let m = pattern.matches(s.normalized)
            if !m.isEmpty { s.replace(matches: m, with: content) }
        case let .unicode(form):
            HFNormalizer.unicodeNormalize(form, &s)
        case .lowercase:
            var dest: [(Unicode.Scalar, Int)] = []
            for (c, _) in s.scalars() {
                for (i, l) in c.properties.lowercaseMapping.unicodeScalars.enumerated() { dest.append((l, i > 0 ? 1 : 0)) }
            }
            s.transformAll(with: dest, initialOffset: 0)
        case let .prepend(p):
            if !s.isEmpty { s.prepend(p) }
        }
    }

    /// The library's `push_replacement`: new characters replace old ones one to one; extra new ones are
    /// insertions (change 1), missing ones are removals charged to the last character pushed so far.
    static func pushReplacement(_ dest: inout [(Unicode.Scalar, Int)], oldCount: Int, new: [Unicode.Scalar]) {
        let diff = new.count - oldCount
        for c in new { dest.append((c, 0)) }
        if diff > 0 {
            for k in 0 ..< diff { dest[dest.count - 1 - k].1 = 1 }
        } else if diff < 0, !dest.isEmpty {
            dest[dest.count - 1].1 += diff
        }
    }

    /// The library's Precompiled normalizer: per grapheme cluster shorter than 6 bytes, the replacement of
    /// the *shortest* charsmap key that is a prefix of the cluster replaces the whole cluster; otherwise
    /// each character is looked up alone.
    static func precompiled(_ cm: PrecompiledCharsmap, _ s: inout HFAlignedString) {
        let text = String(decoding: s.normalized, as: UTF8.self)
        var dest: [(Unicode.Scalar, Int)] = []
        dest.reserveCapacity(s.normalized.count)
        var modified = false
        func lookup(_ bytes: [UInt8]) -> [Unicode.Scalar]? {
            let hit: (Int, Int32)? = bytes.withUnsafeBufferPointer { cm.trie.shortestPrefix($0, from: 0, to: $0.count) }
            guard let (_, value) = hit else { return nil }
            let (start, count) = cm.replacement(at: value)
            return Array(String(decoding: cm.replacements[start ..< start + count], as: UTF8.self).unicodeScalars)
        }
        for g in text {
            let bytes = Array(g.utf8)
            if bytes.count < 6, let norm = lookup(bytes) {
                modified = true
                pushReplacement(&dest, oldCount: g.unicodeScalars.count, new: norm)
                continue
            }
            for c in g.unicodeScalars {
                var one: [UInt8] = []
                appendUTF8(c, to: &one)
                if let norm = lookup(one) {
                    modified = true
                    pushReplacement(&dest, oldCount: 1, new: norm)
                } else {
                    dest.append((c, 0))
                }
            }
        }
        if modified { s.transformAll(with: dest, initialOffset: 0) }
    }

    /// NFC / NFD / NFKC / NFKD per grapheme cluster (Foundation's normalization), aligned like the
    /// Precompiled replacements. The library aligns with its own decomposition tables; ids agree, offsets
    /// inside a cluster that changes may differ.
    static func unicodeNormalize(_ form: Form, _ s: inout HFAlignedString) {
        let text = String(decoding: s.normalized, as: UTF8.self)
        var dest: [(Unicode.Scalar, Int)] = []
        var modified = false
        for g in text {
            let str = String(g)
            let out: String
            switch form {
            case .nfc: out = str.precomposedStringWithCanonicalMapping
            case .nfd: out = str.decomposedStringWithCanonicalMapping
            case .nfkc: out = str.precomposedStringWithCompatibilityMapping
            case .nfkd: out = str.decomposedStringWithCompatibilityMapping
            }
            if out.unicodeScalars.elementsEqual(str.unicodeScalars) {
                for c in str.unicodeScalars { dest.append((c, 0)) }
            } else {
                modified = true
                pushReplacement(&dest, oldCount: str.unicodeScalars.count, new: Array(out.unicodeScalars))
            }
        }
        if modified { s.transformAll(with: dest, initialOffset: 0) }
    }
}

// MARK: - Pre-tokenizers

indirect enum HFPreTokenizer: Sendable {
    case sequence([HFPreTokenizer])
    case metaspace(replacement: Unicode.Scalar, prepend: Prepend, split: Bool)
    case punctuation(HFSplitBehavior)
    case whitespaceSplit
    case split(HFPattern, HFSplitBehavior, invert: Bool)

    enum Prepend: Sendable { case always, first, never }

    static func parse(_ v: JSONValue, file: String, path: String) throws -> HFPreTokenizer {
        guard let type = v["type"]?.stringValue else { throw DebertaError(.malformedFile, file: file, "\(path): missing \"type\"") }
        func behavior(_ key: String, _ def: HFSplitBehavior) throws -> HFSplitBehavior {
            guard let s = v[key]?.stringValue else { return def }
            guard let b = HFSplitBehavior(json: s) else { throw DebertaError(.malformedFile, file: file, "\(path).\(key): unknown \"\(s)\"") }
            return b
        }
        switch type {
        case "Sequence":
            guard let list = v["pretokenizers"]?.arrayValue else {
                throw DebertaError(.malformedFile, file: file, "\(path).pretokenizers must be an array")
            }
            return .sequence(try list.enumerated().map { try parse($0.element, file: file, path: "\(path).pretokenizers[\($0.offset)]") })
        case "Metaspace":
            let r = v["replacement"]?.stringValue ?? "\u{2581}"
            guard r.unicodeScalars.count == 1, let scalar = r.unicodeScalars.first else {
                throw DebertaError(.malformedFile, file: file, "\(path).replacement must be one character")
            }
            let prepend: Prepend
            switch v["prepend_scheme"]?.stringValue {
            case "always": prepend = .always
            case "first": prepend = .first
            case "never": prepend = .never
            case nil: prepend = (v["add_prefix_space"]?.boolValue ?? true) ? .always : .never
            case let other?: throw DebertaError(.malformedFile, file: file, "\(path).prepend_scheme: unknown \"\(other)\"")
            }
            return .metaspace(replacement: scalar, prepend: prepend, split: v["split"]?.boolValue ?? true)
        case "Punctuation":
            return .punctuation(try behavior("behavior", .isolated))
        case "WhitespaceSplit":
            return .whitespaceSplit
        case "Split":
            return .split(try HFPattern.parse(v["pattern"], file: file, path: path + ".pattern"),
                          try behavior("behavior", .removed), invert: v["invert"]?.boolValue ?? false)
        default:
            throw DebertaError(.unsupported, file: file, "\(path): pre-tokenizer \"\(type)\" is not supported")
        }
    }

    func apply(_ s: HFAlignedString) -> [HFAlignedString] {
        switch self {
        case let .sequence(list):
            var splits = [s]
            for p in list { splits = splits.flatMap { p.apply($0) }.filter { !$0.isEmpty } }
            return splits
        case let .metaspace(replacement, prepend, split):
            var w = s
            let spaces = w.normalized.indices.filter { w.normalized[$0] == 0x20 }.map { $0 ..< $0 + 1 }
            if !spaces.isEmpty { w.replace(matches: spaces, with: String(Character(replacement))) }
            let startsWithReplacement = !w.isEmpty && decodeScalar(w.normalized, at: 0).0 == replacement
            switch prepend {
            case .always: if !startsWithReplacement { w.prepend(String(Character(replacement))) }
            case .first: if !startsWithReplacement, w.originalShift == 0 { w.prepend(String(Character(replacement))) }
            case .never: break
            }
            return split ? w.split(behavior: .mergedWithNext) { $0 == replacement } : [w]
        case let .punctuation(behavior):
            return s.split(behavior: behavior) { c in
                switch c.properties.generalCategory {
                case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
                     .initialPunctuation, .finalPunctuation, .otherPunctuation: return true
                default: return c.isASCII && c.properties.generalCategory != .control
                    && !c.properties.isAlphabetic && !c.properties.isWhitespace && c.properties.numericType == nil
                }
            }
        case .whitespaceSplit:
            return s.split(behavior: .removed) { $0.properties.isWhitespace }
        case let .split(pattern, behavior, invert):
            let m = pattern.matches(s.normalized)
            var pieces: [(Range<Int>, Bool)] = []
            var last = 0
            for r in m where !r.isEmpty {
                if last < r.lowerBound { pieces.append((last ..< r.lowerBound, invert)) }
                pieces.append((r, !invert))
                last = r.upperBound
            }
            if last < s.normalized.count { pieces.append((last ..< s.normalized.count, invert)) }
            return s.split(matches: pieces, behavior: behavior)
        }
    }
}
