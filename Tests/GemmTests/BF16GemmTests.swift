import CGemm
import Foundation
import TestSupport
import XCTest

// Tests of the bf16 product (Sources/CGemm, contract in include/cgemm_bf16.h):
//  - f32 -> bf16 rounding (nearest even, NaN, inf, subnormals) and the SIMD row rounding against the scalar one,
//  - the packed layout,
//  - every kernel (vdpbf16ps, AVX-512 F and AVX2 emulations) bit-identical to the scalar reference on odd shapes
//    (M, N, K not multiples of the blocking, K odd), every epilogue, column ranges, several K and M blocks,
//    subnormal sums (the flush of vdpbf16ps),
//  - the scalar reference against float64 sums of the bf16 operands.

private let isas = ["avx2", "avx512", "avx512bf16"]

private func bits(_ x: Float) -> UInt32 { x.bitPattern }

private func randomValues(_ count: Int, seed: UInt64, scale: Float = 1) -> [Float] {
    var g = SplitMix64(seed)
    return (0 ..< count).map { _ in (g.unit() + g.unit() + g.unit()) * scale }
}

private final class Words {
    let pointer: UnsafeMutablePointer<UInt32>
    let count: Int
    init(_ count: Int) {
        self.count = count
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * 4, alignment: 64)
        pointer = raw.bindMemory(to: UInt32.self, capacity: max(count, 1))
        pointer.initialize(repeating: 0xdead_beef, count: max(count, 1))
    }
    deinit { pointer.deallocate() }
    var array: [UInt32] { Array(UnsafeBufferPointer(start: pointer, count: count)) }
}

private struct BF16Problem {
    let m: Int, n: Int, k: Int
    let ldx: Int, ldy: Int, ldr: Int, ldxb: Int
    let x: [Float], w: [Float], bias: [Float], residual: [Float]
    let packed: Words, xb: Words

    init(m: Int, n: Int, k: Int, seed: UInt64, pad: Int = 0, scale: Float = 1) {
        self.m = m; self.n = n; self.k = k
        ldx = k + pad; ldy = n + pad; ldr = n + 2 * pad; ldxb = cgb_pairs(k) + pad
        x = randomValues(m * ldx, seed: seed, scale: scale)
        w = randomValues(n * k, seed: seed &+ 1, scale: 0.1 * scale)
        bias = randomValues(n, seed: seed &+ 2, scale: scale * scale)
        residual = randomValues(m * ldr, seed: seed &+ 3, scale: 2 * scale * scale)
        packed = Words(cgb_packed_words(n, k))
        cgb_pack_weights(w, n, k, k, packed.pointer)
        xb = Words(m * ldxb)
        cgb_round_rows_scalar(x, m, k, ldx, xb.pointer, ldxb)
    }

    func run(isa: String, epilogue: Int32, withBias: Bool = true, range: (Int, Int)? = nil) -> [Float]? {
        var y = [Float](repeating: -7.25, count: max(m * ldy, 1))
        let (nb, ne) = range ?? (0, n)
        let ran = bias.withUnsafeBufferPointer { b in
            cgb_gemm_packed_isa(isa, m, n, k, xb.pointer, ldxb, packed.pointer, withBias ? b.baseAddress : nil, epilogue,
                                residual, ldr, &y, ldy, nb, ne)
        }
        return ran == 1 ? y : nil
    }
}

