// gemm-bench: the packed-weight f32 product (CGemm) next to OpenBLAS cblas_sgemm and a plain FMA peak loop,
// all measured in the same run, interleaved round by round (so that a change in machine load hits every
// column alike; each round: the peak loops, CGemm, OpenBLAS, then a 150 ms pause so that OpenBLAS's spinning
// worker threads have gone to sleep before the next round's 2-thread measurements). Usage:
//   swift build -c release --product gemm-bench && .build/release/gemm-bench [--runs N] [--ms 128,1024]
//                                                  [--shapes 768x768,768x3072,3072x768]   (K x N)
// Per shape and implementation it prints the median and the best of N runs in GFLOP/s (2·M·N·K / wall time)
// and the percentage of the FMA peak measured in the same rounds (1 thread: one core's peak; 2 threads:
// both cores'), median against median and best against best. Single-threaded rows also show the rate per
// thread-CPU-second (CLOCK_THREAD_CPUTIME_ID), which is what the core delivered while it ran; on a shared,
// busy machine that is the meaningful per-core number, and the wall-clock medians show the load. The CG
// 2-thread rows show the same per thread (each half's flops over that thread's CPU time, averaged).
//   cg 1t        cg_gemm_packed, bias epilogue, all columns on the calling thread
//   cg 2t pool   the columns split in two halves (cg_column_range) over two persistent threads
//                (the caller + one worker woken by a semaphore: no thread creation per call)
//   cg 2t disp   the same split with DispatchQueue.concurrentPerform(iterations: 2)
//   cg 2t spin   the same split over a persistent worker that spins (up to 5 ms) between jobs instead of
//                sleeping at once, and a caller that spins for its completion (no wake-up latency)
//   cg+gelu      1 thread, bias + GELU epilogue (only K x N = 768 x 3072, the FFN up-projection)
//   blas 1t/2t   cblas_sgemm(RowMajor, NoTrans, Trans) without bias, openblas_set_num_threads(1 / 2)
//   peak 1t/2t   12 independent 8-lane FMA chains per iteration (cg_fma_peak_loop), on 1 and on 2 threads
//                (2 threads: through the spinning pair, so that it measures the cores, not the wake-up)
// `gemm-bench --gelu-check [STEP]` instead compares cg_gelu / cg_phi_scalar with double-precision erfc over every
// STEP-th f32 bit pattern with |x| <= 16 (STEP = 1: all 2.16e9 of them, a few minutes) and cg_gelu with
// cg_gelu_scalar bit for bit, and prints the maximum relative errors (the bounds documented in cgemm.h).
import CGemm
import COpenBLAS
import Dispatch
import BenchSupport
import Foundation
import Synchronization

/// One persistent worker thread: run(body) executes body(1) on the worker and body(0) on the caller.
final class Pair: @unchecked Sendable {
    private let start = DispatchSemaphore(value: 0)
    private let done = DispatchSemaphore(value: 0)
    private var body: (@Sendable (Int) -> Void)?
    init() {
        let t = Thread { [unowned self] in
            while true {
                self.start.wait()
                self.body?(1)
                self.done.signal()
            }
        }
        t.stackSize = 1 << 20
        t.start()
    }
    func run(_ f: @escaping @Sendable (Int) -> Void) {
        body = f
        start.signal()
        f(0)
        done.wait()
    }
}

