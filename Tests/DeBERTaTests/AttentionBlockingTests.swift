import CKernels
@testable import DeBERTa
import XCTest

/// The row-blocked distance head (`dk_attention_head_distance_generic`, the AVX2/scalar path of
/// `dk_attention_head_distance`: blocks of 64 queries, relative rows read from by_distance) against the
/// full-matrix computation it replaced: `dk_attention_head_generic` ([t×t] scores in one block) on the [t×t]
/// index table built from the by-distance rows, what `dk_attention_head_distance` ran before. Outputs must be
/// equal to the bit, on every shape.
final class AttentionBlockingTests: XCTestCase {
    private struct Noise {
        var state: UInt64
        /// xorshift, uniform in [-magnitude, magnitude)
        mutating func next(_ n: Int, _ magnitude: Float) -> [Float] {
            (0 ..< n).map { _ in
                state ^= state << 13; state ^= state >> 7; state ^= state << 17
                return (Float(state >> 40) / Float(1 << 24) * 2 - 1) * magnitude
            }
        }
        mutating func index(_ bound: Int) -> Int {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            return Int(state >> 33) % bound
        }
    }

    private enum Rows { case bucketed, random }

    /// 2t - 1 relative rows in [0, span): log-bucketed by distance as DeBERTa-v3 (buckets = span / 2, shifted to
    /// start at 0 and clamped), or arbitrary rows (allowed by the kernel contract).
    private func byDistance(t: Int, span: Int, _ kind: Rows, _ noise: inout Noise) -> [Int32] {
        (0 ..< 2 * t - 1).map { x in
            switch kind {
            case .random: return Int32(noise.index(span))
            case .bucketed:
                let buckets = max(span / 2, 1), r = x - (t - 1)
                let mid = max(buckets / 2, 1)
                var b = r
                if abs(r) > mid {
                    let logPos = Int((log(Double(abs(r)) / Double(mid)) / log(Double(4 * buckets) / Double(mid))
                        * Double(mid - 1)).rounded(.up)) + mid
                    b = r > 0 ? logPos : -logPos
                }
                return Int32(min(max(b + buckets, 0), span - 1))
            }
        }
    }

    private enum MaskKind: CaseIterable { case all, holes, padded, none }

    private func mask(t: Int, _ kind: MaskKind) -> [UInt8] {
        (0 ..< t).map { j in
            switch kind {
            case .all: return 1
            case .holes: return j % 5 == 2 ? 0 : 1
            case .padded: return j < (t + 1) / 2 ? 1 : 0
            case .none: return 0
            }
        }
    }

    /// One head's random inputs: q, k, v and the position rows in rows wider than the head (ld = d + 3, as the
    /// model's [N, heads · d] activations), the relative rows by distance, the key mask and the score scale.
    private struct HeadCase {
        var noise: Noise
        let ld: Int, q: [Float], k: [Float], v: [Float], pk: [Float]?, pq: [Float]?, g: [Int32], m: [UInt8], scale: Float

        /// The [t × t] relative-row table of the full-matrix head.
        func table(_ t: Int) -> [Int32] {
            var table = [Int32](repeating: 0, count: t * t)
            for i in 0 ..< t { for j in 0 ..< t { table[i * t + j] = g[i - j + t - 1] } }
            return table
        }

        /// The largest |difference| over the t × d outputs between `other` and the f32 tier's full-matrix head.
        func distanceFromF32Head(_ other: [Float], t: Int, d: Int, span: Int) -> Float {
            var f32 = [Float](repeating: .nan, count: t * ld)
            var scratch = [Float](repeating: .nan, count: dk_attention_scratch(t, d, span))
            dk_attention_head_generic(t, d, q, ld, k, ld, v, ld, pk, pq, ld, span, table(t), m, scale, &f32, ld, &scratch)
            var worst: Float = 0
            for i in 0 ..< t { for c in 0 ..< d { worst = max(worst, abs(f32[i * ld + c] - other[i * ld + c])) } }
            return worst
        }

