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
        EncoderLayer.linearThenNorm(attentionOutput, attentionNorm, context.pointer, residual: query, rows: N, width: H, into: attended.pointer)
        let hidden = Activations(N * I, zeroed: false)
        applyLinear(intermediate, attended.pointer, rows: N, into: hidden.pointer, activation: ctx.hiddenActivation)
        EncoderLayer.linearThenNorm(output, outputNorm, hidden.pointer, residual: attended.pointer, rows: N, width: H, into: out)
    }

    /// LayerNorm(x Wᵀ + b + residual). The f32 and bf16 products start their sums from bias + residual; a
    /// quantized product adds the residual after its epilogue, one f32 add per value, which the LayerNorm
    /// kernel does as it reads the row (the same add, so the same bits, without a pass of its own).
    static func linearThenNorm(_ linear: Linear, _ norm: Norm, _ x: UnsafePointer<Float>, residual: UnsafePointer<Float>,
                               rows: Int, width: Int, into y: UnsafeMutablePointer<Float>) {
        let inNorm = linear.weight.isQuantized
        applyLinear(linear, x, rows: rows, into: y, residual: inNorm ? nil : residual)
        applyNorm(norm, y, rows: rows, width: width, residual: inNorm ? residual : nil)
    }

    var linears: [Linear?] {
        [attention.query, attention.key, attention.value, attention.positionKey, attention.positionQuery,
         attentionOutput, intermediate, output]
    }
}
