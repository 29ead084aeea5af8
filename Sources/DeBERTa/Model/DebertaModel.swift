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
    /// Forward calls started so far: the second one packs the weights first (prepareForRepeatedCalls).
    private let calls = Atomic<Int>(0)

    public var family: ModelFamily { layout.family }
    /// The Enhanced Mask Decoder applies to MLM models without absolute positions in the input that ship
    /// the absolute position table.
    public var hasEnhancedMaskDecoder: Bool { decoder != nil }

    public convenience init(path: String, options: RuntimeOptions = RuntimeOptions()) throws {
        try self.init(checkpoint: try ModelCheckpoint.open(path, trace: options.trace), options: options)
    }

    public init(checkpoint: ModelCheckpoint, options: RuntimeOptions = RuntimeOptions()) throws {
        guard let config = checkpoint.config else {
            throw DebertaError(.io, file: checkpoint.files.weights, "no config.json beside the weights; the runtime needs it")
        }
        let file = checkpoint.files.config ?? checkpoint.files.weights
        try DebertaModel.checkSupported(config, file: file)
        (self.config, layout, files, store, self.options) = (config, checkpoint.layout, checkpoint.files, checkpoint.store, options)
        options.configureKernels()
        compute = ComputeContext(options)
        hiddenActivation = try Activation(name: config.hiddenAct, field: "hidden_act", file: file)
        options.trace.mark("bind weights")
        let binder = try WeightBinder(store: checkpoint.store, layout: checkpoint.layout, config: config, file: checkpoint.files.weights)
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

    /// Runs the encoder and the head. Outputs use the reference names: `last_hidden_state` [B, T, H] and the
    /// head's (`logits`, `start_logits`/`end_logits`), plus `emd_logits` for MLM models with the EMD.
    /// `head: false` stops after the encoder (only `last_hidden_state`, e.g. for embeddings).
    /// `maskedLMRows` (token rows b·T + t) restricts the vocabulary products of an MLM model to those
    /// positions: `logits` and `emd_logits` are then [R, V] in that order (fill-mask needs only its masks,
    /// and the [T, E] × [E, V] products are most of an MLM forward).
    public func forward(_ inputs: ModelInputs, head computeHead: Bool = true, enhancedMaskDecoder: Bool = true,
                        maskedLMRows: [Int]? = nil) throws -> ModelOutputs {
        try validate(inputs)
        let N = inputs.batch * inputs.length
        if let rows = maskedLMRows, let bad = rows.first(where: { $0 < 0 || $0 >= N }) {
            throw DebertaError(.invalidInput, file: "inputs", "masked-LM row \(bad) is outside the \(N) token rows")
        }
        noteCall()
        return compute.run {
            options.trace.mark("forward")
            let ctx = ForwardContext(inputs, config: config, family: family, hiddenActivation: hiddenActivation, positions: encoder.positions)
            let embedded = embeddings(inputs, ctx)
            options.trace.mark("embeddings")
            let (hidden, beforeLast) = encoder(embedded, ctx)
            var outputs = [NamedOutput(name: "last_hidden_state", shape: [inputs.batch, inputs.length, config.hiddenSize], values: hidden.array)]
            guard computeHead else { return ModelOutputs(outputs: outputs) }
            outputs += headOutputs(hidden, ctx, choices: inputs.choices, maskedLMRows: maskedLMRows)
            if enhancedMaskDecoder, let decoder, case let .maskedLM(mlm) = head, let decoded = decoder(beforeLast: beforeLast, ctx) {
                let logits = mlm.logits(decoded, rows: maskedLMRows, total: N, ctx)
                outputs.append(NamedOutput(name: "emd_logits", shape: vocabularyShape(ctx, maskedLMRows), values: logits))
            }
            return ModelOutputs(outputs: outputs)
        }
    }

    func vocabularyShape(_ ctx: ForwardContext, _ rows: [Int]?) -> [Int] {
        rows.map { [$0.count, config.vocabSize] } ?? [ctx.batch, ctx.length, config.vocabSize]
    }

    /// The head's outputs under their reference names.
    func headOutputs(_ hidden: Activations, _ ctx: ForwardContext, choices: Int?, maskedLMRows: [Int]?) -> [NamedOutput] {
        let B = ctx.batch, T = ctx.length, N = B * T
        switch head {
        case .none:
            return []
        case let .maskedLM(mlm):
            return [NamedOutput(name: "logits", shape: vocabularyShape(ctx, maskedLMRows), values: mlm.logits(hidden, rows: maskedLMRows, total: N, ctx))]
        case let .pooled(classifier):
            let logits = classifier(hidden, ctx), outputs = classifier.classifier.outFeatures
            if let c = choices, layout.head == .multipleChoice {
                return [NamedOutput(name: "logits", shape: [B / c, c], values: logits)]
            }
            return [NamedOutput(name: "logits", shape: [B, outputs], values: logits)]
        case let .tokenClassifier(classifier):
            let logits = Activations(N * classifier.outFeatures)
            applyLinear(classifier, hidden.pointer, rows: N, into: logits.pointer)
            return [NamedOutput(name: "logits", shape: [B, T, classifier.outFeatures], values: logits.array)]
        case let .questionAnswering(qa):
            let logits = Activations(N * 2)
            applyLinear(qa, hidden.pointer, rows: N, into: logits.pointer)
            let values = logits.array
            return [
                NamedOutput(name: "start_logits", shape: [B, T], values: stride(from: 0, to: 2 * N, by: 2).map { values[$0] }),
                NamedOutput(name: "end_logits", shape: [B, T], values: stride(from: 1, to: 2 * N, by: 2).map { values[$0] }),
            ]
        case let .replacedTokenDetection(rtd):
            return [NamedOutput(name: "logits", shape: [B, T], values: rtd(hidden, ctx))]
        }
    }

    /// Repacks the f32 weight matrices (and, where the CPU has the packed int8/q4 kernels, the quantized
    /// codes) into the kernels' panel layout now; a no-op for those already packed. A model packs them by
    /// itself when its second call starts (`RuntimeOptions.packing == .reuse`): packing costs about as much as
    /// one call over a few hundred tokens (reading every weight, and the page faults of the packed copy),
    /// which a single call would never earn back. Call this after loading to have the first call at full
    /// speed instead. The outputs are the same bits either way. With `.never` this does nothing.
    public func prepareForRepeatedCalls() {
        guard options.packing != .never else { return }
        options.trace.mark("packing weights")
        compute.run { for matrix in packableMatrices { matrix.pack() } }
        options.trace.mark("packed")
    }

    /// Counts a call; the second packs the weights (packing `.reuse`).
    func noteCall() {
        let n = calls.wrappingAdd(1, ordering: .relaxed).newValue
        if n == 2 && options.packing == .reuse { prepareForRepeatedCalls() }
    }

    /// Every matrix the products read that can be packed (shared ones, e.g. share_att_key, once is enough:
    /// pack() is idempotent). Not the MLM decoder: it is the word-embedding table (or its copy), the largest
    /// matrix of the model, multiplied a chunk of the vocabulary at a time instead of being packed whole.
    var packableMatrices: [any PackableWeight] {
        let linears = [embeddings.projection] + encoder.layers.flatMap(\.linears) + head.linears
        let matrices = linears.map { $0?.weight } + (encoder.conv?.kernels ?? []).map { Optional($0) }
        return matrices.compactMap { w -> (any PackableWeight)? in
            switch w {
            case let .packed(p)?: return p
            case let .quantized(q)? where q.usesPackedKernel: return q
            default: return nil
            }
        }
    }
}