        /// `p` [span × ld] placed inside a larger random table of `rows` rows (from row `before`) and transposed
        /// (dk_attention_position_transposed, ld `rows`): the heads read its window from column `before`.
        mutating func transposedInTable(_ p: [Float]?, span: Int, d: Int, before: Int, rows: Int,
                                        file: StaticString, line: UInt) -> [Float]? {
            guard let p else { return nil }
            var big = noise.next(rows * ld, 2)
            for r in 0 ..< span { for c in 0 ..< ld { big[(before + r) * ld + c] = p[r * ld + c] } }
            var t = [Float](repeating: .nan, count: d * rows)
            XCTAssertEqual(dk_attention_position_transposed(big, rows, d, ld, &t, rows), 1, file: file, line: line)
            return t
        }
    }

    private func headCase(t: Int, d: Int, span: Int, rows: Rows, mask kind: MaskKind, c2p: Bool, p2c: Bool, seed: UInt64,
                          salt: UInt64) -> HeadCase {
        var noise = Noise(state: salt ^ (seed &* 0x1000_0000_01B3))
        let ld = d + 3
        let q = noise.next(t * ld, 2), k = noise.next(t * ld, 2), v = noise.next(t * ld, 1.5)
        let pk = c2p ? noise.next(span * ld, 2) : nil, pq = p2c ? noise.next(span * ld, 2) : nil
        let g = byDistance(t: t, span: span, rows, &noise)
        return HeadCase(noise: noise, ld: ld, q: q, k: k, v: v, pk: pk, pq: pq, g: g, m: mask(t: t, kind),
                        scale: 1 / Float(d * 3).squareRoot())
    }

    /// Runs the blocked head and the full-matrix reference on one shape; returns the number of differing outputs.
    private func compare(t: Int, d: Int, span: Int, rows: Rows, mask kind: MaskKind, c2p: Bool, p2c: Bool,
                         seed: UInt64, file: StaticString = #filePath, line: UInt = #line) {
        var hc = headCase(t: t, d: d, span: span, rows: rows, mask: kind, c2p: c2p, p2c: p2c, seed: seed, salt: 0x9E37_79B9_7F4A_7C15)
        let (ld, q, k, v, pk, pq, g, m, scale) = (hc.ld, hc.q, hc.k, hc.v, hc.pk, hc.pq, hc.g, hc.m, hc.scale)
        let table = hc.table(t)

        var expected = [Float](repeating: .nan, count: t * ld), blocked = expected
        var scratch = [Float](repeating: .nan, count: dk_attention_scratch(t, d, span))
        dk_attention_head_generic(t, d, q, ld, k, ld, v, ld, pk, pq, ld, span, table, m, scale, &expected, ld, &scratch)
        // NaN scratch: every value the kernel reads must have been written first.
        var blockedScratch = [Float](repeating: .nan, count: dk_attention_distance_generic_scratch(t, d, span))
        dk_attention_head_distance_generic(t, d, q, ld, k, ld, v, ld, pk, pq, ld, span, g, m, scale, &blocked, ld,
                                           &blockedScratch)
        let label = "t=\(t) d=\(d) span=\(span) \(rows) mask=\(kind) c2p=\(c2p) p2c=\(p2c)"
        let differing = zip(expected, blocked).filter { $0.bitPattern != $1.bitPattern }.count
        XCTAssertEqual(differing, 0, "\(label): \(differing) of \(t * ld) outputs differ", file: file, line: line)
        for i in 0 ..< t { for c in 0 ..< d where !blocked[i * ld + c].isFinite {
            XCTFail("\(label): output [\(i), \(c)] = \(blocked[i * ld + c])", file: file, line: line); return
        } }
        for i in 0 ..< t { for c in d ..< ld where !blocked[i * ld + c].isNaN {
            XCTFail("\(label): wrote [\(i), \(c)] past the head", file: file, line: line); return
        } }
        // The position rows transposed once (inside a larger table, 2 rows before and 3 after), read from column 2:
        // the same bits as the blocked head on the generic path, and as the AVX-512 head on that one.
        do {
            let before = 2, rows = span + 5
            let pkt = hc.transposedInTable(pk, span: span, d: d, before: before, rows: rows, file: file, line: line)
            let pqt = hc.transposedInTable(pq, span: span, d: d, before: before, rows: rows, file: file, line: line)
            var viaTransposed = [Float](repeating: .nan, count: t * ld)
            var tScratch = [Float](repeating: .nan, count: dk_attention_distance_scratch(t, d, span))
            withOptionalPointers(pkt, pqt) { kp, qp in
                dk_attention_head_distance_transposed(t, d, q, ld, k, ld, v, ld, kp.map { $0 + before }, qp.map { $0 + before }, rows,
                                                      span, g, m, scale, &viaTransposed, ld, &tScratch)
            }
            var direct = [Float](repeating: .nan, count: t * ld)
            var dScratch = [Float](repeating: .nan, count: dk_attention_distance_scratch(t, d, span))
            dk_attention_head_distance(t, d, q, ld, k, ld, v, ld, pk, pq, ld, span, g, m, scale, &direct, ld, &dScratch)
            XCTAssertEqual(viaTransposed.map(\.bitPattern), direct.map(\.bitPattern), "\(label) transposed position rows",
                           file: file, line: line)
        }
        // Where this CPU runs the generic path, the public entry point is the blocked head.
        if String(cString: dk_attention_isa()) != "avx512" {
            var viaDistance = [Float](repeating: .nan, count: t * ld)
            var distanceScratch = [Float](repeating: .nan, count: dk_attention_distance_scratch(t, d, span))
            dk_attention_head_distance(t, d, q, ld, k, ld, v, ld, pk, pq, ld, span, g, m, scale, &viaDistance, ld,
                                       &distanceScratch)
            XCTAssertEqual(viaDistance.map(\.bitPattern), blocked.map(\.bitPattern), "\(label) dk_attention_head_distance",
                           file: file, line: line)
        }
    }

