import Checkpoint
import Tokenizers

/// DeBERTa's special tokens with their ids in this model's vocabulary.
public struct SpecialTokens: Sendable {
    public var cls: Int
    public var sep: Int
    public var pad: Int
    public var unk: Int
    public var mask: Int?
    /// Strings recognized in text, longest first, with their ids.
    public var inText: [(text: String, id: Int)]
    public static let maskText = "[MASK]"
}

/// One encoded input: `[CLS] A [SEP]` or `[CLS] A [SEP] B [SEP]`.
public struct EncodedInput: Sendable {
    public var ids: [Int]
    public var tokens: [String]
    public var typeIds: [Int]
    /// Span in the original text of each token (nil for the added [CLS]/[SEP]).
    public var offsets: [Range<Int>?]
    /// 0 for tokens of the first text, 1 for the second, nil for added special tokens.
    public var sequence: [Int?]
    /// Tokens cut off by truncation (empty when the whole text fits).
    public var truncated: [TruncatedTokens] = []
    public var length: Int { ids.count }

    public init(ids: [Int], tokens: [String], typeIds: [Int], offsets: [Range<Int>?], sequence: [Int?]) {
        self.ids = ids
        self.tokens = tokens
        self.typeIds = typeIds
        self.offsets = offsets
        self.sequence = sequence
    }
}

/// What truncation removed from one text of an input: its tokens and where they start in the text.
public struct TruncatedTokens: Sendable {
    /// 0 for the first text, 1 for the pair.
    public var sequence: Int
    public var tokens: [String]
    /// Character offset of the first dropped token.
    public var fromCharacter: Int
    /// The input's length before truncation and the limit it was cut to.
    public var totalTokens: Int
    public var limit: Int

    /// A one-line warning naming the dropped tokens.
    public var warning: String {
        let shown = tokens.prefix(5).map { "\"\($0)\"" }.joined(separator: " ") + (tokens.count > 5 ? " ..." : "")
        return "input of \(totalTokens) tokens truncated to \(limit): dropped \(tokens.count) tokens of the \(sequence == 0 ? "text" : "pair") from character \(fromCharacter) (\(shown))"
    }
}

public enum Truncation: String, Sendable, CaseIterable {
    case longestFirst = "longest_first"
    case onlyFirst = "only_first"
    case onlySecond = "only_second"
    case none
}

/// Text → model inputs for a DeBERTa checkpoint: its tokenizer, special tokens written in the text
/// ([MASK] absorbs the white space on its left), the `[CLS] A [SEP] B [SEP]` frame with token types,
/// truncation and padding.
public final class TextEncoder: Sendable {
    public let tokenizer: any SubwordTokenizer
    public let special: SpecialTokens
    /// The longest input the model takes, special tokens included; nil when it takes any length (relative
    /// positions without absolute position embeddings: transformers runs such models on the whole text).
    public let maxLength: Int?

    public init(tokenizer: any SubwordTokenizer, special: SpecialTokens, maxLength: Int?) {
        self.tokenizer = tokenizer
        self.special = special
        self.maxLength = maxLength
    }

    /// Tokenizes text without adding [CLS]/[SEP]; special tokens written in the text become their ids.
    public func tokenize(_ text: String) -> Encoding {
        if tokenizer.handlesSpecialTokensInText { return tokenizer.encode(text) }
        let scalars = Array(text.unicodeScalars)
        var out = Encoding()
        var chunkStart = 0
        var i = 0
        func flush(_ end: Int) {
            guard end > chunkStart else { return }
            let chunk = String(String.UnicodeScalarView(scalars[chunkStart ..< end]))
            let e = tokenizer.encode(chunk)
            out.ids += e.ids
            out.tokens += e.tokens
            out.offsets += e.offsets.map { ($0.lowerBound + chunkStart) ..< ($0.upperBound + chunkStart) }
        }
        while i < scalars.count {
            var matched: (text: String, id: Int)?
            if scalars[i] == "[" {
                for candidate in special.inText {
                    let c = Array(candidate.text.unicodeScalars)
                    if i + c.count <= scalars.count && Array(scalars[i ..< i + c.count]) == c { matched = candidate; break }
                }
            }
            guard let m = matched else { i += 1; continue }
            var end = i
            if m.text == SpecialTokens.maskText {
                while end > chunkStart && scalars[end - 1].properties.isWhitespace { end -= 1 }
            }
            flush(end)
            let length = m.text.unicodeScalars.count
            out.ids.append(m.id)
            out.tokens.append(m.text)
            out.offsets.append(i ..< i + length)
            i += length
            chunkStart = i
        }
        flush(scalars.count)
        return out
    }

    /// `[CLS] A [SEP]` or `[CLS] A [SEP] B [SEP]`, truncated to `maxLength` (default: the model's; none for
    /// a model that takes any length). What truncation drops is listed in `truncated`.
    public func encode(_ first: String, pair second: String? = nil, truncation: Truncation = .longestFirst,
                       maxLength limit: Int? = nil) throws -> EncodedInput {
        try frame(tokenize(first), second.map(tokenize), truncation: truncation, maxLength: limit ?? maxLength)
    }

