import CGemm
import Checkpoint
import CKernels
import CQuantKernels
import Dispatch

/// y[rows, n] = x[rows, k] · Wᵀ (+ bias) (+ residual) (then GELU if `gelu`) for W [n, k] in any storage.
/// Packed f32 weights fuse bias, GELU and the residual into the product; quantized weights quantize the
/// activations on the fly (per row for int8, per block of 32 for q4). Output columns are split over the
/// compute threads.
func applyMatrix(_ weight: MatrixWeight, _ x: UnsafePointer<Float>, rows: Int, k: Int, n: Int,
                 bias: UnsafePointer<Float>?, into y: UnsafeMutablePointer<Float>,
                 residual: UnsafePointer<Float>? = nil, gelu: Bool = false, int8Input: QuantizedRows? = nil) {
    switch weight {
    case let .packed(p):
        f32Product(p.operand, x, rows: rows, k: k, n: n, bias: bias, into: y, residual: residual, gelu: gelu)
    case let .f32(w):
        f32Product(.stored(w), x, rows: rows, k: k, n: n, bias: bias, into: y, residual: residual, gelu: gelu)
    case let .bf16(b):
        bf16Product(b, x, rows: rows, k: k, n: n, bias: bias, into: y, residual: residual, gelu: gelu)
    case let .quantized(q):
        guard rows > 0, n > 0 else { return }
        // Each thread finishes its own output columns (residual, then GELU) right after its product, while
        // they are in its cache. cg_gelu is CGemm's vectorized exact GELU (the packed f32 path's epilogue).
        let finish = { (begin: Int, end: Int) in
            guard residual != nil || gelu, begin < end else { return }
            for r in 0 ..< rows {
                let yr = y + r * n + begin
                if let residual {
                    let rr = residual + r * n + begin
                    for i in 0 ..< end - begin { yr[i] += rr[i] }
                }
                if gelu { cg_gelu(yr, yr, end - begin) }
            }
        }
        let threads = max(1, min(ComputeThreads.count, n / 16))
        let ranges = (0 ..< threads).map { t in (n * t / threads, n * (t + 1) / threads) }
        let kernels = q.scheme.kernels
        // int8: a layer's query/key/value share their quantized input (quantized once).
        let shared = q.scheme == .int8 ? int8Input.flatMap { $0.rows == rows && $0.k == k ? $0 : nil } : nil
        let input = shared ?? QuantizedRows(x, rows: rows, k: k, kernels: kernels)
        if q.usesPackedKernel {
            packedQuantizedProduct(q, rows: rows, n: n, k: k, xq: input.codes, xs: input.scales.pointer, bias: bias, into: y, finish: finish)
            return
        }
        let stride = kernels.activationStride(k), scalesPerRow = kernels.activationScalesPerRow(k)
        parallel(threads) { t in
            // Row blocks keep the activation codes of one block in L2 while the weights stream past.
            for r0 in Swift.stride(from: 0, to: rows, by: quantizedRowBlock) {
                let m = min(quantizedRowBlock, rows - r0)
                kernels.gemm(m, n, k, input.codes + r0 * stride, input.scales.pointer + r0 * scalesPerRow, q.codes, q.scales.pointer,
                             bias, y + r0 * n, n, ranges[t].0, ranges[t].1)
            }
            finish(ranges[t].0, ranges[t].1)
        }
        return
    }
}

/// Activations quantized for a quantized product (int8: per-row scales; q4: Q8_0 blocks of 32), kept when
/// several int8 products read the same input (query, key and value of a layer) so it is quantized once.
final class QuantizedRows {
    let rows: Int, k: Int
    private let storage: Activations
    let scales: Activations
    let codes: UnsafeMutablePointer<Int8>

    init(_ x: UnsafePointer<Float>, rows: Int, k: Int, kernels: QuantizedKernels = .int8) {
        self.rows = rows
        self.k = k
        let stride = kernels.activationStride(k), perRow = kernels.activationScalesPerRow(k)
        storage = Activations((rows * stride + 3) / 4, zeroed: false)
        scales = Activations(rows * perRow, zeroed: false)
        let codes = UnsafeMutableRawPointer(storage.pointer).bindMemory(to: Int8.self, capacity: rows * stride)
        self.codes = codes
        let s = scales.pointer
        parallelRows(rows) { r0, m in kernels.quantizeActivations(x + r0 * k, m, k, k, codes + r0 * stride, s + r0 * perRow) }
    }
}