/// Like Pair, but the worker spins on an atomic job counter for up to `spin` seconds after each job (then blocks
/// on a semaphore), and the caller spins for the worker's completion: no wake-up latency between back-to-back
/// calls (an idle vCPU that has halted can take a long time to be rescheduled by the hypervisor).
final class SpinPair: @unchecked Sendable {
    private let generation = Atomic<Int>(0)
    private let finished = Atomic<Int>(0)
    private let sleeping = Atomic<Int>(0)
    private let wake = DispatchSemaphore(value: 0)
    private var body: (@Sendable (Int) -> Void)?
    let spin: Double
    init(spin: Double) {
        self.spin = spin
        let t = Thread { [unowned self] in
            var seen = 0
            while true {
                let deadline = now() + self.spin
                var spins = 0
                while self.generation.load(ordering: .acquiring) == seen {
                    spins += 1
                    if spins & 1023 == 0 && now() > deadline {
                        self.sleeping.store(1, ordering: .sequentiallyConsistent)
                        if self.generation.load(ordering: .sequentiallyConsistent) == seen { self.wake.wait() }
                        self.sleeping.store(0, ordering: .sequentiallyConsistent)
                    }
                }
                seen = self.generation.load(ordering: .acquiring)
                self.body?(1)
                self.finished.store(seen, ordering: .releasing)
            }
        }
        t.stackSize = 1 << 20
        t.start()
    }
    func run(_ f: @escaping @Sendable (Int) -> Void) {
        body = f
        let g = generation.add(1, ordering: .sequentiallyConsistent).newValue
        if sleeping.load(ordering: .sequentiallyConsistent) == 1 { wake.signal() }
        f(0)
        while finished.load(ordering: .acquiring) != g {}
    }
}

struct Sendy<T>: @unchecked Sendable { let value: T }

/// Maximum relative errors of gelu and Φ against double precision over every `step`-th float in [-16, 16].
func geluCheck(step: UInt32) {
    let limit: UInt32 = 0x4180_0000  // 16.0
    let block = 1 << 16
    var xs = [Float](repeating: 0, count: block), g = xs, gs = xs, phi = xs
    var maxGelu = 0.0, maxPhi = 0.0, maxSub = 0.0, argGelu: Float = 0, argPhi: Float = 0
    var mismatches = 0, count = 0, sumSq = 0.0
    for sign: UInt32 in [0, 0x8000_0000] {
        var next: UInt64 = 0
        while next <= UInt64(limit) {
            var nb = 0
            while nb < block && next <= UInt64(limit) {
                xs[nb] = Float(bitPattern: UInt32(next) | sign)
                nb += 1
                next += UInt64(step)
            }
            cg_gelu(xs, &g, nb)
            cg_gelu_scalar(xs, &gs, nb)
            cg_phi_scalar(xs, &phi, nb)
            for i in 0..<nb {
                if g[i].bitPattern != gs[i].bitPattern { mismatches += 1 }
                let x = Double(xs[i])
                let p = 0.5 * erfc(-x / 2.0.squareRoot())
                let ref = x * p
                if p >= 0x1p-126 {
                    let e = abs(Double(phi[i]) - p) / p
                    if e > maxPhi { maxPhi = e; argPhi = xs[i] }
                }
                if abs(ref) >= 0x1p-126 {
                    let e = abs(Double(g[i]) - ref) / abs(ref)
                    if e > maxGelu { maxGelu = e; argGelu = xs[i] }
                    sumSq += e * e
                    count += 1
                } else {
                    maxSub = max(maxSub, abs(Double(g[i]) - ref))
                }
            }
        }
    }
    print(String(format: "gelu: max relative error %.4e at x = %.9g (rms %.3e over %ld normal results); "
                 + "max absolute error %.3e where |gelu| < 2^-126", maxGelu, Double(argGelu), (sumSq / Double(count)).squareRoot(),
                 count, maxSub))
    print(String(format: "phi:  max relative error %.4e at x = %.9g; cg_gelu != cg_gelu_scalar: %d; documented bounds: gelu %.2e, phi %.2e",
                 maxPhi, Double(argPhi), mismatches, Double(CG_GELU_MAX_REL_ERROR), Double(CG_PHI_MAX_REL_ERROR)))
}

if CommandLine.arguments.count >= 2 && CommandLine.arguments[1] == "--gelu-check" {
    let step = CommandLine.arguments.count >= 3 ? UInt32(CommandLine.arguments[2]) ?? 1 : 1
    geluCheck(step: max(1, step))
    exit(0)
}

