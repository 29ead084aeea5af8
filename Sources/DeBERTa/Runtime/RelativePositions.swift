import Foundation

/// Relative positions of DeBERTa's disentangled attention.
public enum RelativePositions {
    /// transformers' `make_log_bucket_position` (modeling_deberta_v2.py), computed in float32 as torch does
    /// with its default dtype: distances under `buckets/2` are kept, longer ones are log-compressed.
    public static func logBucket(_ relative: Int, buckets: Int, maxPosition: Int) -> Int {
        let mid = buckets / 2
        let sign = relative > 0 ? 1 : (relative < 0 ? -1 : 0)
        let absPos = (relative < mid && relative > -mid) ? mid - 1 : abs(relative)
        if absPos <= mid { return relative }
        let ratio = Float(absPos) / Float(mid)
        let base = Float(Double(maxPosition - 1) / Double(mid))
        let logPos = (logf(ratio) / logf(base) * Float(mid - 1)).rounded(.up) + Float(mid)
        return Int(logPos) * sign
    }

    /// Row of the relative-embedding table used for query i and key j, for every (i, j) of a length-t
    /// sequence; `rows` is the table's height. deberta-v2: clamp(bucket(i-j) + S, 0, 2S-1) over
    /// rel_embeddings[0 ..< 2S]. deberta (v1): the table is rel_embeddings[maxRel-span ..< maxRel+span]
    /// with span = min(t, maxRel), index clamp(i-j + span, 0, 2span-1), given here as a row of the full table.
    public static func indices(length t: Int, family: ModelFamily, config: DebertaConfig) -> [Int32] {
        var out = [Int32](repeating: 0, count: t * t)
        let maxRel = config.effectiveMaxRelativePositions
        if family == .deberta {
            let span = min(t, maxRel)
            for i in 0 ..< t {
                for j in 0 ..< t {
                    let k = min(max(i - j + span, 0), 2 * span - 1)
                    out[i * t + j] = Int32(maxRel - span + k)
                }
            }
            return out
        }
        let buckets = config.positionBuckets
        let s = buckets > 0 ? buckets : maxRel
        // bucket(r) depends only on r = i - j: compute each distance once.
        var byDistance = [Int32](repeating: 0, count: max(2 * t - 1, 1))
        for r in -(t - 1) ... max(t - 1, 0) {
            let b = buckets > 0 ? logBucket(r, buckets: buckets, maxPosition: maxRel) : r
            byDistance[r + t - 1] = Int32(min(max(b + s, 0), 2 * s - 1))
        }
        for i in 0 ..< t {
            for j in 0 ..< t { out[i * t + j] = byDistance[i - j + t - 1] }
        }
        return out
    }
}
