import Checkpoint
import Foundation
import Tokenizers

/// Which head predicts masked tokens: the Enhanced Mask Decoder (microsoft/DeBERTa) or the plain MLM head
/// (what transformers runs).
public enum MaskDecoder: String, Sendable, CaseIterable {
    case emd, mlm
}

/// One candidate for a [MASK]: transformers' fill-mask `{score, token, token_str, sequence}`.
public struct MaskPrediction: Sendable {
    /// The vocabulary string (e.g. "▁Paris").
    public var piece: String
    public var id: Int
    public var score: Double
    /// `tokenizer.decode([id])`.
    public var tokenStr: String
    /// The input with this token in place of the mask, decoded (special tokens kept when there are several masks).
    public var sequence: String
}

public struct FilledMask: Sendable {
    /// Token position in the model input and character span of the [MASK] in the text.
    public var position: Int
    public var offset: Range<Int>
    public var predictions: [MaskPrediction]
}

public struct FillMaskResult: Sendable {
    public var decoder: MaskDecoder
    public var masks: [FilledMask]
    public var fromEMD: Bool { decoder == .emd }
}

extension TextModel {
    /// Top-k predictions for each [MASK]; `decoder` nil: the Enhanced Mask Decoder when the model has one and
    /// the input fits its position table, else the MLM head.
    public func fillMaskPlan(_ texts: [String], topK: Int, decoder: MaskDecoder? = nil) throws -> TaskPlan<[FillMaskResult]> {
        try requireHead([.maskedLM], for: "fill-mask")
        guard let maskId = encoder.special.mask else { throw DebertaError(.task, file: "", "the tokenizer has no [MASK] token") }
        let encoded = try texts.map { try encode($0) }
        for (text, e) in zip(texts, encoded) where !e.ids.contains(maskId) {
            if encoder.tokenize(text).ids.contains(maskId) {
                throw DebertaError(.limit, file: "", "the [MASK] in \"\(text.prefix(60))\" lies beyond the model's maximum of \(maxLength ?? 0) tokens")
            }
            throw DebertaError(.invalidInput, file: "", "no [MASK] in \"\(text.prefix(60))\": fill-mask predicts the tokens written as [MASK]")
        }
        return try fillMaskPlan(encoded: encoded, topK: topK, decoder: decoder)
    }

    /// Top-k predictions for each [MASK] of each text.
    public func fillMask(_ texts: [String], topK: Int, decoder: MaskDecoder? = nil) throws -> [FillMaskResult] {
        try run(fillMaskPlan(texts, topK: topK, decoder: decoder))
    }

    /// Predictions for the [MASK] ids of already encoded inputs.
    public func fillMask(encoded: [EncodedInput], topK: Int, decoder: MaskDecoder? = nil) throws -> [FillMaskResult] {
        try run(fillMaskPlan(encoded: encoded, topK: topK, decoder: decoder))
    }

    /// The decoder is chosen for the plan's longest input, as one padded call would.
    public func fillMaskPlan(encoded: [EncodedInput], topK: Int, decoder requested: MaskDecoder? = nil) throws -> TaskPlan<[FillMaskResult]> {
        try requireHead([.maskedLM], for: "fill-mask")
        guard let maskId = encoder.special.mask else { throw DebertaError(.task, file: "", "the tokenizer has no [MASK] token") }
        guard topK >= 1 else { throw DebertaError(.invalidInput, file: "", "--top-k must be positive") }
        let T = encoded.map(\.length).max() ?? 0
        let fits = T <= model.config.maxPositionEmbeddings
        let decoder: MaskDecoder
        switch requested {
        case .emd?:
            guard model.hasEnhancedMaskDecoder else {
                throw DebertaError(.task, file: "", "\(model.files.directory) has no Enhanced Mask Decoder (it has absolute positions in its input); use --decoder mlm")
            }
            guard fits else {
                throw DebertaError(.limit, file: "", "the Enhanced Mask Decoder takes at most max_position_embeddings = \(model.config.maxPositionEmbeddings) tokens; this input has \(T) (use --decoder mlm)")
            }
            decoder = .emd
        case .mlm?: decoder = .mlm
        case nil:
            decoder = model.hasEnhancedMaskDecoder && fits ? .emd : .mlm
            if model.hasEnhancedMaskDecoder && !fits {
                warn("an input of \(T) tokens is longer than the Enhanced Mask Decoder's \(model.config.maxPositionEmbeddings) positions: using the MLM head")
            }
        }
        // Only the [MASK] rows go through the vocabulary product.
        let encoder = self.encoder
        return TaskPlan(sequences: encoded, kind: .maskedLM(decoder)) { outputs in
            try zip(encoded, outputs).map { e, output in
                let logits = try output.require(decoder == .emd ? "emd_logits" : "logits")
                let V = output.width(decoder == .emd ? "emd_logits" : "logits") ?? 1
                let k = min(topK, V)
                let maskPositions = e.ids.indices.filter { e.ids[$0] == maskId }
                let single = maskPositions.count == 1
                var masks: [FilledMask] = []
                for (r, t) in maskPositions.enumerated() {
                    let p = softmax(logits[r * V ..< (r + 1) * V])
                    let top = ranked(p).prefix(k)
                    masks.append(FilledMask(position: t, offset: e.offsets[t] ?? 0 ..< 0, predictions: top.map { id in
                        var ids = e.ids
                        ids[t] = id
                        let filtered = ids.filter { $0 != encoder.special.pad }  // as transformers: a predicted [PAD] goes too
                        return MaskPrediction(piece: encoder.tokenizer.token(of: id) ?? "<\(id)>", id: id, score: p[id],
                                              tokenStr: encoder.decode([id]),
                                              sequence: encoder.decode(filtered, skipSpecialTokens: single))
                    }))
                }
                return FillMaskResult(decoder: decoder, masks: masks)
            }
        }
    }
}