var runs = 21
var ms = [128, 1024]
var shapes: [(Int, Int)] = [(768, 768), (768, 3072), (3072, 768)]
var args = CommandLine.arguments.dropFirst().makeIterator()
while let a = args.next() {
    switch a {
    case "--runs": runs = max(1, Int(args.next() ?? "") ?? runs)
    case "--ms": ms = (args.next() ?? "").split(separator: ",").compactMap { Int($0) }
    case "--shapes":
        shapes = (args.next() ?? "").split(separator: ",").compactMap {
            let p = $0.split(separator: "x").compactMap { Int($0) }
            return p.count == 2 ? (p[0], p[1]) : nil
        }
    default:
        print("usage: gemm-bench [--runs N] [--ms M,M] [--shapes KxN,...]")
        exit(2)
    }
}

let pair = Pair()
let spinPair = SpinPair(spin: 0.005)
let peakChunk = 100_000  // iterations per peak sample: 19.2 MFLOP, ~0.15 ms per thread

print("gemm-bench: kernels=\(String(cString: cg_kernel_isa())), \(ProcessInfo.processInfo.activeProcessorCount) CPUs, "
      + "runs=\(runs), load average at start: \(loadAverage())")
print("GFLOP/s = 2·M·N·K / time; % = of the FMA peak measured in the same rounds (median vs median, best vs best)")
print("")
print("| M | K×N | impl | median GF/s | best GF/s | median % peak | best % peak | CPU-time GF/s (median) |")
print("|---:|---|---|---:|---:|---:|---:|---:|")

struct Series {
    var wall: [Double] = []
    var cpu: [Double] = []
}

