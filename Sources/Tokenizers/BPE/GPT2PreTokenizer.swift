/// GPT-2's pre-tokenization regex, written out by hand over Unicode scalars:
///
///     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
///
/// with the alternatives tried in order at each position (leftmost-first, as Oniguruma — the engine of
/// the tokenizers library — and Python's `regex` match it). \p{L} is general category L (Lu Ll Lt Lm Lo),
/// \p{N} is N (Nd Nl No), \s is the Unicode White_Space property (not Alphabetic, not Swift's Character
/// classes), all as of Unicode 16.0 (see `referenceUnicodeVersion`). Every scalar is in exactly one of
/// the four classes, so the matches tile the text with no gaps.
enum GPT2CharClass {
    static let letter: UInt8 = 0
    static let number: UInt8 = 1
    static let space: UInt8 = 2
    static let other: UInt8 = 3

    /// The Unicode version of the reference's character tables: Oniguruma, the regex engine of the
    /// tokenizers library (0.23.x), knows Unicode 16.0. Swift's own tables are newer (17.0 in Swift 6.3),
    /// and the characters assigned since are unassigned (so "other") for the reference. Checked over
    /// all 1,114,112 code points against the tokenizers library: with this cut-off they all agree.
    static let referenceUnicodeVersion = (major: 16, minor: 0)

    /// The class of any scalar, from its Unicode properties.
    static func compute(_ value: UInt32) -> UInt8 {
        guard let u = Unicode.Scalar(value) else { return other }
        let p = u.properties
        if let age = p.age,
           (age.major, age.minor) > (referenceUnicodeVersion.major, referenceUnicodeVersion.minor) {
            return other
        }
        if p.isWhitespace { return space }
        switch p.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return letter
        case .decimalNumber, .letterNumber, .otherNumber: return number
        default: return other
        }
    }

    /// The classes of the Basic Multilingual Plane, computed once and never freed; scalars above it
    /// (emoji, historic scripts) are classified on the fly.
    static let bmp = BMPTable()

    struct BMPTable: @unchecked Sendable {
        // Immutable after initialization, so sharing it between threads is safe.
        let pointer: UnsafePointer<UInt8>
        init() {
            let p = UnsafeMutablePointer<UInt8>.allocate(capacity: 0x10000)
            for v in 0 ..< 0x10000 { p[v] = GPT2CharClass.compute(UInt32(v)) }
            pointer = UnsafePointer(p)
        }
    }
}

/// One pre-token: a byte range of the scanned buffer and the scalar index of its first scalar.
struct PreToken {
    var byteStart: Int
    var byteEnd: Int
    var scalarStart: Int
    var scalarCount: Int
}

/// Splits a UTF-8 buffer (valid UTF-8, as every Swift String is) into GPT-2 pre-tokens, or returns it
/// whole when `useRegex` is false.
struct GPT2Scanner {
    let bytes: UnsafeBufferPointer<UInt8>
    let classes: UnsafePointer<UInt8>
    let useRegex: Bool
    private var position = 0
    private var scalarIndex = 0

    init(_ bytes: UnsafeBufferPointer<UInt8>, useRegex: Bool = true) {
        self.bytes = bytes
        self.classes = GPT2CharClass.bmp.pointer
        self.useRegex = useRegex
    }

    /// The scalar at byte `p` and its length in bytes.
    @inline(__always)
    func decode(_ p: Int) -> (UInt32, Int) {
        let b0 = UInt32(bytes[p])
        if b0 < 0x80 { return (b0, 1) }
        if b0 < 0xE0 { return ((b0 & 0x1F) << 6 | UInt32(bytes[p + 1] & 0x3F), 2) }
        if b0 < 0xF0 {
            return ((b0 & 0x0F) << 12 | UInt32(bytes[p + 1] & 0x3F) << 6 | UInt32(bytes[p + 2] & 0x3F), 3)
        }
        let v = (b0 & 0x07) << 18 | UInt32(bytes[p + 1] & 0x3F) << 12 | UInt32(bytes[p + 2] & 0x3F) << 6
            | UInt32(bytes[p + 3] & 0x3F)
        return (v, 4)
    }

