/// One `encode` call over a working buffer (the text, lowercased and/or with the prefix space when the
/// tokenizer asks for them): pre-tokens from the GPT-2 scanner, each merged (or found in the call's
/// word cache), then ids, token strings and spans in the original text appended. All table access goes
/// through pointers that are valid for the duration of the call.
struct WordEncoder: ~Copyable {
    let tokenizer: ByteLevelBPETokenizer
    let bytes: UnsafeBufferPointer<UInt8>
    let base: UnsafePointer<UInt8>
    let strings: UnsafePointer<String>
    let byteIds: UnsafePointer<Int32>
    let merges: MergeView
    /// A space was put before the text: working scalar k is original scalar k-1 (the space takes 0).
    let prefixed: Bool
    /// Original scalar of each working scalar after normalization; empty when there was none.
    let origin: UnsafeBufferPointer<Int32>
    let useCache: Bool

    var buffers = MergeBuffers()
    var cache = WordCache()
    var ids: [Int] = []
    var tokens: [String] = []
    var offsets: [Range<Int>] = []

    init(tokenizer: ByteLevelBPETokenizer, bytes: UnsafeBufferPointer<UInt8>, strings: UnsafePointer<String>,
         byteIds: UnsafePointer<Int32>, merges: MergeView, prefixed: Bool, origin: UnsafeBufferPointer<Int32>) {
        self.tokenizer = tokenizer
        self.bytes = bytes
        self.base = bytes.baseAddress!
        self.strings = strings
        self.byteIds = byteIds
        self.merges = merges
        self.prefixed = prefixed
        self.origin = origin
        self.useCache = bytes.count >= ByteLevelBPETokenizer.cacheThreshold
        let estimate = bytes.count / 3 + 4
        ids.reserveCapacity(estimate)
        tokens.reserveCapacity(estimate)
        offsets.reserveCapacity(estimate)
    }

    /// The original scalar whose span working scalar `k` takes.
    @inline(__always)
    func originalIndex(_ k: Int) -> Int {
        // The added prefix space takes the span of the first character, as in the tokenizers library.
        let j = prefixed ? (k > 0 ? k - 1 : 0) : k
        return origin.isEmpty ? j : Int(origin[j])
    }

    mutating func run() {
        var scanner = GPT2Scanner(bytes, useRegex: tokenizer.useRegex)
        while let w = scanner.next() {
            let n = w.byteEnd - w.byteStart
            let p = UnsafeRawPointer(base + w.byteStart)
            var h: UInt64 = 0
            if useCache {
                h = WordCache.hash(p, n)
                if let (start, count) = cache.find(p, n, hash: h) {
                    emit(w, cache.ids.base + start, cache.lens.base + start, count)
                    continue
                }
            }
            buffers.reserve(n)
            if tokenizer.ignoreMerges, let id = tokenizer.wholeWords[Array(UnsafeBufferPointer(start: base + w.byteStart, count: n))] {
                buffers.ids[0] = id
                buffers.lens[0] = Int32(n)
                finish(w, p, n, h, 1)
                continue
            }
            var complete = true
            let symbolIds = buffers.ids.base, symbolLens = buffers.lens.base
            for i in 0 ..< n {
                let id = byteIds[Int(base[w.byteStart + i])]
                symbolIds[i] = id
                symbolLens[i] = 1
                if id < 0 { complete = false }
            }
            if !complete {
                appendWithMissingBytes(w)
                continue
            }
            let m = merges.merge(&buffers, count: n)
            finish(w, p, n, h, m)
        }
    }

    @inline(__always)
    private mutating func finish(_ w: PreToken, _ p: UnsafeRawPointer, _ n: Int, _ h: UInt64, _ m: Int) {
        if useCache { cache.insert(p, n, hash: h, ids: buffers.ids.base, lens: buffers.lens.base, count: m) }
        emit(w, buffers.ids.base, buffers.lens.base, m)
    }

