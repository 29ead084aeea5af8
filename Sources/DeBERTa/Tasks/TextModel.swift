import Checkpoint
import Foundation
import Tokenizers

/// A model with its tokenizer: what the text commands run. Every task gives the value transformers'
/// pipeline returns for the same input (see the README, "Text commands").
public final class TextModel: Sendable {
    public let model: DebertaModel
    public let encoder: TextEncoder
    /// The longest input in tokens, special tokens included; nil: whole texts (relative positions only).
    public let maxLength: Int?
    /// Sequences per forward call where one input becomes several (QA windows, zero-shot labels, ner windows).
    public let batchSize: Int
    /// Receives one-line warnings (truncation); the CLI prints them on standard error.
    let warn: @Sendable (String) -> Void

    /// `maxLength` lowers the model's own limit (never raises it past absolute position embeddings).
    public convenience init(path: String, options: RuntimeOptions = RuntimeOptions(), maxLength: Int? = nil, batchSize: Int = 16,
                            warn: @escaping @Sendable (String) -> Void = { _ in }) throws {
        let model = try DebertaModel(path: path, options: options)
        let encoder = try TextEncoder.load(files: model.files, config: model.config)
        try self.init(model: model, encoder: encoder, maxLength: maxLength, batchSize: batchSize, warn: warn)
    }

    public init(model: DebertaModel, encoder: TextEncoder, maxLength: Int? = nil, batchSize: Int = 16,
                warn: @escaping @Sendable (String) -> Void = { _ in }) throws {
        self.model = model
        self.encoder = encoder
        if let maxLength, maxLength < 3 { throw DebertaError(.invalidInput, file: "", "--max-length must be at least 3 (the special tokens)") }
        guard batchSize >= 1 else { throw DebertaError(.invalidInput, file: "", "--batch-size must be positive") }
        switch (maxLength, encoder.maxLength) {
        case let (a?, b?): self.maxLength = min(a, b)
        case let (a, b): self.maxLength = a ?? b
        }
        self.batchSize = batchSize
        self.warn = warn
    }

    var labels: [Int: String] { model.config.id2label }

    /// transformers' `id2label[i]`.
    func label(_ i: Int) -> String { labels[i] ?? "LABEL_\(i)" }

    func requireHead(_ heads: [TaskHead], for task: String) throws {
        guard heads.contains(model.layout.head) else {
            throw DebertaError(.task, file: "", "\(task) needs a \(heads.map(\.rawValue).joined(separator: " or ")) model; \(model.files.directory) is \(model.layout.head.rawValue)")
        }
    }

    /// A classifier's output count, refused when there is nothing to choose from.
    func requireLabels(_ width: Int, for task: String) throws -> Int {
        guard width >= 1 else {
            throw DebertaError(.configField, file: model.files.config ?? model.files.directory, field: "num_labels", "\(task) needs at least one label; the model has \(width)")
        }
        return width
    }

    /// Encodes with this model's limit; what truncation drops is reported through `warn`.
    func encode(_ text: String, pair: String? = nil, truncation: Truncation = .longestFirst) throws -> EncodedInput {
        let e = try encoder.encode(text, pair: pair, truncation: truncation, maxLength: maxLength)
        for t in e.truncated { warn("\"\(text.prefix(40))\(text.count > 40 ? "..." : "")\": " + t.warning) }
        return e
    }

    /// The raw config.json member `name` (fields the runtime itself does not need, e.g. problem_type).
    func configMember(_ name: String) -> JSONValue? {
        guard let path = model.files.config else { return nil }
        return try? readJSONFile(path)[name]
    }
}

/// Softmax in double precision, max-shifted as numpy's.
func softmax<C: Collection>(_ x: C) -> [Double] where C.Element == Float {
    let m = Double(x.max() ?? 0)
    let e = x.map { exp(Double($0) - m) }
    let s = e.reduce(0, +)
    return e.map { $0 / s }
}

func sigmoid(_ x: Float) -> Double { 1 / (1 + exp(-Double(x))) }

/// numpy's argmax: the first index of the largest value.
func argmax(_ x: [Double]) -> Int {
    var best = 0
    for i in x.indices where x[i] > x[best] { best = i }
    return best
}

/// Indices of `scores`, best first; `laterFirst` breaks ties toward the later index (numpy's reversed
/// argsort), otherwise toward the earlier one (Python's stable sort).
func ranked(_ scores: [Double], laterFirst: Bool = false) -> [Int] {
    scores.indices.sorted { a, b in
        scores[a] != scores[b] ? scores[a] > scores[b] : (laterFirst ? a > b : a < b)
    }
}

extension String {
    /// Unicode scalars `range` of this string (Python slicing).
    func scalarSlice(_ range: Range<Int>) -> String {
        let s = Array(unicodeScalars)
        let lo = max(0, min(range.lowerBound, s.count)), hi = max(lo, min(range.upperBound, s.count))
        return String(String.UnicodeScalarView(s[lo ..< hi]))
    }
}
