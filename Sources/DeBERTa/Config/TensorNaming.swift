import Checkpoint

/// transformers' tensor names, and the one explicit table of renames from other spellings.
public enum TensorNaming {
    /// Suffix spellings of older checkpoints (TF-style LayerNorm parameters) → transformers' names.
    static let suffixRenames: [(String, String)] = [
        (".LayerNorm.gamma", ".LayerNorm.weight"),
        (".LayerNorm.beta", ".LayerNorm.bias"),
    ]

    /// Names that transformers ties to another tensor (`_tied_weights_keys`) and does not save twice.
    public static let tiedTo: [String: String] = [
        "cls.predictions.decoder.weight": "deberta.embeddings.word_embeddings.weight",
        "cls.predictions.decoder.bias": "cls.predictions.bias",
    ]

    static let backboneRoots = ["embeddings.", "encoder."]

    /// The transformers name of a source tensor: backbone tensors get `deberta.` in head models and no
    /// prefix in a bare backbone (`DebertaV2Model`), whatever prefix the source used.
    public static func canonical(_ name: String, layout: ModelLayout) -> String {
        var n = name
        for (from, to) in suffixRenames where n.hasSuffix(from) {
            n = String(n.dropLast(from.count)) + to
        }
        if n.hasPrefix(layout.backbonePrefix) {
            let rest = String(n.dropFirst(layout.backbonePrefix.count))
            if backboneRoots.contains(where: { rest.hasPrefix($0) }) {
                return (layout.head == .base ? "" : "deberta.") + rest
            }
        }
        return n
    }

    /// The name without the backbone prefix (for shape tables): "deberta.encoder.x" → "encoder.x".
    public static func unprefixed(_ canonicalName: String) -> String {
        canonicalName.hasPrefix("deberta.") ? String(canonicalName.dropFirst("deberta.".count)) : canonicalName
    }
}

/// The shape every known tensor must have under a config, in transformers' names without the
/// backbone prefix. Built from the module constructors of modeling_deberta(_v2).py.
public struct ExpectedShapes {
    public let shapes: [String: [Int]]
    public let layers: Int

    public init(config c: DebertaConfig, family: ModelFamily) {
        var s: [String: [Int]] = [:]
        let H = c.hiddenSize, E = c.embeddingSize, A = c.allHeadSize, I = c.intermediateSize
        func linear(_ name: String, out: Int, in inDim: Int, bias: Bool = true) {
            s[name + ".weight"] = [out, inDim]
            if bias { s[name + ".bias"] = [out] }
        }
        func norm(_ name: String, _ n: Int) {
            s[name + ".weight"] = [n]
            s[name + ".bias"] = [n]
        }
        s["embeddings.word_embeddings.weight"] = [c.vocabSize, E]
        s["embeddings.position_embeddings.weight"] = [c.maxPositionEmbeddings, E]
        if c.typeVocabSize > 0 { s["embeddings.token_type_embeddings.weight"] = [c.typeVocabSize, E] }
        if E != H { s["embeddings.embed_proj.weight"] = [H, E] }
        norm("embeddings.LayerNorm", H)
        if c.relativeAttention { s["encoder.rel_embeddings.weight"] = [c.relativeEmbeddingRows, H] }
        if family == .debertaV2 {
            if c.normalizesRelativeEmbeddings { norm("encoder.LayerNorm", H) }
            if c.convKernelSize > 0 {
                s["encoder.conv.conv.weight"] = [H, H / max(c.convGroups, 1), c.convKernelSize]
                s["encoder.conv.conv.bias"] = [H]
                norm("encoder.conv.LayerNorm", H)
            }
        }
        for l in 0 ..< c.numHiddenLayers {
            let p = "encoder.layer.\(l)."
            if family == .debertaV2 {
                linear(p + "attention.self.query_proj", out: A, in: H)
                linear(p + "attention.self.key_proj", out: A, in: H)
                linear(p + "attention.self.value_proj", out: A, in: H)
                if c.relativeAttention && !c.shareAttKey {
                    if c.usesC2P { linear(p + "attention.self.pos_key_proj", out: A, in: H) }
                    if c.usesP2C { linear(p + "attention.self.pos_query_proj", out: A, in: H) }
                }
            } else {
                s[p + "attention.self.in_proj.weight"] = [3 * A, H]
                s[p + "attention.self.q_bias"] = [A]
                s[p + "attention.self.v_bias"] = [A]
                if c.relativeAttention {
                    if c.usesC2P { s[p + "attention.self.pos_proj.weight"] = [A, H] }
                    if c.usesP2C { linear(p + "attention.self.pos_q_proj", out: A, in: H) }
                }
                if c.talkingHead {
                    s[p + "attention.self.head_logits_proj.weight"] = [c.numAttentionHeads, c.numAttentionHeads]
                    s[p + "attention.self.head_weights_proj.weight"] = [c.numAttentionHeads, c.numAttentionHeads]
                }
            }
            linear(p + "attention.output.dense", out: H, in: A)
            norm(p + "attention.output.LayerNorm", H)
            linear(p + "intermediate.dense", out: I, in: H)
            linear(p + "output.dense", out: H, in: I)
            norm(p + "output.LayerNorm", H)
        }
        // Heads (names carry no backbone prefix).
        linear("lm_predictions.lm_head.dense", out: H, in: H)
        norm("lm_predictions.lm_head.LayerNorm", H)
        s["lm_predictions.lm_head.bias"] = [c.vocabSize]
        linear("cls.predictions.transform.dense", out: E, in: H)
        norm("cls.predictions.transform.LayerNorm", E)
        s["cls.predictions.bias"] = [c.vocabSize]
        linear("cls.predictions.decoder", out: c.vocabSize, in: E)
        linear("pooler.dense", out: c.poolerHiddenSize, in: c.poolerHiddenSize)
        linear("qa_outputs", out: 2, in: H)
        linear("mask_predictions.dense", out: H, in: H)
        norm("mask_predictions.LayerNorm", H)
        linear("mask_predictions.classifier", out: 1, in: H)
        shapes = s
        layers = c.numHiddenLayers
    }

    /// Every disagreement between the tensors and the config, one phrase each.
    public func mismatches(_ tensors: [(name: String, shape: [Int])], head: TaskHead, config c: DebertaConfig) -> [String] {
        var problems: [String] = []
        for (name, shape) in tensors {
            let key = TensorNaming.unprefixed(name)
            if key.hasPrefix("encoder.layer.") {
                let index = key.dropFirst("encoder.layer.".count).prefix { $0.isNumber }
                if let l = Int(index), l >= layers {
                    problems.append("'\(name)' belongs to layer \(l) but num_hidden_layers is \(layers)")
                    continue
                }
            }
            var expected = shapes[key]
            if key == "classifier.weight" {
                let inputs = head == .tokenClassification ? c.hiddenSize : c.poolerHiddenSize
                expected = head == .multipleChoice ? [1, inputs] : [c.numLabels, inputs]
            } else if key == "classifier.bias" {
                expected = [head == .multipleChoice ? 1 : c.numLabels]
            }
            if let expected, expected != shape {
                problems.append("'\(name)' has shape \(shape) but config.json implies \(expected)")
            }
        }
        return problems
    }
}
