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
