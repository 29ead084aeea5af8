import Checkpoint

/// The task head on top of the encoder.
public enum TaskHead: String, Sendable, CaseIterable {
    case base
    case maskedLM = "masked-lm"
    case sequenceClassification = "sequence-classification"
    case tokenClassification = "token-classification"
    case questionAnswering = "question-answering"
    case multipleChoice = "multiple-choice"
    /// The ELECTRA-style discriminator of DeBERTa-v3 pretraining checkpoints (`mask_predictions.*`).
    case replacedTokenDetection = "replaced-token-detection"

    /// transformers' class-name suffix for the head, nil where transformers has no class.
    var classSuffix: String? {
        switch self {
        case .base: return "Model"
        case .maskedLM: return "ForMaskedLM"
        case .sequenceClassification: return "ForSequenceClassification"
        case .tokenClassification: return "ForTokenClassification"
        case .questionAnswering: return "ForQuestionAnswering"
        case .multipleChoice: return "ForMultipleChoice"
        case .replacedTokenDetection: return nil
        }
    }
}

/// What a checkpoint holds: family, head, the prefix its backbone tensors carry, and where each
/// conclusion came from (config.json or the tensor names).
public struct ModelLayout: Sendable, Equatable {
    public var family: ModelFamily
    public var head: TaskHead
    /// "deberta.", "bert." or "" (a bare backbone, or an original-repository checkpoint).
    public var backbonePrefix: String
    public var familySource: String
    public var headSource: String
    /// transformers' class for this family and head (nil for the RTD discriminator and v1 multiple choice).
    public var architecture: String? {
        guard let suffix = head.classSuffix else { return nil }
        if family == .deberta && head == .multipleChoice { return nil }
        return (family == .deberta ? "Deberta" : "DebertaV2") + suffix
    }
}

public enum ModelDetector {
    static let wordEmbeddings = "embeddings.word_embeddings.weight"

    /// Decides family, head and backbone prefix from config.json (when given) and the tensor names, and
    /// refuses a checkpoint whose names contradict its config.
    public static func detect(names: [String], config: DebertaConfig?, configFile: String?, weightsFile: String) throws -> ModelLayout {
        let nameSet = Set(names)
        guard let embedding = names.first(where: { $0.hasSuffix(wordEmbeddings) }) else {
            throw DebertaError(.malformedFile, file: weightsFile, "no '*\(wordEmbeddings)' tensor: this is not a DeBERTa checkpoint")
        }
        let prefix = String(embedding.dropLast(wordEmbeddings.count))
        guard ["", "deberta.", "bert."].contains(prefix) else {
            throw DebertaError(.tensor, file: weightsFile, tensor: embedding, "unexpected backbone prefix '\(prefix)' (expected 'deberta.', 'bert.' or none)")
        }
        let backbone = names.filter { $0.hasPrefix(prefix) }.map { String($0.dropFirst(prefix.count)) }

        // Family from the attention layout.
        let namesV1 = backbone.contains { $0.hasSuffix("attention.self.in_proj.weight") }
        let namesV2 = backbone.contains { $0.hasSuffix("attention.self.query_proj.weight") }
        var family: ModelFamily
        var familySource: String
        switch (namesV1, namesV2) {
        case (true, false): family = .deberta; familySource = "tensor names"
        case (false, true): family = .debertaV2; familySource = "tensor names"
        case (true, true):
            throw DebertaError(.malformedFile, file: weightsFile, "has both v1 (in_proj) and v2 (query_proj) attention tensors")
        case (false, false):
            throw DebertaError(.malformedFile, file: weightsFile, "has no attention tensors (encoder.layer.N.attention.self.*)")
        }
        if let declared = config?.modelType {
            guard declared == family else {
                throw DebertaError(.configField, file: configFile ?? weightsFile,
                    "model_type '\(declared.rawValue)' disagrees with the tensors, which have the \(family.rawValue) attention layout")
            }
            familySource = "config.json"
        }

        // Head from the tensor names, then from `architectures` when config.json names one.
        let named = headFromNames(nameSet)
        var head = named
        var headSource = "tensor names"
        if let arch = config?.architectures?.first {
            if let declared = headFromArchitecture(arch) {
                head = declared
                headSource = "config.json architectures"
                let classFamily: ModelFamily = arch.hasPrefix("DebertaV2") ? .debertaV2 : .deberta
                if arch.hasPrefix("Deberta") && classFamily != family {
                    throw DebertaError(.configField, file: configFile ?? weightsFile,
                        "architectures names \(arch) but the tensors have the \(family.rawValue) layout")
                }
                if named != head && !(named == .sequenceClassification && head == .multipleChoice) {
                    throw DebertaError(.configField, file: configFile ?? weightsFile,
                        "architectures names \(arch) but the tensors hold a \(named.rawValue) head")
                }
            } else {
                headSource = "tensor names (architectures '\(arch)' is not a DeBERTa class)"
            }
        }
        return ModelLayout(family: family, head: head, backbonePrefix: prefix, familySource: familySource, headSource: headSource)
    }

    static func headFromNames(_ names: Set<String>) -> TaskHead {
        let has = { (p: String) in names.contains { $0.hasPrefix(p) } }
        if has("lm_predictions.lm_head.") || has("cls.predictions.") { return .maskedLM }
        if has("mask_predictions.") { return .replacedTokenDetection }
        if names.contains("qa_outputs.weight") { return .questionAnswering }
        if names.contains("classifier.weight") {
            return names.contains("pooler.dense.weight") ? .sequenceClassification : .tokenClassification
        }
        return .base
    }

    static func headFromArchitecture(_ arch: String) -> TaskHead? {
        guard arch.hasPrefix("Deberta") else { return nil }
        for head in TaskHead.allCases {
            if let suffix = head.classSuffix, arch.hasSuffix(suffix) { return head }
        }
        return nil
    }
}
