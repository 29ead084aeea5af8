import Checkpoint
import Foundation
import Tokenizers

/// A model with its tokenizer: what the text commands run.
public final class TextModel: Sendable {
    public let model: DebertaModel
    public let encoder: TextEncoder

    public init(path: String, options: RuntimeOptions = RuntimeOptions()) throws {
        model = try DebertaModel(path: path, options: options)
        encoder = try TextEncoder.load(files: model.files, config: model.config)
    }

    public init(model: DebertaModel, encoder: TextEncoder) {
        self.model = model
        self.encoder = encoder
    }

    var labels: [Int: String] { model.config.id2label }

    func requireHead(_ heads: [TaskHead], for task: String) throws {
        guard heads.contains(model.layout.head) else {
            throw DebertaError(.task, file: "", "\(task) needs a \(heads.map(\.rawValue).joined(separator: " or ")) model; \(model.files.directory) is \(model.layout.head.rawValue)")
        }
    }
}

func softmax(_ x: ArraySlice<Float>) -> [Double] {
    let m = Double(x.max() ?? 0)
    let e = x.map { exp(Double($0) - m) }
    let s = e.reduce(0, +)
    return e.map { $0 / s }
}

// MARK: - fill-mask

public struct MaskPrediction: Sendable {
    public var token: String
    public var id: Int
    public var score: Double
}

public struct FilledMask: Sendable {
    /// Token position in the model input and character span of the [MASK] in the text.
    public var position: Int
    public var offset: Range<Int>
    public var predictions: [MaskPrediction]
}

extension TextModel {
    /// Top-k predictions for each [MASK], from the Enhanced Mask Decoder when the model has one.
    public func fillMask(_ texts: [String], topK: Int) throws -> [(fromEMD: Bool, masks: [FilledMask])] {
        try requireHead([.maskedLM], for: "fill-mask")
        guard let maskId = encoder.special.mask else { throw DebertaError(.task, file: "", "the tokenizer has no [MASK] token") }
        let encoded = try texts.map { try encoder.encode($0) }
        for (text, e) in zip(texts, encoded) where !e.ids.contains(maskId) {
            if encoder.tokenize(text).ids.contains(maskId) {
                throw DebertaError(.limit, file: "", "the [MASK] in \"\(text.prefix(60))\" lies beyond the model's maximum of \(encoder.maxLength) tokens")
            }
            throw DebertaError(.invalidInput, file: "", "no [MASK] in \"\(text.prefix(60))\": fill-mask predicts the tokens written as [MASK]")
        }
        return try fillMask(encoded: encoded, topK: topK)
    }

    /// Predictions for the [MASK] ids of already encoded inputs.
    public func fillMask(encoded: [EncodedInput], topK: Int) throws -> [(fromEMD: Bool, masks: [FilledMask])] {
        try requireHead([.maskedLM], for: "fill-mask")
        guard let maskId = encoder.special.mask else { throw DebertaError(.task, file: "", "the tokenizer has no [MASK] token") }
        let inputs = encoder.batch(encoded)
        let T = inputs.length
        // Only the [MASK] rows go through the vocabulary product.
        var rows: [Int] = []
        for (b, e) in encoded.enumerated() { for (t, id) in e.ids.enumerated() where id == maskId { rows.append(b * T + t) } }
        let out = try model.forward(inputs, maskedLMRows: rows)
        let useEMD = out["emd_logits"] != nil
        guard let logits = out[useEMD ? "emd_logits" : "logits"] else { throw DebertaError(.task, file: "", "the model produced no MLM logits") }
        let V = logits.shape[1]
        let rowIndex = Dictionary(uniqueKeysWithValues: rows.enumerated().map { ($1, $0) })
        return encoded.enumerated().map { b, e in
            var masks: [FilledMask] = []
            for (t, id) in e.ids.enumerated() where id == maskId {
                let start = rowIndex[b * T + t]! * V
                let p = softmax(logits.values[start ..< start + V])
                let top = p.indices.sorted { p[$0] > p[$1] }.prefix(topK)
                masks.append(FilledMask(position: t, offset: e.offsets[t] ?? 0 ..< 0, predictions: top.map {
                    MaskPrediction(token: encoder.tokenizer.token(of: $0) ?? "<\($0)>", id: $0, score: p[$0])
                }))
            }
            return (useEMD, masks)
        }
    }
}

// MARK: - classify / zero-shot

public struct LabelScore: Sendable {
    public var label: String
    public var score: Double
}

