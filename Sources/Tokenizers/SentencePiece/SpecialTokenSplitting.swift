extension SentencePieceTokenizer {
    /// DeBERTa's special tokens and their ids in an spm.model checkpoint; `[MASK]` comes from
    /// added_tokens.json (128000 in DeBERTa-v3).
    public static func debertaSpecialTokens(mask: Int) -> [String: Int] {
        ["[PAD]": 0, "[CLS]": 1, "[SEP]": 2, "[UNK]": 3, "[MASK]": mask]
    }

    /// Encodes `text` with special tokens written in it, by the project's rule (Fixtures/README.md,
    /// "Special tokens written in text"): the text is split on exact occurrences of the keys of
    /// `specialTokens` (leftmost first, no word boundaries needed); a token in `stripLeft` also takes the
    /// Unicode white space right before it (not reaching into a previous token); every other piece of text
    /// is encoded on its own with `encode(_:)` (so it gets its own dummy prefix); each special token becomes
    /// its id, with its own text as token and span. Reproduces `Fixtures/tokenizers/spm/special.expected.json`.
    public func encode(_ text: String, specialTokens: [String: Int], stripLeft: Set<String> = ["[MASK]"]) -> Encoding {
        let scalars = Array(text.unicodeScalars)
        let keys = specialTokens.keys.map { Array($0.unicodeScalars) }.filter { !$0.isEmpty }
        var result = Encoding()
        var pos = 0  // scalar index after the last special token
        var chunkStart = 0
        func flush(_ end: Int) {
            guard chunkStart < end else { return }
            var view = String.UnicodeScalarView()
            view.append(contentsOf: scalars[chunkStart ..< end])
            let e = encode(String(view))
            result.ids += e.ids
            result.tokens += e.tokens
            result.offsets += e.offsets.map { ($0.lowerBound + chunkStart) ..< ($0.upperBound + chunkStart) }
        }
        var i = 0
        while i < scalars.count {
            // the longest key starting here (keys are not prefixes of each other in DeBERTa, but be exact)
            var match: [Unicode.Scalar]?
            for k in keys where k.count <= scalars.count - i && (match == nil || k.count > match!.count) {
                if scalars[i ..< i + k.count].elementsEqual(k) { match = k }
            }
            guard let key = match else { i += 1; continue }
            let name = String(String.UnicodeScalarView(key))
            var start = i
            if stripLeft.contains(name) {
                while start > pos, scalars[start - 1].properties.isWhitespace { start -= 1 }
            }
            flush(start)
            result.ids.append(specialTokens[name]!)
            result.tokens.append(name)
            result.offsets.append(i ..< i + key.count)
            i += key.count
            pos = i
            chunkStart = i
        }
        flush(scalars.count)
        return result
    }
}
