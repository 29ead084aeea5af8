import CQuantKernels

/// One quantization scheme's C kernels under one set of names (`QuantizationScheme.kernels`): what differs
/// between int8 and q4 is looked up here instead of being switched on at every call site. Codes are raw
/// bytes (I8 for int8, U8 nibble pairs for q4); activation codes are int8 for both.
struct QuantizedKernels: Sendable {
    /// Stored codes' bytes and scales per weight row of K inputs.
    let rowBytes: @Sendable (_ k: Int) -> Int
    let scalesPerRow: @Sendable (_ k: Int) -> Int
    /// Activation codes per row (K, or K padded to blocks of 32) and activation scales per row.
    let activationStride: @Sendable (_ k: Int) -> Int
    let activationScalesPerRow: @Sendable (_ k: Int) -> Int
    /// x [m, k] (row stride ldx) → codes [m, activationStride] and scales [m, activationScalesPerRow].
    let quantizeActivations: @Sendable (_ x: UnsafePointer<Float>, _ m: Int, _ k: Int, _ ldx: Int,
                                        _ codes: UnsafeMutablePointer<Int8>, _ scales: UnsafeMutablePointer<Float>) -> Void
    /// w [n, k] → codes and scales of the stored format.
    let quantizeWeights: @Sendable (_ w: UnsafePointer<Float>, _ n: Int, _ k: Int, _ codes: UnsafeMutableRawPointer,
                                    _ scales: UnsafeMutablePointer<Float>) -> Void
    let dequantizeWeights: @Sendable (_ codes: UnsafeRawPointer, _ scales: UnsafePointer<Float>, _ n: Int, _ k: Int,
                                      _ w: UnsafeMutablePointer<Float>) -> Void
    /// y[:, begin ..< end] = x · Wᵀ + bias on the stored codes.
    let gemm: @Sendable (_ m: Int, _ n: Int, _ k: Int, _ xq: UnsafePointer<Int8>, _ xs: UnsafePointer<Float>,
                         _ codes: UnsafeRawPointer, _ scales: UnsafePointer<Float>, _ bias: UnsafePointer<Float>?,
                         _ y: UnsafeMutablePointer<Float>, _ ldy: Int, _ begin: Int, _ end: Int) -> Void
    /// The same on packed codes: `scales` are the stored per-channel scales for int8, the packed scales for q4.
    let gemmPacked: @Sendable (_ m: Int, _ n: Int, _ k: Int, _ xq: UnsafePointer<Int8>, _ xs: UnsafePointer<Float>,
                               _ packed: UnsafePointer<UInt8>, _ scales: UnsafePointer<Float>, _ bias: UnsafePointer<Float>?,
                               _ y: UnsafeMutablePointer<Float>, _ ldy: Int, _ begin: Int, _ end: Int) -> Void
    /// Packed layout: code bytes and (q4) scale floats of n rows.
    let packedSize: @Sendable (_ n: Int, _ k: Int) -> Int
    let packedScalesSize: @Sendable (_ n: Int, _ k: Int) -> Int
    /// Rows [0, n) of the stored codes and scales (pointers at the first row) → packed codes and (q4) scales.
    let pack: @Sendable (_ codes: UnsafeRawPointer, _ scales: UnsafePointer<Float>, _ n: Int, _ k: Int,
                         _ packed: UnsafeMutablePointer<UInt8>, _ packedScales: UnsafeMutablePointer<Float>?) -> Void
    /// Whether this CPU multiplies packed codes (and the runtime allows it).
    let packedPreferred: @Sendable () -> Bool
    /// Whether the packed product reads the packed scales (q4) or the stored ones (int8).
    let packedScalesArePacked: Bool

    static let int8 = QuantizedKernels(
        rowBytes: { $0 }, scalesPerRow: { _ in 1 }, activationStride: { $0 }, activationScalesPerRow: { _ in 1 },
        quantizeActivations: { dq_quantize_activations_int8($0, $1, $2, $3, $4, $5) },
        quantizeWeights: { dq_quantize_weights_int8($0, $1, $2, $3.assumingMemoryBound(to: Int8.self), $4) },
        dequantizeWeights: { dq_dequantize_weights_int8($0.assumingMemoryBound(to: Int8.self), $1, $2, $3, $4) },
        gemm: { dq_gemm_int8($0, $1, $2, $3, $4, $5.assumingMemoryBound(to: Int8.self), $6, $7, $8, $9, $10, $11) },
        gemmPacked: { dq_gemm_int8_packed($0, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) },
        packedSize: { dq_int8_packed_size($0, $1) }, packedScalesSize: { _, _ in 0 },
        pack: { codes, _, n, k, packed, _ in dq_pack_weights_int8(codes.assumingMemoryBound(to: Int8.self), n, k, packed) },
        packedPreferred: { dq_int8_packed_preferred() != 0 }, packedScalesArePacked: false)

    static let q4 = QuantizedKernels(
        rowBytes: { Int(dq_q4_padded_k($0)) / 2 }, scalesPerRow: { Int(dq_q4_padded_k($0)) / 32 },
        activationStride: { Int(dq_q4_padded_k($0)) }, activationScalesPerRow: { Int(dq_q4_padded_k($0)) / 32 },
        quantizeActivations: { dq_quantize_activations_q8_blocks($0, $1, $2, $3, $4, $5) },
        quantizeWeights: { dq_quantize_weights_q4($0, $1, $2, $3.assumingMemoryBound(to: UInt8.self), $4) },
        dequantizeWeights: { dq_dequantize_weights_q4($0.assumingMemoryBound(to: UInt8.self), $1, $2, $3, $4) },
        gemm: { dq_gemm_q4($0, $1, $2, $3, $4, $5.assumingMemoryBound(to: UInt8.self), $6, $7, $8, $9, $10, $11) },
        gemmPacked: { dq_gemm_q4_packed($0, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) },
        packedSize: { dq_q4_packed_size($0, $1) }, packedScalesSize: { dq_q4_packed_scales_size($0, $1) },
        pack: { codes, scales, n, k, packed, packedScales in
            dq_pack_weights_q4(codes.assumingMemoryBound(to: UInt8.self), scales, n, k, packed, packedScales)
        },
        packedPreferred: { dq_q4_packed_preferred() != 0 }, packedScalesArePacked: true)
}

extension QuantizationScheme {
    var kernels: QuantizedKernels { self == .int8 ? .int8 : .q4 }
}
