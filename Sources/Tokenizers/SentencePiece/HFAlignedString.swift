/// A text being normalized the way the tokenizers library's `NormalizedString` does it: the normalized
/// UTF-8 bytes and, for each of them, the original byte range it comes from. Every edit goes through
/// `transform(range:with:initialOffset:)`, a port of the library's `transform_range` rules, so that
/// offsets come out exactly as the library reports them (including its conventions, e.g. an inserted
/// character takes the alignment of the byte before it).
struct HFAlignedString {
    /// normalized text, UTF-8
    var normalized: [UInt8]
    /// per normalized byte: original byte range, relative to this string's original
    var alignments: [(Int32, Int32)]
    /// byte length of this string's original (a slice of the input)
    var originalLength: Int
    /// where this string's original starts in the input, in bytes
    var originalShift: Int

    init(_ bytes: [UInt8], shift: Int = 0) {
        normalized = bytes
        originalLength = bytes.count
        originalShift = shift
        alignments = []
        alignments.reserveCapacity(bytes.count)
        var i = 0
        while i < bytes.count {
            let len = min(utf8Length(bytes[i]), bytes.count - i)
            for _ in 0 ..< len { alignments.append((Int32(i), Int32(i + len))) }
            i += len
        }
    }

    private init(normalized: [UInt8], alignments: [(Int32, Int32)], originalLength: Int, originalShift: Int) {
        self.normalized = normalized
        self.alignments = alignments
        self.originalLength = originalLength
        self.originalShift = originalShift
    }

    var isEmpty: Bool { normalized.isEmpty }

    /// The scalars of `normalized[range]` with their byte lengths.
    func scalars(_ range: Range<Int>? = nil) -> [(Unicode.Scalar, Int)] {
        let r = range ?? 0 ..< normalized.count
        var out: [(Unicode.Scalar, Int)] = []
        out.reserveCapacity(r.count)
        var i = r.lowerBound
        while i < r.upperBound {
            let (s, len) = decodeScalar(normalized, at: i)
            out.append((s, len))
            i += len
        }
        return out
    }

    /// Normalized byte range -> original byte range (relative to this string). An empty range is returned
    /// unchanged, as the library does.
    func originalRange(ofNormalized r: Range<Int>) -> Range<Int>? {
        if r.isEmpty { return r }
        guard r.lowerBound >= 0, r.upperBound <= alignments.count else { return nil }
        return Int(alignments[r.lowerBound].0) ..< Int(alignments[r.upperBound - 1].1)
    }

    /// Original byte range (relative to this string) -> normalized byte range, as `convert_offsets` with
    /// `Range::Original`.
    func normalizedRange(ofOriginal target: Range<Int>) -> Range<Int>? {
        if target.isEmpty { return target }
        if originalLength == 0, target == 0 ..< 0 { return 0 ..< normalized.count }
        var start: Int?
        var end: Int?
        for (i, a) in alignments.enumerated() {
            if target.upperBound < Int(a.1) { break }
            if start == nil, target.lowerBound <= Int(a.0), a.0 != a.1 { start = i }
            if target.upperBound >= Int(a.1) { end = i + 1 }
        }
        switch (start, end) {
        case let (s?, nil): return s ..< s
        case let (nil, e?): return e ..< e
        case let (s?, e?): return s ..< e
        default: return nil
        }
    }

