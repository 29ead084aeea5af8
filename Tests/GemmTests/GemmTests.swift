import CGemm
import Foundation
import TestSupport
import XCTest

// Tests of the packed-weight f32 product (Sources/CGemm, contract in include/cgemm.h):
//  - packing layout and column ranges,
//  - the product against a float64 reference within the documented bound
//      |Y - Y64| <= 1.01 · (K + 1) · 2^-24 · (Σ_k |x||w| + |bias| + |residual|),
//  - the dispatching (AVX2) product against the scalar reference: bit-identical by contract,
//  - every epilogue, residual in place, leading dimensions, edge shapes,
//  - the GELU against double-precision erfc within CG_GELU_MAX_REL_ERROR / CG_PHI_MAX_REL_ERROR.


private func randomArray(_ count: Int, seed: UInt64, scale: Float = 1) -> [Float] {
    var g = SplitMix64(seed)
    return (0..<count).map { _ in (g.unit() + g.unit() + g.unit()) * scale }
}

/// 64-byte aligned float buffer (the packed weights should be 64-byte aligned).
private final class Aligned {
    let pointer: UnsafeMutablePointer<Float>
    let count: Int
    init(_ count: Int) {
        self.count = count
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * 4, alignment: 64)
        pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
        pointer.initialize(repeating: .nan, count: max(count, 1))
    }
    deinit { pointer.deallocate() }
}

private func pack(_ w: [Float], n: Int, k: Int) -> Aligned {
    let p = Aligned(cg_packed_size(n, k))
    cg_pack_weights(w, n, k, p.pointer)
    return p
}

private let panel = Int(CG_PANEL)
private let u = pow(2.0, -24.0)

private func gelu64(_ x: Double) -> Double { x * 0.5 * erfc(-x / 2.0.squareRoot()) }

/// Problem instance with leading dimensions larger than the rows (padding must stay untouched).
private struct Problem {
    let m: Int, n: Int, k: Int
    let ldx: Int, ldy: Int, ldr: Int
    let x: [Float], w: [Float], bias: [Float], residual: [Float]
    let packed: Aligned

    init(m: Int, n: Int, k: Int, seed: UInt64, pad: Int = 0) {
        self.m = m; self.n = n; self.k = k
        ldx = k + pad; ldy = n + pad; ldr = n + 2 * pad
        x = randomArray(m * ldx, seed: seed)
        w = randomArray(n * k, seed: seed &+ 1, scale: 0.1)
        bias = randomArray(n, seed: seed &+ 2)
        residual = randomArray(m * ldr, seed: seed &+ 3, scale: 2)
        packed = pack(w, n: n, k: k)
    }

    /// Runs `f` into a y buffer prefilled with a sentinel; returns it.
    func run(epilogue: Int32, withBias: Bool = true, range: (Int, Int)? = nil, scalar: Bool = false,
             isa: String? = nil, sentinel: Float = -7.25) -> [Float]? {
        var y = [Float](repeating: sentinel, count: max(m * ldy, 1))
        let (nb, ne) = range ?? (0, n)
        var ran = true
        bias.withUnsafeBufferPointer { b in
            let bp = withBias ? b.baseAddress : nil
            if let isa {
                ran = cg_gemm_packed_isa(isa, m, n, k, x, ldx, packed.pointer, bp, epilogue, residual, ldr, &y, ldy, nb, ne) == 1
            } else if scalar {
                cg_gemm_packed_scalar(m, n, k, x, ldx, packed.pointer, bp, epilogue, residual, ldr, &y, ldy, nb, ne)
            } else {
                cg_gemm_packed(m, n, k, x, ldx, packed.pointer, bp, epilogue, residual, ldr, &y, ldy, nb, ne)
            }
        }
        return ran ? y : nil
    }

    func run(epilogue: Int32, withBias: Bool = true, range: (Int, Int)? = nil, scalar: Bool = false,
             sentinel: Float = -7.25) -> [Float] {
        run(epilogue: epilogue, withBias: withBias, range: range, scalar: scalar, isa: nil, sentinel: sentinel)!
    }