    /// Lengths around the block (64) and the product tiles (4 rows, 16 columns), every mask kind.
    func testBlockedHeadIsBitIdenticalAtOddLengths() {
        var seed: UInt64 = 1
        for t in [1, 2, 3, 4, 5, 15, 16, 17, 63, 64, 65, 127, 128, 129, 257] {
            for kind in MaskKind.allCases {
                let span = [1, 2, 7, 16, 33][(t + Int(seed)) % 5]
                compare(t: t, d: 8, span: span, rows: t % 2 == 0 ? .bucketed : .random, mask: kind, c2p: true, p2c: true,
                        seed: seed)
                seed += 1
            }
        }
    }

    /// Spans from 1 to 512 (v3-base reaches 512 rows), head sizes that are and are not multiples of 8 and 16.
    func testBlockedHeadIsBitIdenticalAcrossSpans() {
        var seed: UInt64 = 100
        for span in [1, 2, 3, 15, 16, 17, 31, 64, 100, 255, 256, 257, 511, 512] {
            for (t, d) in [(17, 5), (65, 16), (130, 64)] {
                compare(t: t, d: d, span: span, rows: span % 3 == 0 ? .random : .bucketed,
                        mask: span % 2 == 0 ? .holes : .padded, c2p: true, p2c: true, seed: seed)
                seed += 1
            }
        }
    }

    /// Every combination of the c2p and p2c terms, including none (content scores only).
    func testBlockedHeadIsBitIdenticalWithAndWithoutPositionTerms() {
        var seed: UInt64 = 500
        for (c2p, p2c) in [(true, true), (true, false), (false, true), (false, false)] {
            for (t, d, span) in [(1, 8, 4), (16, 3, 9), (63, 32, 64), (64, 17, 5), (65, 64, 128), (200, 24, 512)] {
                for kind in [MaskKind.all, .holes, .none] {
                    compare(t: t, d: d, span: span, rows: .bucketed, mask: kind, c2p: c2p, p2c: p2c, seed: seed)
                    seed += 1
                }
            }
        }
    }