/// y[rows, out] = act(x[rows, in] · Wᵀ + b (+ residual)); exact GELU and the residual fuse into the
/// packed f32 product.
func applyLinear(_ layer: Linear, _ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>,
                 activation: Activation = .linear, residual: UnsafePointer<Float>? = nil, int8Input: QuantizedRows? = nil) {
    let fusedGelu = activation == .gelu
    applyMatrix(layer.weight, x, rows: rows, k: layer.inFeatures, n: layer.outFeatures, bias: layer.bias?.pointer,
                into: y, residual: residual, gelu: fusedGelu && residual == nil, int8Input: int8Input)
    if activation != .linear && !(fusedGelu && residual == nil) {
        dk_bias_activation(y, rows, layer.outFeatures, layer.outFeatures, nil, activation.kernel)
    }
}

/// Products of one input with several same-shaped weights (a layer's query, key and value) in one parallel
/// region: each thread computes its columns of every output in turn, with no hand-off between the products, and
/// the input is rounded (bf16) or quantized (int8) once. Each output column goes through the same kernel call
/// on the same panel-aligned column range as in a separate `applyLinear`, so the bits are the same. Falls back
/// to separate calls (int8 weights still sharing one quantized input) unless every weight is packed f32, bf16
/// or packed int8 (and `k`, `n` agree).
func applyLinears(_ layers: [Linear], _ x: UnsafePointer<Float>, rows: Int, into outputs: [UnsafeMutablePointer<Float>]) {
    guard let first = layers.first, rows > 0, layers.count == outputs.count else { return }
    let k = first.inFeatures, n = first.outFeatures
    let sameShape = layers.allSatisfy { $0.inFeatures == k && $0.outFeatures == n }
    // int8 weights read the input quantized once (QuantizedRows), whichever path multiplies.
    let int8Input = sameShape && layers.allSatisfy({ $0.weight.isInt8 }) ? QuantizedRows(x, rows: rows, k: k) : nil
    func separately() {
        for (layer, y) in zip(layers, outputs) { applyLinear(layer, x, rows: rows, into: y, int8Input: int8Input) }
    }
    guard sameShape else { return separately() }
    let biases = layers.map { $0.bias?.pointer }
    let threads = ComputeThreads.count
    let epilogue = Int32(CG_EPILOGUE_BIAS)
    // Packed f32: every weight already in panels.
    let f32: [(UnsafePointer<Float>, LargeMemory)] = layers.compactMap {
        if case let .packed(p) = $0.weight, case let .packed(panels, memory) = p.operand { return (panels, memory) }
        return nil
    }
    if f32.count == layers.count {
        let parts = max(1, min(threads, (n + Int(CG_PANEL) - 1) / Int(CG_PANEL)))
        withExtendedLifetime(f32.map(\.1)) {
            parallel(parts) { part in
                var begin = 0, end = 0
                cg_column_range(n, parts, part, &begin, &end)
                for (i, y) in outputs.enumerated() {
                    cg_gemm_packed(rows, n, k, x, k, f32[i].0, biases[i], epilogue, nil, n, y, n, begin, end)
                }
            }
        }
        return
    }
    let bf16: [BF16Matrix] = layers.compactMap { if case let .bf16(b) = $0.weight { return b }; return nil }
    if bf16.count == layers.count {
        let pairs = cgb_pairs(k)
        let rounded = Activations(rows * pairs, zeroed: false)
        let words = UnsafeMutableRawPointer(rounded.pointer).bindMemory(to: UInt32.self, capacity: rows * pairs)
        parallelRows(rows) { r0, m in cgb_round_rows(x + r0 * k, m, k, k, words + r0 * pairs, pairs) }
        let parts = max(1, min(threads, (n + Int(CGB_PANEL) - 1) / Int(CGB_PANEL)))
        withExtendedLifetime((bf16, rounded)) {
            parallel(parts) { part in
                var begin = 0, end = 0
                cgb_column_range(n, parts, part, &begin, &end)
                for (i, y) in outputs.enumerated() {
                    cgb_gemm_packed(rows, n, k, words, pairs, bf16[i].packed, biases[i], epilogue, nil, n, y, n, begin, end)
                }
            }
        }
        return
    }
    let int8: [QuantizedMatrix] = layers.compactMap {
        if case let .quantized(q) = $0.weight, q.scheme == .int8, q.usesPackedKernel, q.packedCodes != nil { return q }
        return nil
    }
    if int8.count == layers.count, let input = int8Input {
        let packed = int8.map { $0.packedCodes! }
        let strip = Int(DQ_INT8_PANEL * DQ_INT8_STRIP)
        let parts = max(1, min(threads, (n + strip - 1) / strip))
        let kernels = QuantizedKernels.int8
        withExtendedLifetime((int8, packed.map(\.1), input)) {
            parallel(parts) { part in
                var begin = 0, end = 0
                dq_int8_packed_column_range(n, parts, part, &begin, &end)
                guard begin < end else { return }
                for (i, y) in outputs.enumerated() {
                    let scales = kernels.packedScalesArePacked ? int8[i].packedScales! : int8[i].scales.pointer
                    kernels.gemmPacked(rows, n, k, input.codes, input.scales.pointer, packed[i].0, scales, biases[i], y, n, begin, end)
                }
            }
        }
        return
    }
    separately()
}

