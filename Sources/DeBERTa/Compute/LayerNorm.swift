import CKernels

/// x = LayerNorm(x + residual) in place.
func applyNorm(_ norm: Norm, _ x: UnsafeMutablePointer<Float>, rows: Int, width: Int, residual: UnsafePointer<Float>? = nil) {
    // Rows split over the compute threads (rows are independent; each is normalized the same way whatever
    // the split).
    let parts = max(1, min(ComputeThreads.count, rows / 16))
    parallel(parts) { p in
        let r0 = rows * p / parts, r1 = rows * (p + 1) / parts
        guard r1 > r0 else { return }
        dk_layer_norm(x + r0 * width, r1 - r0, width, width, residual.map { $0 + r0 * width }, width,
                      norm.weight.pointer, norm.bias.pointer, norm.eps)
    }
}
