import Checkpoint

extension DebertaModel {
    /// Runs the encoder and the head. Outputs use the reference names: `last_hidden_state` [B, T, H] and the
    /// head's (`logits`, `start_logits`/`end_logits`), plus `emd_logits` for MLM models with the EMD.
    /// `head: false` stops after the encoder (only `last_hidden_state`, e.g. for embeddings).
    /// `maskedLMRows` (token rows b·T + t) restricts the vocabulary products of an MLM model to those
    /// positions: `logits` and `emd_logits` are then [R, V] in that order (fill-mask needs only its masks,
    /// and the [T, E] × [E, V] products are most of an MLM forward).
    public func forward(_ inputs: ModelInputs, head computeHead: Bool = true, enhancedMaskDecoder: Bool = true,
                        maskedLMRows: [Int]? = nil) throws -> ModelOutputs {
        try validate(inputs)
        let N = inputs.rows
        if let rows = maskedLMRows, let bad = rows.first(where: { $0 < 0 || $0 >= N }) {
            throw DebertaError(.invalidInput, file: "inputs", "masked-LM row \(bad) is outside the \(N) token rows")
        }
        try checkLimits(inputs, logitRows: computeHead ? maskedLMRows?.count : 0)
        noteCall()
        return compute.run {
            options.trace.mark("forward")
            let ctx = ForwardContext(inputs, config: config, family: family, hiddenActivation: hiddenActivation, positions: encoder.positions)
            let embedded = embeddings(inputs, ctx)
            options.trace.mark("embeddings")
            let (hidden, beforeLast) = encoder(embedded, ctx)
            var outputs = [NamedOutput(name: "last_hidden_state", shape: ctx.tokenShape(config.hiddenSize), values: hidden.array)]
            guard computeHead else { return ModelOutputs(outputs: outputs) }
            outputs += head.outputs(hidden, ctx, choices: inputs.choices, maskedLMRows: maskedLMRows, multipleChoice: layout.head == .multipleChoice)
            if enhancedMaskDecoder, let decoder, case let .maskedLM(mlm) = head, let decoded = decoder(beforeLast: beforeLast, ctx) {
                let logits = mlm.logits(decoded, rows: maskedLMRows, total: N, ctx)
                outputs.append(NamedOutput(name: "emd_logits", shape: ctx.vocabularyShape(maskedLMRows), values: logits))
            }
            return ModelOutputs(outputs: outputs)
        }
    }
}

extension ForwardContext {
    /// [R, V] for selected rows, else [B, T, V].
    func vocabularyShape(_ rows: [Int]?) -> [Int] {
        rows.map { [$0.count, config.vocabSize] } ?? tokenShape(config.vocabSize)
    }
}
