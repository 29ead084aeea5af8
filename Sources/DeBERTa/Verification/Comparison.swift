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
    public var minCosine: Double?
    public var minAgreement: Double?
    public var problem: String?

    public var agreement: Double { argmaxRows == 0 ? 1 : Double(argmaxAgree) / Double(argmaxRows) }
    /// Argmax agreement is a criterion for scores over classes (`*logits`), not for hidden states, whose
    /// largest coordinate means nothing.
    public var agreementCounts: Bool { name.hasSuffix("logits") }
    public var passed: Bool {
        problem == nil && maxAbsError <= tolerance && cosine >= (minCosine ?? -1)
            && (!agreementCounts || agreement >= (minAgreement ?? 0))
    }

    static func failed(_ name: String, _ shape: [Int], _ problem: String) -> OutputComparison {
        OutputComparison(name: name, shape: shape, maxAbsError: .infinity, maxRelError: .infinity, cosine: 0, argmaxAgree: 0,
                         argmaxRows: 0, largestReference: 0, tolerance: 0, comparedValues: 0, problem: problem)
    }
}

public enum Comparison {
    /// Compares `actual` with `reference` over rows of `rowWidth` values (argmax is taken over a row).
    /// `rowMask` selects the rows that count (nil: all); `agreementMask` further restricts the argmax
    /// agreement (e.g. to masked-token positions).
    public static func compare(name: String, shape: [Int], actual: [Float], reference: [Float], rowMask: [UInt8]?,
                               agreementMask: [UInt8]? = nil, rowWidth: Int, criteria: Criteria) -> OutputComparison {
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
            if let agreementMask, r < agreementMask.count, agreementMask[r] == 0 { continue }
            rows += 1
            if argA == argB { agree += 1 }
        }
        let cosine = (na > 0 && nb > 0) ? dot / (na.squareRoot() * nb.squareRoot()) : (na == nb ? 1 : 0)
        return OutputComparison(
            name: name, shape: shape, maxAbsError: maxAbs, maxRelError: maxRel, cosine: cosine,
            argmaxAgree: agree, argmaxRows: rows, largestReference: largest,
            tolerance: criteria.tolerance(largest: largest), comparedValues: compared,
            minCosine: criteria.minCosine, minAgreement: criteria.minAgreement)
    }
}
