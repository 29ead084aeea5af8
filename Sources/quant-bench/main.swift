// quant-bench: single-threaded timings of the quantized products (CQuantKernels) next to a plain f32
// loop and OpenBLAS sgemm (1 thread). Usage: quant-bench [--runs N] [--m M] [--shapes KxN,KxN,...] [--cold]
// Prints the median and best time of N runs and GOPS = 2·M·N·K / time (multiply-adds counted as 2 ops);
// on a shared machine compare the ratios printed per shape (measured side by side), not lone times.
// --cold: the int8 products read one of several copies of the weights in turn (more than 128 MB in
// all, larger than the L3), as in a forward pass, where every weight matrix comes from memory.
import COpenBLAS
import CQuantKernels
import BenchSupport
import Foundation

var runs = 15
var m = 128
var cold = false
var shapes: [(Int, Int)] = [(768, 768), (768, 3072), (3072, 768)]
var args = CommandLine.arguments.dropFirst().makeIterator()
while let a = args.next() {
    switch a {
    case "--runs": runs = Int(args.next() ?? "") ?? runs
    case "--m": m = Int(args.next() ?? "") ?? m
    case "--cold": cold = true
    case "--shapes":
        shapes = (args.next() ?? "").split(separator: ",").compactMap {
            let p = $0.split(separator: "x").compactMap { Int($0) }
            return p.count == 2 ? (p[0], p[1]) : nil
        }
    default:
        print("usage: quant-bench [--runs N] [--m M] [--shapes KxN,...] [--cold]")
        exit(2)
    }
}

openblas_set_num_threads(1)
print("quant-bench: kernels=\(String(cString: dq_kernel_isa())), packed int8=\(String(cString: dq_int8_packed_isa())) "
      + "(preferred: \(dq_int8_packed_preferred() != 0)), M=\(m), median of \(runs) runs, 1 thread"
      + (cold ? ", int8 weights cold (copies > 128 MB)" : ""))
print("GOPS = 2·M·N·K / time. 'int8+q' / 'q4+q' include quantizing the activations. Ratios use medians.")
print("'int8 packed' / 'q4 packed' = dq_gemm_int8_packed / dq_gemm_q4_packed on weights packed once.")

/// Runs body once to warm up, then `runs` times; prints median and best time and GOPS, returns the median.
func bench(_ name: String, ops: Double, runs: Int, _ body: () -> Void) -> Double {
    body()  // warm-up
    var times: [Double] = []
    for _ in 0..<runs {
        let t0 = now()
        body()
        times.append(now() - t0)
    }
    let t = median(times), best = times.min()!
    print(String(format: "  %-22@ median %9.3f ms %7.1f GOPS   best %9.3f ms %7.1f GOPS", name as NSString, t * 1e3,
                 ops / t / 1e9, best * 1e3, ops / best / 1e9))
    return t
}

