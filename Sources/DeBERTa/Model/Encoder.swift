import Checkpoint

/// transformers' `DebertaV2Encoder` / `DebertaEncoder` (`encoder.*`): the layers; the relative-position
/// table `rel_embeddings` (deberta-v2: LayerNorm'ed when norm_rel_ebd has layer_norm, `get_rel_embedding`);
/// the conv layer after layer 0 (deberta-v2 with conv_kernel_size > 0); the per-layer c2p/p2c projections of
/// the table, computed on first use (`PositionProjections`).
struct Encoder: Sendable {
    let layers: [EncoderLayer]
    let conv: ConvLayer?
    /// nil without relative attention.
    let positions: PositionProjections?

    init?(_ scope: WeightScope, family: ModelFamily) throws {
        let c = scope.config, H = c.hiddenSize
        var relative: FloatBuffer?
        if c.relativeAttention {
            relative = scope.tensor("rel_embeddings.weight", [c.relativeEmbeddingRows, H])
            if family == .debertaV2, c.normalizesRelativeEmbeddings, let r = relative, let norm = scope.norm("LayerNorm", H) {
                relative = FloatBuffer(count: r.count) { p in
                    p.update(from: r.pointer, count: r.count)
                    applyNorm(norm, p, rows: c.relativeEmbeddingRows, width: H)
                }
            } else if family == .debertaV2, c.normalizesRelativeEmbeddings, scope.isRecording {
                _ = scope.norm("LayerNorm", H)
            }
        } else if family == .debertaV2, c.normalizesRelativeEmbeddings {
            // transformers builds encoder.LayerNorm from norm_rel_ebd alone, so its checkpoints carry one even
            // without relative attention, where nothing reads it.
            scope.tolerate("LayerNorm")
        }
        conv = family == .debertaV2 && c.convKernelSize > 0 ? try ConvLayer(scope.child("conv")) : nil
        let layers = (0 ..< c.numHiddenLayers).map { EncoderLayer(scope.child("layer.\($0)"), family: family) }
        ComputeContext.current.trace.mark("layers bound")
        guard layers.allSatisfy({ $0 != nil }), c.relativeAttention == (relative != nil),
              !(family == .debertaV2 && c.convKernelSize > 0) || conv != nil else { return nil }
        let bound = layers.compactMap { $0 }
        self.layers = bound
        positions = relative.map { table in
            PositionProjections(table: table, width: H, heads: c.numAttentionHeads, headSize: c.attentionHeadSize,
                                keys: bound.map { c.usesC2P ? $0.attention.positionKey : nil },
                                queries: bound.map { c.usesP2C ? $0.attention.positionQuery : nil })
        }
    }

    /// Runs every layer on the embeddings; returns the last hidden state and the one before the last layer
    /// (the Enhanced Mask Decoder's keys and values).
    func callAsFunction(_ embedded: Activations, _ ctx: ForwardContext) -> (last: Activations, beforeLast: Activations) {
        let NH = ctx.rows * ctx.config.hiddenSize
        var hidden = Activations(NH, zeroed: false)
        hidden.pointer.update(from: embedded.pointer, count: NH)
        var beforeLast = embedded
        for (l, layer) in layers.enumerated() {
            if l == layers.count - 1 {
                beforeLast = Activations(NH, zeroed: false)
                beforeLast.pointer.update(from: hidden.pointer, count: NH)
            }
            let next = Activations(NH, zeroed: false)
            layer(layer: l, keyValue: hidden.pointer, query: hidden.pointer, ctx, into: next.pointer)
            if l == 0, let conv { conv(embedding: embedded.pointer, layerOutput: next.pointer, ctx) }
            hidden = next
            ComputeContext.current.trace.mark("layer \(l)")
        }
        return (hidden, beforeLast)
    }
}

/// What one forward call needs beyond the weights: shapes, masks, the relative rows for the lengths of the
/// call and the position projections covering them.
struct ForwardContext {
    /// The relative-table rows of one sequence length t: for query i and key j at element i − j + t − 1
    /// (2t − 1 values), shifted so the lowest reachable row (`first`) is 0; `span` rows are reachable
    /// (without relative attention: the single row 0, span 1).
    struct RelativeRows {
        let rows: [Int32]
        let first: Int
        let span: Int

        init(length t: Int, config: DebertaConfig, family: ModelFamily) {
            let all = config.relativeAttention ? RelativePositions.rowsByDistance(length: t, family: family, config: config) : [0]
            let first = Int(all.min() ?? 0), last = Int(all.max() ?? 0)
            rows = all.map { $0 - Int32(first) }
            self.first = first
            span = last - first + 1
        }
    }

    let config: DebertaConfig
    let family: ModelFamily
    let hiddenActivation: Activation
    let batch: Int
    /// The longest sequence (every sequence, when padded).
    let length: Int
    /// Token rows: batch × length, or Σ lengths when packed.
    let rows: Int
    /// (first row, length) of every sequence; a padded call's sequences all have `length` rows.
    let segments: [(start: Int, length: Int)]
    let packed: Bool
    /// [rows] 0/1
    let mask: [UInt8]
    /// The relative rows of every sequence length in the call.
    let relative: [Int: RelativeRows]
    /// The c2p/p2c projections covering every row the call reaches (relative attention only).
    let positions: PositionProjections.Tables?

    init(_ inputs: ModelInputs, config: DebertaConfig, family: ModelFamily, hiddenActivation: Activation, positions: PositionProjections?) {
        self.config = config
        self.family = family
        self.hiddenActivation = hiddenActivation
        batch = inputs.batch
        length = inputs.length
        rows = inputs.rows
        segments = inputs.segments
        packed = inputs.lengths != nil
        mask = inputs.attentionMask.map { $0 != 0 ? 1 : 0 }
        var relative: [Int: RelativeRows] = [:]
        for (_, t) in segments where relative[t] == nil { relative[t] = RelativeRows(length: t, config: config, family: family) }
        self.relative = relative
        // The longest sequence reaches every row a shorter one reaches.
        let longest = relative[inputs.length]!
        self.positions = config.relativeAttention ? positions?.tables(covering: longest.first ..< longest.first + longest.span) : nil
    }

    /// Zeroes the rows of masked tokens in [rows, width] values.
    func zeroMaskedRows(_ x: UnsafeMutablePointer<Float>, width: Int) {
        for r in 0 ..< rows where mask[r] == 0 { (x + r * width).update(repeating: 0, count: width) }
    }

    /// Position of token row r within its sequence.
    func positionsInSequence() -> [Int] {
        var out = [Int](repeating: 0, count: rows)
        for (start, t) in segments {
            for i in 0 ..< t { out[start + i] = i }
        }
        return out
    }

    /// Output shape of per-token values of `width` (nil: one value per token): [B, T, width] padded, [rows, width] packed.
    func tokenShape(_ width: Int?) -> [Int] {
        let lead = packed ? [rows] : [batch, length]
        return width.map { lead + [$0] } ?? lead
    }
}