final class BF16GemmTests: XCTestCase {
    func testRounding() {
        XCTAssertEqual(cgb_from_f32(1.0), 0x3f80)
        XCTAssertEqual(cgb_from_f32(Float(bitPattern: 0x3f80_8000)), 0x3f80, "tie to even (down)")
        XCTAssertEqual(cgb_from_f32(Float(bitPattern: 0x3f81_8000)), 0x3f82, "tie to even (up)")
        XCTAssertEqual(cgb_from_f32(Float(bitPattern: 0x3f80_8001)), 0x3f81, "above the tie")
        XCTAssertEqual(cgb_from_f32(-2.5), 0xc020)
        XCTAssertEqual(cgb_from_f32(.infinity), 0x7f80)
        XCTAssertEqual(cgb_from_f32(-.infinity), 0xff80)
        XCTAssertEqual(cgb_from_f32(.greatestFiniteMagnitude), 0x7f80, "rounds past the largest bf16")
        XCTAssertEqual(cgb_from_f32(Float(bitPattern: 0x7f80_0001)), 0x7fc0, "signalling NaN becomes quiet")
        XCTAssertEqual(cgb_from_f32(Float(bitPattern: 0xffc1_2345)), 0xffc1)
        XCTAssertEqual(cgb_from_f32(Float.leastNonzeroMagnitude), 0x0000, "subnormal -> +0")
        XCTAssertEqual(cgb_from_f32(-Float.leastNormalMagnitude / 2), 0x8000, "subnormal -> -0")
        XCTAssertEqual(cgb_from_f32(Float.leastNormalMagnitude), 0x0080)
        XCTAssertEqual(cgb_from_f32(-0.0), 0x8000)
        XCTAssertEqual(cgb_to_f32(0x3f80), 1.0)
        // Round trip of every bf16 value that is not NaN or subnormal.
        for h in 0 ... 0xffff {
            let f = cgb_to_f32(UInt16(h))
            if f.isNaN || (f != 0 && f.isSubnormal) { continue }
            XCTAssertEqual(cgb_from_f32(f), UInt16(h))
        }
    }

    func testRowRoundingMatchesScalar() {
        // Values around every rounding case: ties, NaN, inf, subnormals, both signs.
        var g = SplitMix64(11)
        let special: [Float] = [0, -0, 1, .infinity, -.infinity, .nan, Float(bitPattern: 0x7f80_0001), Float(bitPattern: 0x3f80_8000),
                                Float(bitPattern: 0x3f81_8000), .leastNonzeroMagnitude, -.leastNormalMagnitude / 3,
                                .greatestFiniteMagnitude, -.greatestFiniteMagnitude, .leastNormalMagnitude]
        for k in [1, 2, 3, 15, 16, 17, 31, 33, 65, 127, 768] {
            for m in [1, 3] {
                let ldx = k + 3, ldxb = cgb_pairs(k) + 2
                let x: [Float] = (0 ..< m * ldx).map { i in
                    switch g.below(4) {
                    case 0: return special[g.below(special.count)]
                    case 1: return Float(bitPattern: UInt32(truncatingIfNeeded: g.next()))
                    default: return g.unit() * 10
                    }
                }
                let reference = Words(m * ldxb)
                cgb_round_rows_scalar(x, m, k, ldx, reference.pointer, ldxb)
                for r in 0 ..< m {
                    for i in 0 ..< cgb_pairs(k) {
                        let lo = UInt32(cgb_from_f32(x[r * ldx + 2 * i]))
                        let hi = 2 * i + 1 < k ? UInt32(cgb_from_f32(x[r * ldx + 2 * i + 1])) : 0
                        XCTAssertEqual(reference.array[r * ldxb + i], lo | hi << 16)
                    }
                    XCTAssertEqual(reference.array[r * ldxb + cgb_pairs(k)], 0xdead_beef, "padding words untouched")
                }
                for isa in ["avx2", "avx512"] {
                    let out = Words(m * ldxb)
                    guard cgb_round_rows_isa(isa, x, m, k, ldx, out.pointer, ldxb) == 1 else { continue }
                    XCTAssertEqual(out.array, reference.array, "\(isa) rounding, m \(m) k \(k)")
                }
            }
        }
    }

    func testPackingLayout() {
        let n = 50, k = 5
        let w = (0 ..< n * k).map { Float($0) }
        let packed = Words(cgb_packed_words(n, k))
        XCTAssertEqual(packed.count, 2 * 48 * 3)
        cgb_pack_weights(w, n, k, k, packed.pointer)
        let p = packed.array
        for o in 0 ..< 96 {
            for i in 0 ..< 3 {
                let word = p[o / 48 * 48 * 3 + i * 48 + o % 48]
                let lo = o < n ? UInt32(cgb_from_f32(w[o * k + 2 * i])) : 0
                let hi = o < n && 2 * i + 1 < k ? UInt32(cgb_from_f32(w[o * k + 2 * i + 1])) : 0
                XCTAssertEqual(word, lo | hi << 16, "o \(o) pair \(i)")
            }
        }
        var begin = 0, end = 0
        cgb_column_range(100, 2, 1, &begin, &end)
        XCTAssertEqual([begin, end], [48, 100])
        cgb_column_range(100, 4, 3, &begin, &end)
        XCTAssertEqual([begin, end], [96, 100])
    }

