import CGemm
import Checkpoint
import Synchronization

/// transformers' `DebertaV2Model` / `DebertaModel` with the head of its `DebertaV2For*` class, loaded once and
/// callable from several threads: the weights are immutable (mapped in place where the file allows), every
/// call works in its own activations. Each module binds its own weights (`Sources/DeBERTa/Model/`).
public final class DebertaModel: Sendable {
    public let config: DebertaConfig
    public let layout: ModelLayout
    public let files: ModelFiles
    public let options: RuntimeOptions
    /// The quantization scheme of the store's weights, nil for float checkpoints.
    public let quantization: QuantizationScheme?
    let store: TensorStore
    let embeddings: Embeddings
    let encoder: Encoder
    let head: Head
    let decoder: EnhancedMaskDecoder?
    let hiddenActivation: Activation
    let compute: ComputeContext
    /// Whether the attention products run in bf16 (`options.attentionPrecision`, resolved for this CPU at load).
    public var attentionInBF16: Bool { compute.attentionInBF16 }
    /// The kernel of the bf16 tier's linear layers when `options.precision` is bf16: "avx512bf16" (`vdpbf16ps`), or
    /// an emulation with the same bits ("avx512", "avx2", "scalar"), which is slower than the f32 tier (v3-base on a
    /// Zen 3 EPYC with AVX2 only: about 3.3 ×); nil for f32. Read after loading (the kernel cap is process-wide).
    public var bf16ProductKernel: String? {
        options.precision == .bf16 ? String(cString: cgb_kernel_isa()) : nil
    }
    /// Forward calls started so far: the second one packs the weights first (prepareForRepeatedCalls).
    let calls = Atomic<Int>(0)

    public var family: ModelFamily { layout.family }
    /// The Enhanced Mask Decoder applies to MLM models without absolute positions in the input that ship
    /// the absolute position table.
    public var hasEnhancedMaskDecoder: Bool { decoder != nil }

    public convenience init(path: String, options: RuntimeOptions = RuntimeOptions()) throws {
        try self.init(checkpoint: try ModelCheckpoint.open(path, trace: options.trace), options: options)
    }

    /// The same with `options.precision` set to `precision` (`.bf16`: bf16 products, see RuntimeOptions.Precision).
    public convenience init(path: String, options: RuntimeOptions = RuntimeOptions(), precision: RuntimeOptions.Precision) throws {
        var options = options
        options.precision = precision
        try self.init(path: path, options: options)
    }

    public init(checkpoint: ModelCheckpoint, options: RuntimeOptions = RuntimeOptions()) throws {
        guard let config = checkpoint.config else {
            throw DebertaError(.io, file: checkpoint.files.weights, "no config.json beside the weights; the runtime needs it")
        }
        let file = checkpoint.files.config ?? checkpoint.files.weights
        try DebertaModel.checkSupported(config, file: file)
        (self.config, layout, files, store, self.options) = (config, checkpoint.layout, checkpoint.files, checkpoint.store, options)
        options.configureKernels()
        hiddenActivation = try Activation(name: config.hiddenAct, field: "hidden_act", file: file)
        options.trace.mark("bind weights")
        let binder = try WeightBinder(store: checkpoint.store, layout: checkpoint.layout, config: config, file: checkpoint.files.weights,
                                      precision: options.precision)
        compute = ComputeContext(options, quantized: binder.quantization != nil)
        if options.precision == .bf16, let scheme = binder.quantization?.scheme {
            throw DebertaError(.unsupported, file: checkpoint.files.weights,
                               "precision bf16 applies to float checkpoints; this one is quantized (\(scheme.rawValue)): run it without --precision bf16")
        }
        let parts = try compute.run { try DebertaModel.bind(WeightScope(binder), layout: checkpoint.layout) }
        try binder.finish()
        quantization = binder.quantization?.scheme
        guard let parts else {
            throw DebertaError(.weightsMismatch, file: checkpoint.files.weights, "weights do not fit the config")
        }
        (embeddings, encoder, head) = parts
        decoder = EnhancedMaskDecoder(encoder: encoder, embeddings: embeddings, head: head, config: config)
        if options.packing == .load { prepareForRepeatedCalls() }
        options.trace.mark("weights bound")
    }

    /// Binds every module of the model (or, with a recording binder, notes what each would bind).
    static func bind(_ root: WeightScope, layout: ModelLayout) throws -> (Embeddings, Encoder, Head)? {
        let embeddings = Embeddings(root.child("embeddings"))
        let encoder = try Encoder(root.child("encoder"), family: layout.family)
        let head = try Head.bind(root, head: layout.head, word: embeddings?.word)
        guard let embeddings, let encoder, let head else { return nil }
        return (embeddings, encoder, head)
    }

    static func checkSupported(_ config: DebertaConfig, file: String) throws {
        if config.talkingHead {
            throw DebertaError(.unsupported, file: file, field: "talking_head", "talking_head is set; this runtime does not implement talking-head attention")
        }
        if config.posAttType.contains("p2p") {
            throw DebertaError(.unsupported, file: file, field: "pos_att_type", "pos_att_type p2p is not implemented (transformers ignores it too, but it changes the scale)")
        }
    }
}
