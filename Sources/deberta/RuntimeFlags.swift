import ArgumentParser
import DeBERTa

extension RuntimeOptions.Packing: ExpressibleByArgument {}
extension RuntimeOptions.Kernels: ExpressibleByArgument {}
extension RuntimeOptions.Precision: ExpressibleByArgument {}
extension RuntimeOptions.AttentionPrecision: ExpressibleByArgument {}

/// The runtime flags every command that runs a model shares: one `RuntimeOptions` for the model it loads.
struct RuntimeFlags: ParsableArguments {
    @Option(help: "Number format of the linear layers: f32, or bf16 (float weights converted to bf16 at load, f32 accumulation; softmax and LayerNorm stay f32).")
    var precision: RuntimeOptions.Precision = .f32

    @Option(help: "Number format of the attention products (scores, c2p/p2c, P·V): auto (bf16 with --precision bf16, else f32), f32, or bf16 (AVX-512 CPUs; also for int8/q4 stores, which then no longer match their PyTorch simulation exactly).")
    var attentionPrecision: RuntimeOptions.AttentionPrecision = .auto

    @Option(help: "Threads for the matrix products and the attention (1-256).")
    var threads: Int = 2

    @Option(help: "When weights are repacked for the kernels: load, reuse (when a second call starts) or never.")
    var packWeights: RuntimeOptions.Packing = .reuse

    @Option(help: "The widest kernels to use: auto, avx512, avx2 or scalar (same results, other speed).")
    var kernels: RuntimeOptions.Kernels = .auto

    @Flag(inversion: .prefixedNo, help: "Packed int8/q4 kernels where the CPU has AVX-512 VNNI.")
    var packedQuantizedKernels = true

    @Option(help: "Microseconds idle compute threads spin before they block (0: block at once).")
    var spinUs: Double = 100

    @Flag(help: "Large buffers on transparent huge pages.")
    var hugePages = false

    @Flag(help: "Print the milliseconds of each loading and forward step on standard error.")
    var trace = false

    @Option(help: "Most tokens (batch × length) one forward call may hold.")
    var maxTokensPerCall: Int = Limits().maxTokensPerCall

    func validate() throws {
        if threads < 1 || threads > 256 { throw ValidationError("--threads must be between 1 and 256") }
        if !(spinUs >= 0 && spinUs <= 1e6) { throw ValidationError("--spin-us must be between 0 and 1000000") }
        if maxTokensPerCall < 1 { throw ValidationError("--max-tokens-per-call must be positive") }
    }

    /// A note on standard error when the bf16 tier runs emulated (no AVX512_BF16 under the kernel cap): the same
    /// bits, but slower than --precision f32 on this CPU.
    func noteEmulatedBF16(_ model: DebertaModel) {
        guard let kernel = model.bf16ProductKernel, kernel != "avx512bf16" else { return }
        printError("note: --precision bf16 on this CPU runs an emulation of AVX512_BF16's products (\(kernel) kernels, the same bits), slower than --precision f32 here")
    }

    var options: RuntimeOptions {
        var limits = Limits()
        limits.maxTokensPerCall = maxTokensPerCall
        return RuntimeOptions(threads: threads, packing: packWeights, kernels: kernels, packedQuantizedKernels: packedQuantizedKernels,
                              spinMicroseconds: spinUs, hugePages: hugePages, trace: trace ? .on : .off, limits: limits,
                              precision: precision, attentionPrecision: attentionPrecision)
    }
}
