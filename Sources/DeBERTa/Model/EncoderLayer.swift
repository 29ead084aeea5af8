import Checkpoint

/// transformers' `DebertaV2Layer` / `DebertaLayer` (`encoder.layer.N`), post-LN:
/// `attention` = DisentangledSelfAttention + `DebertaV2SelfOutput` (dense, LayerNorm with the query input as
/// residual); `intermediate` (dense + hidden_act); `output` (dense, LayerNorm with the attention output as
/// residual).
struct EncoderLayer: Sendable {
    let attention: DisentangledAttention
    let attentionOutput: Linear  // [H, A]
    let attentionNorm: Norm
    let intermediate: Linear  // [I, H]
    let output: Linear  // [H, I]
    let outputNorm: Norm

    init?(_ scope: WeightScope, family: ModelFamily) {
        let c = scope.config, H = c.hiddenSize, A = c.allHeadSize, I = c.intermediateSize
        let attention = DisentangledAttention(scope.child("attention.self"), family: family)
        let attentionOutput = scope.linear("attention.output.dense", out: H, in: A)
        let attentionNorm = scope.norm("attention.output.LayerNorm", H)
        let intermediate = scope.linear("intermediate.dense", out: I, in: H)
        let output = scope.linear("output.dense", out: H, in: I)
        let outputNorm = scope.norm("output.LayerNorm", H)
        guard let attention, let attentionOutput, let attentionNorm, let intermediate, let output, let outputNorm else { return nil }
        (self.attention, self.attentionOutput, self.attentionNorm) = (attention, attentionOutput, attentionNorm)
        (self.intermediate, self.output, self.outputNorm) = (intermediate, output, outputNorm)
    }

    /// The layer on [N, H] rows into `out`. `query` is the keys/values input except in the EMD.
    func callAsFunction(layer index: Int, keyValue: UnsafePointer<Float>, query: UnsafePointer<Float>,
                        _ ctx: ForwardContext, into out: UnsafeMutablePointer<Float>) {
        let N = ctx.rows, H = ctx.config.hiddenSize, I = ctx.config.intermediateSize
        let context = attention(layer: index, query: query, keyValue: keyValue, ctx)
        let attended = Activations(N * H, zeroed: false)
        applyLinear(attentionOutput, context.pointer, rows: N, into: attended.pointer, residual: query)
        applyNorm(attentionNorm, attended.pointer, rows: N, width: H)
        let hidden = Activations(N * I, zeroed: false)
        applyLinear(intermediate, attended.pointer, rows: N, into: hidden.pointer, activation: ctx.hiddenActivation)
        applyLinear(output, hidden.pointer, rows: N, into: out, residual: attended.pointer)
        applyNorm(outputNorm, out, rows: N, width: H)
    }

    var linears: [Linear?] {
        [attention.query, attention.key, attention.value, attention.positionKey, attention.positionQuery,
         attentionOutput, intermediate, output]
    }
}