    @inline(__always)
    func charClass(_ v: UInt32) -> UInt8 {
        v < 0x10000 ? classes[Int(v)] : GPT2CharClass.compute(v)
    }

    /// The class and byte length of the scalar at `p`.
    @inline(__always)
    func classAt(_ p: Int) -> (UInt8, Int) {
        let b0 = bytes[p]
        if b0 < 0x80 { return (classes[Int(b0)], 1) }
        let (v, n) = decode(p)
        return (charClass(v), n)
    }

    mutating func next() -> PreToken? {
        let end = bytes.count
        let start = position
        guard start < end else { return nil }
        let startScalar = scalarIndex
        if !useRegex {
            var n = 0
            for p in start ..< end where bytes[p] & 0xC0 != 0x80 { n += 1 }
            position = end
            scalarIndex += n
            return PreToken(byteStart: start, byteEnd: end, scalarStart: startScalar, scalarCount: n)
        }
        var p = start
        var count = 0
        let b0 = bytes[p]

        // 's 't 're 've 'm 'll 'd (case-sensitive, ASCII apostrophe only)
        if b0 == UInt8(ascii: "'"), p + 1 < end {
            let b1 = bytes[p + 1]
            var len = 0
            switch b1 {
            case UInt8(ascii: "s"), UInt8(ascii: "t"), UInt8(ascii: "m"), UInt8(ascii: "d"): len = 2
            case UInt8(ascii: "r"), UInt8(ascii: "v"):
                if p + 2 < end, bytes[p + 2] == UInt8(ascii: "e") { len = 3 }
            case UInt8(ascii: "l"):
                if p + 2 < end, bytes[p + 2] == UInt8(ascii: "l") { len = 3 }
            default: break
            }
            if len > 0 { return finish(start, start + len, startScalar, len) }
        }

        // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: an optional ASCII space, then a run of one class
        var (cls, n) = classAt(p)
        if b0 == 0x20, p + 1 < end {
            let (c1, n1) = classAt(p + 1)
            if c1 != GPT2CharClass.space {
                p += 1
                count = 1
                cls = c1
                n = n1
            }
        }
        if cls != GPT2CharClass.space {
            p += n
            count += 1
            while p < end {
                let (c, m) = classAt(p)
                if c != cls { break }
                p += m
                count += 1
            }
            return finish(start, p, startScalar, count)
        }

        // `\s+(?!\S)` then `\s+`: a whitespace run; when non-space follows, its last scalar is left to
        // start the next pre-token, unless the run is a single scalar.
        var lastStart = p
        p += n
        count = 1
        while p < end {
            let (c, m) = classAt(p)
            if c != GPT2CharClass.space { break }
            lastStart = p
            p += m
            count += 1
        }
        if p < end && count > 1 {
            return finish(start, lastStart, startScalar, count - 1)
        }
        return finish(start, p, startScalar, count)
    }

    @inline(__always)
    private mutating func finish(_ start: Int, _ end: Int, _ scalarStart: Int, _ count: Int) -> PreToken {
        position = end
        scalarIndex = scalarStart + count
        return PreToken(byteStart: start, byteEnd: end, scalarStart: scalarStart, scalarCount: count)
    }
}

/// The GPT-2 pre-tokens of a string (for tests and tools; the tokenizer scans its buffer directly).
public func gpt2PreTokenize(_ text: String) -> [String] {
    var bytes = Array(text.utf8)
    return bytes.withUnsafeMutableBufferPointer { mbuf in
        let buf = UnsafeBufferPointer(mbuf)
        var scanner = GPT2Scanner(buf)
        var out: [String] = []
        while let t = scanner.next() {
            out.append(String(decoding: UnsafeBufferPointer(rebasing: buf[t.byteStart ..< t.byteEnd]), as: UTF8.self))
        }
        return out
    }
}
