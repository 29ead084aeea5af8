import CKernels
import Checkpoint

/// What one forward call needs beyond the weights: the relative index table for this length and the masks.
struct ForwardContext {
    let batch: Int
    let length: Int
    /// [batch · length] 0/1
    let mask: [UInt8]
    /// Relative-table row for every (i, j), shifted so the lowest reachable row is 0.
    let relative: [Int32]
    /// First reachable row of the relative table and how many rows a sequence of this length reaches.
    let firstRow: Int
    let span: Int
    /// The c2p/p2c projections covering rows firstRow ..< firstRow + span (relative attention only).
    let positions: PositionProjections.Tables?
}

extension DebertaModel {
    /// Checks ids, masks and token types against the config; every problem is a clear error.
    public func validate(_ inputs: ModelInputs, file: String = "inputs") throws {
        let n = inputs.batch * inputs.length
        guard inputs.batch > 0, inputs.length > 0 else {
            throw DebertaError(.invalidInput, file: file, "empty input: batch \(inputs.batch) × length \(inputs.length)")
        }
        guard inputs.inputIds.count == n, inputs.attentionMask.count == n, inputs.tokenTypeIds.map({ $0.count == n }) ?? true else {
            throw DebertaError(.invalidInput, file: file, "input_ids, attention_mask and token_type_ids must all hold batch × length = \(n) values")
        }
        if let bad = inputs.inputIds.firstIndex(where: { $0 < 0 || $0 >= config.vocabSize }) {
            throw DebertaError(.invalidInput, file: file, tensor: "input_ids", "id \(inputs.inputIds[bad]) at position \(bad) is outside the vocabulary [0, \(config.vocabSize))")
        }
        if let bad = inputs.attentionMask.firstIndex(where: { $0 != 0 && $0 != 1 }) {
            throw DebertaError(.invalidInput, file: file, tensor: "attention_mask", "value \(inputs.attentionMask[bad]) at position \(bad) is not 0 or 1")
        }
        if let types = inputs.tokenTypeIds, config.typeVocabSize > 0,
           let bad = types.firstIndex(where: { $0 < 0 || $0 >= config.typeVocabSize }) {
            throw DebertaError(.invalidInput, file: file, tensor: "token_type_ids", "type \(types[bad]) at position \(bad) is outside [0, \(config.typeVocabSize))")
        }
        if config.positionBiasedInput && inputs.length > config.maxPositionEmbeddings {
            throw DebertaError(.limit, file: file, "sequence length \(inputs.length) exceeds max_position_embeddings \(config.maxPositionEmbeddings) of a model with absolute positions")
        }
        if let c = inputs.choices, c <= 0 || inputs.batch % c != 0 {
            throw DebertaError(.invalidInput, file: file, "multiple choice: batch \(inputs.batch) is not a multiple of \(c) choices")
        }
    }

