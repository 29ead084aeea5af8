/// GPT-2's reversible byte <-> character table ("bytes to unicode"): every byte value gets a visible
/// character, so a byte string becomes a text token. Bytes that are printable Latin-1 characters
/// ('!'...'~', '¡'...'¬', '®'...'ÿ') stand for themselves; the other 68 bytes (controls, space, 0x7F...0xA0,
/// the soft hyphen 0xAD) are numbered in order from U+0100, so the space 0x20 becomes 'Ġ' (U+0120) and
/// the newline 0x0A becomes 'Ċ' (U+010A).
public enum ByteLevelAlphabet {
    /// The character that stands for each byte value.
    public static let scalarForByte: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        var next: UInt32 = 0x100
        for b in 0 ..< 256 {
            if isPrintable(UInt8(b)) {
                table[b] = Unicode.Scalar(UInt8(b))
            } else {
                table[b] = Unicode.Scalar(next)!
                next += 1
            }
        }
        return table
    }()

    /// True for the bytes that stand for themselves.
    @inline(__always)
    static func isPrintable(_ b: UInt8) -> Bool {
        (0x21 ... 0x7E).contains(b) || (0xA1 ... 0xAC).contains(b) || (0xAE ... 0xFF).contains(b)
    }

    /// The byte a character stands for, nil for characters outside the 256-character alphabet.
    @inline(__always)
    public static func byte(for scalar: Unicode.Scalar) -> UInt8? {
        let v = scalar.value
        if v < 0x100 { return isPrintable(UInt8(v)) ? UInt8(v) : nil }
        guard v < 0x100 + 68 else { return nil }
        return unprintableBytes[Int(v - 0x100)]
    }

    /// The unprintable bytes in the order they were numbered from U+0100.
    private static let unprintableBytes: [UInt8] = (0 ... 255).map { UInt8($0) }.filter { !isPrintable($0) }

    /// The byte-level text of a byte string.
    public static func encode<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
        var s = String.UnicodeScalarView()
        for b in bytes { s.append(scalarForByte[Int(b)]) }
        return String(s)
    }

    /// The bytes a byte-level token stands for; nil when the token has a character outside the alphabet
    /// (special tokens such as "<|endoftext|>" are made of printable characters and do decode).
    public static func decode(_ token: String) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(token.unicodeScalars.count)
        for u in token.unicodeScalars {
            guard let b = byte(for: u) else { return nil }
            out.append(b)
        }
        return out
    }
}