    /// Float64 value of the linear part and its bound term Σ|x||w| + |b| + |r|.
    func reference(_ r: Int, _ o: Int, epilogue: Int32, withBias: Bool = true) -> (value: Double, magnitude: Double) {
        var s = 0.0, mag = 0.0
        for j in 0..<k {
            let p = Double(x[r * ldx + j]) * Double(w[o * k + j])
            s += p
            mag += abs(p)
        }
        if withBias && epilogue != CG_EPILOGUE_NONE {
            s += Double(bias[o]); mag += abs(Double(bias[o]))
        }
        if epilogue == CG_EPILOGUE_BIAS_RESIDUAL {
            s += Double(residual[r * ldr + o]); mag += abs(Double(residual[r * ldr + o]))
        }
        return (s, mag)
    }

    /// Checks y against the float64 reference on `samples` entries (all when nil) and the padding.
    /// Returns the largest err / allowed seen.
    @discardableResult
    func check(_ y: [Float], epilogue: Int32, withBias: Bool = true, samples: Int? = nil, columns: Range<Int>? = nil,
               sentinel: Float = -7.25, file: StaticString = #filePath, line: UInt = #line) -> Double {
        let cols = columns ?? 0..<n
        var entries: [(Int, Int)] = []
        if let samples, samples < m * cols.count {
            var g = SplitMix64(UInt64(m * 1_000_003 + n * 1009 + k))
            entries = (0..<samples).map { _ in (g.below(m), cols.lowerBound + g.below(cols.count)) }
        } else {
            for r in 0..<m { for o in cols { entries.append((r, o)) } }
        }
        let bound = 1.01 * Double(k + 1) * u
        var worst = 0.0
        for (r, o) in entries {
            let (s, mag) = reference(r, o, epilogue: epilogue, withBias: withBias)
            let got = Double(y[r * ldy + o])
            let err: Double, allowed: Double
            if epilogue == CG_EPILOGUE_BIAS_GELU {
                let g = gelu64(s)
                err = abs(got - g)
                allowed = 1.13 * bound * mag + Double(CG_GELU_MAX_REL_ERROR) * abs(g) * 1.0001 + 0x1p-148
            } else {
                err = abs(got - s)
                allowed = bound * mag
            }
            worst = max(worst, allowed > 0 ? err / allowed : err)
            if err > allowed {
                XCTFail("m=\(m) n=\(n) k=\(k) ep=\(epilogue) (\(r),\(o)): got \(got) want \(s) err \(err) > \(allowed)",
                        file: file, line: line)
                return worst
            }
        }
        // nothing outside [0, m) x cols may be written (padding columns and out-of-range columns)
        for r in 0..<m {
            for o in 0..<ldy where !cols.contains(o) {
                if y[r * ldy + o].bitPattern != sentinel.bitPattern {
                    XCTFail("m=\(m) n=\(n) k=\(k): wrote outside the range at (\(r),\(o))", file: file, line: line)
                    return worst
                }
            }
        }
        return worst
    }
}

private func sameBits(_ a: [Float], _ b: [Float]) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { $0.bitPattern == $1.bitPattern }
}

final class GemmTests: XCTestCase {
    func testKernelIsa() {
        let isa = String(cString: cg_kernel_isa())
        XCTAssert(isa == "avx512" || isa == "avx2" || isa == "scalar", isa)
        var one: [Float] = [0]
        XCTAssertEqual(cg_gemm_packed_isa("neon", 1, 1, 1, [1], 1, [1], nil, CG_EPILOGUE_NONE, nil, 1, &one, 1, 0, 1), 0)
        #if arch(x86_64)
        print("CGemm kernels: \(isa)")
        #endif
    }

    func testPackingLayout() {
        for (n, k) in [(1, 1), (7, 3), (24, 5), (25, 64), (50, 3), (48, 768)] {
            let w = randomArray(n * k, seed: UInt64(n * 100 + k))
            let stride = cg_panel_stride(k)
            XCTAssertEqual(stride % 16, 0)
            XCTAssertGreaterThanOrEqual(stride, panel * k)
            XCTAssertEqual(cg_packed_size(n, k), (n + panel - 1) / panel * stride)
            let p = pack(w, n: n, k: k)
            for i in 0..<cg_packed_size(n, k) {
                let pi = i / stride, rest = i % stride
                let o = pi * panel + rest % panel, j = rest / panel
                let want: Float = (rest < panel * k && o < n) ? w[o * k + j] : 0
                XCTAssertEqual(p.pointer[i].bitPattern, want.bitPattern, "n=\(n) k=\(k) i=\(i)")
                if p.pointer[i].bitPattern != want.bitPattern { return }
            }
            var back = [Float](repeating: 0, count: n * k)
            cg_unpack_weights(p.pointer, n, k, &back)
            XCTAssert(sameBits(back, w))
        }
    }