    /// Runs the encoder and the head. Outputs use the reference names: `last_hidden_state` [B, T, H] and the
    /// head's (`logits`, `start_logits`/`end_logits`), plus `emd_logits` for MLM models with the EMD.
    /// `head: false` stops after the encoder (only `last_hidden_state`, e.g. for embeddings).
    /// `maskedLMRows` (token rows b·T + t) restricts the vocabulary products of an MLM model to those
    /// positions: `logits` and `emd_logits` are then [R, V] in that order (fill-mask needs only its masks,
    /// and the [T, E] × [E, V] products are most of an MLM forward).
    public func forward(_ inputs: ModelInputs, head computeHead: Bool = true, enhancedMaskDecoder: Bool = true,
                        maskedLMRows: [Int]? = nil) throws -> ModelOutputs {
        try validate(inputs)
        noteCall()
        Trace.mark("forward")
        let B = inputs.batch, T = inputs.length, N = B * T, H = config.hiddenSize
        let relative = config.relativeAttention ? RelativePositions.indices(length: T, family: family, config: config) : []
        let first = Int(relative.min() ?? 0), last = Int(relative.max() ?? 0)
        let ctx = ForwardContext(
            batch: B, length: T, mask: inputs.attentionMask.map { $0 != 0 ? 1 : 0 },
            relative: relative.map { $0 - Int32(first) }, firstRow: first, span: last - first + 1,
            positions: config.relativeAttention ? positions?.tables(covering: first ..< last + 1) : nil)

        let embedded = embed(inputs, ctx)
        Trace.mark("embeddings")
        var hidden = Activations(N * H, zeroed: false)
        hidden.pointer.update(from: embedded.pointer, count: N * H)
        var beforeLast = embedded
        for (l, layer) in layers.enumerated() {
            if l == layers.count - 1 {
                beforeLast = Activations(N * H, zeroed: false)
                beforeLast.pointer.update(from: hidden.pointer, count: N * H)
            }
            let next = Activations(N * H, zeroed: false)
            runLayer(l, layer, keyValue: hidden.pointer, query: hidden.pointer, ctx, into: next.pointer)
            if l == 0, let conv { applyConv(conv, embedding: embedded.pointer, layerOutput: next.pointer, ctx) }
            hidden = next
            Trace.mark("layer \(l)")
        }

        var outputs = [NamedOutput(name: "last_hidden_state", shape: [B, T, H], values: hidden.array)]
        guard computeHead else { return ModelOutputs(outputs: outputs) }
        if let rows = maskedLMRows, let bad = rows.first(where: { $0 < 0 || $0 >= N }) {
            throw DebertaError(.invalidInput, file: "inputs", "masked-LM row \(bad) is outside the \(N) token rows")
        }
        outputs += runHead(hidden, ctx, choices: inputs.choices, maskedLMRows: maskedLMRows)
        if enhancedMaskDecoder, hasEnhancedMaskDecoder, T <= config.maxPositionEmbeddings,
           case let .maskedLM(dense, norm, decoder, bias) = head, let table = embeddings.position {
            // EMD: query = z + H_{L-1}; the last layer runs twice with H_{L-1} as keys and values.
            var query = Activations(N * H, zeroed: false)
            for r in 0 ..< N {
                let t = r % T
                for c in 0 ..< H { query.pointer[r * H + c] = beforeLast.pointer[r * H + c] + table[t * H + c] }
            }
            let lastIndex = layers.count - 1
            for _ in 0 ..< 2 {
                let next = Activations(N * H, zeroed: false)
                runLayer(lastIndex, layers[lastIndex], keyValue: beforeLast.pointer, query: query.pointer, ctx, into: next.pointer)
                query = next
            }
            let logits = maskedLM(query, rows: maskedLMRows, total: N, dense: dense, norm: norm, decoder: decoder, bias: bias)
            outputs.append(NamedOutput(name: "emd_logits", shape: maskedLMRows.map { [$0.count, config.vocabSize] } ?? [B, T, config.vocabSize], values: logits))
        }
        return ModelOutputs(outputs: outputs)
    }

    // MARK: - Embeddings

    func embed(_ inputs: ModelInputs, _ ctx: ForwardContext) -> Activations {
        let N = ctx.batch * ctx.length, E = config.embeddingSize, H = config.hiddenSize
        let raw = Activations(N * E)
        embeddings.word.copyRows(Array(inputs.inputIds.prefix(N)), width: E, into: raw.pointer)
        for r in 0 ..< N {
            let row = raw.pointer + r * E
            if config.positionBiasedInput, let table = embeddings.position {
                let t = r % ctx.length
                for c in 0 ..< E { row[c] += table[t * E + c] }
            }
            if let types = embeddings.tokenType {
                let type = inputs.tokenTypeIds?[r] ?? 0
                for c in 0 ..< E { row[c] += types[type * E + c] }
            }
        }
        var out = raw
        if let projection = embeddings.projection {
            out = Activations(N * H)
            applyLinear(projection, raw.pointer, rows: N, into: out.pointer)
        }
        applyNorm(embeddings.norm, out.pointer, rows: N, width: H)
        for r in 0 ..< N where ctx.mask[r] == 0 {
            (out.pointer + r * H).update(repeating: 0, count: H)
        }
        return out
    }

    // MARK: - Encoder layer

