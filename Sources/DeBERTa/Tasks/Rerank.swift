import Checkpoint
import Foundation

/// One text of a rerank with its relevance to the query.
public struct RankedText: Sendable {
    public var index: Int
    public var score: Double
}

extension TextModel {
    /// How a sequence classifier scores (query, text) relevance: a one-output cross-encoder's logit, or an NLI
    /// model's entailment; nil for any other classifier.
    public var rerankScoring: String? {
        guard model.layout.head == .sequenceClassification else { return nil }
        if model.config.numLabels == 1 { return "cross-encoder" }
        if labels.contains(where: { $0.value.lowercased().hasPrefix("entail") }) { return "nli" }
        return nil
    }

    /// The texts by relevance to `query`, best first (ties: the earlier text). A one-output cross-encoder
    /// scores sigmoid(logit); an NLI model the entailment probability of (query, text), softmax over its
    /// labels. `raw`: the logit (of entailment) itself.
    public func rerankPlan(query: String, texts: [String], raw: Bool = false) throws -> TaskPlan<[RankedText]> {
        try requireHead([.sequenceClassification], for: "rerank")
        guard let scoring = rerankScoring else {
            throw DebertaError(.task, file: model.files.config ?? model.files.directory, field: "id2label",
                               "rerank needs a one-label cross-encoder or an NLI model (an entailment label); this classifier has \(model.config.numLabels) labels: \(labels.sorted { $0.key < $1.key }.map(\.value).joined(separator: ", "))")
        }
        let encoded = try texts.map { try encode(query, pair: $0) }
        return TaskPlan(sequences: encoded, kind: .head) { outputs in
            let scores = try outputs.map { output -> Double in
                let logits = try output.require("logits")
                if scoring == "cross-encoder" { return raw ? Double(logits[0]) : sigmoid(logits[0]) }
                let (entailment, _) = try self.nliColumns(width: logits.count)
                return raw ? Double(logits[entailment]) : softmax(logits)[entailment]
            }
            return ranked(scores).map { RankedText(index: $0, score: scores[$0]) }
        }
    }
}
