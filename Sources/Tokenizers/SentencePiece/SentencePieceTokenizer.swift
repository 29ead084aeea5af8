import Checkpoint
import Foundation

/// A SentencePiece unigram tokenizer that gives the same pieces, ids and offsets as the
/// reference libraries:
/// - `init(modelFile:)` / `init(modelData:name:)`: an `spm.model` (SentencePiece ModelProto), encoded as
///   `sentencepiece.SentencePieceProcessor.encode` does (normalizer.cc + `EncodeOptimized` + the
///   unknown-merging and byte-fallback of `PopulateSentencePieceText`);
/// - `init(tokenizerJSON:)`: a Hugging Face `tokenizer.json` whose model is `Unigram` (the DeBERTa-v2/v3
///   fast tokenizer), encoded as the tokenizers library does (`encode(text, add_special_tokens=False)`,
///   added tokens matched in the text).
///
/// Tokens are vocabulary strings, except for unknown text: like both libraries, a run of unknown
/// characters becomes one token (the unknown id) whose string is the run's normalized text. With byte
/// fallback, each unknown character becomes its UTF-8 bytes as `<0xXX>` pieces. Offsets are in Unicode
/// scalars of the original text; see `Encoding`.
///
/// Immutable after init; `encode` may be called from several threads at once.
public final class SentencePieceTokenizer: SubwordTokenizer {
    enum Backend: Sendable {
        case sentencePiece(SPPipeline)
        case tokenizerJSON(HFUnigramPipeline)
    }

    let backend: Backend
    private let pieces: [String]
    private let pieceIDs: [String: Int]

    /// Loads an `spm.model` file. Throws `DebertaError` naming the file when it is missing, unreadable,
    /// not a SentencePiece ModelProto, or not a usable unigram model.
    public convenience init(modelFile path: String) throws {
        try self.init(modelData: try SentencePieceTokenizer.readFile(path, what: "SentencePiece model"), name: path)
    }

    /// Parses a serialized SentencePiece ModelProto; `name` is used in error messages.
    public init(modelData: [UInt8], name: String = "spm.model") throws {
        let proto = try SPModelProto(serialized: modelData, file: name)
        let pipeline = try SPPipeline(proto: proto, file: name)
        backend = .sentencePiece(pipeline)
        pieces = pipeline.pieceStrings
        var ids = [String: Int](minimumCapacity: pieces.count)
        for (i, p) in pieces.enumerated() where ids[p] == nil { ids[p] = i }
        pieceIDs = ids
    }

    /// Loads a `tokenizer.json` whose model is `Unigram` (normalizers Sequence / Strip / Precompiled / Replace /
    /// NFKC / NFC / Lowercase / Prepend, pre-tokenizers Metaspace / Sequence / WhitespaceSplit, added tokens).
    /// Throws `DebertaError` naming the file for a missing file, invalid JSON or an unsupported component.
    public convenience init(tokenizerJSON path: String) throws {
        try self.init(tokenizerJSONData: try SentencePieceTokenizer.readFile(path, what: "tokenizer.json"), name: path)
    }

    /// The largest spm.model or tokenizer.json read (the limit of the project's other small files).
    static let maxFileSize = 64 << 20

    /// A regular file of at most `maxFileSize` bytes (a FIFO, a device or a huge file is refused before reading).
    static func readFile(_ path: String, what: String) throws -> [UInt8] {
        var st = stat()
        guard stat(path, &st) == 0 else {
            let e = errno
            throw DebertaError(.io, file: path, e == ENOENT ? "\(what) not found" : "cannot read the \(what): \(String(cString: strerror(e)))")
        }
        if let kind = ByteStorage.nonRegularKind(st.st_mode) {
            throw DebertaError(.io, file: path, "the \(what) is \(kind), not a regular file; only regular files are read")
        }
        guard st.st_size <= maxFileSize else {
            throw DebertaError(.limit, file: path, "the \(what) is \(st.st_size) bytes, more than the \(maxFileSize) accepted")
        }
        return try readSmallFile(path, limit: maxFileSize)
    }

    /// Parses the bytes of a `tokenizer.json`; `name` is used in error messages.
    public init(tokenizerJSONData: [UInt8], name: String = "tokenizer.json") throws {
        let pipeline = try HFUnigramPipeline(json: tokenizerJSONData, file: name)
        backend = .tokenizerJSON(pipeline)
        pieces = pipeline.idToToken
        var ids = [String: Int](minimumCapacity: pieces.count)
        for (i, p) in pieces.enumerated() where ids[p] == nil && !(pipeline.isHole(i)) { ids[p] = i }
        pieceIDs = ids
    }

    public func encode(_ text: String) -> Encoding {
        switch backend {
        case let .sentencePiece(p): return p.encode(text)
        case let .tokenizerJSON(p): return p.encode(text)
        }
    }

    public func id(of token: String) -> Int? { pieceIDs[token] }

    public func token(of id: Int) -> String? {
        guard id >= 0, id < pieces.count else { return nil }
        if case let .tokenizerJSON(p) = backend, p.isHole(id) { return nil }
        return pieces[id]
    }