    /// One post-LN layer. `query` is the keys/values input except in the EMD.
    func runLayer(_ index: Int, _ layer: LayerWeights, keyValue: UnsafePointer<Float>, query: UnsafePointer<Float>,
                  _ ctx: ForwardContext, into out: UnsafeMutablePointer<Float>) {
        let B = ctx.batch, T = ctx.length, N = B * T, H = config.hiddenSize, A = config.allHeadSize, I = config.intermediateSize
        let heads = config.numAttentionHeads, d = config.attentionHeadSize
        let q = Activations(N * A, zeroed: false), k = Activations(N * A, zeroed: false), v = Activations(N * A, zeroed: false)
        // int8 weights: the shared input is quantized once for the three products.
        let shared = query == keyValue && [layer.query, layer.key, layer.value].allSatisfy { $0.weight.isInt8 }
            ? Int8Rows(query, rows: N, k: layer.query.inFeatures) : nil
        applyLinear(layer.query, query, rows: N, into: q.pointer, int8Input: shared)
        applyLinear(layer.key, keyValue, rows: N, into: k.pointer, int8Input: shared)
        applyLinear(layer.value, keyValue, rows: N, into: v.pointer, int8Input: shared)

        // Scale: sqrt(d · f); deberta-v2 counts c2p and p2c, v1 every pos_att_type term.
        let c2pKeys = ctx.positions?.keys[index], p2cQueries = ctx.positions?.queries[index]
        // Row firstRow of the relative table in the projections.
        let positionOffset = ((ctx.positions?.rows.lowerBound).map { ctx.firstRow - $0 } ?? 0) * A
        let factor = family == .deberta ? 1 + config.posAttType.count : 1 + (config.usesC2P ? 1 : 0) + (config.usesP2C ? 1 : 0)
        let scale = 1 / Float(Double(d * factor).squareRoot())

        // One fused kernel per (sequence, head): scores, the c2p/p2c gathers, mask, softmax, × V. The pairs
        // are split over the compute threads, each with its own scratch.
        let context = Activations(N * A, zeroed: false)
        let span = config.relativeAttention ? ctx.span : 1
        // The relative row depends on i - j alone (both families): by distance, rel[i][j] = byDistance[i - j + T - 1].
        var byDistance = [Int32](repeating: 0, count: 2 * T - 1)
        if config.relativeAttention {
            for x in 0 ..< T { byDistance[T - 1 + x] = ctx.relative[x * T] }
            for x in 1 ..< T { byDistance[T - 1 - x] = ctx.relative[x] }
            assert((0 ..< T * T).allSatisfy { ctx.relative[$0] == byDistance[$0 / T - $0 % T + T - 1] })
        }
        let scratchSize = dk_attention_distance_scratch(T, d, span)
        let pairs = B * heads
        let workers = max(1, min(ComputeThreads.count, pairs))
        let scratch = Activations(workers * scratchSize, zeroed: false)
        byDistance.withUnsafeBufferPointer { rel in
            ctx.mask.withUnsafeBufferPointer { mask in
                parallel(workers) { w in
                    var pair = w
                    while pair < pairs {
                        let b = pair / heads, h = pair % heads
                        let row = b * T * A + h * d
                        dk_attention_head_distance(T, d, q.pointer + row, A, k.pointer + row, A, v.pointer + row, A,
                                                   c2pKeys.map { $0.pointer + positionOffset + h * d },
                                                   p2cQueries.map { $0.pointer + positionOffset + h * d }, A, span,
                                                   rel.baseAddress, mask.baseAddress! + b * T, scale,
                                                   context.pointer + row, A, scratch.pointer + w * scratchSize)
                        pair += workers
                    }
                }
            }
        }
        // attention.output: dense, then LayerNorm with the query input as residual.
        let attention = Activations(N * H, zeroed: false)
        applyLinear(layer.attentionOutput, context.pointer, rows: N, into: attention.pointer, residual: query)
        applyNorm(layer.attentionNorm, attention.pointer, rows: N, width: H)
        let intermediate = Activations(N * I, zeroed: false)
        applyLinear(layer.intermediate, attention.pointer, rows: N, into: intermediate.pointer, activation: hiddenActivation)
        applyLinear(layer.output, intermediate.pointer, rows: N, into: out, residual: attention.pointer)
        applyNorm(layer.outputNorm, out, rows: N, width: H)
    }

    /// encoder.conv after layer 0: LayerNorm(layer0 + act(maskfill(conv1d(embeddings)))) · mask.
    func applyConv(_ conv: ConvWeights, embedding: UnsafePointer<Float>, layerOutput: UnsafeMutablePointer<Float>, _ ctx: ForwardContext) {
        let T = ctx.length, H = config.hiddenSize, N = ctx.batch * T, K = conv.kernels.count
        let pad = (K - 1) / 2
        let out = Activations(N * H)
        for b in 0 ..< ctx.batch {
            for tap in 0 ..< K {
                let shift = tap - pad
                let t0 = max(0, -shift), t1 = min(T, T - shift)
                guard t1 > t0 else { continue }
                // out += x · kernelᵀ (the residual epilogue, in place)
                let rows = out.pointer + (b * T + t0) * H
                applyMatrix(conv.kernels[tap], embedding + (b * T + t0 + shift) * H, rows: t1 - t0, k: H, n: H,
                            bias: nil, into: rows, residual: rows)
            }
        }
        dk_bias_activation(out.pointer, N, H, H, conv.bias.pointer, DK_ACT_IDENTITY)
        for r in 0 ..< N where ctx.mask[r] == 0 { (out.pointer + r * H).update(repeating: 0, count: H) }
        dk_bias_activation(out.pointer, N, H, H, nil, conv.activation.kernel)
        applyNorm(conv.norm, out.pointer, rows: N, width: H, residual: layerOutput)
        for r in 0 ..< N {
            if ctx.mask[r] == 0 {
                (layerOutput + r * H).update(repeating: 0, count: H)
            } else {
                (layerOutput + r * H).update(from: out.pointer + r * H, count: H)
            }
        }
    }