    func testColumnRanges() {
        for n in [1, 7, 24, 25, 768, 3072, 3073] {
            for parts in 1...5 {
                var covered = 0
                var sizes: [Int] = []
                for part in 0..<parts {
                    var b = 0, e = 0
                    cg_column_range(n, parts, part, &b, &e)
                    XCTAssertEqual(b, covered, "n=\(n) parts=\(parts)")
                    XCTAssertEqual(b % panel, 0)
                    XCTAssert(e % panel == 0 || e == n)
                    covered = e
                    sizes.append((e - b + panel - 1) / panel)
                }
                XCTAssertEqual(covered, n)
                XCTAssertLessThanOrEqual(sizes.max()! - sizes.min()!, 1)
            }
        }
    }

    /// The shapes of the brief: M ∈ {1, 5, 13, 128}, N ∈ {1, 7, 16, 17, 768}, K ∈ {1, 3, 64, 768, 3072}, plus a
    /// subset with N = 3072. Float64 reference (all entries for small products, a sample for large ones),
    /// dispatching == scalar bit for bit.
    func testShapesAgainstFloat64AndScalar() {
        var shapes: [(Int, Int, Int)] = []
        for m in [1, 5, 13, 128] {
            for n in [1, 7, 16, 17, 768] {
                for k in [1, 3, 64, 768, 3072] { shapes.append((m, n, k)) }
            }
        }
        shapes += [(1, 3072, 768), (5, 3072, 3), (13, 3072, 64), (128, 3072, 768), (5, 3072, 3072)]
        var worst = 0.0, worstLargeK = 0.0
        for (i, (m, n, k)) in shapes.enumerated() {
            let p = Problem(m: m, n: n, k: k, seed: UInt64(i * 7 + 1), pad: i % 3 == 0 ? 3 : 0)
            let y = p.run(epilogue: CG_EPILOGUE_BIAS)
            let ratio = p.check(y, epilogue: CG_EPILOGUE_BIAS, samples: m * n * k > 2_000_000 ? 300 : nil)
            worst = max(worst, ratio)
            if k >= 64 { worstLargeK = max(worstLargeK, ratio) }
            let ys = p.run(epilogue: CG_EPILOGUE_BIAS, scalar: true)
            XCTAssert(sameBits(y, ys), "dispatch != scalar for m=\(m) n=\(n) k=\(k)")
        }
        print(String(format: "%d shapes: largest error / documented bound = %.4f (K >= 64: %.4f)", shapes.count, worst,
                     worstLargeK))
    }

    /// Each SIMD kernel this CPU has, named explicitly (whatever the dispatch picks), against the scalar
    /// reference bit for bit: the AVX-512 kernel's 8 x 48 tiles, its 1-7-row tiles (rows past
    /// a multiple of 8, also past M blocks of 128), its hand-off to the AVX2 kernel (a last single panel), every epilogue, column ranges of odd panel counts, padded
    /// leading dimensions, K blocks (K > 192).
    func testEachKernelMatchesScalar() {
        var tested: [String] = []
        for isa in ["avx2", "avx512"] {
            var ran = false
            for (m, n, k) in [(1, 48, 5), (7, 49, 33), (8, 48, 4), (8, 72, 1), (9, 96, 195), (16, 17, 64), (17, 120, 400),
                              (130, 768, 769), (64, 3072, 64), (24, 50, 3), (45, 96, 1000), (2, 48, 770), (3, 144, 7),
                              (4, 96, 64), (5, 48, 9), (6, 97, 31), (135, 48, 20), (141, 96, 1601)] {
                let p = Problem(m: m, n: n, k: k, seed: UInt64(m * 31 + n * 7 + k), pad: (m + k) % 3)
                for epilogue in [CG_EPILOGUE_NONE, CG_EPILOGUE_BIAS, CG_EPILOGUE_BIAS_GELU, CG_EPILOGUE_BIAS_RESIDUAL] {
                    for range in [(0, n), (min(24, n), n), (0, min(72, n))] where range.0 < range.1 {
                        guard let y = p.run(epilogue: epilogue, withBias: epilogue != CG_EPILOGUE_NONE, range: range, isa: isa) else {
                            continue
                        }
                        ran = true
                        let ys = p.run(epilogue: epilogue, withBias: epilogue != CG_EPILOGUE_NONE, range: range, scalar: true)
                        XCTAssert(sameBits(y, ys), "\(isa) != scalar m=\(m) n=\(n) k=\(k) ep=\(epilogue) range=\(range)")
                    }
                }
            }
            if ran { tested.append(isa) }
        }
        #if arch(x86_64)
        XCTAssert(tested.contains("avx2") || String(cString: cg_kernel_isa()) == "scalar")
        #endif
        print("kernels compared with the scalar reference: \(tested)")
    }