    /// The frame around already tokenized texts, truncated to `limit` tokens (nil: no limit).
    public func frame(_ first: Encoding, _ second: Encoding?, truncation: Truncation = .longestFirst, maxLength limit: Int?) throws -> EncodedInput {
        var a = first
        var b = second
        let added = b == nil ? 2 : 3
        let total = a.ids.count + (b?.ids.count ?? 0) + added
        var dropped: [TruncatedTokens] = []
        if let limit, total > limit {
            guard limit >= added else { throw DebertaError(.invalidInput, file: "", field: "max_length", "max length \(limit) leaves no room for the special tokens") }
            var excess = total - limit
            var keepA = a.ids.count, keepB = b?.ids.count ?? 0
            switch truncation {
            case .none:
                throw DebertaError(.limit, file: "", "input of \(total) tokens exceeds the model's maximum of \(limit)")
            case .onlySecond:
                guard b != nil, keepB > excess else {
                    throw DebertaError(.limit, file: "", "only_second truncation cannot fit the first text (\(a.ids.count) tokens) within \(limit)")
                }
                keepB -= excess
            case .onlyFirst:
                guard keepA > excess else {
                    throw DebertaError(.limit, file: "", "only_first truncation cannot fit the second text (\(keepB) tokens) within \(limit)")
                }
                keepA -= excess
            case .longestFirst:
                // transformers' rule: trim the first text while it is strictly longer, else the second.
                while excess > 0 {
                    if b != nil, keepA <= keepB { keepB -= 1 } else { keepA -= 1 }
                    excess -= 1
                }
            }
            func cut(_ e: inout Encoding, keep: Int, sequence: Int) {
                guard keep < e.ids.count else { return }
                dropped.append(TruncatedTokens(sequence: sequence, tokens: Array(e.tokens[keep...]), fromCharacter: e.offsets[keep].lowerBound,
                                               totalTokens: total, limit: limit))
                e.dropLast(e.ids.count - keep)
            }
            cut(&a, keep: keepA, sequence: 0)
            if var second = b { cut(&second, keep: keepB, sequence: 1); b = second }
        }
        var input = EncodedInput(ids: [special.cls], tokens: ["[CLS]"], typeIds: [0], offsets: [nil], sequence: [nil])
        input.append(a, type: 0, sequence: 0)
        input.appendSeparator(special.sep, type: 0)
        if let b {
            input.append(b, type: 1, sequence: 1)
            input.appendSeparator(special.sep, type: 1)
        }
        input.truncated = dropped
        return input
    }

    /// Token ranges of overlapping windows over `count` tokens, `size` tokens each, consecutive windows
    /// sharing `stride` tokens; the last window ends at the end (the tokenizers library's overflow rule).
    public static func windows(count: Int, size: Int, stride: Int) throws -> [Range<Int>] {
        guard size > 0 else { throw DebertaError(.limit, file: "", "no room left for the text in the model's window") }
        guard stride >= 0, stride < size else {
            throw DebertaError(.invalidInput, file: "", "a stride of \(stride) tokens does not fit windows of \(size) text tokens (it must be smaller)")
        }
        var out: [Range<Int>] = []
        var begin = 0
        repeat {
            let end = min(count, begin + size)
            out.append(begin ..< end)
            if end >= count { break }
            begin += size - stride
        } while true
        return out
    }

    /// Pads a batch to its longest input with [PAD] (attention mask 0).
    public func batch(_ inputs: [EncodedInput], choices: Int? = nil) -> ModelInputs {
        let length = inputs.map(\.length).max() ?? 0
        var ids: [Int] = [], mask: [Int] = [], types: [Int] = []
        for input in inputs {
            let pad = length - input.length
            ids += input.ids + [Int](repeating: special.pad, count: pad)
            mask += [Int](repeating: 1, count: input.length) + [Int](repeating: 0, count: pad)
            types += input.typeIds + [Int](repeating: 0, count: pad)
        }
        return ModelInputs(inputIds: ids, attentionMask: mask, tokenTypeIds: types, batch: inputs.count, length: length, choices: choices)
    }

    /// The inputs one after another, each at its own length (no padding rows).
    public func packed(_ inputs: [EncodedInput], choices: Int? = nil) -> ModelInputs {
        ModelInputs(packed: inputs.map(\.ids), tokenTypeIds: inputs.map(\.typeIds), choices: choices)
    }
}


extension Encoding {
    /// Tokens `range` of this encoding.
    public func slice(_ range: Range<Int>) -> Encoding {
        Encoding(ids: Array(ids[range]), tokens: Array(tokens[range]), offsets: Array(offsets[range]))
    }

    mutating func dropLast(_ n: Int) {
        ids.removeLast(min(n, ids.count))
        tokens.removeLast(min(n, tokens.count))
        offsets.removeLast(min(n, offsets.count))
    }
}

extension EncodedInput {
    mutating func appendSeparator(_ id: Int, type: Int) {
        ids.append(id); tokens.append("[SEP]"); typeIds.append(type); offsets.append(nil); sequence.append(nil)
    }

    mutating func append(_ e: Encoding, type: Int, sequence s: Int) {
        ids += e.ids
        tokens += e.tokens
        typeIds += [Int](repeating: type, count: e.ids.count)
        offsets += e.offsets.map { Optional($0) }
        sequence += [Int?](repeating: s, count: e.ids.count)
    }
}
