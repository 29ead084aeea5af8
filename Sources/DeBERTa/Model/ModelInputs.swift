import CKernels
import Checkpoint

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

extension DebertaModel {
    /// Checks ids, masks and token types against the config; every problem is a clear error.
    public func validate(_ inputs: ModelInputs, file: String = "inputs") throws {
        let (n, overflow) = inputs.batch.multipliedReportingOverflow(by: inputs.length)
        guard inputs.batch > 0, inputs.length > 0, !overflow else {
            throw DebertaError(.invalidInput, file: file, "empty input: batch \(inputs.batch) × length \(inputs.length)")
        }
        guard inputs.inputIds.count == n, inputs.attentionMask.count == n, inputs.tokenTypeIds.map({ $0.count == n }) ?? true else {
            throw DebertaError(.invalidInput, file: file, "input_ids, attention_mask and token_type_ids must all hold batch × length = \(n) values")
        }
        if let bad = inputs.inputIds.firstIndex(where: { $0 < 0 || $0 >= config.vocabSize }) {
            throw DebertaError(.invalidInput, file: file, tensor: "input_ids", "id \(inputs.inputIds[bad]) at position \(bad) is outside the vocabulary [0, \(config.vocabSize))")
        }
        if let bad = inputs.attentionMask.firstIndex(where: { $0 != 0 && $0 != 1 }) {
            throw DebertaError(.invalidInput, file: file, tensor: "attention_mask", "value \(inputs.attentionMask[bad]) at position \(bad) is not 0 or 1")
        }
        if let types = inputs.tokenTypeIds, config.typeVocabSize > 0,
           let bad = types.firstIndex(where: { $0 < 0 || $0 >= config.typeVocabSize }) {
            throw DebertaError(.invalidInput, file: file, tensor: "token_type_ids", "type \(types[bad]) at position \(bad) is outside [0, \(config.typeVocabSize))")
        }
        if config.positionBiasedInput && inputs.length > config.maxPositionEmbeddings {
            throw DebertaError(.limit, file: file, "sequence length \(inputs.length) exceeds max_position_embeddings \(config.maxPositionEmbeddings) of a model with absolute positions")
        }
        if let c = inputs.choices, c <= 0 || inputs.batch % c != 0 {
            throw DebertaError(.invalidInput, file: file, "multiple choice: batch \(inputs.batch) is not a multiple of \(c) choices")
        }
    }
}

extension DebertaModel {
    /// Bytes one forward call of `batch` × `length` tokens allocates at its peak, estimated from the config:
    /// the layer activations (hidden states, q/k/v, context, FFN), the attention scratch of every thread,
    /// the position projections, and the head's outputs (the vocabulary logits of `logitRows` rows, twice with
    /// the Enhanced Mask Decoder), with the copies made for the returned arrays.
    public func estimatedBytes(batch: Int, length: Int, logitRows: Int? = nil) -> Double {
        let c = config, N = Double(batch) * Double(length)
        let H = Double(c.hiddenSize), A = Double(c.allHeadSize), I = Double(c.intermediateSize)
        let span = c.relativeAttention ? Double(min(c.relativeEmbeddingRows, 2 * length)) : 1
        var floats = N * (10 * H + 4 * A + I)
        floats += Double(options.threads) * Double(dk_attention_distance_scratch(length, c.attentionHeadSize, Int(span)))
        floats += Double(c.numHiddenLayers) * 2 * span * A
        if layout.head == .maskedLM {
            floats += 2 * Double(logitRows ?? Int(N)) * Double(c.vocabSize) * (hasEnhancedMaskDecoder ? 2 : 1)
        } else {
            floats += 2 * N * max(2, Double(c.numLabels))
        }
        return floats * 4
    }

    /// Refuses a call over the options' limits before anything is allocated.
    func checkLimits(_ inputs: ModelInputs, logitRows: Int?) throws {
        let limits = options.limits, tokens = inputs.batch * inputs.length
        if tokens > limits.maxTokensPerCall {
            throw DebertaError(.limit, file: "inputs", "\(inputs.batch) × \(inputs.length) = \(tokens) tokens exceed the \(limits.maxTokensPerCall) tokens one forward call may hold (RuntimeOptions.limits, --max-tokens-per-call)")
        }
        let bytes = estimatedBytes(batch: inputs.batch, length: inputs.length, logitRows: logitRows)
        if bytes > Double(limits.maxBytesPerCall) {
            throw DebertaError(.limit, file: "inputs", "\(inputs.batch) × \(inputs.length) tokens need about \(Int(bytes / 1e6)) MB of activations, more than the \(limits.maxBytesPerCall >> 20) MiB one forward call may use (RuntimeOptions.limits)")
        }
    }
}
