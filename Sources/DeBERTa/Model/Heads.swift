import Checkpoint

/// The task head on top of the encoder, as transformers' `DebertaV2For*` classes bind it.
enum Head: Sendable {
    case none
    case maskedLM(MaskedLMHead)
    /// Sequence classification and multiple choice.
    case pooled(PooledClassifier)
    /// `DebertaV2ForTokenClassification.classifier` [labels, H].
    case tokenClassifier(Linear)
    /// `DebertaV2ForQuestionAnswering.qa_outputs` [2, H].
    case questionAnswering(Linear)
    case replacedTokenDetection(ReplacedTokenDetectionHead)

    /// `word` is the word-embedding table, which the MLM head decodes with unless it stores its own decoder.
    static func bind(_ scope: WeightScope, head: TaskHead, word: MatrixWeight?) throws -> Head? {
        let c = scope.config, H = c.hiddenSize
        switch head {
        case .base:
            return Head.none
        case .maskedLM:
            return try MaskedLMHead(scope, word: word).map { .maskedLM($0) }
        case .sequenceClassification, .multipleChoice:
            return try PooledClassifier(scope, outputs: head == .multipleChoice ? 1 : c.numLabels).map { .pooled($0) }
        case .tokenClassification:
            return scope.linear("classifier", out: c.numLabels, in: H).map { .tokenClassifier($0) }
        case .questionAnswering:
            return scope.linear("qa_outputs", out: 2, in: H).map { .questionAnswering($0) }
        case .replacedTokenDetection:
            scope.tolerate("lm_predictions")
            return ReplacedTokenDetectionHead(scope.child("mask_predictions")).map { .replacedTokenDetection($0) }
        }
    }

    /// The head's outputs under their reference names.
    func outputs(_ hidden: Activations, _ ctx: ForwardContext, choices: Int?, maskedLMRows: [Int]?, multipleChoice: Bool) -> [NamedOutput] {
        let B = ctx.batch, N = ctx.rows
        switch self {
        case .none:
            return []
        case let .maskedLM(mlm):
            return [NamedOutput(name: "logits", shape: ctx.vocabularyShape(maskedLMRows), values: mlm.logits(hidden, rows: maskedLMRows, total: N, ctx))]
        case let .pooled(classifier):
            let logits = classifier(hidden, ctx), outputs = classifier.classifier.outFeatures
            if let c = choices, multipleChoice {
                return [NamedOutput(name: "logits", shape: [B / c, c], values: logits)]
            }
            return [NamedOutput(name: "logits", shape: [B, outputs], values: logits)]
        case let .tokenClassifier(classifier):
            let logits = Activations(N * classifier.outFeatures)
            applyLinear(classifier, hidden.pointer, rows: N, into: logits.pointer)
            return [NamedOutput(name: "logits", shape: ctx.tokenShape(classifier.outFeatures), values: logits.array)]
        case let .questionAnswering(qa):
            let logits = Activations(N * 2)
            applyLinear(qa, hidden.pointer, rows: N, into: logits.pointer)
            let values = logits.array
            return [
                NamedOutput(name: "start_logits", shape: ctx.tokenShape(nil), values: stride(from: 0, to: 2 * N, by: 2).map { values[$0] }),
                NamedOutput(name: "end_logits", shape: ctx.tokenShape(nil), values: stride(from: 1, to: 2 * N, by: 2).map { values[$0] }),
            ]
        case let .replacedTokenDetection(rtd):
            return [NamedOutput(name: "logits", shape: ctx.tokenShape(nil), values: rtd(hidden, ctx))]
        }
    }

    /// The head's linears (for packing), the MLM decoder excepted.
    var linears: [Linear?] {
        switch self {
        case .none: return []
        case let .maskedLM(h): return [h.dense]
        case let .pooled(h): return [h.pooler, h.classifier]
        case let .tokenClassifier(l), let .questionAnswering(l): return [l]
        case let .replacedTokenDetection(h): return [h.dense, h.classifier]
        }
    }
}

/// transformers' `DebertaV2LMPredictionHead` (`lm_predictions.lm_head.*`: dense → act → LayerNorm → × word
/// embeddingsᵀ + bias) or, for `legacy` checkpoints, `LegacyDebertaV2LMPredictionHead` / `DebertaLMPredictionHead`
/// (`cls.predictions.*`, decoder tied to the word embeddings when not stored).
struct MaskedLMHead: Sendable {
    let dense: Linear
    let norm: Norm
    /// [V, E]: the word embeddings or a stored decoder.
    let decoder: MatrixWeight
    let bias: FloatBuffer

    init?(_ scope: WeightScope, word: MatrixWeight?) throws {
        let c = scope.config, H = c.hiddenSize, E = c.embeddingSize
        scope.tolerate("mask_predictions")
        var bound: MaskedLMHead?
        if scope.has("lm_predictions.lm_head.dense.weight") {
            if E != H && !scope.isRecording {
                throw DebertaError(.configField, file: scope.file, field: "embedding_size",
                                   "the lm_predictions head decodes with the word embeddings and needs embedding_size == hidden_size")
            }
            let s = scope.child("lm_predictions.lm_head")
            bound = MaskedLMHead(dense: s.linear("dense", out: H, in: H, keepsInt8: true), norm: s.norm("LayerNorm", H),
                                 decoder: word, bias: s.tensor("bias", [c.vocabSize]))
        }
        if !scope.has("lm_predictions.lm_head.dense.weight") || scope.isRecording {
            let s = scope.child("cls.predictions")
            let dense = s.linear("transform.dense", out: E, in: H, keepsInt8: true), norm = s.norm("transform.LayerNorm", E)
            let bias = s.tensor("bias", [c.vocabSize])
            let decoder = s.matrix("decoder.weight", c.vocabSize, E, optional: true) ?? word
            s.tolerate("decoder.bias")
            bound = MaskedLMHead(dense: dense, norm: norm, decoder: decoder, bias: bias)
        }
        guard let bound else { return nil }
        self = bound
    }