/// The f32 product on packed panels, or on the stored rows (cg_gemm_unpacked, a scratch chunk per thread):
/// bias, GELU and the residual fused into the kernel; output columns split over the compute threads.
private func f32Product(_ operand: PackedMatrix.Operand, _ x: UnsafePointer<Float>, rows: Int, k: Int, n: Int,
                        bias: UnsafePointer<Float>?, into y: UnsafeMutablePointer<Float>,
                        residual: UnsafePointer<Float>?, gelu: Bool) {
    guard rows > 0, n > 0 else { return }
    let epilogue = Int32(residual != nil ? CG_EPILOGUE_BIAS_RESIDUAL : (gelu ? CG_EPILOGUE_BIAS_GELU : CG_EPILOGUE_BIAS))
    let parts = max(1, min(ComputeThreads.count, (n + Int(CG_PANEL) - 1) / Int(CG_PANEL)))
    switch operand {
    case let .packed(packed, memory):
        withExtendedLifetime(memory) {
            parallel(parts) { part in
                var begin = 0, end = 0
                cg_column_range(n, parts, part, &begin, &end)
                cg_gemm_packed(rows, n, k, x, k, packed, bias, epilogue, residual, n, y, n, begin, end)
            }
        }
    case let .stored(w):
        // Each thread packs its whole column range into its scratch (pooled: no page faults after the first
        // call of a shape), then the product runs with its usual cache blocking. Very wide products (the MLM
        // decoder over the vocabulary) pack at most 8 MB at a time.
        var widest = 0
        for part in 0 ..< parts {
            var begin = 0, end = 0
            cg_column_range(n, parts, part, &begin, &end)
            widest = max(widest, end - begin)
        }
        let cap = max(Int(CG_PANEL), (2 << 20) / max(cg_panel_stride(k), 1) * Int(CG_PANEL))
        let scratchCount = cg_unpacked_scratch_size(min(widest, cap), k)
        let scratch = Activations(parts * scratchCount, zeroed: false)
        withExtendedLifetime(w) {
            parallel(parts) { part in
                var begin = 0, end = 0
                cg_column_range(n, parts, part, &begin, &end)
                cg_gemm_unpacked(rows, n, k, x, k, w.pointer, k, bias, epilogue, residual, n, y, n, begin, end,
                                 scratch.pointer + part * scratchCount, scratchCount)
            }
        }
    }
    if residual != nil && gelu { dk_bias_activation(y, rows, n, n, nil, DK_ACT_GELU) }
}

