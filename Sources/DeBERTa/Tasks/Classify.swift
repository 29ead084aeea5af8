import Checkpoint
import Foundation

public struct LabelScore: Sendable {
    public var label: String
    public var score: Double
}

/// What turns classification logits into scores (transformers' `function_to_apply`).
public enum ClassificationFunction: String, Sendable, CaseIterable {
    case softmax, sigmoid, none
}

extension TextModel {
    /// transformers' default: config.json `problem_type` regression → none, multi_label_classification or
    /// a single output → sigmoid, otherwise softmax.
    public var defaultClassificationFunction: ClassificationFunction {
        switch configMember("problem_type")?.stringValue {
        case "regression": return .none
        case "multi_label_classification": return .sigmoid
        default: return model.config.numLabels == 1 ? .sigmoid : .softmax
        }
    }

    /// Every label with its score, best first (text-classification with top_k=None).
    public func classify(_ items: [(text: String, pair: String?)], function: ClassificationFunction? = nil) throws -> [[LabelScore]] {
        try run(classifyPlan(items, function: function))
    }

    public func classifyPlan(_ items: [(text: String, pair: String?)], function: ClassificationFunction? = nil) throws -> TaskPlan<[[LabelScore]]> {
        try requireHead([.sequenceClassification], for: "classify")
        let apply = function ?? defaultClassificationFunction
        let encoded = try items.map { try encode($0.text, pair: $0.pair) }
        return TaskPlan(sequences: encoded, kind: .head) { outputs in
            try outputs.map { output in
                let row = try output.require("logits")
                _ = try self.requireLabels(row.count, for: "classify")
                let scores: [Double]
                switch apply {
                case .softmax: scores = softmax(row)
                case .sigmoid: scores = row.map(sigmoid)
                case .none: scores = row.map(Double.init)
                }
                return ranked(scores).map { LabelScore(label: self.label($0), score: scores[$0]) }
            }
        }
    }
}
