import Checkpoint
import Foundation

public enum Pooling: String, Sendable, CaseIterable {
    case mean, cls
}

extension TextModel {
    /// One vector per text from the last hidden state: the mean over its tokens (attention mask) or [CLS];
    /// `normalize` divides each by its L2 norm (Text Embeddings Inference's default).
    public func embed(_ texts: [String], pooling: Pooling, normalize: Bool = false) throws -> [[Float]] {
        try run(embedPlan(texts, pooling: pooling, normalize: normalize))
    }

    public func embedPlan(_ texts: [String], pooling: Pooling, normalize: Bool = false) throws -> TaskPlan<[[Float]]> {
        let encoded = try texts.map { try encode($0) }
        let H = model.config.hiddenSize
        return TaskPlan(sequences: encoded, kind: .hidden) { outputs in
            try zip(encoded, outputs).map { e, output in
                let hidden = try output.require("last_hidden_state")
                var v: [Float]
                switch pooling {
                case .cls:
                    v = Array(hidden[0 ..< H])
                case .mean:
                    var sum = [Double](repeating: 0, count: H)
                    let n = e.length
                    for t in 0 ..< n { for c in 0 ..< H { sum[c] += Double(hidden[t * H + c]) } }
                    v = sum.map { Float($0 / Double(n)) }
                }
                if normalize {
                    let norm = v.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
                    if norm > 0 { v = v.map { Float(Double($0) / norm) } }
                }
                return v
            }
        }
    }
}