    /// Applies `dest` (each new character with its change: 1 = inserted, 0 = replaces one character,
    /// -N = replaces one and removes the N that follow) to `normalized[range]`, after removing
    /// `initialOffset` characters at its start.
    mutating func transform(range nRange: Range<Int>, with dest: [(Unicode.Scalar, Int)], initialOffset: Int) {
        let replaced = scalars(nRange)
        var next = 0
        var initialRemoved = 0
        while next < min(initialOffset, replaced.count) { initialRemoved += replaced[next].1; next += 1 }
        var offset = initialRemoved + nRange.lowerBound
        var newBytes: [UInt8] = []
        var newAlign: [(Int32, Int32)] = []
        newBytes.reserveCapacity(nRange.count)
        newAlign.reserveCapacity(nRange.count)
        for (c, change) in dest {
            let idx = offset
            let align: (Int32, Int32)
            if change > 0 {
                align = idx < 1 ? (0, 0) : alignments[min(idx - 1, alignments.count - 1)]
            } else {
                align = alignments.isEmpty ? (0, 0) : alignments[min(idx, alignments.count - 1)]
            }
            var replacedSize = 0
            if change <= 0, next < replaced.count {
                replacedSize = replaced[next].1
                next += 1
            }
            var removed = 0
            if change < 0 {
                var k = 0
                while k < -change, next < replaced.count { removed += replaced[next].1; next += 1; k += 1 }
            }
            offset += replacedSize + removed
            let before = newBytes.count
            appendUTF8(c, to: &newBytes)
            for _ in before ..< newBytes.count { newAlign.append(align) }
        }
        alignments.replaceSubrange(nRange, with: newAlign)
        normalized.replaceSubrange(nRange, with: newBytes)
    }

    /// `transform` over the whole string (the library's `transform`, which addresses the full original).
    mutating func transformAll(with dest: [(Unicode.Scalar, Int)], initialOffset: Int) {
        guard let r = normalizedRange(ofOriginal: 0 ..< originalLength) else { return }
        transform(range: r, with: dest, initialOffset: initialOffset)
    }

    /// Inserts `s` before the first character.
    mutating func prepend(_ s: String) {
        guard !normalized.isEmpty else { return }
        let (first, len) = decodeScalar(normalized, at: 0)
        var dest: [(Unicode.Scalar, Int)] = []
        for (i, c) in s.unicodeScalars.enumerated() { dest.append((c, i == 0 ? 0 : 1)) }
        dest.append((first, 1))
        transform(range: 0 ..< len, with: dest, initialOffset: 0)
    }

    /// Replaces every match (byte ranges, in order, not overlapping) by `content`, as the library's `replace`.
    mutating func replace(matches: [Range<Int>], with content: String) {
        var shift = 0
        let newLength = content.utf8.count
        let dest = content.unicodeScalars.map { ($0, 1) }
        for m in matches {
            let r = (m.lowerBound + shift) ..< (m.upperBound + shift)
            let removedChars = scalars(r).count
            transform(range: r, with: dest, initialOffset: removedChars)
            shift += newLength - m.count
        }
    }

    /// The part of this string covering `normalized[r]` (r on character boundaries).
    func slice(_ r: Range<Int>) -> HFAlignedString {
        let o = originalRange(ofNormalized: r) ?? 0 ..< 0
        let shift = Int32(o.lowerBound)
        return HFAlignedString(normalized: Array(normalized[r]),
                               alignments: alignments[r].map { ($0.0 - shift, $0.1 - shift) },
                               originalLength: o.count, originalShift: originalShift + o.lowerBound)
    }

    /// Splits on the scalars for which `isDelimiter` holds, with the library's SplitDelimiterBehavior.
    func split(behavior: HFSplitBehavior, where isDelimiter: (Unicode.Scalar) -> Bool) -> [HFAlignedString] {
        var matches: [(Range<Int>, Bool)] = []
        var last = 0
        var i = 0
        while i < normalized.count {
            let (s, len) = decodeScalar(normalized, at: i)
            if isDelimiter(s) {
                if last < i { matches.append((last ..< i, false)) }
                matches.append((i ..< i + len, true))
                last = i + len
            }
            i += len
        }
        if last < normalized.count { matches.append((last ..< normalized.count, false)) }
        return split(matches: matches, behavior: behavior)
    }

