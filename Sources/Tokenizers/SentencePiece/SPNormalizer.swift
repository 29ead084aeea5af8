import Checkpoint

/// SentencePiece's precompiled character map: `<trie size: UInt32 LE><darts-clone units><replacements>`.
/// A trie key is a UTF-8 byte sequence of the input, its value the offset of the replacement in the
/// replacement area (a NUL-terminated UTF-8 string).
struct PrecompiledCharsmap: Sendable {
    let trie: DartsCloneArray
    let replacements: [UInt8]

    init(blob: [UInt8], file: String) throws {
        guard blob.count > 4 else { throw DebertaError(.malformedFile, file: file, "precompiled_charsmap is truncated") }
        let trieSize = Int(UInt32(blob[0]) | UInt32(blob[1]) << 8 | UInt32(blob[2]) << 16 | UInt32(blob[3]) << 24)
        guard trieSize < blob.count - 4, trieSize % 4 == 0 else {
            throw DebertaError(.malformedFile, file: file, "precompiled_charsmap: trie size \(trieSize) does not fit in \(blob.count) bytes")
        }
        var units = [UInt32](repeating: 0, count: trieSize / 4)
        for i in units.indices {
            let o = 4 + 4 * i
            units[i] = UInt32(blob[o]) | UInt32(blob[o + 1]) << 8 | UInt32(blob[o + 2]) << 16 | UInt32(blob[o + 3]) << 24
        }
        guard let trie = DartsCloneArray(units: units) else {
            throw DebertaError(.malformedFile, file: file, "precompiled_charsmap: malformed double-array trie")
        }
        self.trie = trie
        replacements = Array(blob[(4 + trieSize)...])
    }

    /// The replacement at `value`: (start, count) in `replacements`, up to the NUL.
    @inline(__always)
    func replacement(at value: Int32) -> (Int, Int) {
        let start = Int(value)
        guard start >= 0, start < replacements.count else { return (replacements.count, 0) }
        var end = start
        replacements.withUnsafeBufferPointer { r in
            while end < r.count, r[end] != 0 { end += 1 }
        }
        return (start, end - start)
    }
}

/// SentencePiece's normalizer (normalizer.cc), byte for byte: longest-match rewriting with the
/// precompiled charsmap (user-defined pieces are copied unchanged), removal of leading, trailing and
/// repeated spaces, the dummy prefix, and escaping spaces as U+2581. It also records, for every byte
/// of the normalized text, the byte offset in the original text it came from (plus one final entry),
/// which is how piece offsets are mapped back.
struct SPNormalizer: Sendable {
    let charsmap: PrecompiledCharsmap?
    let userDefined: PieceTrie?
    let addDummyPrefix: Bool
    let removeExtraWhitespaces: Bool
    let escapeWhitespaces: Bool
    let treatWhitespaceAsSuffix: Bool
    /// For ASCII bytes whose rule cannot depend on the following bytes: the replacement as
    /// (start in `charsmap.replacements`, count), or (-1, 0) for "copied as is".
    private let asciiRule: [(Int32, Int32)]
    /// Per ASCII byte: 1 = its rule never depends on what follows; 2 = only on a following non-ASCII byte
    /// (e.g. "e" + U+0301 is a key of the NFKC maps); 0 = no fast path (user-defined pieces, ASCII continuations).
    private let asciiFastPath: [UInt8]