    public var vocabularySize: Int { pieces.count }

    /// True for a tokenizer.json (its added tokens, e.g. [MASK], are matched by `encode` as the tokenizers
    /// library does), false for an spm.model (SentencePiece knows no special tokens in text; see
    /// `encode(_:specialTokens:stripLeft:)`).
    public var handlesSpecialTokensInText: Bool {
        if case .tokenizerJSON = backend { return true }
        return false
    }

    /// The id of the unknown piece.
    public var unknownID: Int {
        switch backend {
        case let .sentencePiece(p): return Int(p.model.unkID)
        case let .tokenizerJSON(p): return p.unkID ?? -1
        }
    }

    /// The normalized text as the model sees it (spm.model: with the dummy prefix and U+2581 for spaces).
    public func normalize(_ text: String) -> String {
        switch backend {
        case let .sentencePiece(p): return p.normalizeForDisplay(text)
        case let .tokenizerJSON(p): return p.normalizeForDisplay(text)
        }
    }
}

/// Maps UTF-8 byte offsets of a text to Unicode scalar offsets (a byte inside a scalar maps to that scalar).
struct ScalarOffsets {
    private var table: [Int32]
    private let ascii: Bool
    let byteCount: Int

    init(_ bytes: UnsafeBufferPointer<UInt8>) {
        byteCount = bytes.count
        var isASCII = true
        for b in bytes where b >= 0x80 { isASCII = false; break }
        ascii = isASCII
        table = []
        if !isASCII {
            table.reserveCapacity(bytes.count + 1)
            var scalar: Int32 = -1
            for b in bytes {
                if b & 0xC0 != 0x80 { scalar += 1 }
                table.append(scalar)
            }
            table.append(scalar + 1)
        }
    }

    @inline(__always)
    func scalar(atByte i: Int) -> Int {
        let c = min(max(0, i), byteCount)
        return ascii ? c : Int(table[c])
    }
}

/// The spm.model path: normalizer + Viterbi + SentencePiece's piece population.
struct SPPipeline: Sendable {
    let normalizer: SPNormalizer
    let model: SPUnigramModel
    let pieceStrings: [String]
    let byteFallback: Bool
    /// id of `<0xXX>` for each byte (byte fallback only)
    let byteIDs: [Int32]
    let pool = SPScratchPool()

    init(proto: SPModelProto, file: String) throws {
        guard proto.modelType == .unigram else {
            throw DebertaError(.unsupported, file: file, "SentencePiece model type \(proto.modelType) is not supported (only unigram)")
        }
        var keys: [(bytes: [UInt8], value: Int32)] = []
        var userDefined: [(bytes: [UInt8], value: Int32)] = []
        var seen = [[UInt8]: Int]()
        var unk: Int32 = -1
        var minScore = Float.greatestFiniteMagnitude
        var maxScore = Float.leastNormalMagnitude  // FLT_MIN, as SentencePiece initializes it
        var byteIDs = [Int32](repeating: -1, count: 256)
        var scores = [Float]()
        var isUD = [Bool]()
        for (i, p) in proto.pieces.enumerated() {
            if let other = seen[p.piece] {
                throw DebertaError(.malformedFile, file: file, "piece \(i) '\(String(decoding: p.piece, as: UTF8.self))' duplicates piece \(other)")
            }
            seen[p.piece] = i
            scores.append(p.score)
            isUD.append(p.type == .userDefined)
            switch p.type {
            case .normal:
                keys.append((p.piece, Int32(i)))
                minScore = min(minScore, p.score)
                maxScore = max(maxScore, p.score)
            case .userDefined:
                keys.append((p.piece, Int32(i)))
                userDefined.append((p.piece, Int32(i)))
            case .unknown:
                guard unk < 0 else { throw DebertaError(.malformedFile, file: file, "more than one unknown piece (\(unk), \(i))") }
                unk = Int32(i)
            case .byte:
                guard proto.byteFallback else {
                    throw DebertaError(.malformedFile, file: file, "byte piece \(i) found although byte_fallback is false")
                }
                guard let b = SPPipeline.byteOfPiece(p.piece) else {
                    throw DebertaError(.malformedFile, file: file, "invalid byte piece \(i) '\(String(decoding: p.piece, as: UTF8.self))'")
                }
                byteIDs[Int(b)] = Int32(i)
            case .control, .unused:
                break
            }
        }
        guard unk >= 0 else { throw DebertaError(.malformedFile, file: file, "SentencePiece model has no unknown piece") }
        if proto.byteFallback, byteIDs.contains(-1) {
            throw DebertaError(.malformedFile, file: file, "byte_fallback is set but the model lacks some of the 256 byte pieces")
        }
        let charsmap = proto.precompiledCharsmap.isEmpty ? nil
            : try PrecompiledCharsmap(blob: proto.precompiledCharsmap, file: file)
        normalizer = SPNormalizer(
            charsmap: charsmap, userDefined: userDefined.isEmpty ? nil : PieceTrie(keys: userDefined),
            addDummyPrefix: proto.addDummyPrefix, removeExtraWhitespaces: proto.removeExtraWhitespaces,
            escapeWhitespaces: proto.escapeWhitespaces, treatWhitespaceAsSuffix: proto.treatWhitespaceAsSuffix)
        model = SPUnigramModel(pieces: keys, scores: scores, isUserDefined: isUD, unkID: unk,
                               minScore: minScore, maxScore: maxScore)
        pieceStrings = proto.pieces.map { String(decoding: $0.piece, as: UTF8.self) }
        byteFallback = proto.byteFallback
        self.byteIDs = byteIDs
    }

