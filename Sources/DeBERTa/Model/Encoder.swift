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
        }
        conv = family == .debertaV2 && c.convKernelSize > 0 ? try ConvLayer(scope.child("conv")) : nil
        let layers = (0 ..< c.numHiddenLayers).map { EncoderLayer(scope.child("layer.\($0)"), family: family) }
        ComputeContext.current.trace.mark("layers bound")
        guard layers.allSatisfy({ $0 != nil }), c.relativeAttention == (relative != nil),
              !(family == .debertaV2 && c.convKernelSize > 0) || conv != nil else { return nil }
        let bound = layers.compactMap { $0 }
        self.layers = bound
        positions = relative.map { table in
            PositionProjections(table: table, width: H,
                                keys: bound.map { c.usesC2P ? $0.attention.positionKey : nil },
                                queries: bound.map { c.usesP2C ? $0.attention.positionQuery : nil })
        }
    }

    /// Runs every layer on the embeddings; returns the last hidden state and the one before the last layer
    /// (the Enhanced Mask Decoder's keys and values).
    func callAsFunction(_ embedded: Activations, _ ctx: ForwardContext) -> (last: Activations, beforeLast: Activations) {
        let NH = ctx.batch * ctx.length * ctx.config.hiddenSize
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

/// What one forward call needs beyond the weights: shapes, masks, the relative rows for this length and
/// the position projections covering them.
struct ForwardContext {
    let config: DebertaConfig
    let family: ModelFamily
    let hiddenActivation: Activation
    let batch: Int
    let length: Int
    /// [batch · length] 0/1
    let mask: [UInt8]
    /// Relative-table row for query i and key j at element i − j + length − 1 (2·length − 1 values),
    /// shifted so the lowest reachable row is 0.
    let relativeRows: [Int32]
    /// First reachable row of the relative table and how many rows a sequence of this length reaches.
    let firstRow: Int
    let span: Int
    /// The c2p/p2c projections covering rows firstRow ..< firstRow + span (relative attention only).
    let positions: PositionProjections.Tables?

    init(_ inputs: ModelInputs, config: DebertaConfig, family: ModelFamily, hiddenActivation: Activation, positions: PositionProjections?) {
        let T = inputs.length
        let rows = config.relativeAttention ? RelativePositions.rowsByDistance(length: T, family: family, config: config) : [0]
        let first = Int(rows.min() ?? 0), last = Int(rows.max() ?? 0)
        self.config = config
        self.family = family
        self.hiddenActivation = hiddenActivation
        batch = inputs.batch
        length = T
        mask = inputs.attentionMask.map { $0 != 0 ? 1 : 0 }
        relativeRows = rows.map { $0 - Int32(first) }
        firstRow = first
        span = last - first + 1
        self.positions = config.relativeAttention ? positions?.tables(covering: first ..< last + 1) : nil
    }

    /// Zeroes the rows of masked tokens in [N, width] values.
    func zeroMaskedRows(_ x: UnsafeMutablePointer<Float>, width: Int) {
        for r in 0 ..< batch * length where mask[r] == 0 { (x + r * width).update(repeating: 0, count: width) }
    }
}
