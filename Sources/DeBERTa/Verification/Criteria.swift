import Checkpoint

/// What "within tolerance" means for one verify run.
public struct Criteria: Sendable {
    /// A fixed maximum absolute error (`--atol`).
    public var absoluteTolerance: Double?
    /// Otherwise factor × (largest |reference value|, or at least 1 when `floorAtOne`).
    public var relativeTolerance: Double?
    public var floorAtOne: Bool
    public var minCosine: Double?
    public var minAgreement: Double?
    public var description: String

    public func tolerance(largest: Double) -> Double {
        if let absoluteTolerance { return absoluteTolerance }
        if let relativeTolerance { return relativeTolerance * (floorAtOne ? max(1, largest) : largest) }
        return .infinity
    }

    /// f32 runtime against an f32 reference: max abs error ≤ 1e-4 × max(1, largest |value|).
    public static let f32 = Criteria(absoluteTolerance: nil, relativeTolerance: 1e-4, floorAtOne: true, minCosine: nil, minAgreement: nil,
                                     description: "max abs error <= 1e-4 x max(1, largest |reference value|)")

    /// A bf16-precision model against an f32 reference: cosine ≥ 0.9999 per output (bf16 keeps 8 significant
    /// bits per operand, so element-wise tolerances of the f32 criteria do not apply).
    public static let bf16 = Criteria(absoluteTolerance: nil, relativeTolerance: nil, floorAtOne: false, minCosine: 0.9999, minAgreement: nil,
                                      description: "bf16 precision against f32: cosine >= 0.9999")

    /// A quantized model against the PyTorch simulation of its own scheme (checks the kernels). The simulation
    /// runs in float64; a float32 runtime flips activation codes at rounding boundaries, which on a trained
    /// model moves single outputs by up to a few 1e-3 × the largest value (v3-mlm-trained: 3.5e-3 × for int8,
    /// and PyTorch's own float32 run of the scheme 3.6e-3 ×), hence 1e-2 ×, with the cosine bound catching any
    /// systematic error.
    public static func exact(_ scheme: QuantizationScheme) -> Criteria {
        Criteria(absoluteTolerance: nil, relativeTolerance: 1e-2, floorAtOne: false, minCosine: 0.99999, minAgreement: nil,
                 description: "exact simulation of \(scheme.rawValue): max abs error <= 1e-2 x largest |reference value|, cosine >= 0.99999")
    }

    /// A quantized model against the f32 reference (what users care about).
    public static func accuracy(_ scheme: QuantizationScheme) -> Criteria {
        let (cosine, agreement) = scheme == .int8 ? (0.999, 0.99) : (0.99, 0.95)
        return Criteria(absoluteTolerance: nil, relativeTolerance: nil, floorAtOne: false, minCosine: cosine, minAgreement: agreement,
                        description: "\(scheme.rawValue) accuracy against f32: cosine >= \(cosine), argmax agreement >= \(Int(agreement * 100))%")
    }
}