    /// Splits given the full list of (range, isMatch) pieces covering the string.
    func split(matches: [(Range<Int>, Bool)], behavior: HFSplitBehavior) -> [HFAlignedString] {
        var pieces: [(Range<Int>, remove: Bool)] = []
        switch behavior {
        case .isolated:
            pieces = matches.map { ($0.0, false) }
        case .removed:
            pieces = matches.map { ($0.0, $0.1) }
        case .contiguous:
            var previous = false
            for (r, isMatch) in matches {
                if isMatch == previous, let lastPiece = pieces.last {
                    pieces[pieces.count - 1] = (lastPiece.0.lowerBound ..< r.upperBound, false)
                } else {
                    pieces.append((r, false))
                }
                previous = isMatch
            }
        case .mergedWithPrevious:
            var previous = false
            for (r, isMatch) in matches {
                if isMatch, !previous, let lastPiece = pieces.last {
                    pieces[pieces.count - 1] = (lastPiece.0.lowerBound ..< r.upperBound, false)
                } else {
                    pieces.append((r, false))
                }
                previous = isMatch
            }
        case .mergedWithNext:
            var previous = false
            for (r, isMatch) in matches.reversed() {
                if isMatch, !previous, let lastPiece = pieces.last {
                    pieces[pieces.count - 1] = (r.lowerBound ..< lastPiece.0.upperBound, false)
                } else {
                    pieces.append((r, false))
                }
                previous = isMatch
            }
            pieces.reverse()
        }
        return pieces.filter { !$0.remove }.map { slice($0.0) }
    }
}

enum HFSplitBehavior: String, Sendable {
    case removed, isolated, mergedWithPrevious, mergedWithNext, contiguous

    init?(json: String) {
        switch json.lowercased() {
        case "removed": self = .removed
        case "isolated": self = .isolated
        case "merged_with_previous", "mergedwithprevious": self = .mergedWithPrevious
        case "merged_with_next", "mergedwithnext": self = .mergedWithNext
        case "contiguous": self = .contiguous
        default: return nil
        }
    }
}

/// Decodes the scalar at `bytes[i]` (valid UTF-8 assumed; invalid bytes decode as U+FFFD of length 1).
@inline(__always)
func decodeScalar(_ bytes: [UInt8], at i: Int) -> (Unicode.Scalar, Int) {
    let b0 = UInt32(bytes[i])
    let len = min(utf8Length(bytes[i]), bytes.count - i)
    var v: UInt32
    switch len {
    case 1: v = b0
    case 2: v = (b0 & 0x1F) << 6 | UInt32(bytes[i + 1] & 0x3F)
    case 3: v = (b0 & 0x0F) << 12 | UInt32(bytes[i + 1] & 0x3F) << 6 | UInt32(bytes[i + 2] & 0x3F)
    default: v = (b0 & 0x07) << 18 | UInt32(bytes[i + 1] & 0x3F) << 12 | UInt32(bytes[i + 2] & 0x3F) << 6
        | UInt32(bytes[i + 3] & 0x3F)
    }
    return (Unicode.Scalar(v) ?? "\u{FFFD}", len)
}

@inline(__always)
func appendUTF8(_ s: Unicode.Scalar, to out: inout [UInt8]) {
    let v = s.value
    switch v {
    case 0 ..< 0x80: out.append(UInt8(v))
    case 0x80 ..< 0x800:
        out.append(UInt8(0xC0 | v >> 6)); out.append(UInt8(0x80 | v & 0x3F))
    case 0x800 ..< 0x10000:
        out.append(UInt8(0xE0 | v >> 12)); out.append(UInt8(0x80 | (v >> 6) & 0x3F)); out.append(UInt8(0x80 | v & 0x3F))
    default:
        out.append(UInt8(0xF0 | v >> 18)); out.append(UInt8(0x80 | (v >> 12) & 0x3F))
        out.append(UInt8(0x80 | (v >> 6) & 0x3F)); out.append(UInt8(0x80 | v & 0x3F))
    }
}
