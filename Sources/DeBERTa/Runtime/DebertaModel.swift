import CKernels
import Checkpoint
import Glibc
import Synchronization

/// Token ids and masks for one forward call: `batch` sequences of `length` tokens, row-major.
public struct ModelInputs: Sendable {
    public var inputIds: [Int]
    public var attentionMask: [Int]
    public var tokenTypeIds: [Int]?
    public var batch: Int
    public var length: Int
    /// For multiple choice: sequences per example (the batch holds batch/choices examples × choices).
    public var choices: Int?

    public init(inputIds: [Int], attentionMask: [Int]? = nil, tokenTypeIds: [Int]? = nil, batch: Int, length: Int, choices: Int? = nil) {
        self.inputIds = inputIds
        self.attentionMask = attentionMask ?? [Int](repeating: 1, count: inputIds.count)
        self.tokenTypeIds = tokenTypeIds
        self.batch = batch
        self.length = length
        self.choices = choices
    }
}

/// One output tensor under its reference name (`last_hidden_state`, `logits`, `emd_logits`, ...).
public struct NamedOutput: Sendable {
    public var name: String
    public var shape: [Int]
    public var values: [Float]
}

public struct ModelOutputs: Sendable {
    public var outputs: [NamedOutput]
    public subscript(name: String) -> NamedOutput? { outputs.first { $0.name == name } }
}

/// A DeBERTa model loaded once and callable from several threads: the weights are immutable (mapped in
/// place where the file allows), every call works in its own activations.
public final class DebertaModel: Sendable {
    public let config: DebertaConfig
    public let layout: ModelLayout
    public let files: ModelFiles
    let store: TensorStore
    let embeddings: EmbeddingWeights
    let layers: [LayerWeights]
    let conv: ConvWeights?
    let head: HeadWeights
    let hiddenActivation: Activation
    let poolerActivation: Activation
    /// Per layer, the c2p/p2c projections of the relative-position table (computed on first use, for the
    /// rows the calls reach); nil without relative attention.
    let positions: PositionProjections?

    /// Forward calls started so far: the second one packs the f32 weights first (prepareForRepeatedCalls).
    private let calls = Atomic<Int>(0)

    /// When f32 weights are repacked for the GEMM kernel: DEBERTA_PACK_WEIGHTS=load (at load), =reuse (the
    /// default: when a second call starts), =never (products read the stored weights, packing a chunk at a
    /// time: the weights stay in the mapped file's page cache; v3-base at 1 × 128: f32 ~23%, int8 ~21%, q4
    /// ~15% slower).
    enum PackingPolicy: String { case load, reuse, never }
    static let packing = getenv("DEBERTA_PACK_WEIGHTS").flatMap { PackingPolicy(rawValue: String(cString: $0)) } ?? .reuse

    /// The quantization scheme of the store's weights, nil for float checkpoints.
    public let quantization: QuantizationScheme?

    public var family: ModelFamily { layout.family }
    /// The Enhanced Mask Decoder applies to MLM models without absolute positions in the input that ship
    /// the absolute position table.
    public var hasEnhancedMaskDecoder: Bool {
        layout.head == .maskedLM && !config.positionBiasedInput && embeddings.position != nil
    }

    public convenience init(path: String) throws {
        try self.init(checkpoint: try ModelCheckpoint.open(path))
    }