    /// Packing long rows (several rounding chunks, K odd, a row stride) with rounding edge cases: every word as
    /// cgb_from_f32 gives it.
    func testPackingLongRowsMatchesScalarRounding() {
        let n = 53, k = 4099, ldw = k + 5
        var g = SplitMix64(5)
        let w: [Float] = (0 ..< n * ldw).map { i in
            switch i % 7 {
            case 0: return Float(bitPattern: UInt32(truncatingIfNeeded: g.next()))
            case 1: return Float(bitPattern: 0x3f80_8000 | UInt32(g.below(2)) << 16)
            default: return g.unit()
            }
        }
        let packed = Words(cgb_packed_words(n, k))
        cgb_pack_weights(w, n, k, ldw, packed.pointer)
        let p = packed.array, pairs = cgb_pairs(k)
        var mismatches = 0
        for o in 0 ..< 96 {
            for i in 0 ..< pairs {
                let lo = o < n ? UInt32(cgb_from_f32(w[o * ldw + 2 * i])) : 0
                let hi = o < n && 2 * i + 1 < k ? UInt32(cgb_from_f32(w[o * ldw + 2 * i + 1])) : 0
                if p[o / 48 * 48 * pairs + i * 48 + o % 48] != lo | hi << 16 { mismatches += 1 }
            }
        }
        XCTAssertEqual(mismatches, 0)
    }

    /// Every kernel gives the scalar reference's bits on odd shapes, every epilogue.
    func testEachKernelMatchesScalarOnOddShapes() throws {
        let sizes = [1, 3, 17, 33, 65, 127]
        var compared = 0
        var seed: UInt64 = 100
        for m in sizes {
            for n in sizes {
                for k in sizes + [2, 48] {
                    seed &+= 1
                    let problem = BF16Problem(m: m, n: n, k: k, seed: seed, pad: Int(seed % 3))
                    let epilogues: [Int32] = [CG_EPILOGUE_NONE, CG_EPILOGUE_BIAS, CG_EPILOGUE_BIAS_GELU, CG_EPILOGUE_BIAS_RESIDUAL]
                    let epilogue = epilogues[Int(seed % 4)]
                    let reference = try XCTUnwrap(problem.run(isa: "scalar", epilogue: epilogue))
                    for isa in isas {
                        guard let y = problem.run(isa: isa, epilogue: epilogue) else { continue }
                        XCTAssertEqual(y.map(bits), reference.map(bits), "\(isa) m \(m) n \(n) k \(k) epilogue \(epilogue)")
                        compared += 1
                    }
                }
            }
        }
        XCTAssertGreaterThan(compared, 0)
    }

    /// Several K blocks (partial sums stored and reloaded), several M blocks, row tails, every epilogue with and
    /// without bias, column ranges.
    func testBlockingEpiloguesAndRanges() throws {
        for (m, n, k) in [(131, 97, 1537), (9, 145, 769), (130, 48, 3073), (8, 96, 770)] {
            let problem = BF16Problem(m: m, n: n, k: k, seed: UInt64(m * n + k), pad: 1)
            for epilogue in [CG_EPILOGUE_NONE, CG_EPILOGUE_BIAS, CG_EPILOGUE_BIAS_GELU, CG_EPILOGUE_BIAS_RESIDUAL] {
                for withBias in [true, false] {
                    let reference = try XCTUnwrap(problem.run(isa: "scalar", epilogue: epilogue, withBias: withBias))
                    for isa in isas {
                        guard let y = problem.run(isa: isa, epilogue: epilogue, withBias: withBias) else { continue }
                        XCTAssertEqual(y.map(bits), reference.map(bits), "\(isa) \(m)x\(n)x\(k) epilogue \(epilogue) bias \(withBias)")
                    }
                }
            }
            // A column range: only its columns are written, with the same bits.
            let range = (48, min(n, 96))
            let reference = try XCTUnwrap(problem.run(isa: "scalar", epilogue: CG_EPILOGUE_BIAS, range: range))
            for r in 0 ..< m {
                for o in 0 ..< problem.ldy where o < range.0 || o >= range.1 {
                    XCTAssertEqual(reference[r * problem.ldy + o], -7.25)
                }
            }
            for isa in isas {
                guard let y = problem.run(isa: isa, epilogue: CG_EPILOGUE_BIAS, range: range) else { continue }
                XCTAssertEqual(y.map(bits), reference.map(bits), "\(isa) range \(range)")
            }
        }
    }