    init(charsmap: PrecompiledCharsmap?, userDefined: PieceTrie?, addDummyPrefix: Bool,
         removeExtraWhitespaces: Bool, escapeWhitespaces: Bool, treatWhitespaceAsSuffix: Bool) {
        self.charsmap = charsmap
        self.userDefined = userDefined
        self.addDummyPrefix = addDummyPrefix
        self.removeExtraWhitespaces = removeExtraWhitespaces
        self.escapeWhitespaces = escapeWhitespaces
        self.treatWhitespaceAsSuffix = treatWhitespaceAsSuffix
        var rule = [(Int32, Int32)](repeating: (-1, 0), count: 128)
        var fast = [UInt8](repeating: 1, count: 128)
        for b in 0 ..< 128 {
            var byte = UInt8(b)
            if let ud = userDefined {
                var found = false
                withUnsafePointer(to: &byte) { p in
                    let buf = UnsafeBufferPointer(start: p, count: 1)
                    ud.forEachPrefix(buf, from: 0, to: 1) { _, _ in found = true }
                }
                if found || ud.hasChild(startingWith: UInt8(b)) { fast[b] = 0; continue }
            }
            guard let cm = charsmap else { continue }
            let (longer, asciiNext) = cm.trie.continuations(of: UInt8(b))
            if asciiNext { fast[b] = 0; continue }
            if longer { fast[b] = 2 }
            withUnsafePointer(to: &byte) { p in
                let buf = UnsafeBufferPointer(start: p, count: 1)
                if let (_, value) = cm.trie.longestPrefix(buf, from: 0, to: 1) {
                    let (s, n) = cm.replacement(at: value)
                    rule[b] = (Int32(s), Int32(n))
                }
            }
        }
        asciiRule = rule
        asciiFastPath = fast
    }

    /// Where the normalized form of the character(s) at `input[pos...]` comes from.
    /// `fromInput`: copy `length` input bytes; otherwise `replacements[start ..< start + count]`.
    struct Prefix {
        var length: Int
        var fromInput: Bool
        var start: Int
        var count: Int
    }

    @inline(__always)
    func normalizePrefix(_ input: UnsafeBufferPointer<UInt8>, _ pos: Int) -> Prefix {
        let b = input[pos]
        if b < 0x80, asciiFastPath[Int(b)] == 1 || asciiFastPath[Int(b)] == 2 && (pos + 1 == input.count || input[pos + 1] < 0x80) {
            let (s, n) = asciiRule[Int(b)]
            return s < 0 ? Prefix(length: 1, fromInput: true, start: pos, count: 1)
                : Prefix(length: 1, fromInput: false, start: Int(s), count: Int(n))
        }
        if let ud = userDefined {
            var longest = 0
            ud.forEachPrefix(input, from: pos, to: input.count) { len, _ in longest = len }
            if longest > 0 { return Prefix(length: longest, fromInput: true, start: pos, count: longest) }
        }
        if let cm = charsmap, let (len, value) = cm.trie.longestPrefix(input, from: pos, to: input.count) {
            let (s, n) = cm.replacement(at: value)
            return Prefix(length: len, fromInput: false, start: s, count: n)
        }
        let len = min(utf8Length(b), input.count - pos)
        return Prefix(length: len, fromInput: true, start: pos, count: len)
    }

    /// Normalizes `input` into `normalized`, with `normToOrig.count == normalized.count + 1`
    /// (both are cleared first; empty when nothing is left). Convenience form of `normalize(_:into:)`.
    func normalize(_ input: UnsafeBufferPointer<UInt8>, normalized: inout [UInt8], normToOrig: inout [Int32]) {
        let s = SPScratch()
        let n = normalize(input, into: s)
        normalized = Array(UnsafeBufferPointer(start: s.norm, count: n))
        normToOrig = n == 0 ? [] : Array(UnsafeBufferPointer(start: s.map, count: n + 1))
    }