    public init(checkpoint: ModelCheckpoint) throws {
        guard let config = checkpoint.config else {
            throw DebertaError(.io, file: checkpoint.files.weights, "no config.json beside the weights; the runtime needs it")
        }
        let file = checkpoint.files.config ?? checkpoint.files.weights
        self.config = config
        self.layout = checkpoint.layout
        self.files = checkpoint.files
        self.store = checkpoint.store
        let family = checkpoint.layout.family
        hiddenActivation = try Activation(name: config.hiddenAct, field: "hidden_act", file: file)
        poolerActivation = try Activation(name: config.poolerHiddenAct, field: "pooler_hidden_act", file: file)
        if config.talkingHead {
            throw DebertaError(.unsupported, file: file, "talking_head is set; this runtime does not implement talking-head attention")
        }
        if config.posAttType.contains("p2p") {
            throw DebertaError(.unsupported, file: file, "pos_att_type p2p is not implemented (transformers ignores it too, but it changes the scale)")
        }

        let H = config.hiddenSize, E = config.embeddingSize, A = config.allHeadSize, I = config.intermediateSize
        Trace.mark("bind weights")
        var b = try WeightBinder(store: checkpoint.store, layout: checkpoint.layout, config: config, file: checkpoint.files.weights)

        // Embeddings
        let word = b.matrix("embeddings.word_embeddings.weight", config.vocabSize, E)
        b.adviseRandomAccess("embeddings.word_embeddings.weight")
        let position = b.tensor("embeddings.position_embeddings.weight", [config.maxPositionEmbeddings, E], optional: !config.positionBiasedInput)
        let tokenType = config.typeVocabSize > 0 ? b.tensor("embeddings.token_type_embeddings.weight", [config.typeVocabSize, E]) : nil
        let projection = E != H ? b.linear("embeddings.embed_proj", out: H, in: E, bias: false) : nil
        let embeddingNorm = b.norm("embeddings.LayerNorm", H)
        b.tolerate { $0 == "embeddings.position_ids" }

        // Relative positions
        var relative: FloatBuffer?
        if config.relativeAttention {
            relative = b.tensor("encoder.rel_embeddings.weight", [config.relativeEmbeddingRows, H])
            if family == .debertaV2, config.normalizesRelativeEmbeddings, let r = relative, let norm = b.norm("encoder.LayerNorm", H) {
                relative = FloatBuffer(count: r.count) { p in
                    p.update(from: r.pointer, count: r.count)
                    applyNorm(norm, p, rows: config.relativeEmbeddingRows, width: H)
                }
            }
        }

        // Conv layer (v2)
        var conv: ConvWeights?
        if family == .debertaV2 && config.convKernelSize > 0 {
            let k = config.convKernelSize, groups = config.convGroups
            let w = b.tensor("encoder.conv.conv.weight", [H, H / groups, k])
            let bias = b.tensor("encoder.conv.conv.bias", [H])
            let norm = b.norm("encoder.conv.LayerNorm", H)
            let act = try Activation(name: config.convAct, field: "conv_act", file: file)
            if let w, let bias, let norm {
                let perGroup = H / groups
                let kernels = (0 ..< k).map { tap in
                    MatrixWeight.packed(PackedMatrix(FloatBuffer(count: H * H) { dense in
                        for o in 0 ..< H {
                            let g = o / perGroup
                            for i in 0 ..< perGroup {
                                dense[o * H + g * perGroup + i] = w[(o * perGroup + i) * k + tap]
                            }
                        }
                    }, rows: H, cols: H))
                }
                conv = ConvWeights(kernels: kernels, bias: bias, norm: norm, activation: act)
            }
        }

        // Layers
        var layers: [LayerWeights] = []
        for l in 0 ..< config.numHiddenLayers {
            let p = "encoder.layer.\(l)."
            var query: Linear?, key: Linear?, value: Linear?, posKey: Linear?, posQuery: Linear?
            if family == .debertaV2 {
                query = b.linear(p + "attention.self.query_proj", out: A, in: H)
                key = b.linear(p + "attention.self.key_proj", out: A, in: H)
                value = b.linear(p + "attention.self.value_proj", out: A, in: H)
                if config.relativeAttention {
                    if config.shareAttKey {
                        posKey = key
                        posQuery = query
                    } else {
                        if config.usesC2P { posKey = b.linear(p + "attention.self.pos_key_proj", out: A, in: H) }
                        if config.usesP2C { posQuery = b.linear(p + "attention.self.pos_query_proj", out: A, in: H) }
                    }
                }
            } else {
                // v1: in_proj rows are interleaved per head: [q_h; k_h; v_h] blocks of d rows.
                let inProj = b.matrix(p + "attention.self.in_proj.weight", 3 * A, H)
                let qBias = b.tensor(p + "attention.self.q_bias", [A])
                let vBias = b.tensor(p + "attention.self.v_bias", [A])
                if let inProj {
                    let d = config.attentionHeadSize, heads = config.numAttentionHeads
                    // Rows of head h: [h·3d, h·3d + d) query, then key, then value.
                    func part(_ which: Int) -> MatrixWeight {
                        switch inProj {
                        case let .f32(w):
                            let split = FloatBuffer(count: A * H) { dst in
                                for h in 0 ..< heads {
                                    (dst + h * d * H).update(from: w.pointer + (h * 3 * d + which * d) * H, count: d * H)
                                }
                            }
                            return .packed(PackedMatrix(split, rows: A, cols: H))
                        case .packed:
                            preconditionFailure("matrix() returns stored weights; only linear() packs")
                        case let .quantized(q):
                            let rowBytes = q.rowBytes, perRow = q.scalesPerRow
                            return .quantized(QuantizedMatrix(scheme: q.scheme, rows: A, cols: H, rowBytes: rowBytes, scalesPerRow: perRow) { codes, scales in
                                for h in 0 ..< heads {
                                    let from = h * 3 * d + which * d
                                    (codes + h * d * rowBytes).copyMemory(from: q.codes + from * rowBytes, byteCount: d * rowBytes)
                                    (scales + h * d * perRow).update(from: q.scales.pointer + from * perRow, count: d * perRow)
                                }
                            })
                        }
                    }
                    if let qBias { query = Linear(weight: part(0), bias: qBias, outFeatures: A, inFeatures: H) }
                    key = Linear(weight: part(1), bias: nil, outFeatures: A, inFeatures: H)
                    if let vBias { value = Linear(weight: part(2), bias: vBias, outFeatures: A, inFeatures: H) }
                }
                if config.relativeAttention {
                    if config.usesC2P { posKey = b.linear(p + "attention.self.pos_proj", out: A, in: H, bias: false) }
                    if config.usesP2C { posQuery = b.linear(p + "attention.self.pos_q_proj", out: A, in: H) }
                }
            }
            let attentionOutput = b.linear(p + "attention.output.dense", out: H, in: A)
            let attentionNorm = b.norm(p + "attention.output.LayerNorm", H)
            let intermediate = b.linear(p + "intermediate.dense", out: I, in: H)
            let output = b.linear(p + "output.dense", out: H, in: I)
            let outputNorm = b.norm(p + "output.LayerNorm", H)
            if let query, let key, let value, let attentionOutput, let attentionNorm, let intermediate, let output, let outputNorm {
                layers.append(LayerWeights(
                    query: query, key: key, value: value, positionKey: posKey, positionQuery: posQuery,
                    attentionOutput: attentionOutput, attentionNorm: attentionNorm,
                    intermediate: intermediate, output: output, outputNorm: outputNorm))
            }
        }

        Trace.mark("layers bound")
        // Head
        var head = HeadWeights.none
        switch checkpoint.layout.head {
        case .base:
            break
        case .maskedLM:
            b.tolerate { $0.hasPrefix("mask_predictions.") }
            if b.has("lm_predictions.lm_head.dense.weight") {
                if E != H {
                    throw DebertaError(.configField, file: file, "the lm_predictions head decodes with the word embeddings and needs embedding_size == hidden_size")
                }
                if let dense = b.linear("lm_predictions.lm_head.dense", out: H, in: H),
                   let norm = b.norm("lm_predictions.lm_head.LayerNorm", H),
                   let bias = b.tensor("lm_predictions.lm_head.bias", [config.vocabSize]), let word {
                    head = .maskedLM(dense: dense, norm: norm, decoder: word, bias: bias)
                }
            } else {
                let dense = b.linear("cls.predictions.transform.dense", out: E, in: H)
                let norm = b.norm("cls.predictions.transform.LayerNorm", E)
                let bias = b.tensor("cls.predictions.bias", [config.vocabSize])
                let decoder = b.matrix("cls.predictions.decoder.weight", config.vocabSize, E, optional: true) ?? word
                b.tolerate { $0 == "cls.predictions.decoder.bias" }
                if let dense, let norm, let bias, let decoder {
                    head = .maskedLM(dense: dense, norm: norm, decoder: decoder, bias: bias)
                }
            }
        case .sequenceClassification, .multipleChoice:
            let outputs = checkpoint.layout.head == .multipleChoice ? 1 : config.numLabels
            if config.poolerHiddenSize != H {
                throw DebertaError(.configField, file: file, "pooler_hidden_size \(config.poolerHiddenSize) must equal hidden_size \(H) (the pooler reads the [CLS] hidden state)")
            }
            if let pooler = b.linear("pooler.dense", out: H, in: H), let classifier = b.linear("classifier", out: outputs, in: H) {
                head = .pooled(pooler: pooler, classifier: classifier)
            }
        case .tokenClassification:
            if let classifier = b.linear("classifier", out: config.numLabels, in: H) { head = .tokenClassifier(classifier) }
        case .questionAnswering:
            if let qa = b.linear("qa_outputs", out: 2, in: H) { head = .questionAnswering(qa) }
        case .replacedTokenDetection:
            b.tolerate { $0.hasPrefix("lm_predictions.") }
            if let dense = b.linear("mask_predictions.dense", out: H, in: H), let norm = b.norm("mask_predictions.LayerNorm", H),
               let classifier = b.linear("mask_predictions.classifier", out: 1, in: H) {
                head = .replacedTokenDetection(dense: dense, norm: norm, classifier: classifier)
            }
        }
        try b.finish()
        quantization = b.quantization?.scheme
        guard let word, let embeddingNorm, layers.count == config.numHiddenLayers else {
            throw DebertaError(.weightsMismatch, file: checkpoint.files.weights, "weights do not fit the config")
        }
        embeddings = EmbeddingWeights(word: word, position: position, tokenType: tokenType, projection: projection ?? nil, norm: embeddingNorm)
        self.layers = layers
        self.conv = conv
        self.head = head

        if let relative {
            positions = PositionProjections(
                table: relative, width: H,
                keys: layers.map { config.usesC2P ? $0.positionKey : nil },
                queries: layers.map { config.usesP2C ? $0.positionQuery : nil })
        } else {
            positions = nil
        }
        if DebertaModel.packing == .load { prepareForRepeatedCalls() }
        Trace.mark("weights bound")
    }

