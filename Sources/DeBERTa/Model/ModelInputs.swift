import CKernels
import Checkpoint

/// Token ids and masks for one forward call: `batch` sequences of `length` tokens, row-major (padded), or,
/// with `lengths`, sequences of their own lengths one after another (packed: no padding rows).
public struct ModelInputs: Sendable {
    public var inputIds: [Int]
    public var attentionMask: [Int]
    public var tokenTypeIds: [Int]?
    public var batch: Int
    /// The (longest) sequence length.
    public var length: Int
    /// For multiple choice: sequences per example (the batch holds batch/choices examples × choices).
    public var choices: Int?
    /// Packed layout: sequence b is the rows offsets[b] ..< offsets[b] + lengths[b] (offsets are the running
    /// sums); every per-token value and output then has Σ lengths rows instead of batch × length.
    public var lengths: [Int]?

    public init(inputIds: [Int], attentionMask: [Int]? = nil, tokenTypeIds: [Int]? = nil, batch: Int, length: Int, choices: Int? = nil) {
        self.inputIds = inputIds
        self.attentionMask = attentionMask ?? [Int](repeating: 1, count: inputIds.count)
        self.tokenTypeIds = tokenTypeIds
        self.batch = batch
        self.length = length
        self.choices = choices
    }

    /// Packed inputs: the sequences one after another, no padding. A sequence's outputs are the bits it
    /// gets alone (as in a padded call): only the rows differ, `last_hidden_state` is [Σ lengths, H], token
    /// logits [Σ lengths, labels], start/end logits [Σ lengths], masked-LM rows count packed rows.
    public init(packed ids: [[Int]], attentionMask: [[Int]]? = nil, tokenTypeIds: [[Int]]? = nil, choices: Int? = nil) {
        inputIds = ids.flatMap { $0 }
        self.attentionMask = attentionMask?.flatMap { $0 } ?? [Int](repeating: 1, count: inputIds.count)
        self.tokenTypeIds = tokenTypeIds?.flatMap { $0 }
        batch = ids.count
        length = ids.map(\.count).max() ?? 0
        self.choices = choices
        lengths = ids.map(\.count)
    }

    /// Token rows of the call: Σ lengths when packed, else batch × length.
    public var rows: Int { lengths.map { $0.reduce(0, +) } ?? batch * length }

    /// (first row, length) of every sequence.
    public var segments: [(start: Int, length: Int)] {
        guard let lengths else { return (0 ..< batch).map { ($0 * length, length) } }
        var start = 0
        return lengths.map { n in defer { start += n }; return (start, n) }
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
        let (padded, overflow) = inputs.batch.multipliedReportingOverflow(by: inputs.length)
        guard inputs.batch > 0, inputs.length > 0, !overflow else {
            throw DebertaError(.invalidInput, file: file, "empty input: batch \(inputs.batch) × length \(inputs.length)")
        }
        if let lengths = inputs.lengths {
            guard lengths.count == inputs.batch, lengths.allSatisfy({ $0 > 0 }), lengths.max() == inputs.length else {
                throw DebertaError(.invalidInput, file: file, "packed inputs: \(lengths.count) sequence lengths for batch \(inputs.batch), longest \(inputs.length); every length must be at least 1")
            }
        }
        let n = inputs.lengths == nil ? padded : inputs.rows
        guard inputs.inputIds.count == n, inputs.attentionMask.count == n, inputs.tokenTypeIds.map({ $0.count == n }) ?? true else {
            throw DebertaError(.invalidInput, file: file, "input_ids, attention_mask and token_type_ids must all hold \(inputs.lengths == nil ? "batch × length" : "the sum of the lengths") = \(n) values")
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
    /// `tokens`: the rows of a packed call (Σ lengths, at most batch × length).
    public func estimatedBytes(batch: Int, length: Int, logitRows: Int? = nil, tokens: Int? = nil) -> Double {
        let c = config, N = tokens.map(Double.init) ?? Double(batch) * Double(length)
        let H = Double(c.hiddenSize), A = Double(c.allHeadSize), I = Double(c.intermediateSize)
        let span = c.relativeAttention ? Double(min(c.relativeEmbeddingRows, 2 * length)) : 1
        var floats = N * (10 * H + 4 * A + I)
        floats += Double(options.threads) * Double(DisentangledAttention.scratchFloats(
            length: length, headSize: c.attentionHeadSize, span: Int(span), bf16: options.attentionInBF16))
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
        let limits = options.limits, tokens = inputs.rows
        if tokens > limits.maxTokensPerCall {
            throw DebertaError(.limit, file: "inputs", "\(inputs.lengths == nil ? "\(inputs.batch) × \(inputs.length)" : "\(inputs.batch) packed sequences") = \(tokens) tokens exceed the \(limits.maxTokensPerCall) tokens one forward call may hold (RuntimeOptions.limits, --max-tokens-per-call)")
        }
        let bytes = estimatedBytes(batch: inputs.batch, length: inputs.length, logitRows: logitRows, tokens: inputs.rows)
        if bytes > Double(limits.maxBytesPerCall) {
            throw DebertaError(.limit, file: "inputs", "\(inputs.batch) × \(inputs.length) tokens need about \(Int(bytes / 1e6)) MB of activations, more than the \(limits.maxBytesPerCall >> 20) MiB one forward call may use (RuntimeOptions.limits)")
        }
    }
}
