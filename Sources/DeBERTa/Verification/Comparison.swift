import Checkpoint

/// How one output of the runtime compares with a reference output, on the positions that count
/// (rows whose attention_mask is 1; every row of per-sequence outputs).
public struct OutputComparison: Sendable {
    public var name: String
    public var shape: [Int]
    public var maxAbsError: Double
    public var maxRelError: Double
    public var cosine: Double
    public var argmaxAgree: Int
    public var argmaxRows: Int
    public var largestReference: Double
    public var tolerance: Double
    public var comparedValues: Int
    public var passed: Bool { maxAbsError <= tolerance }
    public var problem: String?
}

public enum Comparison {
    /// Default tolerance: 1e-4 × max(1, the largest |value| of the reference output).
    public static func defaultTolerance(largest: Double) -> Double { 1e-4 * max(1, largest) }

    /// Compares `actual` with `reference`. `tokenMask` ([rows] of 0/1 over the first dimensions) selects
    /// rows for per-token outputs; nil compares everything. `rowWidth` is the size of the last dimension,
    /// over which argmax is taken (for [B, T] outputs such as start_logits, a row is a sequence).
    public static func compare(name: String, shape: [Int], actual: [Float], reference: [Float], rowMask: [UInt8]?,
                               rowWidth: Int, atol: Double?) -> OutputComparison {
        var maxAbs = 0.0, maxRel = 0.0, dot = 0.0, na = 0.0, nb = 0.0, largest = 0.0
        var agree = 0, rows = 0, compared = 0
        let rowCount = rowWidth > 0 ? reference.count / rowWidth : 0
        for r in 0 ..< rowCount {
            if let rowMask, r < rowMask.count, rowMask[r] == 0 { continue }
            var bestA = -Double.infinity, bestB = -Double.infinity, argA = 0, argB = 0
            for c in 0 ..< rowWidth {
                let i = r * rowWidth + c
                let a = Double(actual[i]), b = Double(reference[i])
                let err = abs(a - b)
                maxAbs = max(maxAbs, err.isNaN ? .infinity : err)
                maxRel = max(maxRel, err / max(abs(b), 1e-6))
                dot += a * b; na += a * a; nb += b * b
                largest = max(largest, abs(b))
                if a > bestA { bestA = a; argA = c }
                if b > bestB { bestB = b; argB = c }
                compared += 1
            }
            rows += 1
            if argA == argB { agree += 1 }
        }
        let cosine = (na > 0 && nb > 0) ? dot / (na.squareRoot() * nb.squareRoot()) : (na == nb ? 1 : 0)
        return OutputComparison(
            name: name, shape: shape, maxAbsError: maxAbs, maxRelError: maxRel, cosine: cosine,
            argmaxAgree: agree, argmaxRows: rows, largestReference: largest,
            tolerance: atol ?? defaultTolerance(largest: largest), comparedValues: compared)
    }
}

/// `deberta verify`: run the model on a reference file's inputs and compare every output it holds.
public enum Verifier {
    public static let inputNames: Set<String> = ["input_ids", "attention_mask", "token_type_ids"]

    public static func verify(model: DebertaModel, reference path: String, atol: Double?) throws -> [OutputComparison] {
        let store = try TensorStore.open(weights: path)
        let inputs = try InputsFile.inputs(from: store, file: path, for: model)
        let outputs = try model.forward(inputs)
        let B = inputs.batch, T = inputs.length
        let tokenMask = inputs.attentionMask.map { UInt8($0 != 0 ? 1 : 0) }
        var results: [OutputComparison] = []
        for view in store.tensors where !inputNames.contains(view.name) {
            guard view.dtype.isFloatingPoint else { continue }
            guard let produced = outputs[view.name] else {
                var missing = OutputComparison(name: view.name, shape: view.shape, maxAbsError: .infinity, maxRelError: .infinity,
                    cosine: 0, argmaxAgree: 0, argmaxRows: 0, largestReference: 0, tolerance: 0, comparedValues: 0)
                missing.problem = "the model did not produce this output"
                results.append(missing)
                continue
            }
            let reference = view.floats()
            guard produced.values.count == reference.count, produced.shape.reduce(1, *) == view.shape.reduce(1, *) else {
                var wrong = OutputComparison(name: view.name, shape: view.shape, maxAbsError: .infinity, maxRelError: .infinity,
                    cosine: 0, argmaxAgree: 0, argmaxRows: 0, largestReference: 0, tolerance: 0, comparedValues: 0)
                wrong.problem = "shape \(produced.shape) differs from the reference \(view.shape)"
                results.append(wrong)
                continue
            }
            // [B, T, X] outputs compare each non-pad token's vector; [B, T] token scores (QA start/end, RTD)
            // compare each sequence's non-pad positions as one row; per-sequence outputs compare everything.
            let tokenScores = view.shape == [B, T] && (view.name.hasSuffix("start_logits") || view.name.hasSuffix("end_logits") || model.layout.head == .replacedTokenDetection)
            if view.shape.count == 3 && view.shape[0] * view.shape[1] == B * T {
                results.append(Comparison.compare(name: view.name, shape: view.shape, actual: produced.values, reference: reference,
                                                  rowMask: tokenMask, rowWidth: view.shape[2], atol: atol))
            } else if tokenScores {
                var a: [Float] = [], r: [Float] = []
                var agree = 0
                for b in 0 ..< B {
                    let kept = (0 ..< T).filter { tokenMask[b * T + $0] == 1 }
                    let ra = kept.map { produced.values[b * T + $0] }, rr = kept.map { reference[b * T + $0] }
                    if argmax(ra) == argmax(rr) { agree += 1 }
                    a += ra
                    r += rr
                }
                var c = Comparison.compare(name: view.name, shape: view.shape, actual: a, reference: r, rowMask: nil, rowWidth: max(a.count, 1), atol: atol)
                c.argmaxAgree = agree
                c.argmaxRows = B
                results.append(c)
            } else {
                results.append(Comparison.compare(name: view.name, shape: view.shape, actual: produced.values, reference: reference,
                                                  rowMask: nil, rowWidth: view.shape.last ?? 1, atol: atol))
            }
        }
        return results
    }

    static func argmax(_ x: [Float]) -> Int {
        var best = 0
        for (i, v) in x.enumerated() where v > x[best] { best = i }
        return best
    }
}
