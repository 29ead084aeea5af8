import Checkpoint
import DeBERTa

/// The bounds this tool puts on a request, in one place (the README's "Limits" lists them). Each turns an
/// over-large input into a one-line error before anything of that size is read or allocated.
enum Limits {
    /// One JSONL line of a batch file: refused as soon as reading passes it (the line is never held whole).
    static let maxLineBytes = 1 << 20
    /// Lines of one batch file (or of standard input).
    static let maxLinesPerFile = 10_000_000
    /// Batch mode reads this many lines (or this many bytes of lines) at a time, groups them by length
    /// into forward calls of `--batch-size` inputs, and writes their results in order before reading on:
    /// memory stays bounded however long the file is.
    static let windowLines = 4096
    static let windowBytes = 32 << 20
    /// An inputs file given as `-` is read into memory: at most this many bytes.
    static let maxStandardInputBytes = 256 << 20
    /// Tokens (sequences × length) of one forward call of `deberta run`, whatever the model...
    static let maxTokensPerForward = 65_536
    /// ... and fewer when the activations and outputs of the call would need more than this much memory.
    static let forwardMemoryBytes = 4 << 30

    /// Bytes one token of a forward call needs, estimated from the model's shape: the hidden-state,
    /// query/key/value and attention-output buffers (10 × hidden), the intermediate layer (2 ×
    /// intermediate), and its outputs (the hidden state, plus vocabulary logits for MLM heads, twice with
    /// the Enhanced Mask Decoder, or the labels).
    static func bytesPerToken(_ model: DebertaModel) -> Int {
        let c = model.config
        var floats = 11 * c.hiddenSize + 2 * c.intermediateSize
        switch model.layout.head {
        case .maskedLM: floats += c.vocabSize * (model.hasEnhancedMaskDecoder ? 2 : 1)
        case .tokenClassification: floats += max(c.numLabels, 1)
        case .questionAnswering: floats += 2
        case .replacedTokenDetection: floats += 1
        default: break
        }
        return 4 * max(floats, 1)
    }

    /// Tokens one forward call of this model may hold.
    static func tokensPerForward(_ model: DebertaModel) -> Int {
        max(1, min(maxTokensPerForward, forwardMemoryBytes / bytesPerToken(model)))
    }

    /// The same for the `input_ids` of an inputs (or reference) file, from its header alone.
    static func checkForward(inputsOf store: TensorStore, model: DebertaModel, file: String) throws {
        guard let ids = store["input_ids"], ids.shape.count >= 2 else { return }  // InputsFile says what is wrong
        let sequences = ids.shape.dropLast().reduce(1) { $0.multipliedReportingOverflow(by: $1).overflow ? Int.max : $0 * $1 }
        try checkForward(batch: sequences, length: ids.shape.last!, model: model, file: file)
    }

    /// Refuses a forward call of `batch` sequences × `length` tokens over the limits, before any of its
    /// values are read.
    static func checkForward(batch: Int, length: Int, model: DebertaModel, file: String, tensor: String? = "input_ids") throws {
        let limit = tokensPerForward(model)
        let c = model.config
        if c.positionBiasedInput && length > c.maxPositionEmbeddings {
            throw DebertaError(.limit, file: file, tensor: tensor, "sequence length \(length) exceeds max_position_embeddings \(c.maxPositionEmbeddings) of a model with absolute positions")
        }
        guard let tokens = batch.multipliedReportingOverflow(by: length).overflow ? nil : batch * length, tokens <= limit else {
            throw DebertaError(.limit, file: file, tensor: tensor,
                               "\(batch) × \(length) tokens is more than the \(grouped(limit)) tokens one forward call of this model may hold (see README, \"Limits\"); split the inputs into smaller files")
        }
    }
}
