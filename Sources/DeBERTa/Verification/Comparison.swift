import Checkpoint

/// What "within tolerance" means for one verify run.
public struct Criteria: Sendable {
    /// A fixed maximum absolute error (`--atol`).
    public var absoluteTolerance: Double?
    /// Otherwise factor × (largest |reference value|, or at least 1 when `floorAtOne`).
    public var relativeTolerance: Double?
    public var floorAtOne: Bool
    public var minCosine: Double?
    public var minAgreement: Double?
    public var description: String

    public func tolerance(largest: Double) -> Double {
        if let absoluteTolerance { return absoluteTolerance }
        if let relativeTolerance { return relativeTolerance * (floorAtOne ? max(1, largest) : largest) }
        return .infinity
    }

    /// f32 runtime against an f32 reference: max abs error ≤ 1e-4 × max(1, largest |value|).
    public static let f32 = Criteria(absoluteTolerance: nil, relativeTolerance: 1e-4, floorAtOne: true, minCosine: nil, minAgreement: nil,
                                     description: "max abs error <= 1e-4 x max(1, largest |reference value|)")

    /// A quantized model against the PyTorch simulation of its own scheme (checks the kernels).
    public static func exact(_ scheme: QuantizationScheme) -> Criteria {
        Criteria(absoluteTolerance: nil, relativeTolerance: 1e-3, floorAtOne: false, minCosine: 0.99999, minAgreement: nil,
                 description: "exact simulation of \(scheme.rawValue): max abs error <= 1e-3 x largest |reference value|, cosine >= 0.99999")
    }

    /// A quantized model against the f32 reference (what users care about).
    public static func accuracy(_ scheme: QuantizationScheme) -> Criteria {
        let (cosine, agreement) = scheme == .int8 ? (0.999, 0.99) : (0.99, 0.95)
        return Criteria(absoluteTolerance: nil, relativeTolerance: nil, floorAtOne: false, minCosine: cosine, minAgreement: agreement,
                        description: "\(scheme.rawValue) accuracy against f32: cosine >= \(cosine), argmax agreement >= \(Int(agreement * 100))%")
    }
}

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

/// `deberta verify`: run the model on a reference file's inputs and compare every output it holds.
public enum Verifier {
    public static let inputNames: Set<String> = ["input_ids", "attention_mask", "token_type_ids"]

    public struct Result: Sendable {
        public var criteria: Criteria
        public var comparisons: [OutputComparison]
        /// Which kind of reference this was ("f32", "int8 simulation", ...).
        public var referenceKind: String
    }

    /// Default criteria from the model's quantization and the reference's `__metadata__["scheme"]`; each
    /// of `atol`, `minCosine`, `minAgreement` overrides its part.
    public static func verify(model: DebertaModel, reference path: String, atol: Double? = nil,
                              minCosine: Double? = nil, minAgreement: Double? = nil) throws -> Result {
        let store = try TensorStore.open(weights: path)
        let referenceScheme = store.metadata.first { $0.0 == "scheme" }.flatMap { QuantizationScheme(rawValue: $0.1) }
        var criteria: Criteria
        let kind: String
        switch (model.quantization, referenceScheme) {
        case (nil, nil): criteria = .f32; kind = "f32 reference"
        case let (.some(m), .some(r)) where m == r: criteria = .exact(m); kind = "PyTorch simulation of \(m.rawValue)"
        case let (.some(m), nil): criteria = .accuracy(m); kind = "f32 reference (accuracy of \(m.rawValue))"
        case let (m, r):
            criteria = m.map { .accuracy($0) } ?? .f32
            kind = "\(r.map { "simulation of " + $0.rawValue } ?? "f32 reference") for a \(m?.rawValue ?? "f32") model (mismatched)"
        }
        if let atol { criteria.absoluteTolerance = atol }
        if let minCosine { criteria.minCosine = minCosine }
        if let minAgreement { criteria.minAgreement = minAgreement }
        if atol != nil || minCosine != nil || minAgreement != nil { criteria.description += " (overridden on the command line)" }

        let inputs = try InputsFile.inputs(from: store, file: path, for: model)
        let outputs = try model.forward(inputs)
        let B = inputs.batch, T = inputs.length
        let tokenMask = inputs.attentionMask.map { UInt8($0 != 0 ? 1 : 0) }
        let maskedPositions = store["masked_positions"].flatMap { $0.shape == [B, T] ? $0.int64s()?.map { UInt8($0 != 0 ? 1 : 0) } : nil }
        var results: [OutputComparison] = []
        for view in store.tensors where !inputNames.contains(view.name) && view.dtype.isFloatingPoint {
            guard let produced = outputs[view.name] else {
                results.append(.failed(view.name, view.shape, "the model did not produce this output"))
                continue
            }
            let reference = view.floats()
            guard produced.values.count == reference.count, produced.shape.reduce(1, *) == view.shape.reduce(1, *) else {
                results.append(.failed(view.name, view.shape, "shape \(produced.shape) differs from the reference \(view.shape)"))
                continue
            }
            // [B, T, X]: each non-pad token's vector (MLM agreement at masked positions when recorded);
            // [B, T] token scores (QA start/end, RTD): each sequence's non-pad positions form one row;
            // per-sequence outputs: everything.
            let tokenScores = view.shape == [B, T] && (view.name.hasSuffix("start_logits") || view.name.hasSuffix("end_logits") || model.layout.head == .replacedTokenDetection)
            if view.shape.count == 3 && view.shape[0] * view.shape[1] == B * T {
                let vocabulary = view.shape[2] == model.config.vocabSize
                results.append(Comparison.compare(name: view.name, shape: view.shape, actual: produced.values, reference: reference,
                                                  rowMask: tokenMask, agreementMask: vocabulary ? maskedPositions : nil,
                                                  rowWidth: view.shape[2], criteria: criteria))
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
                var c = Comparison.compare(name: view.name, shape: view.shape, actual: a, reference: r, rowMask: nil,
                                           rowWidth: max(a.count, 1), criteria: criteria)
                c.argmaxAgree = agree
                c.argmaxRows = B
                results.append(c)
            } else {
                results.append(Comparison.compare(name: view.name, shape: view.shape, actual: produced.values, reference: reference,
                                                  rowMask: nil, rowWidth: view.shape.last ?? 1, criteria: criteria))
            }
        }
        return Result(criteria: criteria, comparisons: results, referenceKind: kind)
    }

    static func argmax(_ x: [Float]) -> Int {
        var best = 0
        for (i, v) in x.enumerated() where v > x[best] { best = i }
        return best
    }
}