    /// The same checks with the kernels capped at AVX2 (the generic heads, the transposed-position entry included).
    func testBlockedHeadIsBitIdenticalUnderTheAVX2Cap() {
        RuntimeOptions(kernels: .avx2).configureKernels()
        defer { RuntimeOptions().configureKernels() }
        var seed: UInt64 = 700
        for (t, d, span) in [(1, 8, 4), (17, 5, 33), (65, 16, 100), (130, 64, 256)] {
            for kind in [MaskKind.all, .holes] {
                compare(t: t, d: d, span: span, rows: .bucketed, mask: kind, c2p: true, p2c: t % 2 == 1, seed: seed)
                seed += 1
            }
        }
    }

    /// A long sequence: 16 blocks of 64 queries and a partial one.
    func testBlockedHeadIsBitIdenticalAt1000Tokens() {
        compare(t: 1000, d: 32, span: 512, rows: .bucketed, mask: .holes, c2p: true, p2c: true, seed: 900)
        compare(t: 1000, d: 8, span: 64, rows: .random, mask: .padded, c2p: true, p2c: false, seed: 901)
    }

    /// The scratch of the distance head is linear in t on every path (no [t×t] scores or index table):
    /// at 20,000 tokens of a v3-base head (d = 64, span = 512) well under 100 MB.
    func testDistanceScratchIsLinearInLength() {
        for (d, span) in [(8, 64), (64, 512)] {
            for entry in [dk_attention_distance_scratch, dk_attention_distance_generic_scratch] {
                let small = entry(10_000, d, span), large = entry(20_000, d, span)
                XCTAssertLessThanOrEqual(Double(large), 2.01 * Double(small), "d=\(d) span=\(span)")
                XCTAssertLessThan(large * MemoryLayout<Float>.size, 100 << 20, "d=\(d) span=\(span): \(large) floats")
            }
        }
    }
}

/// The bf16 tier's head (`dk_attention_head_bf16_isa` / `_words`: the AVX-512 head with vdpbf16ps products, or their AVX-512 F
/// emulation) against its scalar reference (`dk_attention_head_bf16_reference`): equal to the bit on odd shapes,
/// both kernels; and close to the f32 head (bf16 keeps 8 significant bits).
extension AttentionBlockingTests {
    private static let bf16Kernels = ["avx512bf16", "avx512"]

