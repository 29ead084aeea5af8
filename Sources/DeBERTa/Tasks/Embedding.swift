import Checkpoint
import Foundation

public enum Pooling: String, Sendable, CaseIterable {
    case mean, cls
}

extension TextModel {
    /// One vector per text from the last hidden state: the mean over its tokens (attention mask) or [CLS].
    public func embed(_ texts: [String], pooling: Pooling) throws -> [[Float]] {
        let encoded = try texts.map { try encode($0) }
        var result: [[Float]] = []
        try forwardInChunks(encoded, head: false) { out, batch, range in
            guard let hidden = out["last_hidden_state"] else { throw DebertaError(.task, file: "", "no hidden state") }
            let H = hidden.shape[2], T = batch.length
            for (b, i) in range.enumerated() {
                switch pooling {
                case .cls:
                    result.append(Array(hidden.values[(b * T) * H ..< (b * T + 1) * H]))
                case .mean:
                    var v = [Double](repeating: 0, count: H)
                    let n = encoded[i].length
                    for t in 0 ..< n { for c in 0 ..< H { v[c] += Double(hidden.values[(b * T + t) * H + c]) } }
                    result.append(v.map { Float($0 / Double(n)) })
                }
            }
        }
        return result
    }
}