extension TextModel {
    /// Labels with probabilities (softmax over the logits), best first; a single-output model returns its raw value.
    public func classify(_ items: [(text: String, pair: String?)]) throws -> [[LabelScore]] {
        try requireHead([.sequenceClassification], for: "classify")
        let encoded = try items.map { try encoder.encode($0.text, pair: $0.pair) }
        let out = try model.forward(encoder.batch(encoded))
        guard let logits = out["logits"] else { throw DebertaError(.task, file: "", "the model produced no logits") }
        let C = logits.shape[1]
        return (0 ..< items.count).map { b in
            let row = logits.values[b * C ..< (b + 1) * C]
            if C == 1 { return [LabelScore(label: labels[0] ?? "LABEL_0", score: Double(row.first!))] }
            let p = softmax(row)
            return p.indices.map { LabelScore(label: labels[$0] ?? "LABEL_\($0)", score: p[$0]) }.sorted { $0.score > $1.score }
        }
    }

    /// NLI-based zero-shot classification (transformers' ZeroShotClassificationPipeline): each label becomes
    /// the hypothesis `template` with the label, the text is the premise. Single-label: softmax of the
    /// entailment logits across labels; multi-label: per label, softmax over (contradiction, entailment).
    public func zeroShot(_ text: String, labels candidates: [String], template: String, multiLabel: Bool) throws -> [LabelScore] {
        try requireHead([.sequenceClassification], for: "zero-shot")
        guard !candidates.isEmpty else { throw DebertaError(.invalidInput, file: "", "--labels is empty") }
        guard template.contains("{}") else { throw DebertaError(.invalidInput, file: "", "the template must contain {} where the label goes") }
        func find(_ prefix: String) -> Int? {
            labels.first { $0.value.lowercased().hasPrefix(prefix) }?.key
        }
        guard let entailment = find("entail") else {
            throw DebertaError(.task, file: "", "id2label of \(model.files.directory) has no entailment label (found: \(labels.sorted { $0.key < $1.key }.map(\.value).joined(separator: ", "))); zero-shot needs an NLI model")
        }
        guard let contradiction = find("contradict") else {
            throw DebertaError(.task, file: "", "id2label of \(model.files.directory) has no contradiction label; zero-shot needs an NLI model")
        }
        let encoded = try candidates.map { try encoder.encode(text, pair: template.replacingOccurrences(of: "{}", with: $0), truncation: .longestFirst) }
        let out = try model.forward(encoder.batch(encoded))
        guard let logits = out["logits"] else { throw DebertaError(.task, file: "", "the model produced no logits") }
        let C = logits.shape[1]
        var scores: [Double]
        if multiLabel || candidates.count == 1 {
            scores = candidates.indices.map { i in
                let pair: [Float] = [logits.values[i * C + contradiction], logits.values[i * C + entailment]]
                return softmax(pair[...])[1]
            }
        } else {
            scores = softmax(candidates.indices.map { logits.values[$0 * C + entailment] }[...])
        }
        return zip(candidates, scores).map { LabelScore(label: $0, score: $1) }.sorted { $0.score > $1.score }
    }
}

// MARK: - ner

public struct Entity: Sendable {
    public var label: String
    public var score: Double
    public var text: String
    public var start: Int
    public var end: Int
}

extension TextModel {
    /// Token labels aggregated BIO-style into entity spans with character offsets ("simple" aggregation:
    /// a B- or a label change starts an entity, I- of the same type continues it; O ends it; score = mean).
    public func entities(_ texts: [String]) throws -> [[Entity]] {
        try requireHead([.tokenClassification], for: "ner")
        let encoded = try texts.map { try encoder.encode($0) }
        let inputs = encoder.batch(encoded)
        let out = try model.forward(inputs)
        guard let logits = out["logits"] else { throw DebertaError(.task, file: "", "the model produced no logits") }
        let C = logits.shape[2], T = inputs.length
        return zip(texts, encoded).enumerated().map { b, pair in
            let (text, e) = pair
            let scalars = Array(text.unicodeScalars)
            var result: [Entity] = []
            var current: (type: String, start: Int, end: Int, scores: [Double])?
            func close() {
                if let c = current {
                    result.append(Entity(label: c.type, score: c.scores.reduce(0, +) / Double(c.scores.count),
                                         text: String(String.UnicodeScalarView(scalars[c.start ..< c.end])), start: c.start, end: c.end))
                }
                current = nil
            }
            for t in 0 ..< e.length {
                guard let span = e.offsets[t], e.sequence[t] != nil else { continue }
                let start = (b * T + t) * C
                let p = softmax(logits.values[start ..< start + C])
                let best = p.indices.max { p[$0] < p[$1] }!
                let label = labels[best] ?? "LABEL_\(best)"
                let (tag, type) = label.count > 2 && (label.hasPrefix("B-") || label.hasPrefix("I-"))
                    ? (String(label.prefix(1)), String(label.dropFirst(2))) : (label == "O" ? "O" : "B", label)
                if tag == "O" { close(); continue }
                // Trim leading white space of byte-level/metaspace tokens from the span.
                var s = span.lowerBound
                while s < span.upperBound && scalars[s].properties.isWhitespace { s += 1 }
                if s == span.upperBound { continue }  // a token of white space only carries no entity text
                if tag == "I", let c = current, c.type == type {
                    current = (type, c.start, span.upperBound, c.scores + [p[best]])
                } else {
                    close()
                    current = (type, s, span.upperBound, [p[best]])
                }
            }
            close()
            return result
        }
    }
}

