import CKernels
import Checkpoint
import Foundation
import Synchronization

/// transformers' `DisentangledSelfAttention` (`encoder.layer.N.attention.self`, modeling_deberta_v2.py and
/// modeling_deberta.py): content-to-content scores plus the content-to-position (c2p: queries against the
/// key-projected relative table) and position-to-content (p2c: query-projected table against the keys)
/// terms, gathered at the relative row of every (query i, key j), scaled by 1/sqrt(d · factor), masked,
/// softmaxed and applied to the values. The relative rows (`RelativePositions`) depend on i − j alone.
struct DisentangledAttention: Sendable {
    // Projections [A, H]. For v1 they are the per-head split of in_proj; key has no bias.
    let query: Linear
    let key: Linear
    let value: Linear
    /// Position projections applied to the relative table (c2p uses the key side, p2c the query side).
    let positionKey: Linear?
    let positionQuery: Linear?

    init?(_ scope: WeightScope, family: ModelFamily) {
        let c = scope.config, A = c.allHeadSize, H = c.hiddenSize
        var posKey: Linear?, posQuery: Linear?
        let qkv: (Linear, Linear, Linear)?
        if family == .debertaV2 {
            let q = scope.linear("query_proj", out: A, in: H), k = scope.linear("key_proj", out: A, in: H)
            let v = scope.linear("value_proj", out: A, in: H)
            if c.relativeAttention {
                if c.shareAttKey {
                    (posKey, posQuery) = (k, q)
                } else {
                    if c.usesC2P { posKey = scope.linear("pos_key_proj", out: A, in: H) }
                    if c.usesP2C { posQuery = scope.linear("pos_query_proj", out: A, in: H) }
                }
            }
            qkv = q.flatMap { q in k.flatMap { k in v.map { (q, k, $0) } } }
        } else {
            qkv = DisentangledAttention.splitInProjection(scope)
            if c.relativeAttention {
                if c.usesC2P { posKey = scope.linear("pos_proj", out: A, in: H, bias: false) }
                if c.usesP2C { posQuery = scope.linear("pos_q_proj", out: A, in: H) }
            }
        }
        guard let (q, k, v) = qkv else { return nil }
        (query, key, value, positionKey, positionQuery) = (q, k, v, posKey, posQuery)
    }

    /// v1's `in_proj` [3A, H] holds per head h the rows [q_h; k_h; v_h] (d rows each): split into three
    /// [A, H] projections, with `q_bias` and `v_bias` (the key has none).
    static func splitInProjection(_ scope: WeightScope) -> (Linear, Linear, Linear)? {
        let c = scope.config, A = c.allHeadSize, H = c.hiddenSize, d = c.attentionHeadSize, heads = c.numAttentionHeads
        let inProj = scope.matrix("in_proj.weight", 3 * A, H)
        let qBias = scope.tensor("q_bias", [A]), vBias = scope.tensor("v_bias", [A])
        guard let inProj, let qBias, let vBias else { return nil }
        func part(_ which: Int) -> MatrixWeight {
            switch inProj {
            case let .f32(w):
                let split = FloatBuffer(count: A * H) { dst in
                    for h in 0 ..< heads {
                        (dst + h * d * H).update(from: w.pointer + (h * 3 * d + which * d) * H, count: d * H)
                    }
                }
                return scope.floatLinearWeight(split, rows: A, cols: H)
            case .packed, .bf16:
                preconditionFailure("matrix() returns stored weights; only linear() packs")
            case let .quantized(q):
                let rowBytes = q.rowBytes, perRow = q.scalesPerRow
                return .quantized(QuantizedMatrix(scheme: q.scheme, rows: A, cols: H, rowBytes: rowBytes, scalesPerRow: perRow) { codes, scales in
                    for h in 0 ..< heads {
                        let from = h * 3 * d + which * d
                        (codes + h * d * rowBytes).copyMemory(from: q.codes + from * rowBytes, byteCount: d * rowBytes)
                        (scales + h * d * perRow).update(from: q.scales.pointer + from * perRow, count: d * perRow)
                    }
                })
            }
        }
        return (Linear(weight: part(0), bias: qBias, outFeatures: A, inFeatures: H),
                Linear(weight: part(1), bias: nil, outFeatures: A, inFeatures: H),
                Linear(weight: part(2), bias: vBias, outFeatures: A, inFeatures: H))
    }

