extension DebertaModel {
    /// Floating-point operations of one forward call as this runtime performs it (a multiply-add counts 2):
    /// embeddings projection, Q/K/V/output and FFN products, content scores and probabilities × V,
    /// the c2p/p2c products against the reachable relative rows, the conv layer and the head.
    public func operationCount(batch: Int, length: Int, head includeHead: Bool = true) -> Double {
        let B = Double(batch), T = Double(length), N = B * T
        let H = Double(config.hiddenSize), A = Double(config.allHeadSize), I = Double(config.intermediateSize)
        let E = Double(config.embeddingSize), heads = Double(config.numAttentionHeads), d = Double(config.attentionHeadSize)
        var span = 0.0
        if config.relativeAttention {
            let rel = RelativePositions.rowsByDistance(length: length, family: family, config: config)
            span = Double(Int(rel.max() ?? 0) - Int(rel.min() ?? 0) + 1)
        }
        let relativeTerms = Double((config.relativeAttention && config.usesC2P ? 1 : 0) + (config.relativeAttention && config.usesP2C ? 1 : 0))
        var perLayer = 2 * N * H * A * 3 + 2 * N * A * H + 2 * N * H * I * 2
        perLayer += B * heads * (2 * T * T * d * 2 + relativeTerms * 2 * T * span * d)
        var total = perLayer * Double(config.numHiddenLayers)
        if E != H { total += 2 * N * E * H }
        if encoder.conv != nil { total += 2 * N * H * H * Double(config.convKernelSize) }
        guard includeHead else { return total }
        switch head {
        case .maskedLM(let mlm):
            let decoderWidth = Double(mlm.dense.outFeatures)
            total += 2 * N * H * decoderWidth + 2 * N * decoderWidth * Double(config.vocabSize)
            if hasEnhancedMaskDecoder && length <= config.maxPositionEmbeddings {
                total += 2 * perLayer + 2 * N * H * decoderWidth + 2 * N * decoderWidth * Double(config.vocabSize)
            }
        case .pooled(let pooled): total += 2 * B * H * H + 2 * B * H * Double(pooled.classifier.outFeatures)
        case .tokenClassifier(let classifier): total += 2 * N * H * Double(classifier.outFeatures)
        case .questionAnswering: total += 2 * N * H * 2
        case .replacedTokenDetection: total += 2 * N * H * H + 2 * N * H
        case .none: break
        }
        return total
    }
}