for (k, n) in shapes {
    var rng = Rng(state: UInt64(k * 31 + n))
    let x = (0..<(m * k)).map { _ in rng.next() }
    let w = (0..<(n * k)).map { _ in rng.next() * 0.05 }
    let bias = (0..<n).map { _ in rng.next() }
    let ops = 2.0 * Double(m) * Double(n) * Double(k)
    print("M=\(m) K=\(k) N=\(n)  (\(String(format: "%.1f", ops / 1e6)) Mop)")

    var xq = [Int8](repeating: 0, count: m * k), xs = [Float](repeating: 0, count: m)
    var wq = [Int8](repeating: 0, count: n * k), ws = [Float](repeating: 0, count: n)
    dq_quantize_weights_int8(w, n, k, &wq, &ws)
    let kp = Int(dq_q4_padded_k(k)), nb = kp / 32
    var xb = [Int8](repeating: 0, count: m * kp), xbs = [Float](repeating: 0, count: m * nb)
    var w4 = [UInt8](repeating: 0, count: n * kp / 2), w4s = [Float](repeating: 0, count: n * nb)
    dq_quantize_weights_q4(w, n, k, &w4, &w4s)
    var y = [Float](repeating: 0, count: m * n)

    dq_quantize_activations_int8(x, m, k, k, &xq, &xs)
    dq_quantize_activations_q8_blocks(x, m, k, k, &xb, &xbs)
    let tF32Loop: Double
    do {
        // plain f32 loop: W transposed once to [K, N], then y[r, :] += x[r, j] · Wt[j, :] (vectorizable)
        var wt = [Float](repeating: 0, count: k * n)
        for o in 0..<n { for j in 0..<k { wt[j * n + o] = w[o * k + j] } }
        tF32Loop = bench("f32 plain loop", ops: ops, runs: runs) {
            x.withUnsafeBufferPointer { xp in
                wt.withUnsafeBufferPointer { wp in
                    y.withUnsafeMutableBufferPointer { yp in
                        for r in 0..<m {
                            let yr = yp.baseAddress! + r * n
                            for o in 0..<n { yr[o] = bias[o] }
                            for j in 0..<k {
                                let a = xp[r * k + j]
                                let wr = wp.baseAddress! + j * n
                                for o in 0..<n { yr[o] += a * wr[o] }
                            }
                        }
                    }
                }
            }
        }
    }
    let tBlas = bench("cblas_sgemm (1 thr)", ops: ops, runs: runs) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k), 1, x, Int32(k), w,
                    Int32(k), 0, &y, Int32(n))
    }
    // Weight copies for --cold (the first is the original), visited in turn.
    let copies = cold ? (128 << 20) / (n * k) + 1 : 1
    let wqCopies = (0 ..< copies).map { _ -> UnsafeMutablePointer<Int8> in  // distinct memory (no copy-on-write sharing)
        let p = UnsafeMutablePointer<Int8>.allocate(capacity: max(n * k, 1))
        p.initialize(from: wq, count: n * k)
        return p
    }
    defer { for p in wqCopies { p.deallocate() } }
    let packedSize = dq_int8_packed_size(n, k)
    let packed = (0 ..< copies).map { _ -> UnsafeMutableRawPointer in
        UnsafeMutableRawPointer.allocate(byteCount: max(packedSize, 1), alignment: 64)
    }
    defer { for p in packed { p.deallocate() } }
    dq_pack_weights_int8(wq, n, k, packed[0].assumingMemoryBound(to: UInt8.self))
    for c in 1 ..< copies { packed[c].copyMemory(from: packed[0], byteCount: packedSize) }
    var visit = 0
    func nextCopy() -> Int {
        visit += 1
        return visit % copies
    }
    let tI8 = bench("int8 gemm", ops: ops, runs: runs) {
        dq_gemm_int8(m, n, k, xq, xs, wqCopies[nextCopy()], ws, bias, &y, n, 0, n)
    }
    _ = bench("int8+q", ops: ops, runs: runs) {
        dq_quantize_activations_int8(x, m, k, k, &xq, &xs)
        dq_gemm_int8(m, n, k, xq, xs, wqCopies[nextCopy()], ws, bias, &y, n, 0, n)
    }
    let tPacked = bench("int8 packed", ops: ops, runs: runs) {
        dq_gemm_int8_packed(m, n, k, xq, xs, packed[nextCopy()].assumingMemoryBound(to: UInt8.self), ws, bias, &y, n, 0, n)
    }
    if String(cString: dq_int8_packed_isa()) == "avx512vnni" && String(cString: dq_kernel_isa()) == "avxvnni" {
        // the 256-bit kernel that AVX-VNNI-only CPUs dispatch to, on this CPU
        _ = bench("int8 packed avxvnni", ops: ops, runs: runs) {
            _ = dq_gemm_int8_packed_isa("avxvnni", m, n, k, xq, xs, packed[nextCopy()].assumingMemoryBound(to: UInt8.self), ws, bias, &y, n, 0, n)
        }
    }
    _ = bench("int8 packed+q", ops: ops, runs: runs) {
        dq_quantize_activations_int8(x, m, k, k, &xq, &xs)
        dq_gemm_int8_packed(m, n, k, xq, xs, packed[nextCopy()].assumingMemoryBound(to: UInt8.self), ws, bias, &y, n, 0, n)
    }
    // The packed product must equal the scalar reference bit for bit.
    var yRef = [Float](repeating: 0, count: m * n)
    dq_gemm_int8_scalar(m, n, k, xq, xs, wq, ws, bias, &yRef, n, 0, n)
    dq_gemm_int8_packed(m, n, k, xq, xs, packed[0].assumingMemoryBound(to: UInt8.self), ws, bias, &y, n, 0, n)
    let identical = zip(y, yRef).allSatisfy { $0.bitPattern == $1.bitPattern }
    var identicalVNNI = true
    if dq_gemm_int8_packed_isa("avxvnni", m, n, k, xq, xs, packed[0].assumingMemoryBound(to: UInt8.self), ws, bias, &y, n, 0, n) == 1 {
        identicalVNNI = zip(y, yRef).allSatisfy { $0.bitPattern == $1.bitPattern }
    }
    print("  int8 packed == scalar reference bit for bit: \(identical && identicalVNNI)")
    let tQ4 = bench("q4 gemm", ops: ops, runs: runs) {
        dq_gemm_q4(m, n, k, xb, xbs, w4, w4s, bias, &y, n, 0, n)
    }
    _ = bench("q4+q", ops: ops, runs: runs) {
        dq_quantize_activations_q8_blocks(x, m, k, k, &xb, &xbs)
        dq_gemm_q4(m, n, k, xb, xbs, w4, w4s, bias, &y, n, 0, n)
    }
    var q4Packed = [UInt8](repeating: 0, count: dq_q4_packed_size(n, k))
    var q4Scales = [Float](repeating: 0, count: dq_q4_packed_scales_size(n, k))
    dq_pack_weights_q4(w4, w4s, n, k, &q4Packed, &q4Scales)
    let tQ4Packed = bench("q4 packed", ops: ops, runs: runs) {
        dq_gemm_q4_packed(m, n, k, xb, xbs, q4Packed, q4Scales, bias, &y, n, 0, n)
    }
    var yQ4 = [Float](repeating: 0, count: m * n), yQ4Ref = yQ4
    dq_gemm_q4_packed(m, n, k, xb, xbs, q4Packed, q4Scales, bias, &yQ4, n, 0, n)
    dq_gemm_q4_scalar(m, n, k, xb, xbs, w4, w4s, bias, &yQ4Ref, n, 0, n)
    print("  q4 packed == scalar reference bit for bit: \(zip(yQ4, yQ4Ref).allSatisfy { $0.bitPattern == $1.bitPattern })")
    _ = bench("int8 gemm scalar ref", ops: ops, runs: 1) {
        dq_gemm_int8_scalar(m, n, k, xq, xs, wq, ws, bias, &y, n, 0, n)
    }
    _ = bench("q4 gemm scalar ref", ops: ops, runs: 1) {
        dq_gemm_q4_scalar(m, n, k, xb, xbs, w4, w4s, bias, &y, n, 0, n)
    }
    _ = bench("int8 packed scalar ref", ops: ops, runs: 1) {
        dq_gemm_int8_packed_scalar(m, n, k, xq, xs, packed[0].assumingMemoryBound(to: UInt8.self), ws, bias, &y, n, 0, n)
    }
    print(String(format: "  speed-up vs sgemm: int8 %.2fx, int8 packed %.2fx, q4 %.2fx; vs f32 loop: int8 %.2fx, q4 %.2fx",
                 tBlas / tI8, tBlas / tPacked, tBlas / tQ4, tF32Loop / tI8, tF32Loop / tQ4))
    print(String(format: "  int8 packed vs int8 gemm: %.2fx; q4 packed vs q4 gemm: %.2fx", tI8 / tPacked, tQ4 / tQ4Packed))
}