    func testEveryEpilogue() {
        for (m, n, k) in [(5, 17, 64), (13, 50, 3), (128, 96, 768), (7, 768, 300), (4, 24, 1031)] {
            for epilogue in [CG_EPILOGUE_NONE, CG_EPILOGUE_BIAS, CG_EPILOGUE_BIAS_GELU, CG_EPILOGUE_BIAS_RESIDUAL] {
                for withBias in [true, false] {
                    let p = Problem(m: m, n: n, k: k, seed: UInt64(m + n + k), pad: 5)
                    let y = p.run(epilogue: epilogue, withBias: withBias)
                    p.check(y, epilogue: epilogue, withBias: withBias)
                    let ys = p.run(epilogue: epilogue, withBias: withBias, scalar: true)
                    XCTAssert(sameBits(y, ys), "dispatch != scalar m=\(m) n=\(n) k=\(k) ep=\(epilogue) bias=\(withBias)")
                }
            }
        }
    }

    /// residual == y (in place): Y = X·Wᵀ + b + Y.
    func testResidualInPlace() {
        for (m, n, k) in [(5, 17, 64), (128, 768, 768), (3, 48, 1000)] {
            let p = Problem(m: m, n: n, k: k, seed: 99, pad: 0)
            let expected = p.run(epilogue: CG_EPILOGUE_BIAS_RESIDUAL)  // residual is a separate buffer here
            for scalar in [false, true] {
                var y = p.residual  // ldr == ldy here? ldr = n + 0, ldy = n + 0
                XCTAssertEqual(p.ldr, p.ldy)
                p.bias.withUnsafeBufferPointer { b in
                    y.withUnsafeMutableBufferPointer { yb in
                        if scalar {
                            cg_gemm_packed_scalar(m, n, k, p.x, p.ldx, p.packed.pointer, b.baseAddress,
                                                  CG_EPILOGUE_BIAS_RESIDUAL, yb.baseAddress, p.ldy, yb.baseAddress!, p.ldy, 0, n)
                        } else {
                            cg_gemm_packed(m, n, k, p.x, p.ldx, p.packed.pointer, b.baseAddress, CG_EPILOGUE_BIAS_RESIDUAL,
                                           yb.baseAddress, p.ldy, yb.baseAddress!, p.ldy, 0, n)
                        }
                    }
                }
                XCTAssert(sameBits(y, expected), "in-place residual m=\(m) n=\(n) k=\(k) scalar=\(scalar)")
            }
        }
    }

    /// Split over parts: each part's columns equal the full product's, bit for bit; nothing else is written.
    func testColumnRangeProducts() {
        for (m, n, k) in [(13, 768, 64), (5, 17, 33), (128, 3072, 64), (6, 73, 777)] {
            let p = Problem(m: m, n: n, k: k, seed: UInt64(n), pad: 2)
            for epilogue in [CG_EPILOGUE_BIAS, CG_EPILOGUE_BIAS_GELU, CG_EPILOGUE_BIAS_RESIDUAL] {
                let full = p.run(epilogue: epilogue)
                for parts in [2, 3, 5] {
                    var merged = [Float](repeating: -7.25, count: m * p.ldy)
                    for part in 0..<parts {
                        var b = 0, e = 0
                        cg_column_range(n, parts, part, &b, &e)
                        let y = p.run(epilogue: epilogue, range: (b, e))
                        p.check(y, epilogue: epilogue, samples: 200, columns: b..<e)
                        for r in 0..<m { for o in b..<e { merged[r * p.ldy + o] = y[r * p.ldy + o] } }
                    }
                    XCTAssert(sameBits(merged, full), "m=\(m) n=\(n) k=\(k) parts=\(parts) ep=\(epilogue)")
                }
            }
        }
    }