    /// Normalizes `input` into `s.norm[0 ..< count]` and `s.map[0 ... count]` (the original byte offset of
    /// each normalized byte, then the end); returns `count` (0: nothing left, `s.map` is then unspecified).
    func normalize(_ input: UnsafeBufferPointer<UInt8>, into s: SPScratch) -> Int {
        let n = input.count
        if n == 0 { return 0 }
        var pos = 0
        if removeExtraWhitespaces {
            while pos < n {
                let p = normalizePrefix(input, pos)
                if !isSingleSpace(p, input) { break }
                pos += p.length
            }
        }
        if pos == n { return 0 }
        if s.normCapacity < 3 * (n - pos) + 8 { s.growNormalized(to: 3 * (n - pos) + 8, keeping: 0) }
        var out = s.norm
        var map = s.map
        var cap = s.normCapacity
        var count = 0
        var consumed = Int32(pos)
        let escape = escapeWhitespaces
        let removeExtra = removeExtraWhitespaces
        let replacements = charsmap?.replacements ?? []
        replacements.withUnsafeBufferPointer { rep in
        asciiRule.withUnsafeBufferPointer { rule in
        asciiFastPath.withUnsafeBufferPointer { fast in
            @inline(__always) func putSpace() {
                if escape {
                    out[count] = 0xE2; out[count + 1] = 0x96; out[count + 2] = 0x81
                    map[count] = consumed; map[count + 1] = consumed; map[count + 2] = consumed
                    count += 3
                } else {
                    out[count] = 0x20; map[count] = consumed; count += 1
                }
            }
            @inline(__always) func ensure(_ extra: Int) {
                if count + extra > cap {
                    s.growNormalized(to: count + extra, keeping: count)
                    out = s.norm; map = s.map; cap = s.normCapacity
                }
            }
            if !treatWhitespaceAsSuffix, addDummyPrefix { putSpace() }
            var isPrevSpace = removeExtra
            /// Appends `src[start ..< start + count]` (the normalized form of `length` input bytes).
            @inline(__always) func emit(_ src: UnsafeBufferPointer<UInt8>, start: Int, count c: Int, length: Int) {
                ensure(3 * c)
                var k = start
                let e = start + c
                if isPrevSpace { while k < e, src[k] == 0x20 { k += 1 } }
                if k < e {
                    while k < e {
                        let ch = src[k]
                        if ch == 0x20, escape {
                            out[count] = 0xE2; out[count + 1] = 0x96; out[count + 2] = 0x81
                            map[count] = consumed; map[count + 1] = consumed; map[count + 2] = consumed
                            count += 3
                        } else {
                            out[count] = ch; map[count] = consumed; count += 1
                        }
                        k += 1
                    }
                    isPrevSpace = src[e - 1] == 0x20
                }
                consumed += Int32(length)
                pos += length
                if !removeExtra { isPrevSpace = false }
            }
            while pos < n {
                let b = input[pos]
                if b < 0x80, fast[Int(b)] == 1 || fast[Int(b)] == 2 && (pos + 1 == n || input[pos + 1] < 0x80) {
                    // one ASCII byte whose rule does not look ahead
                    let (rs, rn) = rule[Int(b)]
                    if rs < 0 {
                        ensure(3)
                        if b == 0x20 {
                            if !isPrevSpace { putSpace() }
                            isPrevSpace = removeExtra
                        } else {
                            out[count] = b; map[count] = consumed; count += 1
                            isPrevSpace = false
                        }
                        consumed += 1
                        pos += 1
                        continue
                    }
                    emit(rep, start: Int(rs), count: Int(rn), length: 1)
                    continue
                }
                let p = normalizePrefix(input, pos)
                emit(p.fromInput ? input : rep, start: p.start, count: p.count, length: p.length)
            }
            if removeExtra {
                if escape {
                    while count >= 3, out[count - 3] == 0xE2, out[count - 2] == 0x96, out[count - 1] == 0x81 {
                        count -= 3
                        consumed = map[count]
                    }
                } else {
                    while count >= 1, out[count - 1] == 0x20 {
                        count -= 1
                        consumed = map[count]
                    }
                }
            }
            ensure(4)
            if treatWhitespaceAsSuffix, addDummyPrefix { putSpace() }
            map[count] = consumed
        }}}
        return count
    }

    @inline(__always)
    private func isSingleSpace(_ p: Prefix, _ input: UnsafeBufferPointer<UInt8>) -> Bool {
        guard p.count == 1 else { return false }
        if p.fromInput { return input[p.start] == 0x20 }
        return charsmap!.replacements[p.start] == 0x20
    }
}

/// Length of the UTF-8 sequence that starts with `lead` (1 for continuation or invalid bytes),
/// as SentencePiece's OneCharLen.
@inline(__always)
func utf8Length(_ lead: UInt8) -> Int {
    if lead < 0xC0 { return 1 }
    if lead < 0xE0 { return 2 }
    if lead < 0xF0 { return 3 }
    return 4
}

extension PieceTrie {
    /// Whether some key is longer than the single byte `byte` (has a child below it).
    func hasChild(startingWith byte: UInt8) -> Bool {
        let t = Int(slots[0].base) + Int(byte)
        guard t < slots.count, slots[t].check == 0 else { return false }
        let base = Int(slots[t].base)
        for c in 0 ... 255 where base + c < slots.count && slots[base + c].check == Int32(t) { return true }
        return false
    }
}
