

/// A weight matrix [rows, cols] in f32 (as stored, or packed for the GEMM kernel), in bf16 panels, or quantized.
enum MatrixWeight: Sendable {
    case f32(FloatBuffer)
    case packed(PackedMatrix)
    /// Converted to bf16 panels at load (`RuntimeOptions.precision == .bf16`).
    case bf16(BF16Matrix)
    case quantized(QuantizedMatrix)
}

/// A linear layer `y = x Wᵀ + b` with W stored [out, in] as transformers stores it.
struct Linear: Sendable {
    let weight: MatrixWeight
    let bias: FloatBuffer?
    let outFeatures: Int
    let inFeatures: Int

    init(weight: MatrixWeight, bias: FloatBuffer?, outFeatures: Int, inFeatures: Int) {
        self.weight = weight
        self.bias = bias
        self.outFeatures = outFeatures
        self.inFeatures = inFeatures
    }

    init(weight: FloatBuffer, bias: FloatBuffer?, outFeatures: Int, inFeatures: Int) {
        self.init(weight: .f32(weight), bias: bias, outFeatures: outFeatures, inFeatures: inFeatures)
    }
}

/// LayerNorm parameters.
struct Norm: Sendable {
    let weight: FloatBuffer
    let bias: FloatBuffer
    let eps: Float
}