// MARK: - question answering

public struct Answer: Sendable {
    public var text: String
    public var score: Double
    public var start: Int
    public var end: Int
}

extension TextModel {
    /// The best answer span in `context`; contexts longer than the window are split with `stride` tokens
    /// of overlap, and the best span over all windows wins (score = p(start) · p(end) within a window).
    public func answer(question: String, context: String, stride: Int = 128, maxAnswerTokens: Int = 30) throws -> Answer {
        try requireHead([.questionAnswering], for: "qa")
        let q = encoder.tokenize(question)
        let c = encoder.tokenize(context)
        let room = encoder.maxLength - 3 - q.ids.count
        guard room > 0 else { throw DebertaError(.limit, file: "", "the question alone (\(q.ids.count) tokens) fills the model's window of \(encoder.maxLength)") }
        let step = max(1, room - min(stride, room - 1))
        var windows: [EncodedInput] = []
        var starts: [Int] = []
        var begin = 0
        repeat {
            let end = min(c.ids.count, begin + room)
            var window = Encoding(ids: Array(c.ids[begin ..< end]), tokens: Array(c.tokens[begin ..< end]), offsets: Array(c.offsets[begin ..< end]))
            if window.ids.isEmpty { window = Encoding() }
            var input = EncodedInput(ids: [encoder.special.cls], tokens: ["[CLS]"], typeIds: [0], offsets: [nil], sequence: [nil])
            input.append(q, type: 0, sequence: 0)
            input.ids.append(encoder.special.sep); input.tokens.append("[SEP]"); input.typeIds.append(0); input.offsets.append(nil); input.sequence.append(nil)
            input.append(window, type: 1, sequence: 1)
            input.ids.append(encoder.special.sep); input.tokens.append("[SEP]"); input.typeIds.append(1); input.offsets.append(nil); input.sequence.append(nil)
            windows.append(input)
            starts.append(begin)
            if end >= c.ids.count { break }
            begin += step
        } while true
        let inputs = encoder.batch(windows)
        let out = try model.forward(inputs)
        guard let startLogits = out["start_logits"], let endLogits = out["end_logits"] else { throw DebertaError(.task, file: "", "the model produced no start/end logits") }
        let T = inputs.length
        var best: Answer?
        let scalars = Array(context.unicodeScalars)
        for (w, window) in windows.enumerated() {
            let contextPositions = (0 ..< window.length).filter { window.sequence[$0] == 1 }
            guard !contextPositions.isEmpty else { continue }
            let ps = softmax(startLogits.values[w * T ..< w * T + window.length])
            let pe = softmax(endLogits.values[w * T ..< w * T + window.length])
            for s in contextPositions {
                for e in contextPositions where e >= s && e - s < maxAnswerTokens {
                    let score = ps[s] * pe[e]
                    if score > (best?.score ?? -1), let a = window.offsets[s], let b = window.offsets[e] {
                        var lo = a.lowerBound
                        while lo < b.upperBound && scalars[lo].properties.isWhitespace { lo += 1 }
                        best = Answer(text: String(String.UnicodeScalarView(scalars[lo ..< b.upperBound])), score: score, start: lo, end: b.upperBound)
                    }
                }
            }
        }
        guard let best else { throw DebertaError(.invalidInput, file: "", "the context is empty") }
        return best
    }
}

// MARK: - embeddings

public enum Pooling: String, Sendable, CaseIterable {
    case mean, cls
}

extension TextModel {
    /// One vector per text from the last hidden state: the mean over its tokens (attention mask) or [CLS].
    public func embed(_ texts: [String], pooling: Pooling) throws -> [[Float]] {
        let encoded = try texts.map { try encoder.encode($0) }
        let inputs = encoder.batch(encoded)
        let out = try model.forward(inputs, head: false)
        guard let hidden = out["last_hidden_state"] else { throw DebertaError(.task, file: "", "no hidden state") }
        let H = hidden.shape[2], T = inputs.length
        return encoded.enumerated().map { b, e in
            switch pooling {
            case .cls:
                return Array(hidden.values[(b * T) * H ..< (b * T + 1) * H])
            case .mean:
                var v = [Float](repeating: 0, count: H)
                for t in 0 ..< e.length { for c in 0 ..< H { v[c] += hidden.values[(b * T + t) * H + c] } }
                return v.map { $0 / Float(e.length) }
            }
        }
    }
}
