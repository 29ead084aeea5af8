import Checkpoint

/// DeBERTa's Enhanced Mask Decoder (microsoft/DeBERTa `EnhancedMaskDecoder`, apps/models/masked_language_model.py;
/// transformers' DebertaV2Model has it as `z_steps`): absolute positions enter just before the vocabulary
/// softmax. query = H_{L−1} + P (the absolute position table), then the last encoder layer runs twice with
/// H_{L−1} as keys and values and the previous result as queries; the MLM head decodes the result.
/// It applies to MLM models without absolute positions in the input that ship the absolute table.
struct EnhancedMaskDecoder: Sendable {
    let layer: EncoderLayer
    let layerIndex: Int
    /// [P, H] (`embeddings.position_embeddings.weight`)
    let positions: FloatBuffer

    init?(encoder: Encoder, embeddings: Embeddings, head: Head, config: DebertaConfig) {
        guard case .maskedLM = head, !config.positionBiasedInput, config.embeddingSize == config.hiddenSize,
              let table = embeddings.position,
              let last = encoder.layers.last else { return nil }
        (layer, layerIndex, positions) = (last, encoder.layers.count - 1, table)
    }

    /// The decoder's hidden states [N, H] from the state before the last layer, for sequences no longer
    /// than the absolute table (nil beyond it).
    func callAsFunction(beforeLast: Activations, _ ctx: ForwardContext) -> Activations? {
        let N = ctx.rows, H = ctx.config.hiddenSize
        guard ctx.length <= ctx.config.maxPositionEmbeddings else { return nil }
        var query = Activations(N * H, zeroed: false)
        let position = ctx.positionsInSequence()
        for r in 0 ..< N {
            let t = position[r]
            for c in 0 ..< H { query.pointer[r * H + c] = beforeLast.pointer[r * H + c] + positions[t * H + c] }
        }
        for _ in 0 ..< 2 {
            let next = Activations(N * H, zeroed: false)
            layer(layer: layerIndex, keyValue: beforeLast.pointer, query: query.pointer, ctx, into: next.pointer)
            query = next
        }
        return query
    }
}
