import CCPUFeatures
import CQuantKernels
import Foundation
import TestSupport
import XCTest


/// Value mixes that exercise the quantizers: Gaussian-like, outlier rows, exact ties, zeros.
private func makeData(_ count: Int, seed: UInt64, style: Int = 0) -> [Float] {
    var g = SplitMix64(seed)
    var out = [Float](repeating: 0, count: count)
    for i in 0..<count {
        switch style {
        case 1:  // sparse outliers
            out[i] = g.below(50) == 0 ? g.unit() * 40 : g.unit() * 0.1
        case 2:  // integers and halves: many exact ties after scaling
            out[i] = Float(g.below(9) - 4) * 0.5
        case 3:  // some exact zeros
            out[i] = g.below(3) == 0 ? 0 : g.unit()
        default:
            out[i] = (g.unit() + g.unit() + g.unit()) * 0.7
        }
    }
    return out
}

private func bits(_ a: [Float]) -> [UInt32] { a.map { $0.bitPattern } }

// MARK: - Swift re-statements of the documented formulas (independent of the C code)

private func refRound(_ v: Float) -> Int8 {
    let r = v.rounded(.toNearestOrEven)
    if r.isNaN { return 0 }
    return Int8(max(-127, min(127, r)))
}

private func refQuantizeSpan(_ x: ArraySlice<Float>) -> (q: [Int8], scale: Float) {
    var amax: Float = 0
    var nan = false
    for v in x {
        if v.isNaN { nan = true } else { amax = max(amax, abs(v)) }
    }
    let s: Float = nan ? .nan : amax / 127
    if s == 0 { return ([Int8](repeating: 0, count: x.count), s) }
    return (x.map { refRound($0 / s) }, s)
}

private func refQ4Block(_ x: [Float]) -> (codes: [UInt8], d: Float) {
    var amax: Float = 0, m: Float = 0
    for v in x where amax < abs(v) {
        amax = abs(v)
        m = v
    }
    let d = m / -8
    let id: Float = d != 0 ? 1 / d : 0
    let codes = x.map { v -> UInt8 in
        let p = v * id
        let t = p + 8.5
        return UInt8(min(15, Int(t)))  // t in [0, 16.5] for finite inputs; Int() truncates
    }
    return (codes, d)
}

final class QuantizedKernelTests: XCTestCase {
    static let ms = [1, 3, 7, 33]
    static let ns = [1, 5, 17, 64]
    static let ks = [1, 31, 32, 33, 95, 768]