    /// cg_gemm_unpacked (W as stored, packed a chunk at a time into a scratch buffer) gives the bits of the packed
    /// product, with W rows strided (ldw > k), whole-range and small chunks, column ranges, every epilogue and the
    /// residual in place; a scratch smaller than one panel writes nothing.
    func testUnpackedProductMatchesPacked() {
        for (m, n, k, pad) in [(5, 17, 64, 0), (13, 768, 64, 3), (130, 100, 777, 1), (3, 48, 8, 5), (9, 73, 1000, 2)] {
            let p = Problem(m: m, n: n, k: k, seed: UInt64(m * 7 + n), pad: 0)
            let ldw = k + pad
            var wStrided = [Float](repeating: .nan, count: n * ldw)
            for o in 0..<n { for j in 0..<k { wStrided[o * ldw + j] = p.w[o * k + j] } }
            for epilogue in [CG_EPILOGUE_NONE, CG_EPILOGUE_BIAS, CG_EPILOGUE_BIAS_GELU, CG_EPILOGUE_BIAS_RESIDUAL] {
                let expected = p.run(epilogue: epilogue)
                for parts in [1, 2, 3] {
                    for chunkPanels in [1, 2, 1000] {
                        var y = [Float](repeating: -7.25, count: m * p.ldy)
                        for part in 0..<parts {
                            var b = 0, e = 0
                            cg_column_range(n, parts, part, &b, &e)
                            let size = cg_unpacked_scratch_size(min(e - b, chunkPanels * panel), k)
                            let scratch = Aligned(size)
                            p.bias.withUnsafeBufferPointer { bias in
                                cg_gemm_unpacked(m, n, k, p.x, p.ldx, wStrided, ldw, bias.baseAddress, epilogue, p.residual, p.ldr,
                                                 &y, p.ldy, b, e, scratch.pointer, size)
                            }
                        }
                        XCTAssert(sameBits(y, expected), "m=\(m) n=\(n) k=\(k) ldw=\(ldw) ep=\(epilogue) parts=\(parts) chunk=\(chunkPanels)")
                    }
                }
            }
            // In place: y = x · Wᵀ + y.
            var y = p.residual
            XCTAssertEqual(p.ldr, p.ldy)
            let expected = p.run(epilogue: CG_EPILOGUE_BIAS_RESIDUAL)
            let size = cg_unpacked_scratch_size(n, k), scratch = Aligned(size)
            p.bias.withUnsafeBufferPointer { bias in
                y.withUnsafeMutableBufferPointer { yb in
                    cg_gemm_unpacked(m, n, k, p.x, p.ldx, wStrided, ldw, bias.baseAddress, CG_EPILOGUE_BIAS_RESIDUAL,
                                     yb.baseAddress, p.ldy, yb.baseAddress!, p.ldy, 0, n, scratch.pointer, size)
                }
            }
            XCTAssert(sameBits(y, expected), "in place m=\(m) n=\(n) k=\(k)")
        }
        let p = Problem(m: 2, n: 30, k: 16, seed: 3)
        var y = [Float](repeating: -7.25, count: 2 * 30)
        let scratch = Aligned(cg_panel_stride(16) - 1)
        cg_gemm_unpacked(2, 30, 16, p.x, p.ldx, p.w, 16, p.bias, CG_EPILOGUE_BIAS, nil, 0, &y, 30, 0, 30, scratch.pointer, scratch.count)
        XCTAssert(y.allSatisfy { $0 == -7.25 }, "a scratch below one panel must write nothing")
    }

