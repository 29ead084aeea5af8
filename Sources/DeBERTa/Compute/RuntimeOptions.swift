import CKernels
import CCPUFeatures
import Checkpoint

/// How a model computes: threads, when weights are packed, which kernels, how workers wait, memory and
/// tracing, and the limits of one forward call. Passed to `DebertaModel(path:options:)`; nothing in the
/// library reads the environment.
public struct RuntimeOptions: Sendable, Equatable {
    /// When weight matrices are repacked into the kernels' panel layout.
    public enum Packing: String, Sendable, CaseIterable {
        /// At load (the first call at full speed, load slower).
        case load
        /// When the second call starts (the default: a one-shot call pays neither for packing nor for the
        /// page faults of a second copy of the weights).
        case reuse
        /// Never: products read the stored weights, packing a chunk at a time (v3-base at 1 × 128: f32 ~23%,
        /// int8 ~21%, q4 ~15% slower).
        case never
    }

    /// The widest instruction set the kernels may use (they pick the best the CPU has up to this).
    public enum Kernels: String, Sendable, CaseIterable {
        case auto, avx512, avx2, scalar
    }

    /// The number format of the linear layers' products.
    public enum Precision: String, Sendable, CaseIterable {
        /// f32 weights and activations, f32 fused multiply-adds (the reference results).
        case f32
        /// Float weights converted once to bf16 at load, activations rounded to bf16 (nearest even) per
        /// product, f32 accumulation as AVX-512 BF16's `vdpbf16ps` (emulated, same bits, elsewhere). Attention,
        /// softmax, LayerNorm and the MLM vocabulary product stay f32.
        case bf16
    }

    /// The number format of the attention products (content scores, c2p, p2c, probabilities × values).
    public enum AttentionPrecision: String, Sendable, CaseIterable {
        /// bf16 with `precision` bf16, f32 otherwise (a quantized store then matches its PyTorch simulation).
        case auto
        /// f32 products; P·V summed in double for float stores (the reference results), in f32 for int8 / q4 stores
        /// (whose activation quantization dwarfs those last bits; the same bits on every CPU).
        case f32
        /// bf16 operands, f32 accumulation as `vdpbf16ps` (emulated, same bits, on AVX-512 CPUs without it);
        /// softmax in f32. Needs AVX-512 F/BW/VL/DQ (under the kernel cap): elsewhere attention stays f32.
        case bf16
    }

    /// Threads the matrix products and the attention split their work over (the caller's included).
    public var threads: Int
    public var packing: Packing
    /// Kernel cap. The C kernels dispatch process-wide: the cap set by the last model loaded applies to all.
    public var kernels: Kernels
    /// Packed int8 / q4 kernels (AVX-512 VNNI; elsewhere the stored codes are used in place either way).
    public var packedQuantizedKernels: Bool
    /// How long idle compute threads spin before they block, in microseconds (0: block at once).
    public var spinMicroseconds: Double
    /// Large buffers 2 MiB-aligned and advised for transparent huge pages (measured slower at load here).
    public var hugePages: Bool
    /// Prints the milliseconds of each loading and forward step on standard error.
    public var trace: Trace
    public var limits: Limits
    /// f32 (default) or bf16 products for float checkpoints.
    public var precision: Precision
    /// The attention products' format (default: follows `precision`).
    public var attentionPrecision: AttentionPrecision

    public init(threads: Int = 2, packing: Packing = .reuse, kernels: Kernels = .auto, packedQuantizedKernels: Bool = true,
                spinMicroseconds: Double = 100, hugePages: Bool = false, trace: Trace = .off, limits: Limits = Limits(),
                precision: Precision = .f32, attentionPrecision: AttentionPrecision = .auto) {
        self.threads = max(1, min(threads, 256))
        self.packing = packing
        self.kernels = kernels
        self.packedQuantizedKernels = packedQuantizedKernels
        self.spinMicroseconds = max(0, spinMicroseconds)
        self.hugePages = hugePages
        self.trace = trace
        self.limits = limits
        self.precision = precision
        self.attentionPrecision = attentionPrecision
    }

    /// Whether this model's attention products run in bf16: asked for (or `auto` with precision bf16) and the
    /// CPU, under the kernel cap, has AVX-512 F/BW/VL/DQ. Read after `configureKernels()`.
    var attentionInBF16: Bool {
        let asked = attentionPrecision == .bf16 || (attentionPrecision == .auto && precision == .bf16)
        return asked && String(cString: dk_attention_bf16_isa()) != "none"
    }

    /// Applies the kernel choices to the C kernels (process-wide dispatch).
    func configureKernels() {
        let cap: Int32 = switch kernels {
        case .auto, .avx512: 2
        case .avx2: 1
        case .scalar: 0
        }
        cpu_configure(cap, packedQuantizedKernels ? 1 : 0)
    }
}

/// The limits of one forward call, checked before anything is allocated: an over-large request is an
/// error (`DebertaError.Kind.limit`), never an abort.
public struct Limits: Sendable, Equatable {
    /// Tokens (batch × length) in one forward call.
    public var maxTokensPerCall: Int
    /// Estimated bytes of activations one forward call may use (`DebertaModel.estimatedBytes`).
    public var maxBytesPerCall: Int

    public init(maxTokensPerCall: Int = 1 << 17, maxBytesPerCall: Int = 8 << 30) {
        self.maxTokensPerCall = maxTokensPerCall
        self.maxBytesPerCall = maxBytesPerCall
    }
}

/// Timings of loading and forward steps on standard error, in milliseconds since the process's first mark.
public struct Trace: Sendable, Equatable {
    public var enabled: Bool
    public static let off = Trace(enabled: false)
    public static let on = Trace(enabled: true)
    public init(enabled: Bool) { self.enabled = enabled }

    func mark(_ what: @autoclosure () -> String) {
        guard enabled else { return }
        TraceClock.mark(what())
    }
}
