/// SentencePiece's unigram model: the single-pass Viterbi of `Model::EncodeOptimized`
/// (unigram_model.cc) over the normalized UTF-8 bytes. Path scores are Float sums (the source reads as if
/// the user-defined branch `length * max_score - 0.1` promoted the sum to double, but the released library
/// behaves as Float arithmetic: with Double sums, ties between equal-score paths of repeated characters,
/// e.g. "aaaa…", resolve differently from sentencepiece 0.2.3, with Float sums they match on 85k lines).
/// A user-defined piece scores `length * max_score - 0.1`, an unknown character `min_score - 10`.
/// Ties keep the earlier candidate (strict `>`); candidates are visited by start position, then by length.
struct SPUnigramModel: Sendable {
    /// pieces (normal and user-defined) -> id, with the score in each slot (NaN for user-defined pieces)
    let trie: PieceTrie
    let unkID: Int32
    let minScore: Float
    let maxScore: Float

    init(pieces: [(bytes: [UInt8], value: Int32)], scores: [Float], isUserDefined: [Bool], unkID: Int32,
         minScore: Float, maxScore: Float) {
        var trie = PieceTrie(keys: pieces)
        trie.setScores { isUserDefined[Int($0)] ? .nan : scores[Int($0)] }
        self.trie = trie
        self.unkID = unkID
        self.minScore = minScore
        self.maxScore = maxScore
    }

    static let unkPenalty: Float = 10

    /// Runs the Viterbi search over `text[0 ..< n]`; the best path is left in `s.path[0 ..< count]` in
    /// reverse order (last piece first); returns `count`. Unknown characters are single pieces with
    /// `unkID` (merging and byte fallback happen when the pieces are populated).
    func encode(_ text: UnsafePointer<UInt8>, count n: Int, scratch s: SPScratch) -> Int {
        if n == 0 { return 0 }
        s.reserveViterbi(n)
        let best = s.best
        let unkScore = minScore - SPUnigramModel.unkPenalty
        best[0] = SPScratch.BestNode(score: 0, start: -1, id: -1)
        for i in 1 ... n { best[i].start = -1 }
        trie.slots.withUnsafeBufferPointer { slots in
            var pos = 0
            while pos < n {
                let here = best[pos].score
                let mblen = min(utf8Length(text[pos]), n - pos)
                var hasSingle = false
                var node = 0
                var k = pos
                while k < n {
                    let t = Int(slots[node].base) + Int(text[k])
                    guard slots[t].check == Int32(node) else { break }
                    node = t
                    k += 1
                    let v = slots[t].value
                    if v < 0 { continue }
                    let length = k - pos
                    var score = slots[t].score  // NaN marks a user-defined piece
                    if score.isNaN { score = Float(length) * maxScore - 0.1 }
                    let candidate = score + here
                    if best[k].start == -1 || candidate > best[k].score {
                        best[k] = SPScratch.BestNode(score: candidate, start: Int32(pos), id: v)
                    }
                    if length == mblen { hasSingle = true }
                }
                if !hasSingle {
                    let e = pos + mblen
                    let candidate = unkScore + here
                    if best[e].start == -1 || candidate > best[e].score {
                        best[e] = SPScratch.BestNode(score: candidate, start: Int32(pos), id: unkID)
                    }
                }
                pos += mblen
            }
        }
        var m = 0
        var end = n
        let path = s.path
        while end > 0 {
            let b = best[end]
            path[m] = SPScratch.PathPiece(start: b.start, end: Int32(end), id: b.id)
            m += 1
            end = Int(b.start)
        }
        return m
    }
}
