import CKernels
import Checkpoint

/// transformers' `ConvLayer` (`encoder.conv`, deberta-v2 with conv_kernel_size > 0), applied after layer 0:
/// LayerNorm(layer0 + conv_act(maskfill(conv1d(embeddings)))) · mask. The grouped Conv1d weight [H, H/groups, K]
/// is kept as K dense [H, H] matrices (groups expanded), one per tap.
struct ConvLayer: Sendable {
    let kernels: [MatrixWeight]
    let bias: FloatBuffer
    let norm: Norm
    let activation: Activation

    init?(_ scope: WeightScope) throws {
        let c = scope.config, H = c.hiddenSize, k = c.convKernelSize, groups = c.convGroups
        let w = scope.tensor("conv.weight", [H, H / groups, k])
        let bias = scope.tensor("conv.bias", [H])
        let norm = scope.norm("LayerNorm", H)
        activation = try Activation(name: c.convAct, field: "conv_act", file: scope.file)
        guard let w, let bias, let norm else { return nil }
        let perGroup = H / groups
        kernels = (0 ..< k).map { tap in
            scope.floatLinearWeight(FloatBuffer(count: H * H) { dense in
                for o in 0 ..< H {
                    let g = o / perGroup
                    for i in 0 ..< perGroup {
                        dense[o * H + g * perGroup + i] = w[(o * perGroup + i) * k + tap]
                    }
                }
            }, rows: H, cols: H)
        }
        (self.bias, self.norm) = (bias, norm)
    }

    /// Replaces `layerOutput` (layer 0's output) by the conv layer's result on `embedding`.
    func callAsFunction(embedding: UnsafePointer<Float>, layerOutput: UnsafeMutablePointer<Float>, _ ctx: ForwardContext) {
        let H = ctx.config.hiddenSize, N = ctx.rows, K = kernels.count
        let pad = (K - 1) / 2
        let out = Activations(N * H)
        for (start, T) in ctx.segments {
            for tap in 0 ..< K {
                let shift = tap - pad
                let t0 = max(0, -shift), t1 = min(T, T - shift)
                guard t1 > t0 else { continue }
                // out += x · kernelᵀ (the residual epilogue, in place)
                let rows = out.pointer + (start + t0) * H
                applyMatrix(kernels[tap], embedding + (start + t0 + shift) * H, rows: t1 - t0, k: H, n: H,
                            bias: nil, into: rows, residual: rows)
            }
        }
        dk_bias_activation(out.pointer, N, H, H, bias.pointer, DK_ACT_IDENTITY)
        ctx.zeroMaskedRows(out.pointer, width: H)
        dk_bias_activation(out.pointer, N, H, H, nil, activation.kernel)
        applyNorm(norm, out.pointer, rows: N, width: H, residual: layerOutput)
        for r in 0 ..< N {
            if ctx.mask[r] == 0 {
                (layerOutput + r * H).update(repeating: 0, count: H)
            } else {
                (layerOutput + r * H).update(from: out.pointer + r * H, count: H)
            }
        }
    }
}