    /// Tiny operands whose sums fall into the subnormal range: flushed to zero after every step, as vdpbf16ps.
    func testSubnormalSumsAreFlushed() throws {
        for scale: Float in [1e-19, 3e-20, 1e-21] {
            let problem = BF16Problem(m: 17, n: 65, k: 33, seed: 7, scale: scale)
            let reference = try XCTUnwrap(problem.run(isa: "scalar", epilogue: CG_EPILOGUE_BIAS_RESIDUAL))
            XCTAssertTrue(reference.allSatisfy { $0 == 0 || !$0.isSubnormal }, "no subnormal result")
            for isa in isas {
                guard let y = problem.run(isa: isa, epilogue: CG_EPILOGUE_BIAS_RESIDUAL) else { continue }
                XCTAssertEqual(y.map(bits), reference.map(bits), "\(isa) scale \(scale)")
            }
        }
        // The flush itself: one pair whose product is subnormal gives a signed zero.
        let problem = BF16Problem(m: 1, n: 1, k: 2, seed: 1)
        let x: [Float] = [1e-20, -1e-20]
        let w: [Float] = [1e-20, 1e-20]
        cgb_pack_weights(w, 1, 2, 2, problem.packed.pointer)
        cgb_round_rows_scalar(x, 1, 2, 2, problem.xb.pointer, problem.ldxb)
        for isa in ["scalar"] + isas {
            var y: [Float] = [7]
            guard cgb_gemm_packed_isa(isa, 1, 1, 2, problem.xb.pointer, problem.ldxb, problem.packed.pointer, nil, CG_EPILOGUE_NONE,
                                      nil, 1, &y, 1, 0, 1) == 1 else { continue }
            // odd element first: 0 + (-1e-40) -> -0, then -0 + 1e-40 -> +0 (flushed each time)
            XCTAssertEqual(y[0].bitPattern, Float(0).bitPattern, isa)
        }
    }

    /// The scalar reference is the f32-accumulated sum of the bf16-rounded operands: within the recursive-sum bound
    /// of float64 sums of those operands.
    func testScalarAgainstFloat64() throws {
        let m = 5, n = 50, k = 301
        let problem = BF16Problem(m: m, n: n, k: k, seed: 3)
        let y = try XCTUnwrap(problem.run(isa: "scalar", epilogue: CG_EPILOGUE_BIAS))
        func b(_ v: Float) -> Double { Double(cgb_to_f32(cgb_from_f32(v))) }
        for r in 0 ..< m {
            for o in 0 ..< n {
                var sum = Double(problem.bias[o]), magnitude = abs(Double(problem.bias[o]))
                for j in 0 ..< k {
                    let p = b(problem.x[r * problem.ldx + j]) * b(problem.w[o * k + j])
                    sum += p
                    magnitude += abs(p)
                }
                let bound = 1.01 * Double(k + 1) * pow(2.0, -24) * magnitude
                XCTAssertLessThanOrEqual(abs(Double(y[r * problem.ldy + o]) - sum), bound)
            }
        }
    }

    func testKernelNames() {
        XCTAssertTrue(["scalar", "avx2", "avx512", "avx512bf16"].contains(String(cString: cgb_kernel_isa())))
        var y: [Float] = [0]
        XCTAssertEqual(cgb_gemm_packed_isa("neon", 1, 1, 1, [0], 1, [0], nil, CG_EPILOGUE_NONE, nil, 1, &y, 1, 0, 1), 0)
    }
}
