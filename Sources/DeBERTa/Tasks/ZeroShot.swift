import Checkpoint
import Foundation

/// transformers' zero-shot-classification value: the labels, best first, with their scores.
public struct ZeroShotResult: Sendable {
    public var sequence: String
    public var labels: [String]
    public var scores: [Double]
}

extension TextModel {
    /// transformers' entailment and contradiction columns: the lowest id whose label starts with "entail"
    /// (any case); contradiction is the last column when entailment is 0, else column 0.
    func nliColumns(width C: Int) throws -> (entailment: Int, contradiction: Int) {
        let file = model.files.config ?? model.files.directory
        guard let entailment = labels.filter({ $0.value.lowercased().hasPrefix("entail") }).keys.min() else {
            throw DebertaError(.task, file: file, field: "id2label", "no entailment label (found: \(labels.sorted { $0.key < $1.key }.map(\.value).joined(separator: ", "))); zero-shot needs an NLI model")
        }
        guard entailment >= 0, entailment < C else {
            throw DebertaError(.configField, file: file, field: "id2label", "the entailment label has id \(entailment), outside the classifier's \(C) outputs")
        }
        guard C >= 2 else {
            throw DebertaError(.configField, file: file, field: "num_labels", "zero-shot needs entailment and contradiction outputs; the classifier has \(C)")
        }
        return (entailment, entailment == 0 ? C - 1 : 0)
    }

    /// NLI-based zero-shot classification (transformers' ZeroShotClassificationPipeline): each label becomes
    /// the hypothesis `template` with the label, the text is the premise (only the premise is truncated).
    /// Single-label: softmax of the entailment logits across labels; multi-label (or one label): per label,
    /// softmax over (contradiction, entailment). Labels run `batchSize` per forward call.
    public func zeroShot(_ text: String, labels candidates: [String], template: String, multiLabel: Bool) throws -> ZeroShotResult {
        try run(zeroShotPlan(text, labels: candidates, template: template, multiLabel: multiLabel))
    }

    public func zeroShotPlan(_ text: String, labels candidates: [String], template: String, multiLabel: Bool) throws -> TaskPlan<ZeroShotResult> {
        try requireHead([.sequenceClassification], for: "zero-shot")
        guard !candidates.isEmpty else { throw DebertaError(.invalidInput, file: "", "--labels is empty") }
        guard template.contains("{}") else { throw DebertaError(.invalidInput, file: "", "the template must contain {} where the label goes") }
        let premise = encoder.tokenize(text)
        var warned = false
        let encoded = try candidates.map { label -> EncodedInput in
            let e = try encoder.frame(premise, encoder.tokenize(template.replacingOccurrences(of: "{}", with: label)),
                                      truncation: .onlyFirst, maxLength: maxLength)
            if let t = e.truncated.first, !warned { warn("\"\(text.prefix(40))\": " + t.warning); warned = true }
            return e
        }
        return TaskPlan(sequences: encoded, kind: .head) { outputs in
            var entail: [Float] = [], contra: [Float] = []
            for output in outputs {
                let logits = try output.require("logits")
                let (e, c) = try self.nliColumns(width: logits.count)
                entail.append(logits[e])
                contra.append(logits[c])
            }
            let scores: [Double]
            if multiLabel || candidates.count == 1 {
                scores = zip(contra, entail).map { softmax([$0, $1])[1] }
            } else {
                scores = softmax(entail)
            }
            let order = ranked(scores, laterFirst: true)
            return ZeroShotResult(sequence: text, labels: order.map { candidates[$0] }, scores: order.map { scores[$0] })
        }
    }
}
