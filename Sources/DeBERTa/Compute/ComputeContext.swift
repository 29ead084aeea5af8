import Synchronization

/// The compute resources a model works with: its thread count, the pool of compute threads (shared by the
/// models with the same thread count and spin time), huge pages, tracing. The model makes its context current
/// around its work (`run`); the kernels' splitting (`parallel`, `ComputeThreads.count`) and large
/// allocations read the current one, so no process-wide setting is needed.
final class ComputeContext: Sendable {
    let threads: Int
    let pool: ComputePool
    let hugePages: Bool
    let trace: Trace
    /// The model's precision tier (bf16: the attention products in bf16 too, where the CPU has AVX-512).
    let precision: RuntimeOptions.Precision

    @TaskLocal static var current = ComputeContext(RuntimeOptions())

    init(_ options: RuntimeOptions) {
        threads = options.threads
        hugePages = options.hugePages
        trace = options.trace
        precision = options.precision
        pool = ComputePool.shared(spinSeconds: options.spinMicroseconds * 1e-6)
    }

    func run<T>(_ body: () throws -> T) rethrows -> T {
        try ComputeContext.$current.withValue(self) { try body() }
    }
}

/// Threads the products split their columns over: the current context's.
enum ComputeThreads {
    static var count: Int { ComputeContext.current.threads }
}
