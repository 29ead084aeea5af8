import CSentencePieceModel
import Checkpoint
import Foundation

/// The parts of a SentencePiece `ModelProto` (spm.model) the tokenizer uses, copied out of the
/// protobuf-c message (Tools/sentencepiece_model.proto lists the fields and their numbers).
struct SPModelProto: Sendable {
    enum PieceType: Int32, Sendable {
        case normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
    }

    enum ModelType: Int32, Sendable {
        case unigram = 1, bpe = 2, word = 3, char = 4
    }

    struct Piece: Sendable {
        var piece: [UInt8]
        var score: Float
        var type: PieceType
    }

    var pieces: [Piece] = []
    var modelType: ModelType = .unigram
    var treatWhitespaceAsSuffix = false
    var byteFallback = false
    var normalizerName = ""
    var precompiledCharsmap: [UInt8] = []
    var addDummyPrefix = true
    var removeExtraWhitespaces = true
    var escapeWhitespaces = true

    /// Parses a serialized ModelProto; `file` names the source in errors.
    init(serialized bytes: [UInt8], file: String) throws {
        guard !bytes.isEmpty else { throw DebertaError(.malformedFile, file: file, "empty file, not a SentencePiece model") }
        let message: UnsafeMutablePointer<Sentencepiece__ModelProto>? = bytes.withUnsafeBufferPointer {
            sentencepiece__model_proto__unpack(nil, $0.count, $0.baseAddress)
        }
        guard let message else {
            throw DebertaError(.malformedFile, file: file, "not a SentencePiece model (the protobuf ModelProto does not parse)")
        }
        defer { sentencepiece__model_proto__free_unpacked(message, nil) }
        let m = message.pointee
        guard m.n_pieces > 0, let list = m.pieces else {
            throw DebertaError(.malformedFile, file: file, "SentencePiece model has no pieces")
        }
        pieces.reserveCapacity(m.n_pieces)
        for i in 0 ..< m.n_pieces {
            guard let p = list[i]?.pointee, let cPiece = p.piece else {
                throw DebertaError(.malformedFile, file: file, "piece \(i) has no text")
            }
            let text = Array(UnsafeBufferPointer(start: UnsafeRawPointer(cPiece).assumingMemoryBound(to: UInt8.self),
                                                 count: strlen(cPiece)))
            guard !text.isEmpty else { throw DebertaError(.malformedFile, file: file, "piece \(i) is empty") }
            guard String(validating: text, as: UTF8.self) != nil else {
                throw DebertaError(.malformedFile, file: file, "piece \(i) is not valid UTF-8")
            }
            let rawType = Int32(bitPattern: UInt32(truncatingIfNeeded: p.type.rawValue))
            guard let type = PieceType(rawValue: rawType) else {
                throw DebertaError(.malformedFile, file: file, "piece \(i) has unknown type \(rawType)")
            }
            guard p.score.isFinite else { throw DebertaError(.malformedFile, file: file, "piece \(i) has a non-finite score") }
            pieces.append(Piece(piece: text, score: p.score, type: type))
        }
        if let t = m.trainer_spec?.pointee {
            let raw = Int32(bitPattern: UInt32(truncatingIfNeeded: t.model_type.rawValue))
            guard let type = ModelType(rawValue: raw) else {
                throw DebertaError(.malformedFile, file: file, "unknown model_type \(raw)")
            }
            modelType = type
            treatWhitespaceAsSuffix = t.treat_whitespace_as_suffix != 0
            byteFallback = t.byte_fallback != 0
        }
        if let n = m.normalizer_spec?.pointee {
            if let name = n.name { normalizerName = String(cString: name) }
            if n.has_precompiled_charsmap != 0, n.precompiled_charsmap.len > 0, let data = n.precompiled_charsmap.data {
                precompiledCharsmap = Array(UnsafeBufferPointer(start: data, count: n.precompiled_charsmap.len))
            }
            addDummyPrefix = n.add_dummy_prefix != 0
            removeExtraWhitespaces = n.remove_extra_whitespaces != 0
            escapeWhitespaces = n.escape_whitespaces != 0
        }
    }
}
