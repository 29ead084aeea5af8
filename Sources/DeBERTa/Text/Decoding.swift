import Tokenizers

extension TextEncoder {
    /// Ids back to text, as transformers' `tokenizer.decode` does for DeBERTa: SentencePiece pieces join
    /// with U+2581 read as a space (byte pieces `<0xNN>` become their bytes) and the first piece's space
    /// dropped; byte-level BPE tokens map back to their bytes. Special tokens are kept as written unless
    /// `skipSpecialTokens`.
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = false) -> String {
        let specials = Set([special.cls, special.sep, special.pad, special.unk] + (special.mask.map { [$0] } ?? []))
        let names = Dictionary(special.inText.map { ($0.id, $0.text) }, uniquingKeysWith: { a, _ in a })
        var tokens: [String] = []
        for id in ids {
            if specials.contains(id) {
                if skipSpecialTokens { continue }
                if let name = names[id] { tokens.append(name); continue }
            }
            // Ids past the tokenizer's vocabulary (a model's padded rows) decode to nothing, as in transformers.
            if let token = tokenizer.token(of: id) { tokens.append(token) }
        }
        return tokensToString(tokens)
    }

    /// Tokens (vocabulary strings) back to text: transformers' `convert_tokens_to_string`.
    public func tokensToString(_ tokens: [String]) -> String {
        if tokenizer is ByteLevelBPETokenizer {
            var bytes: [UInt8] = []
            for t in tokens {
                if let b = ByteLevelAlphabet.decode(t) { bytes += b } else { bytes += Array(t.utf8) }
            }
            return String(decoding: bytes, as: UTF8.self)
        }
        var bytes: [UInt8] = []
        for (i, t) in tokens.enumerated() {
            var piece = Array(t.unicodeScalars)
            if piece.count == 6, t.hasPrefix("<0x"), t.hasSuffix(">"), let b = UInt8(String(t.dropFirst(3).dropLast()), radix: 16) {
                bytes.append(b)
                continue
            }
            if i == 0, piece.first == "\u{2581}" { piece.removeFirst() }
            let text = String(String.UnicodeScalarView(piece)).replacingOccurrences(of: "\u{2581}", with: " ")
            bytes += Array(text.utf8)
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

extension TextEncoder {
    /// The pre-tokenizer's word of each token (transformers' `word_ids`): a SentencePiece word starts at a
    /// piece beginning with U+2581, a byte-level BPE word at a token beginning with "Ġ"; special tokens
    /// written in the text are words of their own.
    public func wordIds(_ e: Encoding) -> [Int] {
        let marker: Character = tokenizer is ByteLevelBPETokenizer ? "Ġ" : "\u{2581}"
        let specials = Set(special.inText.map(\.text))
        var out: [Int] = []
        var word = -1
        var previousSpecial = false
        for t in e.tokens {
            let isSpecial = specials.contains(t)
            if out.isEmpty || t.first == marker || isSpecial || previousSpecial { word += 1 }
            out.append(word)
            previousSpecial = isSpecial
        }
        return out
    }
}

extension TextEncoder {
    /// `tokenize` with transformers' offsets for SentencePiece pieces. Its normalizer replaces every run of two
    /// or more whitespace characters, and every single \n, \r or \t, by one space that keeps the offset of the
    /// run's last character, and its Metaspace pre-tokenizer maps a piece's leading U+2581 to that space, or to
    /// the word's first character for the dummy prefix of a text's first word. So a piece after whitespace
    /// starts at the last whitespace character before its text ("x   Paris": the "▁" of "Paris" is 3 ..< 4,
    /// "▁of" after "[MASK] " starts at the space), where SentencePiece's own offsets cover the whole run.
    /// Byte-level BPE offsets are kept.
    public func tokenizeWithPipelineOffsets(_ text: String) -> Encoding {
        var e = tokenize(text)
        guard !(tokenizer is ByteLevelBPETokenizer) else { return e }
        let scalars = Array(text.unicodeScalars)
        func isSpace(_ i: Int) -> Bool { scalars[i].properties.isWhitespace }
        var previousEnd = 0
        for i in e.offsets.indices {
            let span = e.offsets[i]
            defer { previousEnd = max(previousEnd, e.offsets[i].upperBound) }
            guard e.tokens[i].hasPrefix("\u{2581}") else { continue }
            let s = span.lowerBound
            // The first character of the piece's own text (span.upperBound when the span is all whitespace).
            var content = s
            while content < span.upperBound, content < scalars.count, isSpace(content) { content += 1 }
            if content > s {
                e.offsets[i] = (content - 1) ..< span.upperBound
            } else if s > 0, s - 1 >= previousEnd, s - 1 < scalars.count, isSpace(s - 1) {
                e.offsets[i] = (s - 1) ..< max(span.upperBound, s)
            } else if span.isEmpty, s < scalars.count {
                e.offsets[i] = s ..< s + 1
            }
        }
        return e
    }
}