    // MARK: - Heads

    func maskedLM(_ all: Activations, rows selected: [Int]?, total: Int, dense: Linear, norm: Norm, decoder: MatrixWeight, bias: FloatBuffer) -> [Float] {
        let E = dense.outFeatures, V = config.vocabSize, H = config.hiddenSize
        var hidden = all
        var rows = total
        if let selected {
            rows = selected.count
            hidden = Activations(rows * H)
            for (i, r) in selected.enumerated() { (hidden.pointer + i * H).update(from: all.pointer + r * H, count: H) }
        }
        let transformed = Activations(rows * E)
        applyLinear(dense, hidden.pointer, rows: rows, into: transformed.pointer, activation: hiddenActivation)
        applyNorm(norm, transformed.pointer, rows: rows, width: E)
        let logits = Activations(rows * V)
        applyMatrix(decoder, transformed.pointer, rows: rows, k: E, n: V, bias: bias.pointer, into: logits.pointer)
        return logits.array
    }

    func runHead(_ hidden: Activations, _ ctx: ForwardContext, choices: Int?, maskedLMRows: [Int]? = nil) -> [NamedOutput] {
        let B = ctx.batch, T = ctx.length, N = B * T, H = config.hiddenSize
        switch head {
        case .none:
            return []
        case let .maskedLM(dense, norm, decoder, bias):
            return [NamedOutput(name: "logits", shape: maskedLMRows.map { [$0.count, config.vocabSize] } ?? [B, T, config.vocabSize],
                                values: maskedLM(hidden, rows: maskedLMRows, total: N, dense: dense, norm: norm, decoder: decoder, bias: bias))]
        case let .pooled(pooler, classifier):
            let cls = Activations(B * H)
            for b in 0 ..< B { (cls.pointer + b * H).update(from: hidden.pointer + b * T * H, count: H) }
            let pooled = Activations(B * H)
            applyLinear(pooler, cls.pointer, rows: B, into: pooled.pointer, activation: poolerActivation)
            let logits = Activations(B * classifier.outFeatures)
            applyLinear(classifier, pooled.pointer, rows: B, into: logits.pointer)
            if let c = choices, layout.head == .multipleChoice {
                return [NamedOutput(name: "logits", shape: [B / c, c], values: logits.array)]
            }
            return [NamedOutput(name: "logits", shape: [B, classifier.outFeatures], values: logits.array)]
        case let .tokenClassifier(classifier):
            let logits = Activations(N * classifier.outFeatures)
            applyLinear(classifier, hidden.pointer, rows: N, into: logits.pointer)
            return [NamedOutput(name: "logits", shape: [B, T, classifier.outFeatures], values: logits.array)]
        case let .questionAnswering(qa):
            let logits = Activations(N * 2)
            applyLinear(qa, hidden.pointer, rows: N, into: logits.pointer)
            let values = logits.array
            return [
                NamedOutput(name: "start_logits", shape: [B, T], values: stride(from: 0, to: 2 * N, by: 2).map { values[$0] }),
                NamedOutput(name: "end_logits", shape: [B, T], values: stride(from: 1, to: 2 * N, by: 2).map { values[$0] }),
            ]
        case let .replacedTokenDetection(dense, norm, classifier):
            let x = Activations(N * H)
            for r in 0 ..< N {
                let first = (r / T) * T
                for c in 0 ..< H { x.pointer[r * H + c] = hidden.pointer[r * H + c] + hidden.pointer[first * H + c] }
            }
            applyNorm(norm, x.pointer, rows: N, width: H)
            let y = Activations(N * H)
            applyLinear(dense, x.pointer, rows: N, into: y.pointer, activation: hiddenActivation)
            let logits = Activations(N)
            applyLinear(classifier, y.pointer, rows: N, into: logits.pointer)
            return [NamedOutput(name: "logits", shape: [B, T], values: logits.array)]
        }
    }
}
