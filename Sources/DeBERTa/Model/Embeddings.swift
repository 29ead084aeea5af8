import Checkpoint

/// transformers' `DebertaV2Embeddings` / `DebertaEmbeddings` (`embeddings.*`): word + (absolute position when
/// position_biased_input) + token type, then `embed_proj` when embedding_size ≠ hidden_size, LayerNorm, and
/// masked positions zeroed.
struct Embeddings: Sendable {
    let word: MatrixWeight  // [V, E], quantized only with --quantize-embeddings
    /// [P, E]: added to the input when position_biased_input, and the Enhanced Mask Decoder's absolute table.
    let position: FloatBuffer?
    let tokenType: FloatBuffer?  // [typeVocab, E]
    let projection: Linear?  // embed_proj [H, E], no bias
    let norm: Norm
    let positionBiasedInput: Bool

    init?(_ scope: WeightScope) {
        let c = scope.config, E = c.embeddingSize, H = c.hiddenSize
        let word = scope.matrix("word_embeddings.weight", c.vocabSize, E, role: .embedding)
        scope.binder.adviseRandomAccess(scope.path("word_embeddings.weight"))
        position = scope.tensor("position_embeddings.weight", [c.maxPositionEmbeddings, E], optional: !c.positionBiasedInput)
        tokenType = c.typeVocabSize > 0 ? scope.tensor("token_type_embeddings.weight", [c.typeVocabSize, E]) : nil
        let projection = E != H ? scope.linear("embed_proj", out: H, in: E, bias: false) : nil
        let norm = scope.norm("LayerNorm", H)
        scope.tolerate("position_ids")
        guard let word, let norm, E == H || projection != nil else { return nil }
        self.word = word
        self.projection = projection
        self.norm = norm
        positionBiasedInput = c.positionBiasedInput
    }

    /// [N, H] embeddings of the batch's token rows.
    func callAsFunction(_ inputs: ModelInputs, _ ctx: ForwardContext) -> Activations {
        let N = ctx.rows, E = ctx.config.embeddingSize, H = ctx.config.hiddenSize
        let raw = Activations(N * E)
        word.copyRows(Array(inputs.inputIds.prefix(N)), width: E, into: raw.pointer)
        let positions = positionBiasedInput && position != nil ? ctx.positionsInSequence() : []
        for r in 0 ..< N {
            let row = raw.pointer + r * E
            if positionBiasedInput, let table = position {
                let t = positions[r]
                for c in 0 ..< E { row[c] += table[t * E + c] }
            }
            if let types = tokenType {
                let type = inputs.tokenTypeIds?[r] ?? 0
                for c in 0 ..< E { row[c] += types[type * E + c] }
            }
        }
        var out = raw
        if let projection {
            out = Activations(N * H)
            applyLinear(projection, raw.pointer, rows: N, into: out.pointer)
        }
        applyNorm(norm, out.pointer, rows: N, width: H)
        ctx.zeroMaskedRows(out.pointer, width: H)
        return out
    }
}