    /// Floats of scratch one thread's attention head needs.
    /// bf16: enough for the f32 head on any CPU too (its fallback when the kernel cap drops below AVX-512).
    static func scratchFloats(length: Int, headSize: Int, span: Int, bf16: Bool) -> Int {
        guard bf16 else { return dk_attention_distance_scratch(length, headSize, span) }
        // The bf16 scratch holds the AVX-512 f32 head's; the generic head's may be larger.
        return max(dk_attention_bf16_scratch(length, headSize, span), dk_attention_distance_generic_scratch(length, headSize, span))
    }

    /// The score scale 1/sqrt(d · factor): deberta-v2 counts 1 + c2p + p2c, v1 1 + every pos_att_type term.
    static func scale(_ c: DebertaConfig, family: ModelFamily) -> Float {
        let factor = family == .deberta ? 1 + c.posAttType.count : 1 + (c.usesC2P ? 1 : 0) + (c.usesP2C ? 1 : 0)
        return 1 / Float(Double(c.attentionHeadSize * factor).squareRoot())
    }

    /// Attention context [N, A] of `layer`'s heads for queries from `query`, keys and values from `keyValue`.
    func callAsFunction(layer index: Int, query: UnsafePointer<Float>, keyValue: UnsafePointer<Float>, _ ctx: ForwardContext) -> Activations {
        let c = ctx.config, N = ctx.rows, A = c.allHeadSize
        let q = Activations(N * A, zeroed: false), k = Activations(N * A, zeroed: false), v = Activations(N * A, zeroed: false)
        if query == keyValue {
            applyLinears([self.query, key, value], query, rows: N, into: [q.pointer, k.pointer, v.pointer])
        } else {
            applyLinear(self.query, query, rows: N, into: q.pointer)
            applyLinear(key, keyValue, rows: N, into: k.pointer)
            applyLinear(value, keyValue, rows: N, into: v.pointer)
        }
        let context = Activations(N * A, zeroed: false)
        scores(layer: index, q: q.pointer, k: k.pointer, v: v.pointer, ctx, into: context.pointer)
        return context
    }

    /// One fused kernel per (sequence, head): scores, the c2p/p2c gathers, mask, softmax, × V. The pairs are
    /// split over the compute threads, each with its own scratch. A sequence of a packed call is computed
    /// exactly as it would be alone (its own length, relative rows and span).
    private func scores(layer index: Int, q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                        _ ctx: ForwardContext, into context: UnsafeMutablePointer<Float>) {
        let c = ctx.config, A = c.allHeadSize, heads = c.numAttentionHeads, d = c.attentionHeadSize
        let scale = DisentangledAttention.scale(c, family: ctx.family)
        let longest = ctx.relative[ctx.length]!
        let bf16 = ComputeContext.current.attentionInBF16, f32Sums = ComputeContext.current.attentionSumsInF32
        let scratchSize = DisentangledAttention.scratchFloats(length: ctx.length, headSize: d, span: longest.span, bf16: bf16)
        let pairs = ctx.batch * heads
        let workers = max(1, min(ComputeThreads.count, pairs))
        let scratch = Activations(workers * scratchSize, zeroed: false)
        let tables = ctx.positions
        ctx.mask.withUnsafeBufferPointer { mask in
            parallel(workers) { w in
                var pair = w
                while pair < pairs {
                    let b = pair / heads, h = pair % heads
                    let (start, T) = ctx.segments[b]
                    let relative = ctx.relative[T]!
                    let row = start * A + h * d
                    // The position rows from row `relative.first` of the relative table, as each head reads them.
                    let pkt = tables?.transposed(tables?.keys[index], head: h, fromRow: relative.first)
                    let pqt = tables?.transposed(tables?.queries[index], head: h, fromRow: relative.first)
                    let pkw = tables?.words(tables?.keyWords[index], head: h, fromRow: relative.first)
                    let pqw = tables?.words(tables?.queryWords[index], head: h, fromRow: relative.first)
                    let ld = tables?.rows.count ?? 0
                    relative.rows.withUnsafeBufferPointer { rel in
                        // bf16 unless its kernels cannot run (words missing, or a later model lowered the process-wide
                        // kernel cap below AVX-512: 0, nothing written); then a quantized store's f32 head summing P·V
                        // in f32 (the same bits on any CPU), else the f32 tier's head.
                        var done: Int32 = 0
                        if bf16, (pkt == nil) == (pkw == nil), (pqt == nil) == (pqw == nil) {
                            done = dk_attention_head_bf16_words(T, d, q + row, A, k + row, A, v + row, A, pkw, pqw, ld, relative.span,
                                                                rel.baseAddress, mask.baseAddress! + start, scale, context + row, A,
                                                                scratch.pointer + w * scratchSize)
                        }
                        if done == 0 && f32Sums {
                            dk_attention_head_f32_transposed(T, d, q + row, A, k + row, A, v + row, A, pkt, pqt, ld, relative.span,
                                                             rel.baseAddress, mask.baseAddress! + start, scale, context + row, A,
                                                             scratch.pointer + w * scratchSize)
                        } else if done == 0 {
                            dk_attention_head_distance_transposed(T, d, q + row, A, k + row, A, v + row, A, pkt, pqt, ld, relative.span,
                                                                  rel.baseAddress, mask.baseAddress! + start, scale, context + row, A,
                                                                  scratch.pointer + w * scratchSize)
                        }
                    }
                    pair += workers
                }
            }
        }
    }
}

