/// The result of tokenizing a piece of text (no special tokens added).
public struct Encoding: Sendable, Equatable {
    public var ids: [Int]
    /// The vocabulary string of each token (e.g. "▁Hello", "Ġworld", "<0x0A>").
    public var tokens: [String]
    /// Each token's span in the original text, in Unicode scalars (Python `str` indices), end exclusive.
    /// Spans slice the original text; tokens that cover no original text (e.g. an inserted "▁") have an empty span.
    public var offsets: [Range<Int>]

    public init(ids: [Int] = [], tokens: [String] = [], offsets: [Range<Int>] = []) {
        self.ids = ids
        self.tokens = tokens
        self.offsets = offsets
    }
}

/// A subword tokenizer: SentencePiece unigram (spm.model), byte-level BPE (vocab.json + merges.txt),
/// or a tokenizer.json model. Immutable and usable from several threads.
public protocol SubwordTokenizer: Sendable {
    /// Tokenizes `text` as the reference library does for one text without special tokens.
    func encode(_ text: String) -> Encoding
    /// The id of a vocabulary string, nil if absent.
    func id(of token: String) -> Int?
    /// The vocabulary string of an id, nil if out of range.
    func token(of id: Int) -> String?
    /// Number of ids (the largest id + 1).
    var vocabularySize: Int { get }
    /// True when `encode` itself recognizes the special tokens written in the text (see the extension).
    var handlesSpecialTokensInText: Bool { get }
}

extension SubwordTokenizer {
    /// True when `encode` itself recognizes the special tokens written in the text (a tokenizer.json with
    /// its added tokens); the DeBERTa input layer then passes whole texts instead of splitting them first.
    public var handlesSpecialTokensInText: Bool { false }
}
