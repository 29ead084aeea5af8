import Checkpoint
import DeBERTa

/// The bounds this tool's input handling puts on a request, in one place (the README's "Limits" lists
/// them with the runtime's `Limits`). Each turns an over-large input into a one-line error before anything
/// of that size is read or allocated.
enum IOLimits {
    /// One JSONL line of a batch file (or of tokenize's standard input): refused as soon as reading passes
    /// it (the line is never held whole).
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

    /// The runtime's limits of one forward call (`RuntimeOptions.limits`: tokens, estimated bytes, and
    /// max_position_embeddings for absolute positions) checked on a shape alone, before an inputs file's
    /// values are read or token ids allocated, with the file in the message.
    static func checkForward(batch: Int, length: Int, model: DebertaModel, file: String, tensor: String? = "input_ids",
                             logitRows: Int? = nil) throws {
        let c = model.config, limits = model.options.limits
        if c.positionBiasedInput && length > c.maxPositionEmbeddings {
            throw DebertaError(.limit, file: file, tensor: tensor, "sequence length \(length) exceeds max_position_embeddings \(c.maxPositionEmbeddings) of a model with absolute positions")
        }
        let (tokens, overflow) = batch.multipliedReportingOverflow(by: length)
        guard !overflow, tokens <= limits.maxTokensPerCall else {
            throw DebertaError(.limit, file: file, tensor: tensor,
                               "\(batch) × \(length) tokens is more than the \(grouped(limits.maxTokensPerCall)) tokens one forward call may hold (see README, \"Limits\"; --max-tokens-per-call); split the inputs")
        }
        let bytes = model.estimatedBytes(batch: batch, length: length, logitRows: logitRows)
        guard bytes <= Double(limits.maxBytesPerCall) else {
            throw DebertaError(.limit, file: file, tensor: tensor,
                               "\(batch) × \(length) tokens need about \(Int(bytes / 1e6)) MB of activations, more than the \(limits.maxBytesPerCall >> 20) MiB one forward call may use (see README, \"Limits\"); split the inputs")
        }
    }

    /// The same for the `input_ids` of an inputs (or reference) file, from its header alone.
    static func checkForward(inputsOf store: TensorStore, model: DebertaModel, file: String) throws {
        guard let ids = store["input_ids"], ids.shape.count >= 2 else { return }  // InputsFile says what is wrong
        let sequences = ids.shape.dropLast().reduce(1) { $0.multipliedReportingOverflow(by: $1).overflow ? Int.max : $0 * $1 }
        try checkForward(batch: sequences, length: ids.shape.last!, model: model, file: file)
    }
}