/// Relative positions of DeBERTa's disentangled attention: transformers' `build_relative_position` and
/// `make_log_bucket_position` (modeling_deberta_v2.py), v1's `build_relative_position` (modeling_deberta.py).
enum RelativePositions {
    /// `make_log_bucket_position`, computed in float32 as torch does with its default dtype: distances under
    /// `buckets/2` are kept, longer ones are log-compressed. The config check keeps buckets ≥ 4 (mid ≥ 2) and
    /// max_relative_positions ≥ 2, so every value here is finite.
    static func logBucket(_ relative: Int, buckets: Int, maxPosition: Int) -> Int {
        let mid = buckets / 2
        let sign = relative > 0 ? 1 : (relative < 0 ? -1 : 0)
        let absPos = (relative < mid && relative > -mid) ? mid - 1 : abs(relative)
        if absPos <= mid { return relative }
        let ratio = Float(absPos) / Float(mid)
        let base = Float(Double(maxPosition - 1) / Double(mid))
        let logPos = (logf(ratio) / logf(base) * Float(mid - 1)).rounded(.up) + Float(mid)
        guard logPos.isFinite, abs(logPos) < 1e9 else { return relative }
        return Int(logPos) * sign
    }

    /// Row of the relative-embedding table for query i and key j of a length-t sequence, by distance:
    /// element i − j + t − 1 (the row depends on i − j alone; 2t − 1 values, memory linear in t).
    /// deberta-v2: clamp(bucket(i−j) + S, 0, 2S−1) over rel_embeddings[0 ..< 2S]. deberta (v1): the table is
    /// rel_embeddings[maxRel−span ..< maxRel+span] with span = min(t, maxRel), index clamp(i−j + span, 0,
    /// 2span−1), given here as a row of the full table.
    static func rowsByDistance(length t: Int, family: ModelFamily, config: DebertaConfig) -> [Int32] {
        let maxRel = config.effectiveMaxRelativePositions
        var out = [Int32](repeating: 0, count: max(2 * t - 1, 1))
        guard t > 0 else { return out }
        if family == .deberta {
            let span = min(t, maxRel)
            for r in -(t - 1) ... (t - 1) { out[r + t - 1] = Int32(maxRel - span + min(max(r + span, 0), 2 * span - 1)) }
            return out
        }
        let buckets = config.positionBuckets
        let s = buckets > 0 ? buckets : maxRel
        for r in -(t - 1) ... (t - 1) {
            let b = buckets > 0 ? logBucket(r, buckets: buckets, maxPosition: maxRel) : r
            out[r + t - 1] = Int32(min(max(b + s, 0), 2 * s - 1))
        }
        return out
    }

    /// The full [t, t] table (row for every (i, j)); for tests and tools, the runtime keeps rows by distance.
    static func indices(length t: Int, family: ModelFamily, config: DebertaConfig) -> [Int32] {
        let byDistance = rowsByDistance(length: t, family: family, config: config)
        var out = [Int32](repeating: 0, count: t * t)
        for i in 0 ..< t {
            for j in 0 ..< t { out[i * t + j] = byDistance[i - j + t - 1] }
        }
        return out
    }
}
