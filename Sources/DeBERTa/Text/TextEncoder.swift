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
    public var length: Int { ids.count }
}

public enum Truncation: String, Sendable, CaseIterable {
    case longestFirst = "longest_first"
    case onlySecond = "only_second"
    case none
}

/// Text → model inputs for a DeBERTa checkpoint: its tokenizer, special tokens written in the text
/// ([MASK] absorbs the white space on its left), the `[CLS] A [SEP] B [SEP]` frame with token types,
/// truncation and padding.
public final class TextEncoder: Sendable {
    public let tokenizer: any SubwordTokenizer
    public let special: SpecialTokens
    /// The longest input the model takes, special tokens included.
    public let maxLength: Int

    public init(tokenizer: any SubwordTokenizer, special: SpecialTokens, maxLength: Int) {
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

    /// `[CLS] A [SEP]` or `[CLS] A [SEP] B [SEP]`, truncated to `maxLength` (default: the model's).
    public func encode(_ first: String, pair second: String? = nil, truncation: Truncation = .longestFirst,
                       maxLength limit: Int? = nil) throws -> EncodedInput {
        var a = tokenize(first)
        var b = second.map(tokenize)
        let budget = (limit ?? maxLength) - (b == nil ? 2 : 3)
        guard budget >= 0 else { throw DebertaError(.invalidInput, file: "", field: "max_length", "max length \(limit ?? maxLength) leaves no room for the special tokens") }
        var excess = a.ids.count + (b?.ids.count ?? 0) - budget
        if excess > 0 {
            switch truncation {
            case .none:
                throw DebertaError(.limit, file: "", "input of \(a.ids.count + (b?.ids.count ?? 0) + (b == nil ? 2 : 3)) tokens exceeds the model's maximum of \(limit ?? maxLength)")
            case .onlySecond:
                guard var second = b, second.ids.count > excess else {
                    throw DebertaError(.limit, file: "", "only_second truncation cannot fit the first text (\(a.ids.count) tokens) within \(limit ?? maxLength)")
                }
                second.dropLast(excess)
                b = second
            case .longestFirst:
                // transformers' rule: trim the first text while it is strictly longer, else the second.
                while excess > 0 {
                    if var second = b, a.ids.count <= second.ids.count {
                        second.dropLast(1)
                        b = second
                    } else {
                        a.dropLast(1)
                    }
                    excess -= 1
                }
            }
        }
        var input = EncodedInput(ids: [special.cls], tokens: ["[CLS]"], typeIds: [0], offsets: [nil], sequence: [nil])
        input.append(a, type: 0, sequence: 0)
        input.ids.append(special.sep); input.tokens.append("[SEP]"); input.typeIds.append(0); input.offsets.append(nil); input.sequence.append(nil)
        if let b {
            input.append(b, type: 1, sequence: 1)
            input.ids.append(special.sep); input.tokens.append("[SEP]"); input.typeIds.append(1); input.offsets.append(nil); input.sequence.append(nil)
        }
        return input
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
}


extension Encoding {
    mutating func dropLast(_ n: Int) {
        ids.removeLast(min(n, ids.count))
        tokens.removeLast(min(n, tokens.count))
        offsets.removeLast(min(n, offsets.count))
    }
}

extension EncodedInput {
    mutating func append(_ e: Encoding, type: Int, sequence s: Int) {
        ids += e.ids
        tokens += e.tokens
        typeIds += [Int](repeating: type, count: e.ids.count)
        offsets += e.offsets.map { Optional($0) }
        sequence += [Int?](repeating: s, count: e.ids.count)
    }
}