    /// Repacks the f32 weight matrices into the GEMM kernel's panel layout now (a no-op for those already
    /// packed and for quantized weights). A model packs them by itself when its second call starts: packing
    /// costs about as much as one call over a few hundred tokens (reading every weight, and the page faults
    /// of the packed copy), which a single call would never earn back; later calls then skip the per-call
    /// packing of chunks (a few percent at hundreds of tokens, most of the time at a few tokens). Call this
    /// after loading to have the first call at full speed instead. The outputs are the same bits either way.
    /// With DEBERTA_PACK_WEIGHTS=never this does nothing (to measure or keep the unpacked way).
    public func prepareForRepeatedCalls() {
        guard DebertaModel.packing != .never else { return }
        Trace.mark("packing weights")
        for matrix in packableMatrices { matrix.pack() }
        Trace.mark("packed")
    }

    /// Counts a call; the second packs the weights (DEBERTA_PACK_WEIGHTS=reuse).
    func noteCall() {
        let n = calls.wrappingAdd(1, ordering: .relaxed).newValue
        if n == 2 && DebertaModel.packing == .reuse { prepareForRepeatedCalls() }
    }

    /// Every f32 matrix the products read that can be packed (shared ones, e.g. share_att_key, once is enough:
    /// pack() is idempotent).
    var packableMatrices: [any PackableWeight] {
        var out: [any PackableWeight] = []
        func add(_ w: MatrixWeight?) {
            switch w {
            case let .packed(p)?: out.append(p)
            case let .quantized(q)? where q.usesPackedKernel: out.append(q)
            default: break
            }
        }
        func add(_ l: Linear?) { add(l?.weight) }
        add(embeddings.projection)
        for layer in layers {
            for l in [layer.query, layer.key, layer.value, layer.attentionOutput, layer.intermediate, layer.output] { add(l) }
            add(layer.positionKey)
            add(layer.positionQuery)
        }
        conv?.kernels.forEach { add($0) }
        switch head {
        case .none: break
        // Not the MLM decoder: it is the word-embedding table (or its copy), the largest matrix of the model,
        // multiplied a chunk of the vocabulary at a time instead of being packed whole.
        case let .maskedLM(dense, _, _, _): add(dense)
        case let .pooled(pooler, classifier): add(pooler); add(classifier)
        case let .tokenClassifier(l), let .questionAnswering(l): add(l)
        case let .replacedTokenDetection(dense, _, classifier): add(dense); add(classifier)
        }
        return out
    }
}