    /// Appends one word's tokens given their lengths in bytes, which tile the word.
    @inline(__always)
    private mutating func emit(_ w: PreToken, _ tokIds: UnsafePointer<Int32>, _ tokLens: UnsafePointer<Int32>, _ count: Int) {
        let n = w.byteEnd - w.byteStart
        var pos = 0
        if n == w.scalarCount {  // one byte per scalar
            for t in 0 ..< count {
                let id = Int(tokIds[t])
                let len = Int(tokLens[t])
                let s = originalIndex(w.scalarStart + pos)
                let e = originalIndex(w.scalarStart + pos + len - 1) + 1
                ids.append(id)
                tokens.append(strings[id])
                offsets.append(s ..< e)
                pos += len
            }
            return
        }
        let word = base + w.byteStart
        var leads = 0  // UTF-8 lead bytes in word[0 ..< pos]
        for t in 0 ..< count {
            let id = Int(tokIds[t])
            let len = Int(tokLens[t])
            // a token may start or end inside a character: it spans the whole character
            let first = leads + (word[pos] & 0xC0 != 0x80 ? 1 : 0) - 1
            for q in pos ..< pos + len where word[q] & 0xC0 != 0x80 { leads += 1 }
            let last = leads - 1
            ids.append(id)
            tokens.append(strings[id])
            offsets.append(originalIndex(w.scalarStart + first) ..< originalIndex(w.scalarStart + last) + 1)
            pos += len
        }
    }

    /// A word with a byte whose alphabet character is not in the vocabulary, done as the tokenizers
    /// library does it: the character becomes unk_token (consecutive ones fused with fuse_unk) or, with
    /// no unk_token, is dropped. Symbol lengths count bytes of the byte-level string (1 for printable
    /// ASCII, 2 for the other characters) and token spans are read from the running sum of those
    /// lengths, so that a dropped character shifts later spans exactly as it does there.
    private mutating func appendWithMissingBytes(_ w: PreToken) {
        let word = UnsafeBufferPointer(start: base + w.byteStart, count: w.byteEnd - w.byteStart)
        let n = word.count
        let unknownId = tokenizer.unknownId, fuse = tokenizer.fuseUnknown
        buffers.reserve(n)
        let symbolIds = buffers.ids.base, symbolLens = buffers.lens.base
        var m = 0
        var pending: (id: Int32, len: Int32)? = nil
        func add(_ id: Int32, _ len: Int32) {
            symbolIds[m] = id
            symbolLens[m] = len
            m += 1
        }
        var normStart = [Int](repeating: 0, count: n)  // where each byte's character starts in the byte-level string
        var total = 0
        for i in 0 ..< n {
            let b = word[i]
            let nl: Int32 = (0x21 ... 0x7E).contains(b) ? 1 : 2
            normStart[i] = total
            total += Int(nl)
            let id = byteIds[Int(b)]
            if id >= 0 {
                if let u = pending { add(u.id, u.len); pending = nil }
                add(id, nl)
            } else if unknownId >= 0 {
                if let u = pending {
                    if fuse {
                        pending = (u.id, u.len + nl)
                    } else {
                        add(u.id, u.len)
                        pending = (unknownId, nl)
                    }
                } else {
                    pending = (unknownId, nl)
                }
            }
        }
        if let u = pending { add(u.id, u.len) }
        let k = merges.merge(&buffers, count: m)

        func byteAt(_ q: Int) -> Int {  // the byte whose character covers byte-level position q
            var lo = 0, hi = n - 1
            while lo < hi {
                let mid = (lo + hi + 1) / 2
                if normStart[mid] <= q { lo = mid } else { hi = mid - 1 }
            }
            return lo
        }
        func scalarOf(_ byte: Int) -> Int {
            var leads = 0
            for q in 0 ... byte where word[q] & 0xC0 != 0x80 { leads += 1 }
            return leads - 1
        }
        var pos = 0
        for t in 0 ..< k {
            let id = Int(buffers.ids[t])
            let len = Int(buffers.lens[t])
            let first = scalarOf(byteAt(pos))
            let last = scalarOf(byteAt(pos + len - 1))
            ids.append(id)
            tokens.append(strings[id])
            offsets.append(originalIndex(w.scalarStart + first) ..< originalIndex(w.scalarStart + last) + 1)
            pos += len
        }
    }
}