for m in ms {
    for (k, n) in shapes {
        var rng = Rng(state: UInt64(m * 7919 + k * 31 + n))
        let x = (0..<(m * k)).map { _ in rng.next() }
        let w = (0..<(n * k)).map { _ in rng.next() * 0.05 }
        let bias = (0..<n).map { _ in rng.next() }
        let packedRaw = UnsafeMutableRawPointer.allocate(byteCount: cg_packed_size(n, k) * 4, alignment: 64)
        defer { packedRaw.deallocate() }
        let packed = packedRaw.bindMemory(to: Float.self, capacity: cg_packed_size(n, k))
        cg_pack_weights(w, n, k, packed)
        let y = UnsafeMutablePointer<Float>.allocate(capacity: m * n)
        defer { y.deallocate() }
        y.initialize(repeating: 0, count: m * n)
        let flops = 2.0 * Double(m) * Double(n) * Double(k)
        let halves = (0..<2).map { t -> (Int, Int) in
            var b = 0, e = 0
            cg_column_range(n, 2, t, &b, &e)
            return (b, e)
        }

        let xs = Sendy(value: x), bs = Sendy(value: bias), ps = Sendy(value: packed), ys = Sendy(value: y)
        let hs = halves
        // each thread's CPU seconds of its last part (for the per-thread CPU-time rate of the 2-thread rows)
        let partCPU = Sendy(value: UnsafeMutablePointer<Double>.allocate(capacity: 2))
        defer { partCPU.value.deallocate() }
        let cgPart: @Sendable (Int) -> Void = { t in
            let c0 = threadCPU()
            cg_gemm_packed(m, n, k, xs.value, k, ps.value, bs.value, CG_EPILOGUE_BIAS, nil, 0, ys.value, n, hs[t].0,
                           hs[t].1)
            partCPU.value[t] = threadCPU() - c0
        }
        var impls: [(String, Bool, () -> Void)] = [  // name, single-threaded, body (CG 2t rows: also partCPU)
            ("cg 1t", true, { cg_gemm_packed(m, n, k, x, k, packed, bias, CG_EPILOGUE_BIAS, nil, 0, y, n, 0, n) }),
            ("cg 2t pool", false, { pair.run { t in cgPart(t) } }),
            ("cg 2t disp", false, { DispatchQueue.concurrentPerform(iterations: 2) { t in cgPart(t) } }),
            ("cg 2t spin", false, { spinPair.run { t in cgPart(t) } }),
            ("blas 1t", true, {
                openblas_set_num_threads(1)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, blasint(m), blasint(n), blasint(k), 1, x,
                            blasint(k), w, blasint(k), 0, y, blasint(n))
            }),
            ("blas 2t", false, {
                openblas_set_num_threads(2)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, blasint(m), blasint(n), blasint(k), 1, x,
                            blasint(k), w, blasint(k), 0, y, blasint(n))
            }),
        ]
        if k == 768 && n == 3072 {
            impls.insert(("cg+gelu 1t", true, {
                cg_gemm_packed(m, n, k, x, k, packed, bias, CG_EPILOGUE_BIAS_GELU, nil, 0, y, n, 0, n)
            }), at: 1)
        }
        // peak samples sized like the product (but at least one chunk)
        let peakIterations = max(peakChunk, Int(flops / 192 / 4))
        var peak1 = Series(), peak2 = Series()
        var series = [Series](repeating: Series(), count: impls.count)
        for (_, _, body) in impls { body() }  // warm-up (page faults, OpenBLAS buffers)
        for _ in 0..<runs {
            do {
                let c0 = threadCPU(), t0 = now()
                let f = cg_fma_peak_loop(peakIterations)
                let t = now() - t0, c = threadCPU() - c0
                peak1.wall.append(f / t / 1e9)
                peak1.cpu.append(f / c / 1e9)
            }
            do {
                let t0 = now()
                let iterations = peakIterations
                spinPair.run { _ in _ = cg_fma_peak_loop(iterations) }
                let t = now() - t0
                peak2.wall.append(2 * 2.0 * 8 * 12 * Double(peakIterations) / t / 1e9)
            }
            for (i, impl) in impls.enumerated() {
                let c0 = threadCPU(), t0 = now()
                impl.2()
                let t = now() - t0, c = threadCPU() - c0
                series[i].wall.append(flops / t / 1e9)
                if impl.1 {
                    series[i].cpu.append(flops / c / 1e9)
                } else if impl.0.hasPrefix("cg") {
                    // per-thread rate: each half's flops over that thread's CPU time, averaged
                    series[i].cpu.append((0..<2).map { Double(hs[$0].1 - hs[$0].0) / Double(n) * flops / partCPU.value[$0] }
                        .reduce(0, +) / 2 / 1e9)
                }
            }
            // OpenBLAS's worker threads spin (sched_yield loop) for a while after a threaded call: let them go
            // to sleep, or they take the second core from the next round's 2-thread measurements.
            openblas_set_num_threads(1)
            usleep(150_000)
        }
        let p1m = median(peak1.wall), p1b = peak1.wall.max()!, p2m = median(peak2.wall), p2b = peak2.wall.max()!
        for (i, impl) in impls.enumerated() {
            let pm = impl.1 ? p1m : p2m, pb = impl.1 ? p1b : p2b
            let med = median(series[i].wall), best = series[i].wall.max()!
            let cpu = series[i].cpu.isEmpty ? ""
                : String(format: "%.1f (%.0f%% of %.1f)%@", median(series[i].cpu),
                         100 * median(series[i].cpu) / median(peak1.cpu), median(peak1.cpu),
                         (impl.1 ? "" : " per thread") as NSString)
            print(String(format: "| %d | %d×%d | %@ | %.1f | %.1f | %.0f%% | %.0f%% | %@ |", m, k, n, impl.0 as NSString,
                         med, best, 100 * med / pm, 100 * best / pb, cpu as NSString))
        }
        print(String(format: "| %d | %d×%d | peak 1t / 2t | %.1f / %.1f | %.1f / %.1f | | | %.1f |", m, k, n, p1m, p2m,
                     p1b, p2b, median(peak1.cpu)))
    }
}
print("")
print("load average at end: \(loadAverage())")