    /// Returns the kernels that ran.
    @discardableResult
    private func compareBF16(t: Int, d: Int, span: Int, rows: Rows, mask kind: MaskKind, c2p: Bool, p2c: Bool,
                             seed: UInt64, file: StaticString = #filePath, line: UInt = #line) -> [String] {
        let hc = headCase(t: t, d: d, span: span, rows: rows, mask: kind, c2p: c2p, p2c: p2c, seed: seed, salt: 0x2545_F491_4F6C_DD1D)
        let (ld, q, k, v, pk, pq, g, m, scale) = (hc.ld, hc.q, hc.k, hc.v, hc.pk, hc.pq, hc.g, hc.m, hc.scale)
        var noise = hc.noise
        let label = "bf16 t=\(t) d=\(d) span=\(span) \(rows) mask=\(kind) c2p=\(c2p) p2c=\(p2c)"
        var expected = [Float](repeating: .nan, count: t * ld)
        XCTAssertEqual(dk_attention_head_bf16_reference(t, d, q, ld, k, ld, v, ld, pk, pq, ld, span, g, m, scale, &expected, ld),
                       1, file: file, line: line)
        var ran: [String] = []
        for isa in Self.bf16Kernels {
            var out = [Float](repeating: .nan, count: t * ld)
            // NaN scratch: every value the kernel reads must have been written first.
            var scratch = [Float](repeating: .nan, count: dk_attention_bf16_scratch(t, d, span))
            guard dk_attention_head_bf16_isa(isa, t, d, q, ld, k, ld, v, ld, pk, pq, ld, span, g, m, scale, &out, ld,
                                             &scratch) == 1 else { continue }
            ran.append(isa)
            let differing = zip(expected, out).filter { $0.bitPattern != $1.bitPattern }.count
            XCTAssertEqual(differing, 0, "\(label) \(isa): \(differing) of \(t * ld) outputs differ", file: file, line: line)
        }
        // Position rows made once into words (several sequences share them): the table given inside a larger one
        // (3 rows before, 5 after), the head reading its window from column 3.
        if !ran.isEmpty {
            let before = 3, rows = span + 8, dp = (d + 1) / 2
            func words(_ p: [Float]?) -> [UInt32]? {
                guard let p else { return nil }
                var big = noise.next(rows * ld, 2)
                for r in 0 ..< span { for c in 0 ..< ld { big[(before + r) * ld + c] = p[r * ld + c] } }
                var w = [UInt32](repeating: 0xFFFF_FFFF, count: dp * rows), stage = [UInt32](repeating: 0, count: dp * rows)
                XCTAssertEqual(dk_attention_bf16_position_words(big, rows, d, ld, &w, rows, &stage), 1, file: file, line: line)
                return w
            }
            let pkw = words(pk), pqw = words(pq)
            var out = [Float](repeating: .nan, count: t * ld)
            var scratch = [Float](repeating: .nan, count: dk_attention_bf16_scratch(t, d, span))
            let status = pkw.withOptionalBuffer { kp in
                pqw.withOptionalBuffer { qp in
                    dk_attention_head_bf16_words(t, d, q, ld, k, ld, v, ld, kp.map { $0 + before }, qp.map { $0 + before }, rows,
                                                 span, g, m, scale, &out, ld, &scratch)
                }
            }
            XCTAssertEqual(status, 1, file: file, line: line)
            let differing = zip(expected, out).filter { $0.bitPattern != $1.bitPattern }.count
            XCTAssertEqual(differing, 0, "\(label) shared position words: \(differing) outputs differ", file: file, line: line)
        }
        for i in 0 ..< t { for c in 0 ..< d where !expected[i * ld + c].isFinite {
            XCTFail("\(label): output [\(i), \(c)] = \(expected[i * ld + c])", file: file, line: line); return ran
        } }
        for i in 0 ..< t { for c in d ..< ld where !expected[i * ld + c].isNaN {
            XCTFail("\(label): wrote [\(i), \(c)] past the head", file: file, line: line); return ran
        } }
        // Close to the f32 head: outputs are averages of values of magnitude ≤ 1.5, bf16 rounds to 2^-9 relative.
        let worst = hc.distanceFromF32Head(expected, t: t, d: d, span: span)
        XCTAssertLessThan(worst, 0.05, "\(label): max abs difference from the f32 head", file: file, line: line)
        return ran
    }

    /// Lengths around the 16-query block and the 48/64-column tiles, every mask kind, odd head sizes.
    func testBF16HeadIsBitIdenticalToItsReferenceAtOddShapes() {
        var seed: UInt64 = 2000
        var ran = Set<String>()
        for t in [1, 2, 3, 15, 16, 17, 31, 33, 47, 49, 64, 65, 97, 129] {
            for kind in MaskKind.allCases {
                let span = [1, 2, 7, 16, 33, 100][(t + Int(seed)) % 6]
                let d = [1, 5, 8, 16, 24, 33, 64][(t + Int(seed)) % 7]
                ran.formUnion(compareBF16(t: t, d: d, span: span, rows: t % 2 == 0 ? .bucketed : .random, mask: kind,
                                          c2p: true, p2c: true, seed: seed))
                seed += 1
            }
        }
        if String(cString: dk_attention_isa()) == "avx512" { XCTAssertTrue(ran.contains("avx512"), "the emulation ran") }
    }

    /// Every combination of the position terms; spans up to 512 (v3-base), head sizes 64 and odd.
    func testBF16HeadIsBitIdenticalWithAndWithoutPositionTerms() {
        var seed: UInt64 = 3000
        for (c2p, p2c) in [(true, true), (true, false), (false, true), (false, false)] {
            for (t, d, span) in [(1, 8, 4), (16, 3, 9), (63, 32, 64), (65, 64, 128), (200, 64, 512), (130, 13, 257)] {
                compareBF16(t: t, d: d, span: span, rows: .bucketed, mask: .holes, c2p: c2p, p2c: p2c, seed: seed)
                seed += 1
            }
        }
    }

