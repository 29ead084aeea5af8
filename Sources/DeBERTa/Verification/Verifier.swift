import Checkpoint

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
        case (nil, nil) where model.options.precision == .bf16: criteria = .bf16; kind = "f32 reference (accuracy of bf16 precision)"
        case (nil, nil) where model.attentionInBF16: criteria = .bf16; kind = "f32 reference (accuracy of bf16 attention)"
        case (nil, nil): criteria = .f32; kind = "f32 reference"
        case let (.some(m), .some(r)) where m == r && model.attentionInBF16:
            // The simulation computes attention in f32: with bf16 attention only the accuracy criteria apply.
            criteria = .accuracy(m); kind = "PyTorch simulation of \(m.rawValue) (f32 attention) for a model with bf16 attention: accuracy criteria"
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