    /// Packing from rows with a stride (the vectorized transposing path for whole panels, k not a multiple of 8).
    func testStridedRowPacking() {
        for (n, k, ld) in [(24, 8, 8), (48, 13, 20), (73, 777, 780), (25, 3, 3), (96, 64, 100)] {
            let w = randomArray(n * ld, seed: UInt64(n + k + ld))
            var dense = [Float](repeating: 0, count: n * k)
            for o in 0..<n { for j in 0..<k { dense[o * k + j] = w[o * ld + j] } }
            let strided = Aligned(cg_packed_size(n, k))
            cg_pack_strided(w, n, k, ld, 1, strided.pointer)
            // The layout's definition: packed[p · S + kk · 24 + j] = W[24p + j, kk], zero elsewhere.
            let stride = cg_panel_stride(k)
            let wrong = (0..<cg_packed_size(n, k)).first { i in
                let rest = i % stride, o = i / stride * panel + rest % panel, j = rest / panel
                let want: Float = (rest < panel * k && o < n) ? w[o * ld + j] : 0
                return strided.pointer[i].bitPattern != want.bitPattern
            }
            XCTAssertNil(wrong, "n=\(n) k=\(k) ld=\(ld)")
            var back = [Float](repeating: 0, count: n * k)
            cg_unpack_weights(strided.pointer, n, k, &back)
            XCTAssert(sameBits(back, dense), "round trip n=\(n) k=\(k) ld=\(ld)")
        }
    }

    func testInvalidRangesAndEmptySizes() {
        let p = Problem(m: 3, n: 50, k: 8, seed: 5)
        for (b, e) in [(1, 24), (0, 25), (24, 60), (48, 24), (72, 50)] {
            let y = p.run(epilogue: CG_EPILOGUE_BIAS, range: (b, e))
            XCTAssert(y.allSatisfy { $0 == -7.25 }, "range (\(b), \(e)) must write nothing")
        }
        // empty range and M = 0: nothing written
        XCTAssert(p.run(epilogue: CG_EPILOGUE_BIAS, range: (24, 24)).allSatisfy { $0 == -7.25 })
        var y = [Float](repeating: 3, count: 8)
        cg_gemm_packed(0, 50, 8, p.x, 8, p.packed.pointer, p.bias, CG_EPILOGUE_BIAS, nil, 0, &y, 50, 0, 50)
        XCTAssert(y.allSatisfy { $0 == 3 })
        // K = 0: the epilogue of the initial value
        let w0 = Aligned(max(cg_packed_size(30, 0), 1))
        cg_pack_weights([], 30, 0, w0.pointer)
        let x0: [Float] = [0]
        for epilogue in [CG_EPILOGUE_NONE, CG_EPILOGUE_BIAS, CG_EPILOGUE_BIAS_GELU, CG_EPILOGUE_BIAS_RESIDUAL] {
            var out = [Float](repeating: 9, count: 2 * 30)
            let res = randomArray(60, seed: 8)
            cg_gemm_packed(2, 30, 0, x0, 0, w0.pointer, p.bias, epilogue, res, 30, &out, 30, 0, 30)
            for r in 0..<2 {
                for o in 0..<30 {
                    var want: Float = 0
                    switch epilogue {
                    case CG_EPILOGUE_BIAS: want = p.bias[o]
                    case CG_EPILOGUE_BIAS_GELU:
                        var g: Float = 0
                        var b = p.bias[o]
                        cg_gelu_scalar(&b, &g, 1)
                        want = g
                    case CG_EPILOGUE_BIAS_RESIDUAL: want = p.bias[o] + res[r * 30 + o]
                    default: want = 0
                    }
                    XCTAssertEqual(out[r * 30 + o].bitPattern, want.bitPattern, "K=0 ep=\(epilogue)")
                }
            }
        }
    }

    /// Odd alignments of x and y (the kernel uses unaligned loads) and a misaligned packed pointer.
    func testUnalignedBuffers() {
        let (m, n, k) = (9, 53, 70)
        let p = Problem(m: m, n: n, k: k, seed: 3)
        let expected = p.run(epilogue: CG_EPILOGUE_BIAS_GELU)
        let shifted = Aligned(cg_packed_size(n, k) + 1)
        cg_pack_weights(p.w, n, k, shifted.pointer + 1)
        var xs = [Float](repeating: 0, count: m * k + 1)
        for i in 0..<(m * k) { xs[i + 1] = p.x[i] }
        var ys = [Float](repeating: 0, count: m * n + 1)
        xs.withUnsafeBufferPointer { xb in
            ys.withUnsafeMutableBufferPointer { yb in
                cg_gemm_packed(m, n, k, xb.baseAddress! + 1, k, shifted.pointer + 1, p.bias, CG_EPILOGUE_BIAS_GELU, nil, 0,
                               yb.baseAddress! + 1, n, 0, n)
            }
        }
        XCTAssert(sameBits(Array(ys[1...]), expected))
    }

