import CKernels
import COpenBLAS

/// A buffer of f32 activations owned by one forward call.
final class Activations {
    let pointer: UnsafeMutablePointer<Float>
    let count: Int

    init(_ count: Int) {
        self.count = count
        pointer = .allocate(capacity: max(count, 1))
        pointer.initialize(repeating: 0, count: max(count, 1))
    }

    deinit { pointer.deallocate() }

    var array: [Float] { Array(UnsafeBufferPointer(start: pointer, count: count)) }
}

/// C = alpha · A · op(B) + beta · C, row-major; op(B) = Bᵀ when `transposeB`.
@inline(__always)
func gemm(m: Int, n: Int, k: Int, alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
          b: UnsafePointer<Float>, ldb: Int, transposeB: Bool, beta: Float = 0,
          c: UnsafeMutablePointer<Float>, ldc: Int) {
    guard m > 0, n > 0 else { return }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb), beta, c, blasint(ldc))
}

/// y[rows, out] = act(x[rows, in] · Wᵀ + b)
func applyLinear(_ layer: Linear, _ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>,
                 activation: Activation = .linear) {
    gemm(m: rows, n: layer.outFeatures, k: layer.inFeatures, a: x, lda: layer.inFeatures,
         b: layer.weight.pointer, ldb: layer.inFeatures, transposeB: true, c: y, ldc: layer.outFeatures)
    if layer.bias != nil || activation != .linear {
        dk_bias_activation(y, rows, layer.outFeatures, layer.outFeatures, layer.bias?.pointer, activation.kernel)
    }
}

/// x = LayerNorm(x + residual) in place.
func applyNorm(_ norm: Norm, _ x: UnsafeMutablePointer<Float>, rows: Int, width: Int, residual: UnsafePointer<Float>? = nil) {
    dk_layer_norm(x, rows, width, width, residual, width, norm.weight.pointer, norm.bias.pointer, norm.eps)
}

/// Sets the number of threads the matrix products use.
public func setComputeThreads(_ n: Int) {
    openblas_set_num_threads(Int32(max(1, n)))
}
