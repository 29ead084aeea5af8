

/// A weight matrix [rows, cols] in f32 (as stored, or packed for the GEMM kernel) or quantized.
public enum MatrixWeight: Sendable {
    case f32(FloatBuffer)
    case packed(PackedMatrix)
    case quantized(QuantizedMatrix)
}

/// A linear layer `y = x Wᵀ + b` with W stored [out, in] as transformers stores it.
public struct Linear: Sendable {
    public let weight: MatrixWeight
    public let bias: FloatBuffer?
    public let outFeatures: Int
    public let inFeatures: Int

    public init(weight: MatrixWeight, bias: FloatBuffer?, outFeatures: Int, inFeatures: Int) {
        self.weight = weight
        self.bias = bias
        self.outFeatures = outFeatures
        self.inFeatures = inFeatures
    }

    public init(weight: FloatBuffer, bias: FloatBuffer?, outFeatures: Int, inFeatures: Int) {
        self.init(weight: .f32(weight), bias: bias, outFeatures: outFeatures, inFeatures: inFeatures)
    }
}

/// LayerNorm parameters.
public struct Norm: Sendable {
    public let weight: FloatBuffer
    public let bias: FloatBuffer
    public let eps: Float
}