    /// Special values propagate like the formula (NaN in x -> NaN in that row).
    func testNonFinite() {
        let p = Problem(m: 5, n: 30, k: 40, seed: 11)
        var x = p.x
        x[2 * p.ldx + 7] = .nan
        var y = [Float](repeating: 0, count: 5 * 30), ys = y
        cg_gemm_packed(5, 30, 40, x, p.ldx, p.packed.pointer, p.bias, CG_EPILOGUE_BIAS_GELU, nil, 0, &y, 30, 0, 30)
        cg_gemm_packed_scalar(5, 30, 40, x, p.ldx, p.packed.pointer, p.bias, CG_EPILOGUE_BIAS_GELU, nil, 0, &ys, 30, 0, 30)
        for o in 0..<30 { XCTAssert(y[2 * 30 + o].isNaN) }
        for r in [0, 1, 3, 4] { for o in 0..<30 { XCTAssert(y[r * 30 + o].isFinite) } }
        XCTAssert(sameBits(y, ys))
    }

    /// Per-call packing of strided operands (attention): S = Q·Kᵀ and C = P·V for one head of width 64 read
    /// out of [T, 768] rows, against float64.
    func testStridedPackingForAttention() {
        let (t, d, ld) = (37, 64, 768)
        let q = randomArray(t * ld, seed: 1), kMat = randomArray(t * ld, seed: 2), v = randomArray(t * ld, seed: 3)
        let head = 128  // column offset of the head inside the rows
        // scores
        let kb = Aligned(cg_packed_size(t, d))
        kMat.withUnsafeBufferPointer { cg_pack_strided($0.baseAddress! + head, t, d, ld, 1, kb.pointer) }
        var s = [Float](repeating: 0, count: t * t), s2 = s
        q.withUnsafeBufferPointer { qp in
            cg_gemm_packed(t, t, d, qp.baseAddress! + head, ld, kb.pointer, nil, CG_EPILOGUE_NONE, nil, 0, &s, t, 0, t)
            cg_gemm_packed_scalar(t, t, d, qp.baseAddress! + head, ld, kb.pointer, nil, CG_EPILOGUE_NONE, nil, 0, &s2, t, 0, t)
        }
        XCTAssert(sameBits(s, s2))
        for i in 0..<t {
            for j in 0..<t {
                var ref = 0.0, mag = 0.0
                for c in 0..<d {
                    let p = Double(q[i * ld + head + c]) * Double(kMat[j * ld + head + c])
                    ref += p; mag += abs(p)
                }
                XCTAssertLessThanOrEqual(abs(Double(s[i * t + j]) - ref), Double(d + 1) * u * mag)
            }
        }
        // context: P [t, t] (row stride t) times V[:, head ..< head + d]
        let p = randomArray(t * t, seed: 4, scale: 0.3)
        let vb = Aligned(cg_packed_size(d, t))
        v.withUnsafeBufferPointer { cg_pack_strided($0.baseAddress! + head, d, t, 1, ld, vb.pointer) }
        var c = [Float](repeating: 0, count: t * d)
        cg_gemm_packed(t, d, t, p, t, vb.pointer, nil, CG_EPILOGUE_NONE, nil, 0, &c, d, 0, d)
        for i in 0..<t {
            for o in 0..<d {
                var ref = 0.0, mag = 0.0
                for j in 0..<t {
                    let pr = Double(p[i * t + j]) * Double(v[j * ld + head + o])
                    ref += pr; mag += abs(pr)
                }
                XCTAssertLessThanOrEqual(abs(Double(c[i * d + o]) - ref), Double(t + 1) * u * mag)
            }
        }
        // strided packing equals plain packing of the gathered matrix
        var gathered = [Float](repeating: 0, count: d * t)
        for o in 0..<d { for j in 0..<t { gathered[o * t + j] = v[j * ld + head + o] } }
        let plain = pack(gathered, n: d, k: t)
        XCTAssert((0..<cg_packed_size(d, t)).allSatisfy { plain.pointer[$0].bitPattern == vb.pointer[$0].bitPattern })
    }

