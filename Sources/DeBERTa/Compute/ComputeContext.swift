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
    /// Attention products in bf16 (RuntimeOptions.attentionInBF16).
    let attentionInBF16: Bool
    /// A quantized store's f32 attention: P·V summed in f32 (dk_attention_head_f32) instead of double, whose last
    /// bits only the f32 tier's results keep (its default path is unchanged).
    let attentionSumsInF32: Bool

    @TaskLocal static var current = ComputeContext(RuntimeOptions())

    init(_ options: RuntimeOptions, quantized: Bool = false) {
        threads = options.threads
        hugePages = options.hugePages
        trace = options.trace
        attentionInBF16 = options.attentionInBF16
        attentionSumsInF32 = quantized && !attentionInBF16
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
