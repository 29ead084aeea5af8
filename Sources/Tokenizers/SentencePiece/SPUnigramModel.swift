/// SentencePiece's unigram model: the single-pass Viterbi of `Model::EncodeOptimized`
/// (unigram_model.cc) over the normalized UTF-8 bytes. Path scores are Float sums (the source reads as if
/// the user-defined branch `length * max_score - 0.1` promoted the sum to double, but the released library
/// behaves as Float arithmetic: with Double sums, ties between equal-score paths of repeated characters,
/// e.g. "aaaa…", resolve differently from sentencepiece 0.2.3, with Float sums they match on 85k lines).
/// A user-defined piece scores `length * max_score - 0.1`, an unknown character `min_score - 10`.
/// Ties keep the earlier candidate (strict `>`); candidates are visited by start position, then by length.
struct SPUnigramModel: Sendable {
    let trie: PieceTrie
    let scores: [Float]
    let isUserDefined: [Bool]
    let unkID: Int32
    let minScore: Float
    let maxScore: Float

    static let unkPenalty: Float = 10

    /// One piece of the best path: normalized byte range and id (unknown characters have `unkID`,
    /// one per character; merging and byte fallback happen later).
    struct Piece {
        var start: Int32
        var end: Int32
        var id: Int32
    }

    /// Reusable per-call buffers.
    struct Scratch {
        var score: [Float] = []
        var startsAt: [Int32] = []
        var id: [Int32] = []
    }

    func encode(_ text: UnsafeBufferPointer<UInt8>, scratch: inout Scratch, into out: inout [Piece]) {
        out.removeAll(keepingCapacity: true)
        let n = text.count
        if n == 0 { return }
        let unkScore = minScore - SPUnigramModel.unkPenalty
        scratch.score.removeAll(keepingCapacity: true)
        scratch.startsAt.removeAll(keepingCapacity: true)
        scratch.id.removeAll(keepingCapacity: true)
        scratch.score.append(contentsOf: repeatElement(0, count: n + 1))
        scratch.startsAt.append(contentsOf: repeatElement(-1, count: n + 1))
        scratch.id.append(contentsOf: repeatElement(-1, count: n + 1))
        scores.withUnsafeBufferPointer { scores in
        isUserDefined.withUnsafeBufferPointer { userDefined in
        scratch.score.withUnsafeMutableBufferPointer { best in
        scratch.startsAt.withUnsafeMutableBufferPointer { startsAt in
        scratch.id.withUnsafeMutableBufferPointer { ids in
        trie.slots.withUnsafeBufferPointer { slots in
            var pos = 0
            while pos < n {
                let here = best[pos]
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
                    let score: Float = userDefined[Int(v)]
                        ? Float(length) * maxScore - 0.1
                        : scores[Int(v)]
                    let candidate = score + here
                    if startsAt[k] == -1 || candidate > best[k] {
                        best[k] = candidate
                        startsAt[k] = Int32(pos)
                        ids[k] = v
                    }
                    if length == mblen { hasSingle = true }
                }
                if !hasSingle {
                    let e = pos + mblen
                    let candidate = unkScore + here
                    if startsAt[e] == -1 || candidate > best[e] {
                        best[e] = candidate
                        startsAt[e] = Int32(pos)
                        ids[e] = unkID
                    }
                }
                pos += mblen
            }
            var end = n
            while end > 0 {
                let s = Int(startsAt[end])
                out.append(Piece(start: Int32(s), end: Int32(end), id: ids[end]))
                end = s
            }
        }}}}}}
        out.reverse()
    }
}