    /// A long sequence with a v3-base head: many query blocks, the full 512-row span.
    func testBF16HeadIsBitIdenticalAt600Tokens() {
        compareBF16(t: 600, d: 64, span: 512, rows: .bucketed, mask: .padded, c2p: true, p2c: true, seed: 4000)
    }
}

/// The quantized tiers' f32 head (`dk_attention_head_f32` / `_transposed`: P·V in f32) against its scalar reference
/// (`dk_attention_head_f32_reference`): equal to the bit on odd shapes, from position rows or from the transposed
/// ones inside a larger table, under every kernel cap (AVX-512, AVX2, scalar); close to the f32 tier's head.
extension AttentionBlockingTests {
    private func compareF32Sums(t: Int, d: Int, span: Int, rows: Rows, mask kind: MaskKind, c2p: Bool, p2c: Bool,
                                seed: UInt64, file: StaticString = #filePath, line: UInt = #line) {
        var hc = headCase(t: t, d: d, span: span, rows: rows, mask: kind, c2p: c2p, p2c: p2c, seed: seed, salt: 0x6A09_E667_F3BC_C909)
        let (ld, q, k, v, pk, pq, g, m, scale) = (hc.ld, hc.q, hc.k, hc.v, hc.pk, hc.pq, hc.g, hc.m, hc.scale)
        let label = "f32 sums (\(String(cString: dk_attention_isa()))) t=\(t) d=\(d) span=\(span) \(rows) mask=\(kind) c2p=\(c2p) p2c=\(p2c)"
        var expected = [Float](repeating: .nan, count: t * ld)
        XCTAssertEqual(dk_attention_head_f32_reference(t, d, q, ld, k, ld, v, ld, pk, pq, ld, span, g, m, scale, &expected, ld),
                       1, file: file, line: line)
        for i in 0 ..< t { for c in 0 ..< d where !expected[i * ld + c].isFinite {
            XCTFail("\(label): reference output [\(i), \(c)] = \(expected[i * ld + c])", file: file, line: line); return
        } }
        // Close to the f32 tier's head (P·V in double, another row-sum order): a few ulps of values ≤ 1.5.
        let worst = hc.distanceFromF32Head(expected, t: t, d: d, span: span)
        XCTAssertLessThan(worst, 1e-5, "\(label): max abs difference from the f32 tier's head", file: file, line: line)

        var out = [Float](repeating: .nan, count: t * ld)
        // NaN scratch: every value the kernel reads must have been written first.
        var scratch = [Float](repeating: .nan, count: dk_attention_distance_scratch(t, d, span))
        dk_attention_head_f32(t, d, q, ld, k, ld, v, ld, pk, pq, ld, span, g, m, scale, &out, ld, &scratch)
        var differing = zip(expected, out).filter { $0.bitPattern != $1.bitPattern }.count
        XCTAssertEqual(differing, 0, "\(label): \(differing) of \(t * ld) outputs differ", file: file, line: line)
        for i in 0 ..< t { for c in d ..< ld where !out[i * ld + c].isNaN {
            XCTFail("\(label): wrote [\(i), \(c)] past the head", file: file, line: line); return
        } }
        // The position rows transposed once, inside a larger table (2 rows before and 3 after), read from column 2.
        let before = 2, tableRows = span + 5
        let pkt = hc.transposedInTable(pk, span: span, d: d, before: before, rows: tableRows, file: file, line: line)
        let pqt = hc.transposedInTable(pq, span: span, d: d, before: before, rows: tableRows, file: file, line: line)
        var viaTransposed = [Float](repeating: .nan, count: t * ld)
        scratch = [Float](repeating: .nan, count: dk_attention_distance_scratch(t, d, span))
        withOptionalPointers(pkt, pqt) { kp, qp in
            dk_attention_head_f32_transposed(t, d, q, ld, k, ld, v, ld, kp.map { $0 + before }, qp.map { $0 + before }, tableRows,
                                             span, g, m, scale, &viaTransposed, ld, &scratch)
        }
        differing = zip(expected, viaTransposed).filter { $0.bitPattern != $1.bitPattern }.count
        XCTAssertEqual(differing, 0, "\(label) transposed position rows: \(differing) outputs differ", file: file, line: line)
    }