    private init?(dense: Linear?, norm: Norm?, decoder: MatrixWeight?, bias: FloatBuffer?) {
        guard let dense, let norm, let decoder, let bias else { return nil }
        (self.dense, self.norm, self.decoder, self.bias) = (dense, norm, decoder, bias)
    }

    /// Vocabulary logits [R, V] of the rows `selected` of `all` (every one of the `total` rows when nil).
    func logits(_ all: Activations, rows selected: [Int]?, total: Int, _ ctx: ForwardContext) -> [Float] {
        let E = dense.outFeatures, V = ctx.config.vocabSize, H = ctx.config.hiddenSize
        var hidden = all
        var rows = total
        if let selected {
            rows = selected.count
            hidden = Activations(rows * H)
            for (i, r) in selected.enumerated() { (hidden.pointer + i * H).update(from: all.pointer + r * H, count: H) }
        }
        let transformed = Activations(rows * E)
        applyLinear(dense, hidden.pointer, rows: rows, into: transformed.pointer, activation: ctx.hiddenActivation)
        applyNorm(norm, transformed.pointer, rows: rows, width: E)
        let logits = Activations(rows * V)
        applyMatrix(decoder, transformed.pointer, rows: rows, k: E, n: V, bias: bias.pointer, into: logits.pointer)
        return logits.array
    }
}

/// transformers' `ContextPooler` (`pooler.dense` on the [CLS] hidden state, pooler_hidden_act) followed by
/// the `classifier` of `DebertaV2ForSequenceClassification` (num_labels outputs) or
/// `DebertaV2ForMultipleChoice` (one output per choice).
struct PooledClassifier: Sendable {
    let pooler: Linear
    let classifier: Linear
    let activation: Activation

    init?(_ scope: WeightScope, outputs: Int) throws {
        let c = scope.config, H = c.hiddenSize
        if c.poolerHiddenSize != H && !scope.isRecording {
            throw DebertaError(.configField, file: scope.file, field: "pooler_hidden_size",
                               "pooler_hidden_size \(c.poolerHiddenSize) must equal hidden_size \(H) (the pooler reads the [CLS] hidden state)")
        }
        let pooler = scope.linear("pooler.dense", out: H, in: H), classifier = scope.linear("classifier", out: outputs, in: H)
        activation = try Activation(name: c.poolerHiddenAct, field: "pooler_hidden_act", file: scope.file)
        guard let pooler, let classifier else { return nil }
        (self.pooler, self.classifier) = (pooler, classifier)
    }

    /// Logits [B, outputs] from the first token of every sequence.
    func callAsFunction(_ hidden: Activations, _ ctx: ForwardContext) -> [Float] {
        let B = ctx.batch, H = ctx.config.hiddenSize
        let cls = Activations(B * H)
        for (b, (start, _)) in ctx.segments.enumerated() { (cls.pointer + b * H).update(from: hidden.pointer + start * H, count: H) }
        let pooled = Activations(B * H)
        applyLinear(pooler, cls.pointer, rows: B, into: pooled.pointer, activation: activation)
        let logits = Activations(B * classifier.outFeatures)
        applyLinear(classifier, pooled.pointer, rows: B, into: logits.pointer)
        return logits.array
    }
}

/// The ELECTRA-style discriminator of DeBERTa-v3 pretraining (microsoft/DeBERTa `ReplacedTokenDetection`'s
/// `mask_predictions`): LayerNorm(h + h_[CLS]) → dense → act → classifier [1, H], one logit per token.
struct ReplacedTokenDetectionHead: Sendable {
    let dense: Linear
    let norm: Norm
    let classifier: Linear

    init?(_ scope: WeightScope) {
        let H = scope.config.hiddenSize
        let dense = scope.linear("dense", out: H, in: H), norm = scope.norm("LayerNorm", H)
        let classifier = scope.linear("classifier", out: 1, in: H)
        guard let dense, let norm, let classifier else { return nil }
        (self.dense, self.norm, self.classifier) = (dense, norm, classifier)
    }

    func callAsFunction(_ hidden: Activations, _ ctx: ForwardContext) -> [Float] {
        let N = ctx.rows, H = ctx.config.hiddenSize
        let x = Activations(N * H)
        for (first, T) in ctx.segments {
            for r in first ..< first + T {
                for c in 0 ..< H { x.pointer[r * H + c] = hidden.pointer[r * H + c] + hidden.pointer[first * H + c] }
            }
        }
        applyNorm(norm, x.pointer, rows: N, width: H)
        let y = Activations(N * H)
        applyLinear(dense, x.pointer, rows: N, into: y.pointer, activation: ctx.hiddenActivation)
        let logits = Activations(N)
        applyLinear(classifier, y.pointer, rows: N, into: logits.pointer)
        return logits.array
    }
}