/// The bf16 product (CGemm's cgb_gemm_packed): the activations rounded to bf16 pairs once (rows split over
/// the threads), then output panels of 48 split over the threads, bias, GELU and the residual fused as in the
/// f32 product.
private func bf16Product(_ w: BF16Matrix, _ x: UnsafePointer<Float>, rows: Int, k: Int, n: Int,
                         bias: UnsafePointer<Float>?, into y: UnsafeMutablePointer<Float>,
                         residual: UnsafePointer<Float>?, gelu: Bool) {
    guard rows > 0, n > 0 else { return }
    let epilogue = Int32(residual != nil ? CG_EPILOGUE_BIAS_RESIDUAL : (gelu ? CG_EPILOGUE_BIAS_GELU : CG_EPILOGUE_BIAS))
    let pairs = cgb_pairs(k)
    let rounded = Activations(rows * pairs, zeroed: false)
    let words = UnsafeMutableRawPointer(rounded.pointer).bindMemory(to: UInt32.self, capacity: rows * pairs)
    parallelRows(rows) { r0, m in cgb_round_rows(x + r0 * k, m, k, k, words + r0 * pairs, pairs) }
    let parts = max(1, min(ComputeThreads.count, (n + Int(CGB_PANEL) - 1) / Int(CGB_PANEL)))
    withExtendedLifetime(w) {
        parallel(parts) { part in
            var begin = 0, end = 0
            cgb_column_range(n, parts, part, &begin, &end)
            cgb_gemm_packed(rows, n, k, words, pairs, w.packed, bias, epilogue, residual, n, y, n, begin, end)
        }
    }
    withExtendedLifetime(rounded) {}
    if residual != nil && gelu { dk_bias_activation(y, rows, n, n, nil, DK_ACT_GELU) }
}

/// The packed VNNI products (int8 and q4): threads take whole strips of 48 columns and the kernels block the
/// rows themselves. Until the model packs its weights (QuantizedMatrix.pack), each thread packs its columns
/// into a pooled scratch buffer, `chunk` columns at a time (the MLM decoder over a quantized vocabulary
/// is never packed whole), right before multiplying them: the same bits.
private func packedQuantizedProduct(_ q: QuantizedMatrix, rows: Int, n: Int, k: Int, xq: UnsafePointer<Int8>,
                                    xs: UnsafePointer<Float>, bias: UnsafePointer<Float>?, into y: UnsafeMutablePointer<Float>,
                                    finish: (Int, Int) -> Void) {
    let strip = Int(DQ_INT8_PANEL * DQ_INT8_STRIP), chunk = 32 * strip
    let parts = max(1, min(ComputeThreads.count, (n + strip - 1) / strip))
    let packed = q.packedCodes, packedScales = q.packedScales
    let kernels = q.scheme.kernels
    func product(_ codes: UnsafePointer<UInt8>, _ pscales: UnsafePointer<Float>?, columns: Int, _ begin: Int, _ end: Int,
                 ws: UnsafePointer<Float>, bias: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>) {
        kernels.gemmPacked(rows, columns, k, xq, xs, codes, kernels.packedScalesArePacked ? pscales! : ws, bias, y, n, begin, end)
    }
    if let packed {
        withExtendedLifetime(packed.1) {
            parallel(parts) { part in
                var begin = 0, end = 0
                dq_int8_packed_column_range(n, parts, part, &begin, &end)
                guard begin < end else { return }
                product(packed.0, packedScales, columns: n, begin, end, ws: q.scales.pointer, bias: bias, y: y)
                finish(begin, end)
            }
        }
        return
    }
    let width = min(chunk, n)
    let codeBytes = kernels.packedSize(width, k)
    let codeFloats = (codeBytes + 63) / 64 * 16
    let scaleFloats = (kernels.packedScalesSize(width, k) + 15) / 16 * 16
    let scratch = Activations(parts * (codeFloats + scaleFloats), zeroed: false)
    parallel(parts) { part in
        var begin = 0, end = 0
        dq_int8_packed_column_range(n, parts, part, &begin, &end)
        guard begin < end else { return }
        let base = scratch.pointer + part * (codeFloats + scaleFloats)
        let codes = UnsafeMutableRawPointer(base).assumingMemoryBound(to: UInt8.self)
        let pscales = kernels.packedScalesArePacked ? base + codeFloats : nil
        for c0 in stride(from: begin, to: end, by: chunk) {
            let c1 = min(end, c0 + chunk)
            q.packRows(c0, c1, codes: codes, scales: pscales)
            product(codes, pscales, columns: c1 - c0, 0, c1 - c0, ws: q.scales.pointer + c0, bias: bias.map { $0 + c0 }, y: y + c0)
        }
        finish(begin, end)
    }
}

/// Rows per call of the quantized products (activation codes of a block stay in L2).
let quantizedRowBlock = 128
