import Checkpoint
import Foundation

/// The two model families this runtime reads.
public enum ModelFamily: String, Sendable, Codable {
    /// `model_type: "deberta"` (v1): fused in_proj, GPT-2 BPE vocabulary.
    case deberta
    /// `model_type: "deberta-v2"`: DeBERTa-v2, v3 and mDeBERTa.
    case debertaV2 = "deberta-v2"
}

/// config.json of a DeBERTa model, with transformers 5.24's defaults for every field that changes the math
/// (`DebertaConfig` / `DebertaV2Config`, plus the v2 fields read with getattr defaults in the modules).
public struct DebertaConfig: Decodable, Sendable {
    public var modelType: ModelFamily?
    public var architectures: [String]?
    public var vocabSize: Int
    public var hiddenSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var intermediateSize: Int
    public var hiddenAct: String
    public var layerNormEps: Double
    public var maxPositionEmbeddings: Int
    public var typeVocabSize: Int
    public var positionBiasedInput: Bool
    public var relativeAttention: Bool
    /// As written in the file; see `effectiveMaxRelativePositions`.
    public var maxRelativePositions: Int
    /// Lower-cased terms, e.g. ["p2c", "c2p"]; from a "p2c|c2p" string or a list.
    public var posAttType: [String]
    public var positionBuckets: Int
    public var shareAttKey: Bool
    public var normRelEbd: [String]
    public var convKernelSize: Int
    public var convAct: String
    public var convGroups: Int
    public var embeddingSize: Int
    public var attentionHeadSize: Int
    public var poolerHiddenSize: Int
    public var poolerHiddenAct: String
    public var legacy: Bool
    public var talkingHead: Bool
    public var padTokenId: Int?
    /// Labels by class index, from id2label (or num_labels generic names).
    public var id2label: [Int: String]
    public var numLabels: Int