    // MARK: GELU

    /// gelu and Φ against double precision over a dense sample of all floats in [-16, 16] (every 997th bit
    /// pattern plus random ones): relative error within the documented bounds where the result is a normal
    /// float, absolute error <= 2^-148 below; dispatching == scalar bit for bit.
    func testGeluAccuracy() {
        var xs: [Float] = []
        let limit: UInt32 = 0x4180_0000  // 16.0
        var bitsValue: UInt32 = 0
        while bitsValue <= limit {
            xs.append(Float(bitPattern: bitsValue))
            xs.append(Float(bitPattern: bitsValue | 0x8000_0000))
            bitsValue += 997
        }
        var g = SplitMix64(42)
        for _ in 0..<200_000 { xs.append(g.unit() * 6) }
        xs += [0, -0.0, 1, -1, 2, -2, 1.9999999, -1.9999999, 14.5, -14.5, 13.1, -13.1, 5.5, -5.5]
        var y = [Float](repeating: 0, count: xs.count), ys = y, phi = y
        cg_gelu(xs, &y, xs.count)
        cg_gelu_scalar(xs, &ys, xs.count)
        cg_phi_scalar(xs, &phi, xs.count)
        XCTAssert(sameBits(y, ys), "cg_gelu (dispatching) != cg_gelu_scalar")
        var worstGelu = 0.0, worstPhi = 0.0
        for (i, xf) in xs.enumerated() {
            let x = Double(xf)
            let phi64 = 0.5 * erfc(-x / 2.0.squareRoot())
            let g64 = x * phi64
            if phi64 >= 0x1p-126 { worstPhi = max(worstPhi, abs(Double(phi[i]) - phi64) / phi64) }
            if abs(g64) >= 0x1p-126 {
                worstGelu = max(worstGelu, abs(Double(y[i]) - g64) / abs(g64))
            } else {
                XCTAssertLessThanOrEqual(abs(Double(y[i]) - g64), 0x1p-148, "x=\(xf)")
            }
        }
        XCTAssertLessThanOrEqual(worstGelu, Double(CG_GELU_MAX_REL_ERROR))
        XCTAssertLessThanOrEqual(worstPhi, Double(CG_PHI_MAX_REL_ERROR))
        print(String(format: "GELU max relative error %.3e, Φ %.3e over %d samples", worstGelu, worstPhi, xs.count))
    }

    func testGeluSpecialValues() {
        let xs: [Float] = [.nan, .infinity, -.infinity, -0.0, 0, -20, -14.6, 20, .greatestFiniteMagnitude,
                           -.greatestFiniteMagnitude, .leastNonzeroMagnitude, -.leastNonzeroMagnitude]
        var y = [Float](repeating: 1, count: xs.count), ys = y
        cg_gelu(xs, &y, xs.count)
        cg_gelu_scalar(xs, &ys, xs.count)
        XCTAssert(sameBits(y, ys))
        XCTAssert(y[0].isNaN)
        XCTAssertEqual(y[1], .infinity)
        XCTAssert(y[2].isNaN)
        XCTAssertEqual(y[3].bitPattern, (-0.0 as Float).bitPattern)
        XCTAssertEqual(y[4].bitPattern, (0.0 as Float).bitPattern)
        XCTAssertEqual(y[5].bitPattern, (-0.0 as Float).bitPattern)
        XCTAssertEqual(y[6].bitPattern, (-0.0 as Float).bitPattern)
        XCTAssertEqual(y[7], 20)
        XCTAssertEqual(y[8], .greatestFiniteMagnitude)
        XCTAssertEqual(y[9].bitPattern, (-0.0 as Float).bitPattern)
        XCTAssertEqual(abs(y[10]), 0)  // 2^-149 · 0.5 rounds to 0
        // every length 0..17 (vector body + tail) gives the same as element by element
        let many = randomArray(17, seed: 4, scale: 3)
        for len in 0...17 {
            var a = [Float](repeating: 5, count: 17), b = a
            cg_gelu(many, &a, len)
            cg_gelu_scalar(many, &b, len)
            XCTAssert(sameBits(a, b), "len \(len)")
            XCTAssert(a[len...].allSatisfy { $0 == 5 })
        }
    }
}