    static func byteOfPiece(_ piece: [UInt8]) -> UInt8? {
        // exactly "<0x" + two upper-case hex digits + ">"
        guard piece.count == 6, piece[0] == 0x3C, piece[1] == 0x30, piece[2] == 0x78, piece[5] == 0x3E else { return nil }
        func hex(_ c: UInt8) -> UInt8? {
            switch c {
            case 0x30 ... 0x39: return c - 0x30
            case 0x41 ... 0x46: return c - 0x41 + 10
            default: return nil
            }
        }
        guard let h = hex(piece[3]), let l = hex(piece[4]) else { return nil }
        return h << 4 | l
    }

    func normalizeForDisplay(_ text: String) -> String {
        var text = text
        let s = SPScratch()
        let n = text.withUTF8 { normalizer.normalize($0, into: s) }
        return String(decoding: UnsafeBufferPointer(start: s.norm, count: n), as: UTF8.self)
    }

    func encode(_ text: String) -> Encoding {
        var text = text
        let s = pool.take()
        defer { pool.put(s) }
        var result = Encoding()
        text.withUTF8 { input in
            let n = normalizer.normalize(input, into: s)
            if n == 0 { return }
            let m = model.encode(s.norm, count: n, scratch: s)
            // byte offset -> scalar offset of the original text (identity for ASCII)
            var ascii = true
            for b in input where b >= 0x80 { ascii = false; break }
            if !ascii {
                s.reserveScalars(input.count)
                let scalars = s.scalars
                var k: Int32 = -1
                for (i, b) in input.enumerated() {
                    if b & 0xC0 != 0x80 { k += 1 }
                    scalars[i] = k
                }
                scalars[input.count] = k + 1
            }
            let table = s.scalars
            @inline(__always) func scalar(_ byte: Int32) -> Int { ascii ? Int(byte) : Int(table[Int(byte)]) }
            let norm = s.norm
            let map = s.map
            let path = s.path
            let unk = model.unkID
            s.reserveOutput(byteFallback ? 4 * m : m)
            let oid = s.outID, ob = s.outBegin, oe = s.outEnd
            var t = 0
            var prevUnk = false
            // merged unknown tokens: normalized start and end, in order; their strings are made at the end
            var unknownRuns: [(start: Int, end: Int)] = []
            var j = m - 1
            while j >= 0 {
                let p = path[j]
                j -= 1
                let begin = map[Int(p.start)]
                let end = map[Int(p.end)]
                let isUnk = p.id == unk
                if isUnk, byteFallback {
                    // one <0xXX> piece per byte; all but the last have an empty span at the character's start
                    byteIDs.withUnsafeBufferPointer { byteIDs in
                        for k in Int(p.start) ..< Int(p.end) {
                            oid[t] = byteIDs[Int(norm[k])]
                            ob[t] = begin
                            oe[t] = k == Int(p.end) - 1 ? end : begin
                            t += 1
                        }
                    }
                } else if isUnk, prevUnk {
                    oe[t - 1] = end
                    unknownRuns[unknownRuns.count - 1].end = Int(p.end)
                } else {
                    if isUnk { unknownRuns.append((Int(p.start), Int(p.end))) }
                    oid[t] = p.id
                    ob[t] = begin
                    oe[t] = end
                    t += 1
                }
                prevUnk = isUnk
            }
            let count = t
            result.ids = Array(unsafeUninitializedCapacity: count) { buf, c in
                for i in 0 ..< count { buf[i] = Int(oid[i]) }
                c = count
            }
            result.offsets = Array(unsafeUninitializedCapacity: count) { buf, c in
                for i in 0 ..< count { buf[i] = scalar(ob[i]) ..< scalar(oe[i]) }
                c = count
            }
            result.tokens = pieceStrings.withUnsafeBufferPointer { pieces in
                Array(unsafeUninitializedCapacity: count) { buf, c in
                    var run = 0
                    for i in 0 ..< count {
                        let id = oid[i]
                        if id == unk, !byteFallback {
                            let r = unknownRuns[run]
                            run += 1
                            (buf.baseAddress! + i).initialize(to: String(
                                decoding: UnsafeBufferPointer(start: norm + r.start, count: r.end - r.start), as: UTF8.self))
                        } else {
                            (buf.baseAddress! + i).initialize(to: pieces[Int(id)])
                        }
                    }
                    c = count
                }
            }
        }
        return result
    }
}