    enum Key: String, CodingKey {
        case model_type, architectures, vocab_size, hidden_size, num_hidden_layers, num_attention_heads
        case intermediate_size, hidden_act, layer_norm_eps, max_position_embeddings, type_vocab_size
        case position_biased_input, relative_attention, max_relative_positions, pos_att_type, position_buckets
        case share_att_key, norm_rel_ebd, conv_kernel_size, conv_act, conv_groups, embedding_size
        case attention_head_size, pooler_hidden_size, pooler_hidden_act, legacy, talking_head, pad_token_id
        case id2label, num_labels
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Key.self)
        func value<T: Decodable>(_ key: Key, _ fallback: T) throws -> T {
            try c.decodeIfPresent(T.self, forKey: key) ?? fallback
        }
        if let type = try c.decodeIfPresent(String.self, forKey: .model_type) {
            guard let family = ModelFamily(rawValue: type) else {
                throw DecodingError.dataCorruptedError(forKey: .model_type, in: c,
                    debugDescription: "model_type '\(type)' is not a DeBERTa model (expected 'deberta' or 'deberta-v2')")
            }
            modelType = family
        } else {
            modelType = nil
        }
        let isV2 = modelType != .deberta
        architectures = try c.decodeIfPresent([String].self, forKey: .architectures)
        vocabSize = try value(.vocab_size, isV2 ? 128100 : 50265)
        hiddenSize = try value(.hidden_size, isV2 ? 1536 : 768)
        numHiddenLayers = try value(.num_hidden_layers, isV2 ? 24 : 12)
        numAttentionHeads = try value(.num_attention_heads, isV2 ? 24 : 12)
        intermediateSize = try value(.intermediate_size, isV2 ? 6144 : 3072)
        hiddenAct = try value(.hidden_act, "gelu")
        layerNormEps = try value(.layer_norm_eps, 1e-7)
        maxPositionEmbeddings = try value(.max_position_embeddings, 512)
        typeVocabSize = try value(.type_vocab_size, 0)
        positionBiasedInput = try value(.position_biased_input, true)
        relativeAttention = try value(.relative_attention, false)
        maxRelativePositions = try value(.max_relative_positions, -1)
        if let s = try? c.decodeIfPresent(String.self, forKey: .pos_att_type) {
            posAttType = s.lowercased().split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        } else {
            posAttType = (try c.decodeIfPresent([String].self, forKey: .pos_att_type) ?? []).map { $0.lowercased() }
        }
        positionBuckets = try value(.position_buckets, -1)
        shareAttKey = try value(.share_att_key, false)
        normRelEbd = try value(.norm_rel_ebd, "none").lowercased().split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
        convKernelSize = try value(.conv_kernel_size, 0)
        convAct = try value(.conv_act, "tanh")
        convGroups = try value(.conv_groups, 1)
        embeddingSize = try value(.embedding_size, hiddenSize)
        guard numAttentionHeads > 0 else {
            throw DecodingError.dataCorruptedError(forKey: .num_attention_heads, in: c, debugDescription: "num_attention_heads must be positive")
        }
        attentionHeadSize = try value(.attention_head_size, hiddenSize / numAttentionHeads)
        poolerHiddenSize = try value(.pooler_hidden_size, hiddenSize)
        poolerHiddenAct = try value(.pooler_hidden_act, "gelu")
        legacy = try value(.legacy, true)
        talkingHead = try value(.talking_head, false)
        padTokenId = try c.decodeIfPresent(Int.self, forKey: .pad_token_id) ?? 0
        var labels: [Int: String] = [:]
        if let raw = try c.decodeIfPresent([String: String].self, forKey: .id2label) {
            for (k, v) in raw {
                guard let i = Int(k) else {
                    throw DecodingError.dataCorruptedError(forKey: .id2label, in: c, debugDescription: "id2label key '\(k)' is not an integer")
                }
                labels[i] = v
            }
        }
        let declared = try c.decodeIfPresent(Int.self, forKey: .num_labels)
        numLabels = declared ?? (labels.isEmpty ? 2 : labels.count)
        if labels.isEmpty && numLabels <= DebertaConfig.maxLabels { for i in 0 ..< max(numLabels, 0) { labels[i] = "LABEL_\(i)" } }
        id2label = labels
    }

    /// `max_relative_positions` after transformers' rule: values below 1 mean max_position_embeddings.
    public var effectiveMaxRelativePositions: Int {
        maxRelativePositions < 1 ? maxPositionEmbeddings : maxRelativePositions
    }

    /// Rows of the relative-position table: 2 × (buckets if bucketed, else max relative positions).
    public var relativeEmbeddingRows: Int {
        if modelType == .deberta { return 2 * effectiveMaxRelativePositions }
        return 2 * (positionBuckets > 0 ? positionBuckets : effectiveMaxRelativePositions)
    }

    public var allHeadSize: Int { numAttentionHeads * attentionHeadSize }
    public var usesC2P: Bool { posAttType.contains("c2p") }
    public var usesP2C: Bool { posAttType.contains("p2c") }
    public var normalizesRelativeEmbeddings: Bool { normRelEbd.contains("layer_norm") }

    /// Reads and validates config.json. The bytes go through the project's bounded JSON parser first,
    /// so a hostile file cannot exhaust the stack of the platform decoder.
    public static func load(path: String) throws -> DebertaConfig {
        try parse(try readSmallFile(path, limit: 16 << 20), file: path)
    }

    public static func parse(_ bytes: [UInt8], file path: String) throws -> DebertaConfig {
        do {
            _ = try bytes.withUnsafeBytes { try JSONParser.parse($0) }
        } catch {
            throw DebertaError(.malformedFile, file: path, "is not valid JSON: \(error)")
        }
        let config: DebertaConfig
        do {
            config = try JSONDecoder().decode(DebertaConfig.self, from: Data(bytes))
        } catch let error as DecodingError {
            throw DebertaError(.configField, file: path, describe(error))
        }
        try config.validate(file: path)
        return config
    }

    static func describe(_ error: DecodingError) -> String {
        switch error {
        case let .typeMismatch(_, ctx), let .valueNotFound(_, ctx), let .keyNotFound(_, ctx), let .dataCorrupted(ctx):
            let path = ctx.codingPath.map(\.stringValue).joined(separator: ".")
            return path.isEmpty ? ctx.debugDescription : "field '\(path)': \(ctx.debugDescription)"
        @unknown default:
            return "\(error)"
        }
    }

    static let maxLabels = 1 << 20

    /// Ranges that make the model buildable at all and keep every later computation finite and in bounds;
    /// each violation names the field.
    public func validate(file: String) throws {
        var problems: [String] = []
        func positive(_ v: Int, _ name: String, max: Int = 1 << 24) {
            if v <= 0 || v > max { problems.append("\(name) = \(v) must be in 1...\(max)") }
        }
        positive(vocabSize, "vocab_size", max: 1 << 26)
        positive(hiddenSize, "hidden_size")
        positive(numHiddenLayers, "num_hidden_layers", max: 1024)
        positive(numAttentionHeads, "num_attention_heads", max: 4096)
        positive(intermediateSize, "intermediate_size")
        positive(maxPositionEmbeddings, "max_position_embeddings")
        positive(embeddingSize, "embedding_size")
        positive(attentionHeadSize, "attention_head_size")
        positive(poolerHiddenSize, "pooler_hidden_size")
        if typeVocabSize < 0 || typeVocabSize > 1 << 20 { problems.append("type_vocab_size = \(typeVocabSize) is out of range") }
        if maxRelativePositions > 1 << 24 { problems.append("max_relative_positions = \(maxRelativePositions) is out of range") }
        if positionBuckets > 1 << 24 { problems.append("position_buckets = \(positionBuckets) is out of range") }
        if convKernelSize < 0 || convKernelSize > 64 { problems.append("conv_kernel_size = \(convKernelSize) is out of range") }
        if convGroups <= 0 || (convGroups > 0 && hiddenSize % convGroups != 0) { problems.append("conv_groups = \(convGroups) must divide hidden_size") }
        if !(layerNormEps > 0 && layerNormEps < 1) { problems.append("layer_norm_eps = \(layerNormEps) must be in (0, 1)") }
        for term in posAttType where term != "c2p" && term != "p2c" && term != "p2p" {
            problems.append("pos_att_type term '\(term)' is not c2p or p2c")
        }
        if numLabels < 0 || numLabels > DebertaConfig.maxLabels { problems.append("num_labels = \(numLabels) is out of range") }
        if let bad = id2label.keys.filter({ $0 < 0 || $0 >= numLabels }).min() {
            problems.append("id2label key \(bad) is outside 0..<\(numLabels) (num_labels)")
        }
        // make_log_bucket_position divides by log((max_relative_positions - 1) / (buckets / 2)) and by buckets / 2:
        // both must be non-zero for the relative rows to be finite (RelativePositions.logBucket also guards its result).
        if relativeAttention && modelType != .deberta && positionBuckets > 0 {
            let mid = positionBuckets / 2
            if positionBuckets < 2 {
                problems.append("position_buckets = \(positionBuckets) must be 0 or at least 2")
            } else if effectiveMaxRelativePositions - 1 == mid {
                problems.append("max_relative_positions = \(effectiveMaxRelativePositions) must not be position_buckets / 2 + 1 (the log-bucket base would be 1)")
            }
        }
        if !problems.isEmpty {
            throw DebertaError(.configField, file: file, problems.joined(separator: "; "))
        }
    }
}