    /// Lengths around the 16-query block and the 48/64-column tiles, every mask kind, odd head sizes (the P·V tile's
    /// 64 columns and their masked tails), random and bucketed rows.
    func testF32SumsHeadIsBitIdenticalToItsReferenceAtOddShapes() {
        var seed: UInt64 = 5000
        for t in [1, 2, 3, 5, 7, 15, 16, 17, 31, 33, 47, 49, 64, 65, 97, 129] {
            for kind in MaskKind.allCases {
                let span = [1, 2, 7, 16, 33, 100][(t + Int(seed)) % 6]
                let d = [1, 5, 8, 16, 24, 33, 64, 65, 80][(t + Int(seed)) % 9]
                compareF32Sums(t: t, d: d, span: span, rows: t % 2 == 0 ? .bucketed : .random, mask: kind,
                               c2p: true, p2c: true, seed: seed)
                seed += 1
            }
        }
    }

    /// Every combination of the position terms; spans up to 512 (v3-base); and a long sequence.
    func testF32SumsHeadIsBitIdenticalWithAndWithoutPositionTermsAndLong() {
        var seed: UInt64 = 6000
        for (c2p, p2c) in [(true, true), (true, false), (false, true), (false, false)] {
            for (t, d, span) in [(1, 8, 4), (16, 3, 9), (63, 32, 64), (65, 64, 128), (200, 64, 512), (130, 13, 257)] {
                compareF32Sums(t: t, d: d, span: span, rows: .bucketed, mask: .holes, c2p: c2p, p2c: p2c, seed: seed)
                seed += 1
            }
        }
        compareF32Sums(t: 600, d: 64, span: 512, rows: .bucketed, mask: .padded, c2p: true, p2c: true, seed: 6100)
    }

    /// Under the AVX2 and scalar caps the row-blocked head gives the same bits (a quantized model's answers do not
    /// depend on the machine): past its 64-query blocks, odd head sizes (the AVX2 tiles' tails), every mask kind.
    func testF32SumsHeadKeepsItsBitsUnderTheAVX2AndScalarCaps() {
        defer { RuntimeOptions().configureKernels() }
        var seed: UInt64 = 6200
        for kernels in [RuntimeOptions.Kernels.avx2, .scalar] {
            RuntimeOptions(kernels: kernels).configureKernels()
            XCTAssertEqual(String(cString: dk_attention_isa()), kernels.rawValue)
            for (t, d, span) in [(1, 8, 4), (17, 5, 9), (33, 16, 64), (70, 33, 128), (130, 64, 257)] {
                for kind in MaskKind.allCases {
                    compareF32Sums(t: t, d: d, span: span, rows: t % 2 == 0 ? .bucketed : .random, mask: kind,
                                   c2p: t % 3 != 0, p2c: true, seed: seed)
                    seed += 1
                }
            }
        }
    }
}

private extension Optional where Wrapped == [UInt32] {
    /// The array's base address (nil for nil) for the body's duration.
    func withOptionalBuffer<R>(_ body: (UnsafePointer<UInt32>?) -> R) -> R {
        guard let self else { return body(nil) }
        return self.withUnsafeBufferPointer { body($0.baseAddress) }
    }
}

/// Base addresses of two optional float arrays (nil for nil) for the body's duration.
private func withOptionalPointers<R>(_ a: [Float]?, _ b: [Float]?, _ body: (UnsafePointer<Float>?, UnsafePointer<Float>?) -> R) -> R {
    func with(_ x: [Float]?, _ f: (UnsafePointer<Float>?) -> R) -> R {
        guard let x else { return f(nil) }
        return x.withUnsafeBufferPointer { f($0.baseAddress) }
    }
    return with(a) { pa in with(b) { pb in body(pa, pb) } }
}