    func testReportsKernelISA() throws {
        let isa = String(cString: dq_kernel_isa())
        print("dq_kernel_isa: \(isa)")
        #if arch(x86_64) && os(Linux)
        // The dispatch must pick AVX2 exactly when the CPU offers AVX2 + FMA (Linux lists these flags
        // only when the OS also saves the YMM state).
        let info = try String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)
        guard let flagsLine = info.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else {
            throw XCTSkip("no flags line in /proc/cpuinfo")
        }
        let flags = Set(flagsLine.split(separator: " ").map(String.init))
        // AVX-VNNI (Linux flag "avx_vnni") on top of AVX2 + FMA selects the VNNI int8 kernel.
        let expected = flags.contains("avx2") && flags.contains("fma")
            ? (flags.contains("avx_vnni") ? "avxvnni" : "avx2") : "scalar"
        XCTAssertEqual(isa, expected)
        #elseif arch(x86_64)
        XCTAssert(isa == "avxvnni" || isa == "avx2" || isa == "scalar")
        #else
        XCTAssertEqual(isa, "scalar")
        #endif
    }

    // MARK: quantizers equal the documented formulas; dispatch equals scalar

    func testInt8QuantizersMatchFormulaAndEachOther() {
        for k in Self.ks + [8, 64, 100] {
            for style in 0..<4 {
                let m = 5, ldx = k + 3
                var x = makeData(m * ldx, seed: UInt64(k * 10 + style), style: style)
                if k > 2 { x[ldx + 1] = .nan }  // row 1 -> scale NaN, zero codes
                if k > 2 { x[2 * ldx] = .infinity }  // row 2 -> scale inf, zero codes
                var q1 = [Int8](repeating: 99, count: m * k), q2 = q1
                var s1 = [Float](repeating: 9, count: m), s2 = s1
                dq_quantize_activations_int8(x, m, k, ldx, &q1, &s1)
                dq_quantize_activations_int8_scalar(x, m, k, ldx, &q2, &s2)
                XCTAssertEqual(q1, q2, "k=\(k) style=\(style)")
                XCTAssertEqual(bits(s1), bits(s2), "k=\(k) style=\(style)")
                for r in 0..<m {
                    let ref = refQuantizeSpan(x[(r * ldx)..<(r * ldx + k)])
                    XCTAssertEqual(Array(q2[(r * k)..<(r * k + k)]), ref.q, "k=\(k) r=\(r)")
                    XCTAssert(s2[r] == ref.scale || (s2[r].isNaN && ref.scale.isNaN))
                }
                // weights use the same formula
                let w = Array(x[0..<(m * k)].map { $0.isFinite ? $0 : 1 })
                var qw = [Int8](repeating: 0, count: m * k), sw = [Float](repeating: 0, count: m)
                var qa = qw, sa = sw
                dq_quantize_weights_int8(w, m, k, &qw, &sw)
                dq_quantize_activations_int8_scalar(w, m, k, k, &qa, &sa)
                XCTAssertEqual(qw, qa)
                XCTAssertEqual(bits(sw), bits(sa))
            }
        }
    }

    func testQ8BlockQuantizersMatchFormulaAndEachOther() {
        for k in Self.ks + [64, 100, 257] {
            for style in 0..<4 {
                let m = 4, ldx = k + 1
                let kp = Int(dq_q4_padded_k(k)), nb = kp / 32
                var x = makeData(m * ldx, seed: UInt64(k * 7 + style), style: style)
                if k > 40 { x[ldx + 35] = .nan }
                var q1 = [Int8](repeating: 99, count: m * kp), q2 = q1
                var s1 = [Float](repeating: 9, count: m * nb), s2 = s1
                dq_quantize_activations_q8_blocks(x, m, k, ldx, &q1, &s1)
                dq_quantize_activations_q8_blocks_scalar(x, m, k, ldx, &q2, &s2)
                XCTAssertEqual(q1, q2, "k=\(k) style=\(style)")
                XCTAssertEqual(bits(s1), bits(s2), "k=\(k) style=\(style)")
                for r in 0..<m {
                    for b in 0..<nb {
                        let lo = r * ldx + b * 32, hi = r * ldx + min(k, b * 32 + 32)
                        let ref = refQuantizeSpan(x[lo..<hi])
                        let got = Array(q2[(r * kp + b * 32)..<(r * kp + b * 32 + 32)])
                        XCTAssertEqual(Array(got[0..<ref.q.count]), ref.q)
                        XCTAssert(got[ref.q.count...].allSatisfy { $0 == 0 }, "padding must be zero")
                        let s = s2[r * nb + b]
                        XCTAssert(s == ref.scale || (s.isNaN && ref.scale.isNaN))
                    }
                }
            }
        }
    }

    func testQ4QuantizerMatchesFormulaAndPacking() {
        for k in [1, 31, 32, 33, 95, 96, 768] {
            for style in 0..<4 {
                let n = 3
                let kp = Int(dq_q4_padded_k(k)), nb = kp / 32
                XCTAssertEqual(kp % 32, 0)
                XCTAssert(kp >= k && kp - k < 32)
                let w = makeData(n * k, seed: UInt64(k * 13 + style), style: style)
                var packed = [UInt8](repeating: 0xAA, count: n * kp / 2)
                var scales = [Float](repeating: 9, count: n * nb)
                dq_quantize_weights_q4(w, n, k, &packed, &scales)
                for o in 0..<n {
                    for b in 0..<nb {
                        var xb = [Float](repeating: 0, count: 32)
                        for j in 0..<32 where b * 32 + j < k { xb[j] = w[o * k + b * 32 + j] }
                        let ref = refQ4Block(xb)
                        XCTAssertEqual(scales[o * nb + b].bitPattern, ref.d.bitPattern)
                        for j in 0..<16 {
                            let byte = packed[o * kp / 2 + b * 16 + j]
                            XCTAssertEqual(byte & 15, ref.codes[j], "low nibble = element j")
                            XCTAssertEqual(byte >> 4, ref.codes[j + 16], "high nibble = element j+16")
                        }
                    }
                }
            }
        }
        // A hand-checked block: m = -4 (the first of the two largest magnitudes), d = 0.5.
        var x = [Float](repeating: 0, count: 32)
        x[0] = 1.0; x[3] = -4.0; x[5] = 4.0; x[16] = 0.25; x[17] = 0.24; x[20] = 3.8
        var packed = [UInt8](repeating: 0, count: 16), scales: [Float] = [0]
        dq_quantize_weights_q4(x, 1, 32, &packed, &scales)
        XCTAssertEqual(scales[0], 0.5)
        // codes: 1.0 -> 2 + 8.5 -> 10; -4 -> -8 + 8.5 -> 0; 4 -> 16.5 -> clamp 15; 0 -> 8;
        // 0.25 -> 0.5 + 8.5 = 9.0 -> 9; 0.24 -> 8.98 -> 8; 3.8 -> 7.6 + 8.5 = 16.1 -> 15
        XCTAssertEqual(packed[0], 10 | (9 << 4))
        XCTAssertEqual(packed[1], 8 | (8 << 4))
        XCTAssertEqual(packed[3], 0 | (8 << 4))
        XCTAssertEqual(packed[4], 8 | (15 << 4))
        XCTAssertEqual(packed[5], 15 | (8 << 4))
        var back = [Float](repeating: 0, count: 32)
        dq_dequantize_weights_q4(packed, scales, 1, 32, &back)
        XCTAssertEqual(back[3], -4.0, "m is reproduced exactly")
        XCTAssertEqual(back[5], 3.5, "the clamp case: +8·|d| -> 7·d")
        // all-zero block: d = -0.0, codes 8, values zero
        dq_quantize_weights_q4([Float](repeating: 0, count: 32), 1, 32, &packed, &scales)
        XCTAssertEqual(scales[0].bitPattern, (-0.0 as Float).bitPattern)
        XCTAssert(packed.allSatisfy { $0 == 0x88 })
    }

    // MARK: quantize -> dequantize error bounds

    func testInt8DequantizeErrorBound() {
        for k in Self.ks {
            for style in 0..<4 {
                let n = 9
                var w = makeData(n * k, seed: UInt64(k + 100 * style), style: style)
                if k > 4 { w[k + 2] = 1e30; w[2 * k] = -3.0e38; w[3 * k + 1] = 1e-30 }
                var q = [Int8](repeating: 0, count: n * k), s = [Float](repeating: 0, count: n)
                dq_quantize_weights_int8(w, n, k, &q, &s)
                var back = [Float](repeating: 0, count: n * k)
                dq_dequantize_weights_int8(q, s, n, k, &back)
                for o in 0..<n {
                    let sc = s[o]
                    XCTAssert(sc.isFinite && sc >= 0)
                    for j in 0..<k {
                        let v = w[o * k + j], d = back[o * k + j]
                        XCTAssert(abs(q[o * k + j]) <= 127)
                        // scale/2 from rounding, plus f32 rounding of the quotient and the product
                        let bound = Double(sc) / 2 * (1 + 1e-6) + Double(abs(v)) * 3e-7
                        XCTAssertLessThanOrEqual(abs(Double(v) - Double(d)), bound, "k=\(k) o=\(o) j=\(j)")
                    }
                }
            }
        }
    }

    /// Documented edge: 127 · fl(FLT_MAX / 127) rounds past FLT_MAX, so dequantizing ±FLT_MAX gives ±inf.
    func testInt8DequantizeOfFloatMaxOverflows() {
        let w: [Float] = [-Float.greatestFiniteMagnitude, 1, Float.greatestFiniteMagnitude]
        var q = [Int8](repeating: 0, count: 3), s: [Float] = [0]
        dq_quantize_weights_int8(w, 1, 3, &q, &s)
        XCTAssertEqual(q, [-127, 0, 127])
        XCTAssert(s[0].isFinite)
        var back = [Float](repeating: 0, count: 3)
        dq_dequantize_weights_int8(q, s, 1, 3, &back)
        XCTAssertEqual(back, [-.infinity, 0, .infinity])
    }

    func testQ4DequantizeErrorBound() {
        var clampCases = 0
        for k in Self.ks + [96, 200] {
            for style in 0..<4 {
                let n = 7
                var w = makeData(n * k, seed: UInt64(k * 3 + 1000 * style), style: style)
                if k > 4 { w[k + 2] = 1e30; w[2 * k] = -3.0e38; w[3 * k + 1] = 1e-30 }
                let kp = Int(dq_q4_padded_k(k)), nb = kp / 32
                var packed = [UInt8](repeating: 0, count: n * kp / 2), s = [Float](repeating: 0, count: n * nb)
                dq_quantize_weights_q4(w, n, k, &packed, &s)
                var back = [Float](repeating: 0, count: n * k)
                dq_dequantize_weights_q4(packed, s, n, k, &back)
                for o in 0..<n {
                    for j in 0..<k {
                        let d = Double(abs(s[o * nb + j / 32]))
                        let v = Double(w[o * k + j]), deq = Double(back[o * k + j])
                        XCTAssert(deq.isFinite)
                        let err = abs(v - deq)
                        let slop = abs(v) * 3e-7
                        // x·id >= 7.5 (opposite sign to m, |x| > 7.5|d|): clamped to 7d, error <= |d|
                        let isClamp = d > 0 && v / Double(s[o * nb + j / 32]) >= 7.5 - 1e-6
                        if isClamp {
                            clampCases += 1
                            XCTAssertLessThanOrEqual(err, d * (1 + 1e-6) + slop)
                        } else {
                            XCTAssertLessThanOrEqual(err, d / 2 * (1 + 1e-6) + slop, "k=\(k) o=\(o) j=\(j) v=\(v)")
                        }
                    }
                }
            }
        }
        XCTAssertGreaterThan(clampCases, 0, "the data should contain some clamp cases")
    }

    // MARK: products: dispatch == scalar, bit for bit, on odd shapes and column ranges

    private func columnRanges(_ n: Int) -> [(Int, Int)] {
        var r: [(Int, Int)] = [(0, n)]
        if n > 2 { r.append((1, n - 1)) }
        if n > 4 { r.append((n / 3, 2 * n / 3 + 1)) }
        r.append((n - 1, n))
        return r
    }

    func testInt8GemmDispatchEqualsScalar() {
        var cases = 0
        for m in Self.ms {
            for n in Self.ns {
                for k in Self.ks {
                    let seed = UInt64(m * 1_000_000 + n * 1000 + k)
                    let x = makeData(m * k, seed: seed, style: Int(seed % 4))
                    let w = makeData(n * k, seed: seed ^ 0xABCDEF, style: Int((seed / 4) % 4))
                    let bias = makeData(n, seed: seed ^ 0x55)
                    var xq = [Int8](repeating: 0, count: m * k), xs = [Float](repeating: 0, count: m)
                    var wq = [Int8](repeating: 0, count: n * k), ws = [Float](repeating: 0, count: n)
                    dq_quantize_activations_int8(x, m, k, k, &xq, &xs)
                    dq_quantize_weights_int8(w, n, k, &wq, &ws)
                    let ldy = n + 2
                    for (b, e) in columnRanges(n) {
                        for useBias in [false, true] {
                            var y1 = [Float](repeating: -7, count: m * ldy), y2 = y1
                            let bp: [Float]? = useBias ? bias : nil
                            bp.withOptionalPointer { bptr in
                                dq_gemm_int8(m, n, k, xq, xs, wq, ws, bptr, &y1, ldy, b, e)
                                dq_gemm_int8_scalar(m, n, k, xq, xs, wq, ws, bptr, &y2, ldy, b, e)
                            }
                            XCTAssertEqual(bits(y1), bits(y2), "m=\(m) n=\(n) k=\(k) cols=\(b)..<\(e)")
                            for r in 0..<m {
                                for c in 0..<ldy where c < b || c >= e {
                                    XCTAssertEqual(y1[r * ldy + c], -7, "column outside the range written")
                                }
                            }
                            cases += 1
                        }
                    }
                }
            }
        }
        print("int8 dispatch==scalar cases: \(cases)")
    }

    /// Every int8 kernel this CPU can run (scalar, AVX2, AVX-VNNI), called explicitly, against the scalar
    /// reference: the dispatch test above only covers the kernel this CPU selects.
    func testInt8EachKernelEqualsScalar() {
        let isa = String(cString: dq_kernel_isa())
        var ran: [String: Int] = [:]
        for m in Self.ms {
            for n in Self.ns {
                for k in Self.ks + [64, 100, 3072] {
                    let seed = UInt64(m * 1_000_000 + n * 1000 + k) ^ 0x77
                    let x = makeData(m * k, seed: seed, style: Int(seed % 4))
                    let w = makeData(n * k, seed: seed ^ 0xABCDEF, style: Int((seed / 4) % 4))
                    let bias = makeData(n, seed: seed ^ 0x55)
                    var xq = [Int8](repeating: 0, count: m * k), xs = [Float](repeating: 0, count: m)
                    var wq = [Int8](repeating: 0, count: n * k), ws = [Float](repeating: 0, count: n)
                    dq_quantize_activations_int8(x, m, k, k, &xq, &xs)
                    dq_quantize_weights_int8(w, n, k, &wq, &ws)
                    let ldy = n + 3
                    for (b, e) in columnRanges(n) {
                        for useBias in [false, true] {
                            let bp: [Float]? = useBias ? bias : nil
                            var ref = [Float](repeating: -7, count: m * ldy)
                            bp.withOptionalPointer { bptr in
                                dq_gemm_int8_scalar(m, n, k, xq, xs, wq, ws, bptr, &ref, ldy, b, e)
                            }
                            for kernel in ["scalar", "avx2", "avxvnni"] {
                                var y = [Float](repeating: -7, count: m * ldy)
                                let ok = bp.withOptionalPointer { bptr in
                                    dq_gemm_int8_isa(kernel, m, n, k, xq, xs, wq, ws, bptr, &y, ldy, b, e)
                                }
                                if ok == 0 {
                                    XCTAssert(y.allSatisfy { $0 == -7 }, "\(kernel) unavailable but wrote y")
                                    continue
                                }
                                ran[kernel, default: 0] += 1
                                XCTAssertEqual(bits(y), bits(ref), "\(kernel) m=\(m) n=\(n) k=\(k) cols=\(b)..<\(e)")
                            }
                        }
                    }
                }
            }
        }
        print("int8 per-kernel==scalar cases: \(ran)")
        XCTAssertGreaterThan(ran["scalar"] ?? 0, 0)
        XCTAssertEqual(dq_gemm_int8_isa("no-such-kernel", 0, 0, 0, nil, nil, nil, nil, nil, nil, 0, 0, 0), 0)
        // The kernel the dispatch picks must be runnable explicitly.
        if isa != "scalar" { XCTAssertGreaterThan(ran[isa] ?? 0, 0, isa) }
        if isa == "avxvnni" { XCTAssertGreaterThan(ran["avx2"] ?? 0, 0, "AVX2 path must stay available") }
    }

    /// Largest magnitudes on every kernel: all products ±127·127, long K (many int32 accumulations).
    func testInt8EachKernelSaturationEdges() {
        for (m, n, k) in [(4, 6, 768), (3, 5, 8192 + 17)] {
            var x = [Float](repeating: 1, count: m * k), w = [Float](repeating: 1, count: n * k)
            for i in 0..<(m * k) where (i / 7) % 2 == 1 { x[i] = -1 }
            for i in 0..<(n * k) where (i / 5) % 3 == 1 { w[i] = -1 }
            for i in 0..<k { w[i] = -1; x[i] = 1 }  // row 0 / channel 0: every product -127·127
            for i in 0..<k { w[k + i] = 1; x[k + i] = 1 }  // row 1 / channel 1: every product +127·127
            var xq = [Int8](repeating: 0, count: m * k), xs = [Float](repeating: 0, count: m)
            var wq = [Int8](repeating: 0, count: n * k), ws = [Float](repeating: 0, count: n)
            dq_quantize_activations_int8(x, m, k, k, &xq, &xs)
            dq_quantize_weights_int8(w, n, k, &wq, &ws)
            var ref = [Float](repeating: 0, count: m * n)
            dq_gemm_int8_scalar(m, n, k, xq, xs, wq, ws, nil, &ref, n, 0, n)
            XCTAssertEqual(Double(ref[0]), -Double(k), accuracy: Double(k) * 1e-6)
            XCTAssertEqual(Double(ref[n + 1]), Double(k), accuracy: Double(k) * 1e-6)
            for kernel in ["avx2", "avxvnni"] {
                var y = [Float](repeating: 0, count: m * n)
                if dq_gemm_int8_isa(kernel, m, n, k, xq, xs, wq, ws, nil, &y, n, 0, n) == 0 { continue }
                XCTAssertEqual(bits(y), bits(ref), "\(kernel) k=\(k)")
            }
        }
    }

    // MARK: int8 on packed weights (dq_pack_weights_int8 / dq_gemm_int8_packed)

    func testInt8PackedReportsISA() throws {
        let isa = String(cString: dq_int8_packed_isa())
        let preferred = dq_int8_packed_preferred()
        print("dq_int8_packed_isa: \(isa), preferred: \(preferred)")
        #if arch(x86_64) && os(Linux)
        // Linux lists the AVX-512 flags only when the OS also saves the opmask and ZMM state.
        let info = try String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)
        guard let flagsLine = info.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else {
            throw XCTSkip("no flags line in /proc/cpuinfo")
        }
        let flags = Set(flagsLine.split(separator: " ").map(String.init))
        let has512 = ["avx512f", "avx512bw", "avx512vl", "avx512_vnni"].allSatisfy { flags.contains($0) }
        let hasVNNI = ["avx2", "fma", "avx_vnni"].allSatisfy { flags.contains($0) }
        XCTAssertEqual(isa, has512 ? "avx512vnni" : hasVNNI ? "avxvnni" : "scalar")
        #elseif arch(x86_64)
        XCTAssert(isa == "avx512vnni" || isa == "avxvnni" || isa == "scalar")
        #else
        XCTAssertEqual(isa, "scalar")
        #endif
        XCTAssertEqual(preferred, isa != "scalar" ? 1 : 0)
        // The runtime's configure call turns the packed kernels off, and caps the ISA, for every kernel family.
        cpu_configure(2, 0)
        XCTAssertEqual(dq_int8_packed_preferred(), 0)
        XCTAssertEqual(dq_q4_packed_preferred(), 0)
        cpu_configure(0, 1)
        XCTAssertEqual(String(cString: dq_kernel_isa()), "scalar")
        XCTAssertEqual(dq_int8_packed_preferred(), 0)
        cpu_configure(2, 1)
        XCTAssertEqual(dq_int8_packed_preferred(), preferred)
    }

    /// The documented layout, re-stated in Swift: size, every byte (biased codes, zero padding), and unpack.
    func testInt8PackingRoundTripAndLayout() {
        for n in [1, 15, 16, 17, 47, 49] {
            for k in [1, 3, 4, 5, 31, 33, 767] {
                var g = SplitMix64(UInt64(n * 1000 + k))
                var q = (0 ..< n * k).map { _ in Int8(g.below(255) - 127) }
                q[0] = 127
                if q.count > 1 { q[q.count - 1] = -127 }
                let size = Int(dq_int8_packed_size(n, k))
                let panels = (n + 15) / 16, groups = (k + 3) / 4
                XCTAssertEqual(size, panels * groups * 64, "n=\(n) k=\(k)")
                var packed = [UInt8](repeating: 0xEE, count: size)
                dq_pack_weights_int8(q, n, k, &packed)
                for p in 0 ..< panels {
                    for gi in 0 ..< groups {
                        for c in 0 ..< 16 {
                            for j in 0 ..< 4 {
                                let o = 16 * p + c, kk = 4 * gi + j
                                let expected = o < n && kk < k ? UInt8(Int(q[o * k + kk]) + 128) : 0
                                XCTAssertEqual(packed[(p * groups + gi) * 64 + 4 * c + j], expected,
                                               "n=\(n) k=\(k) o=\(o) k=\(kk)")
                            }
                        }
                    }
                }
                var back = [Int8](repeating: 0, count: n * k)
                dq_unpack_weights_int8(packed, n, k, &back)
                XCTAssertEqual(back, q, "n=\(n) k=\(k)")
            }
        }
        XCTAssertEqual(dq_int8_packed_size(0, 768), 0)
        XCTAssertEqual(dq_int8_packed_size(768, 0), 0)
    }

    func testInt8PackedColumnRange() {
        for n in [0, 1, 16, 47, 48, 49, 97, 768, 3072, 1000] {
            for parts in 1 ... 5 {
                var next = 0
                var sizes: [Int] = []
                for part in 0 ..< parts {
                    var b = 0, e = 0
                    dq_int8_packed_column_range(n, parts, part, &b, &e)
                    XCTAssertEqual(b, next, "n=\(n) parts=\(parts) part=\(part): contiguous, in order")
                    XCTAssertLessThanOrEqual(b, e)
                    XCTAssert(b == n || b % 48 == 0, "whole strips")
                    XCTAssert(e == n || e % 48 == 0, "whole strips")
                    sizes.append((e - b + 47) / 48)
                    next = e
                }
                XCTAssertEqual(next, n, "covers [0, n)")
                XCTAssertLessThanOrEqual((sizes.max() ?? 0) - (sizes.min() ?? 0), 1, "balanced n=\(n) parts=\(parts)")
            }
        }
        var b = 1, e = 1
        dq_int8_packed_column_range(100, 2, 2, &b, &e)
        XCTAssertEqual(b, e)
    }

    /// Ranges for the packed product: panel-aligned ones, the helper's, and unaligned ones (any range is
    /// allowed); every range for small n.
    private func packedColumnRanges(_ n: Int, all: Bool) -> [(Int, Int)] {
        if all {
            return (0 ... n).flatMap { b in (b ... n).map { e in (b, e) } }
        }
        var r: [(Int, Int)] = [(0, n), (0, 0), (n, n)]
        for parts in 2 ... 3 {
            for part in 0 ..< parts {
                var b = 0, e = 0
                dq_int8_packed_column_range(n, parts, part, &b, &e)
                r.append((b, e))
            }
        }
        if n > 2 { r.append((1, n - 1)) }
        if n > 4 { r.append((n / 3, 2 * n / 3 + 1)) }
        if n > 16 { r += [(0, 16), (16, n), (15, 17), (3, 16), (16, min(n, 33))] }
        r.append((n - 1, n))
        return r
    }

    /// Every packed kernel this CPU can run (scalar reference, AVX-512 VNNI, AVX-VNNI) against dq_gemm_int8_scalar on
    /// the row-major codes, bit for bit, on odd shapes, column ranges, with and without bias.
    func testInt8PackedEachKernelEqualsScalar() {
        var ran: [String: Int] = [:]
        for m in [1, 2, 7, 9, 130] {
            for n in [1, 15, 17, 47, 49] {
                for k in [1, 3, 5, 31, 33, 767, 3072] {
                    let seed = UInt64(m * 1_000_000 + n * 1000 + k) ^ 0x99
                    var x = makeData(m * k, seed: seed, style: Int(seed % 4))
                    if m > 2 && k > 2 { x[k + 1] = .nan; x[2 * k] = .infinity }  // scale NaN / inf rows
                    let w = makeData(n * k, seed: seed ^ 0xABCDEF, style: Int((seed / 4) % 4))
                    let bias = makeData(n, seed: seed ^ 0x55)
                    var xq = [Int8](repeating: 0, count: m * k), xs = [Float](repeating: 0, count: m)
                    var wq = [Int8](repeating: 0, count: n * k), ws = [Float](repeating: 0, count: n)
                    dq_quantize_activations_int8(x, m, k, k, &xq, &xs)
                    dq_quantize_weights_int8(w, n, k, &wq, &ws)
                    var packed = [UInt8](repeating: 0, count: Int(dq_int8_packed_size(n, k)))
                    dq_pack_weights_int8(wq, n, k, &packed)
                    let ldy = n + 3
                    for useBias in [false, true] {
                        let bp: [Float]? = useBias ? bias : nil
                        var full = [Float](repeating: 0, count: m * ldy)
                        bp.withOptionalPointer { bptr in
                            dq_gemm_int8_scalar(m, n, k, xq, xs, wq, ws, bptr, &full, ldy, 0, n)
                        }
                        let ranges = packedColumnRanges(n, all: m * k <= 300)
                        for (ri, (b, e)) in ranges.enumerated() {
                            // the slow scalar packed reference on a few ranges, the fast kernels on all
                            let kernels = (ri < 4 || m * n * k < 20000 ? ["scalar"] : []) + ["avx512vnni", "avxvnni"]
                            for kernel in kernels {
                                checkRangeKernel(kernel, full: full, m: m, ldy: ldy, range: (b, e), ran: &ran,
                                                 "m=\(m) n=\(n) k=\(k) bias=\(useBias)") { y in
                                    bp.withOptionalPointer { bptr in
                                        packed.withUnsafeBufferPointer { pp in
                                            dq_gemm_int8_packed_isa(kernel, m, n, k, xq, xs, pp.baseAddress, ws, bptr, &y, ldy, b, e)
                                        }
                                    }
                                }
                            }
                        }
                    }
                    // the dispatching entry point
                    var y = [Float](repeating: -7, count: m * ldy), ref = y
                    dq_gemm_int8_packed(m, n, k, xq, xs, packed, ws, bias, &y, ldy, 0, n)
                    dq_gemm_int8_scalar(m, n, k, xq, xs, wq, ws, bias, &ref, ldy, 0, n)
                    XCTAssertEqual(bits(y), bits(ref), "dispatch m=\(m) n=\(n) k=\(k)")
                }
            }
        }
        print("int8 packed per-kernel==scalar cases: \(ran)")
        XCTAssertGreaterThan(ran["scalar"] ?? 0, 0)
        let isa = String(cString: dq_int8_packed_isa())
        if isa != "scalar" { XCTAssertGreaterThan(ran[isa] ?? 0, 0, isa) }
        // CPUs with both (Zen 5, Sapphire Rapids) run the AVX-VNNI kernel too
        if String(cString: dq_kernel_isa()) == "avxvnni" { XCTAssertGreaterThan(ran["avxvnni"] ?? 0, 0) }
        XCTAssertEqual(dq_gemm_int8_packed_isa("no-such-kernel", 0, 0, 0, nil, nil, nil, nil, nil, nil, 0, 0, 0), 0)
    }

    /// Codes ±127 everywhere (every product ±127·127) for K = 3072, and K = 70001, where the kernel's biased
    /// sums Σ (w + 128)·x leave the int32 range and wrap: the result must still be exact.
    func testInt8PackedExtremeCodes() {
        for (m, n, k) in [(9, 49, 3072), (3, 17, 70001)] {
            var xq = [Int8](repeating: 127, count: m * k), wq = [Int8](repeating: 127, count: n * k)
            for i in 0 ..< m * k where (i / 7) % 2 == 1 { xq[i] = -127 }
            for i in 0 ..< n * k where (i / 5) % 3 == 1 { wq[i] = -127 }
            for i in 0 ..< k { wq[i] = -127; xq[i] = 127 }  // row 0 / channel 0: every product -127·127
            for i in 0 ..< k { wq[k + i] = 127; xq[k + i] = 127 }  // row 1 / channel 1: every product +127·127
            for i in 0 ..< k { wq[2 * k + i] = 127; xq[2 * k + i] = -127 }  // row 2 / channel 2: x = -127
            let xs = [Float](repeating: 1, count: m), ws = [Float](repeating: 1, count: n)
            var packed = [UInt8](repeating: 0, count: Int(dq_int8_packed_size(n, k)))
            dq_pack_weights_int8(wq, n, k, &packed)
            var ref = [Float](repeating: 0, count: m * n)
            dq_gemm_int8_scalar(m, n, k, xq, xs, wq, ws, nil, &ref, n, 0, n)
            XCTAssertEqual(ref[0], Float(-127 * 127 * k))
            XCTAssertEqual(ref[n + 1], Float(127 * 127 * k))
            XCTAssertEqual(ref[2 * n + 2], Float(-127 * 127 * k))
            for kernel in ["scalar", "avx512vnni", "avxvnni"] {
                var y = [Float](repeating: 0, count: m * n)
                if dq_gemm_int8_packed_isa(kernel, m, n, k, xq, xs, packed, ws, nil, &y, n, 0, n) == 0 { continue }
                XCTAssertEqual(bits(y), bits(ref), "\(kernel) k=\(k)")
            }
        }
    }

    func testInt8PackedEmptyShapes() {
        var y: [Float] = [42, 43]
        let packed = [UInt8](repeating: 128, count: 64)
        for kernel in ["scalar", "avx512vnni", "avxvnni"] {
            _ = dq_gemm_int8_packed_isa(kernel, 0, 1, 4, nil, nil, packed, nil, nil, &y, 2, 0, 1)  // m = 0
            _ = dq_gemm_int8_packed_isa(kernel, 1, 1, 4, [1, 1, 1, 1], [1], packed, [1], nil, &y, 2, 1, 1)  // empty range
            _ = dq_gemm_int8_packed_isa(kernel, 1, 1, 4, [1, 1, 1, 1], [1], packed, [1], nil, &y, 2, 5, 9)  // past n
            XCTAssertEqual(y, [42, 43], kernel)
            // k = 0: the sums are empty -> 0 (+ bias); the packed buffer has 0 bytes
            if dq_gemm_int8_packed_isa(kernel, 1, 1, 0, [], [1], [], [1], [2.5], &y, 2, 0, 1) == 1 {
                XCTAssertEqual(y, [2.5, 43], kernel)
            }
            y = [42, 43]
        }
    }

    /// Quantized q4 operands of an m × k by n × k product (data styles by seed): activations, weights, bias.
    private func q4Problem(m: Int, n: Int, k: Int, seed: UInt64) -> (xq: [Int8], xs: [Float], wq: [UInt8], ws: [Float], bias: [Float]) {
        let kp = Int(dq_q4_padded_k(k)), nb = kp / 32
        let x = makeData(m * k, seed: seed, style: Int(seed % 4))
        let w = makeData(n * k, seed: seed ^ 0xABCDEF, style: Int((seed / 4) % 4))
        var xq = [Int8](repeating: 0, count: m * kp), xs = [Float](repeating: 0, count: m * nb)
        var wq = [UInt8](repeating: 0, count: n * kp / 2), ws = [Float](repeating: 0, count: n * nb)
        dq_quantize_activations_q8_blocks(x, m, k, k, &xq, &xs)
        dq_quantize_weights_q4(w, n, k, &wq, &ws)
        return (xq, xs, wq, ws, makeData(n, seed: seed ^ 0x55))
    }

    func testQ4GemmDispatchEqualsScalar() {
        var cases = 0
        for m in Self.ms {
            for n in Self.ns {
                for k in Self.ks + [257, 300] {
                    let seed = UInt64(m * 1_000_000 + n * 1000 + k) ^ 0x1234
                    let (xq, xs, wq, ws, bias) = q4Problem(m: m, n: n, k: k, seed: seed)
                    let ldy = n + 1
                    for (b, e) in columnRanges(n) {
                        for useBias in [false, true] {
                            var y1 = [Float](repeating: -7, count: m * ldy), y2 = y1
                            let bp: [Float]? = useBias ? bias : nil
                            bp.withOptionalPointer { bptr in
                                dq_gemm_q4(m, n, k, xq, xs, wq, ws, bptr, &y1, ldy, b, e)
                                dq_gemm_q4_scalar(m, n, k, xq, xs, wq, ws, bptr, &y2, ldy, b, e)
                            }
                            XCTAssertEqual(bits(y1), bits(y2), "m=\(m) n=\(n) k=\(k) cols=\(b)..<\(e)")
                            for r in 0..<m {
                                for c in 0..<ldy where c < b || c >= e {
                                    XCTAssertEqual(y1[r * ldy + c], -7, "column outside the range written")
                                }
                            }
                            cases += 1
                        }
                    }
                }
            }
        }
        print("q4 dispatch==scalar cases: \(cases)")
    }

    /// Runs one named kernel over columns `range` into a buffer of sentinels (-7) and checks it: where the kernel is
    /// unavailable (run returns 0) nothing may be written; otherwise exactly the range equals `full`, bit for bit.
    private func checkRangeKernel(_ kernel: String, full: [Float], m: Int, ldy: Int, range: (Int, Int),
                                  ran: inout [String: Int], _ what: String, run: (inout [Float]) -> Int32) {
        var y = [Float](repeating: -7, count: m * ldy)
        if run(&y) == 0 {
            XCTAssert(y.allSatisfy { $0 == -7 }, "\(kernel) unavailable but wrote y")
            return
        }
        ran[kernel, default: 0] += 1
        var expected = [Float](repeating: -7, count: m * ldy)
        for r in 0 ..< m { for c in range.0 ..< range.1 { expected[r * ldy + c] = full[r * ldy + c] } }
        if bits(y) != bits(expected) { XCTFail("\(kernel) \(what) cols=\(range.0)..<\(range.1)") }
    }

    /// The packed q4 layout, checked against its definition: record h of (panel, block) holds, for channel c,
    /// code(8h + j) in the low and code(8h + 4 + j) in the high nibble of byte 4c + j; scales per (panel, block).
    func testQ4PackingLayout() {
        for (n, k) in [(1, 1), (16, 32), (17, 33), (40, 100), (3, 768)] {
            let kp = Int(dq_q4_padded_k(k)), nb = kp / 32
            let w = makeData(n * k, seed: UInt64(n * 1000 + k))
            var wq = [UInt8](repeating: 0, count: n * kp / 2), ws = [Float](repeating: 0, count: n * nb)
            dq_quantize_weights_q4(w, n, k, &wq, &ws)
            let panels = (n + 15) / 16
            XCTAssertEqual(Int(dq_q4_packed_size(n, k)), panels * nb * 256)
            XCTAssertEqual(Int(dq_q4_packed_scales_size(n, k)), panels * nb * 16)
            var packed = [UInt8](repeating: 0xEE, count: Int(dq_q4_packed_size(n, k)))
            var ps = [Float](repeating: .nan, count: Int(dq_q4_packed_scales_size(n, k)))
            dq_pack_weights_q4(wq, ws, n, k, &packed, &ps)
            func code(_ o: Int, _ e: Int) -> UInt8 {  // element e of row o in the stored GGUF order
                let blk = o * kp / 2 + (e / 32) * 16, j = e % 32
                return j < 16 ? wq[blk + j] & 15 : wq[blk + j - 16] >> 4
            }
            var bad = 0
            for p in 0..<panels {
                for b in 0..<nb {
                    for c in 0..<16 {
                        let o = p * 16 + c
                        let scale: Float = o < n ? ws[o * nb + b] : 0
                        if ps[(p * nb + b) * 16 + c].bitPattern != scale.bitPattern { bad += 1 }
                        for h in 0..<4 {
                            for j in 0..<4 {
                                let want: UInt8 = o < n ? code(o, 32 * b + 8 * h + j) | code(o, 32 * b + 8 * h + 4 + j) << 4 : 0
                                if packed[(p * nb + b) * 256 + h * 64 + 4 * c + j] != want { bad += 1 }
                            }
                        }
                    }
                }
            }
            XCTAssertEqual(bad, 0, "n=\(n) k=\(k)")
        }
    }

    /// Every packed q4 kernel this CPU runs against dq_gemm_q4_scalar on the stored codes, bit for bit: odd shapes,
    /// row counts past a row block, column ranges, with and without bias.
    func testQ4PackedEachKernelEqualsScalar() {
        var ran: [String: Int] = [:]
        for m in [1, 2, 5, 9, 300] {
            for n in [1, 15, 17, 33, 64] {
                for k in [1, 31, 33, 257, 768, 3072] {
                    if m == 300 && k == 3072 && n > 17 { continue }
                    let seed = UInt64(m * 1_000_000 + n * 1000 + k) ^ 0x4444
                    let (xq, xs, wq, ws, bias) = q4Problem(m: m, n: n, k: k, seed: seed)
                    var packed = [UInt8](repeating: 0, count: Int(dq_q4_packed_size(n, k)))
                    var ps = [Float](repeating: 0, count: Int(dq_q4_packed_scales_size(n, k)))
                    dq_pack_weights_q4(wq, ws, n, k, &packed, &ps)
                    let ldy = n + 2
                    for useBias in [false, true] {
                        let bp: [Float]? = useBias ? bias : nil
                        var full = [Float](repeating: 0, count: m * ldy)
                        bp.withOptionalPointer { bptr in dq_gemm_q4_scalar(m, n, k, xq, xs, wq, ws, bptr, &full, ldy, 0, n) }
                        var ranges = [(0, n), (n / 2, n), (0, (n + 1) / 2)]
                        if n > 16 { ranges += [(16, n), (3, 17)] }
                        for (b, e) in ranges where b < e {
                            for kernel in (m * n * k <= 2_000_000 ? ["scalar"] : []) + ["avx512vnni"] {
                                checkRangeKernel(kernel, full: full, m: m, ldy: ldy, range: (b, e), ran: &ran,
                                                 "m=\(m) n=\(n) k=\(k) bias=\(useBias)") { y in
                                    bp.withOptionalPointer { bptr in
                                        dq_gemm_q4_packed_isa(kernel, m, n, k, xq, xs, packed, ps, bptr, &y, ldy, b, e)
                                    }
                                }
                            }
                        }
                    }
                    var y = [Float](repeating: -7, count: m * ldy), ref = y
                    dq_gemm_q4_packed(m, n, k, xq, xs, packed, ps, bias, &y, ldy, 0, n)
                    dq_gemm_q4_scalar(m, n, k, xq, xs, wq, ws, bias, &ref, ldy, 0, n)
                    XCTAssertEqual(bits(y), bits(ref), "dispatch m=\(m) n=\(n) k=\(k)")
                }
            }
        }
        print("q4 packed per-kernel==scalar cases: \(ran)")
        XCTAssertGreaterThan(ran["scalar"] ?? 0, 0)
        if dq_q4_packed_preferred() != 0 { XCTAssertGreaterThan(ran["avx512vnni"] ?? 0, 0) }
        XCTAssertEqual(dq_gemm_q4_packed_isa("no-such-kernel", 0, 0, 0, nil, nil, nil, nil, nil, nil, 0, 0, 0), 0)
    }

    /// K > 4096 takes the heap-scratch path of the AVX2 q4 kernel.
    func testQ4GemmLargeK() {
        let m = 5, n = 3, k = 8200
        let kp = Int(dq_q4_padded_k(k)), nb = kp / 32
        let x = makeData(m * k, seed: 77), w = makeData(n * k, seed: 78)
        var xq = [Int8](repeating: 0, count: m * kp), xs = [Float](repeating: 0, count: m * nb)
        var wq = [UInt8](repeating: 0, count: n * kp / 2), ws = [Float](repeating: 0, count: n * nb)
        dq_quantize_activations_q8_blocks(x, m, k, k, &xq, &xs)
        dq_quantize_weights_q4(w, n, k, &wq, &ws)
        var y1 = [Float](repeating: 0, count: m * n), y2 = y1
        dq_gemm_q4(m, n, k, xq, xs, wq, ws, nil, &y1, n, 0, n)
        dq_gemm_q4_scalar(m, n, k, xq, xs, wq, ws, nil, &y2, n, 0, n)
        XCTAssertEqual(bits(y1), bits(y2))
    }

    /// Largest magnitudes everywhere: every vpmaddubsw pair is ±2·127·127 (int8) or 2·15·127 (q4).
    func testSaturationEdges() {
        let m = 4, n = 6, k = 768
        var x = [Float](repeating: 1, count: m * k), w = [Float](repeating: 1, count: n * k)
        for i in 0..<(m * k) where (i / 7) % 2 == 1 { x[i] = -1 }
        for i in 0..<(n * k) where (i / 5) % 3 == 1 { w[i] = -1 }
        for i in 0..<k { w[i] = -1; x[i] = 1 }  // row 0 / channel 0: every pair -127·127
        var xq = [Int8](repeating: 0, count: m * k), xs = [Float](repeating: 0, count: m)
        var wq = [Int8](repeating: 0, count: n * k), ws = [Float](repeating: 0, count: n)
        dq_quantize_activations_int8(x, m, k, k, &xq, &xs)
        dq_quantize_weights_int8(w, n, k, &wq, &ws)
        var y1 = [Float](repeating: 0, count: m * n), y2 = y1
        dq_gemm_int8(m, n, k, xq, xs, wq, ws, nil, &y1, n, 0, n)
        dq_gemm_int8_scalar(m, n, k, xq, xs, wq, ws, nil, &y2, n, 0, n)
        XCTAssertEqual(bits(y1), bits(y2))
        XCTAssertEqual(Double(y1[0]), -768, accuracy: 768 * 1e-6)

        let kp = k, nb = k / 32
        var xb = [Int8](repeating: 0, count: m * kp), xbs = [Float](repeating: 0, count: m * nb)
        var w4 = [UInt8](repeating: 0, count: n * kp / 2), w4s = [Float](repeating: 0, count: n * nb)
        dq_quantize_activations_q8_blocks(x, m, k, k, &xb, &xbs)
        // codes 15 and 0 only
        var wc = w
        for i in 0..<(n * k) { wc[i] = (i % 3 == 0) ? -8 : 7.9 }
        dq_quantize_weights_q4(wc, n, k, &w4, &w4s)
        dq_gemm_q4(m, n, k, xb, xbs, w4, w4s, nil, &y1, n, 0, n)
        dq_gemm_q4_scalar(m, n, k, xb, xbs, w4, w4s, nil, &y2, n, 0, n)
        XCTAssertEqual(bits(y1), bits(y2))
    }

    // MARK: scalar products against float64 evaluations of the documented formulas

    func testInt8ScalarMatchesFloat64Formula() {
        var worst = 0.0
        for (m, n, k) in [(7, 17, 768), (3, 5, 3072), (33, 64, 95), (2, 3, 1)] {
            let x = makeData(m * k, seed: UInt64(k + m), style: 1)
            let w = makeData(n * k, seed: UInt64(k + n + 9))
            let bias = makeData(n, seed: 5)
            var xq = [Int8](repeating: 0, count: m * k), xs = [Float](repeating: 0, count: m)
            var wq = [Int8](repeating: 0, count: n * k), ws = [Float](repeating: 0, count: n)
            dq_quantize_activations_int8(x, m, k, k, &xq, &xs)
            dq_quantize_weights_int8(w, n, k, &wq, &ws)
            var y = [Float](repeating: 0, count: m * n)
            dq_gemm_int8_scalar(m, n, k, xq, xs, wq, ws, bias, &y, n, 0, n)
            for r in 0..<m {
                for o in 0..<n {
                    var acc = 0.0
                    for j in 0..<k { acc += Double(xq[r * k + j]) * Double(wq[o * k + j]) }
                    let term = Double(xs[r]) * Double(ws[o]) * acc
                    let ref = term + Double(bias[o])
                    let rel = abs(Double(y[r * n + o]) - ref) / (abs(term) + abs(Double(bias[o])))
                    worst = max(worst, rel)
                    XCTAssertLessThanOrEqual(rel, 1e-6, "m=\(m) n=\(n) k=\(k)")
                }
            }
        }
        print("int8 scalar vs float64: worst relative error \(worst)")
    }

    func testQ4ScalarMatchesFloat64Formula() {
        var worst = 0.0, worstSigned = 0.0
        for (m, n, k) in [(7, 17, 768), (3, 5, 3072), (33, 64, 95), (2, 3, 1)] {
            let kp = Int(dq_q4_padded_k(k)), nb = kp / 32
            let x = makeData(m * k, seed: UInt64(k + m + 1), style: 1)
            let w = makeData(n * k, seed: UInt64(k + n + 19))
            let bias = makeData(n, seed: 6)
            var xq = [Int8](repeating: 0, count: m * kp), xs = [Float](repeating: 0, count: m * nb)
            var wq = [UInt8](repeating: 0, count: n * kp / 2), ws = [Float](repeating: 0, count: n * nb)
            dq_quantize_activations_q8_blocks(x, m, k, k, &xq, &xs)
            dq_quantize_weights_q4(w, n, k, &wq, &ws)
            var y = [Float](repeating: 0, count: m * n)
            dq_gemm_q4_scalar(m, n, k, xq, xs, wq, ws, bias, &y, n, 0, n)
            for r in 0..<m {
                for o in 0..<n {
                    var sum = 0.0, mag = 0.0
                    for b in 0..<nb {
                        var isum = 0
                        for j in 0..<32 {
                            let byte = wq[o * kp / 2 + b * 16 + (j & 15)]
                            let code = j < 16 ? Int(byte & 15) : Int(byte >> 4)
                            isum += (code - 8) * Int(xq[r * kp + b * 32 + j])
                        }
                        let t = Double(ws[o * nb + b]) * Double(xs[r * nb + b]) * Double(isum)
                        sum += t
                        mag += abs(t)
                    }
                    let ref = sum + Double(bias[o])
                    let err = abs(Double(y[r * n + o]) - ref)
                    let rel = err / (mag + abs(Double(bias[o])))
                    worst = max(worst, rel)
                    if abs(ref) > 0.1 * mag { worstSigned = max(worstSigned, err / abs(ref)) }
                    // documented worst case: (ceil(nb/8) + 6)·2^-24 relative to Σ|t_b| + |bias|
                    let bound = Double((nb + 7) / 8 + 6) * 0x1p-24
                    XCTAssertLessThanOrEqual(rel, bound, "m=\(m) n=\(n) k=\(k)")
                    XCTAssertLessThanOrEqual(rel, 1.2e-6, "m=\(m) n=\(n) k=\(k)")
                }
            }
        }
        print("q4 scalar vs float64: worst error relative to sum|t|+|bias|: \(worst); relative to |y| (well-conditioned outputs): \(worstSigned)")
    }

    // MARK: extreme values

    func testExtremeValuesAreNaNFree() {
        let m = 3, n = 5
        for k in [31, 32, 33, 768] {
            let kp = Int(dq_q4_padded_k(k)), nb = kp / 32
            let denorm = Float.leastNonzeroMagnitude
            let scenarios: [(String, [Float], [Float])] = [
                ("zeros", [Float](repeating: 0, count: m * k), [Float](repeating: 0, count: n * k)),
                ("one huge", (0..<(m * k)).map { $0 == k / 2 ? 3e38 : Float($0 % 7) * 1e-3 },
                 makeData(n * k, seed: 4)),
                ("+-max x, small w", (0..<(m * k)).map { $0 % 2 == 0 ? Float.greatestFiniteMagnitude : -Float.greatestFiniteMagnitude },
                 makeData(n * k, seed: 5).map { $0 * 1e-30 }),
                ("+-max both", (0..<(m * k)).map { $0 % 3 == 0 ? Float.greatestFiniteMagnitude : -Float.greatestFiniteMagnitude },
                 (0..<(n * k)).map { $0 % 2 == 0 ? Float.greatestFiniteMagnitude : 1 }),
                ("denormals", (0..<(m * k)).map { Float($0 % 200) * denorm * ($0 % 2 == 0 ? 1 : -1) },
                 (0..<(n * k)).map { Float($0 % 130) * denorm }),
                ("tiny normal x denormal", makeData(m * k, seed: 8).map { $0 * 1e-37 },
                 (0..<(n * k)).map { Float(($0 % 5) + 1) * denorm * 1000 }),
            ]
            for (name, x, w) in scenarios {
                var xq = [Int8](repeating: 0, count: m * k), xs = [Float](repeating: 0, count: m)
                var wq = [Int8](repeating: 0, count: n * k), ws = [Float](repeating: 0, count: n)
                dq_quantize_activations_int8(x, m, k, k, &xq, &xs)
                dq_quantize_weights_int8(w, n, k, &wq, &ws)
                XCTAssert(xs.allSatisfy { $0.isFinite } && ws.allSatisfy { $0.isFinite }, name)
                var y1 = [Float](repeating: 0, count: m * n), y2 = y1
                dq_gemm_int8(m, n, k, xq, xs, wq, ws, nil, &y1, n, 0, n)
                dq_gemm_int8_scalar(m, n, k, xq, xs, wq, ws, nil, &y2, n, 0, n)
                XCTAssertEqual(bits(y1), bits(y2), "int8 \(name) k=\(k)")
                XCTAssertFalse(y1.contains { $0.isNaN }, "int8 \(name) k=\(k)")
                if name == "zeros" { XCTAssert(y1.allSatisfy { $0 == 0 } && xs.allSatisfy { $0 == 0 }) }

                var xb = [Int8](repeating: 0, count: m * kp), xbs = [Float](repeating: 0, count: m * nb)
                var w4 = [UInt8](repeating: 0, count: n * kp / 2), w4s = [Float](repeating: 0, count: n * nb)
                dq_quantize_activations_q8_blocks(x, m, k, k, &xb, &xbs)
                dq_quantize_weights_q4(w, n, k, &w4, &w4s)
                XCTAssert(xbs.allSatisfy { $0.isFinite } && w4s.allSatisfy { $0.isFinite }, name)
                dq_gemm_q4(m, n, k, xb, xbs, w4, w4s, nil, &y1, n, 0, n)
                dq_gemm_q4_scalar(m, n, k, xb, xbs, w4, w4s, nil, &y2, n, 0, n)
                XCTAssertEqual(bits(y1), bits(y2), "q4 \(name) k=\(k)")
                XCTAssertFalse(y1.contains { $0.isNaN }, "q4 \(name) k=\(k)")
                if name == "zeros" { XCTAssert(y1.allSatisfy { $0 == 0 }) }
            }
        }
    }

    /// NaN/inf in activations: the row's scale becomes NaN/inf, codes zero, and its outputs NaN (not
    /// silently finite); other rows are unaffected; dispatch and scalar agree.
    func testNonFiniteActivationsPropagate() {
        let m = 3, n = 4, k = 64
        var x = makeData(m * k, seed: 11)
        x[k + 5] = .nan
        x[2 * k + 40] = -.infinity
        let w = makeData(n * k, seed: 12)
        var xq = [Int8](repeating: 0, count: m * k), xs = [Float](repeating: 0, count: m)
        var wq = [Int8](repeating: 0, count: n * k), ws = [Float](repeating: 0, count: n)
        dq_quantize_activations_int8(x, m, k, k, &xq, &xs)
        dq_quantize_weights_int8(w, n, k, &wq, &ws)
        XCTAssert(xs[1].isNaN)
        XCTAssertEqual(xs[2], .infinity)
        var y = [Float](repeating: 0, count: m * n)
        dq_gemm_int8(m, n, k, xq, xs, wq, ws, nil, &y, n, 0, n)
        XCTAssert(y[0..<n].allSatisfy { $0.isFinite })
        XCTAssert(y[n...].allSatisfy { $0.isNaN })

        var xb = [Int8](repeating: 0, count: m * k), xbs = [Float](repeating: 0, count: m * 2)
        var w4 = [UInt8](repeating: 0, count: n * k / 2), w4s = [Float](repeating: 0, count: n * 2)
        dq_quantize_activations_q8_blocks(x, m, k, k, &xb, &xbs)
        dq_quantize_weights_q4(w, n, k, &w4, &w4s)
        dq_gemm_q4(m, n, k, xb, xbs, w4, w4s, nil, &y, n, 0, n)
        XCTAssert(y[0..<n].allSatisfy { $0.isFinite })
        XCTAssert(y[n...].allSatisfy { $0.isNaN })
    }

    func testEmptyShapes() {
        var y: [Float] = [42]
        dq_gemm_int8(0, 1, 4, nil, nil, nil, nil, nil, &y, 1, 0, 1)
        dq_gemm_q4(1, 1, 4, [0, 0, 0, 0], [0], [UInt8](repeating: 0x88, count: 16), [0], nil, &y, 1, 1, 1)
        XCTAssertEqual(y, [42])
        // k = 0: the sums are empty -> 0 (+ bias)
        dq_gemm_int8(1, 1, 0, [], [1], [], [1], [2.5], &y, 1, 0, 1)
        XCTAssertEqual(y, [2.5])
        dq_gemm_q4(1, 1, 0, [], [], [], [], [3.5], &y, 1, 0, 1)
        XCTAssertEqual(y, [3.5])
    }
}

extension Optional where Wrapped == [Float] {
    fileprivate func withOptionalPointer<R>(_ body: (UnsafePointer<Float>?) -> R) -> R {
        switch self {
        case .some(let a): return a.withUnsafeBufferPointer { body($0.baseAddress) }
        case .none: return body(nil)
        }
    }
}
