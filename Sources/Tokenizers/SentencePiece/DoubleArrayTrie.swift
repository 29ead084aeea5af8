/// Read-only view of a darts-clone double array, the trie format of SentencePiece's precompiled
/// charsmap. Each unit is a little-endian UInt32:
///   bit 8: the node has a leaf child; bits 0-7 (and bit 31 for leaves): the label;
///   value of a leaf unit: bits 0-30; offset to the children: bits 10-31, shifted left by 8 when bit 9 is set.
/// The child of node `n` on byte `b` is `n ^ offset(unit[n]) ^ b`, valid when its label is `b`; the leaf of
/// `n` is at `n ^ offset(unit[n])`. The array is validated once so that every reachable index is in bounds.
struct DartsCloneArray: Sendable {
    private let units: [UInt32]

    /// `nil` if the array is malformed (a transition could leave the array).
    init?(units: [UInt32]) {
        guard units.count >= 256 else { return nil }
        let root = units[0]
        guard DartsCloneArray.label(root) == 0, !DartsCloneArray.hasLeaf(root) else { return nil }
        let rootOffset = DartsCloneArray.offset(root)
        guard rootOffset != 0, Int(rootOffset | 0xFF) < units.count else { return nil }
        for (i, u) in units.enumerated() where DartsCloneArray.label(u) <= 0xFF {
            let off = DartsCloneArray.offset(u)
            if off == 0 { continue }
            guard Int((UInt32(i) ^ off) | 0xFF) < units.count else { return nil }
        }
        self.units = units
    }

    @inline(__always) static func hasLeaf(_ u: UInt32) -> Bool { (u >> 8) & 1 == 1 }
    @inline(__always) static func value(_ u: UInt32) -> Int32 { Int32(bitPattern: u & 0x7FFF_FFFF) }
    @inline(__always) static func label(_ u: UInt32) -> UInt32 { u & 0x8000_00FF }
    @inline(__always) static func offset(_ u: UInt32) -> UInt32 { (u >> 10) << ((u & (1 << 9)) >> 6) }

    /// All keys that are prefixes of `bytes[start..<end]`, shortest first, as (length, value), passed to `body`
    /// until it returns false.
    @inline(__always)
    func forEachPrefix(_ bytes: UnsafeBufferPointer<UInt8>, from start: Int, to end: Int,
                       _ body: (Int, Int32) -> Bool) {
        units.withUnsafeBufferPointer { u in
            var node = UInt32(0) ^ DartsCloneArray.offset(u[0])
            var i = start
            while i < end {
                let b = bytes[i]
                node ^= UInt32(b)
                let unit = u[Int(node)]
                if DartsCloneArray.label(unit) != UInt32(b) { return }
                node ^= DartsCloneArray.offset(unit)
                i += 1
                if DartsCloneArray.hasLeaf(unit) {
                    if !body(i - start, DartsCloneArray.value(u[Int(node)])) { return }
                }
            }
        }
    }

    /// The longest key that is a prefix of `bytes[start..<end]`: (length, value), or nil.
    @inline(__always)
    func longestPrefix(_ bytes: UnsafeBufferPointer<UInt8>, from start: Int, to end: Int) -> (Int, Int32)? {
        var best: (Int, Int32)?
        forEachPrefix(bytes, from: start, to: end) { len, value in
            best = (len, value)
            return true
        }
        return best
    }

    /// The shortest key that is a prefix of `bytes[start..<end]` (what the tokenizers library's Precompiled uses).
    @inline(__always)
    func shortestPrefix(_ bytes: UnsafeBufferPointer<UInt8>, from start: Int, to end: Int) -> (Int, Int32)? {
        var best: (Int, Int32)?
        forEachPrefix(bytes, from: start, to: end) { len, value in
            best = (len, value)
            return false
        }
        return best
    }

    /// For keys starting with `byte`: whether some is longer than one byte, and whether some continues
    /// with an ASCII byte (used to build the ASCII fast path of the normalizer).
    func continuations(of byte: UInt8) -> (longer: Bool, ascii: Bool) {
        var node = UInt32(0) ^ DartsCloneArray.offset(units[0])
        node ^= UInt32(byte)
        let unit = units[Int(node)]
        guard DartsCloneArray.label(unit) == UInt32(byte) else { return (false, false) }
        let base = node ^ DartsCloneArray.offset(unit)
        var longer = false, ascii = false
        for c in 1 ... 255 {
            let child = base ^ UInt32(c)
            if Int(child) < units.count, DartsCloneArray.label(units[Int(child)]) == UInt32(c) {
                longer = true
                if c < 0x80 { ascii = true }
            }
        }
        return (longer, ascii)
    }
}

/// A byte trie over vocabulary pieces stored as a double array (base/check), built from the pieces.
/// Walking it costs one array read per byte, which is what the Viterbi search does at every position.
struct PieceTrie: Sendable {
    struct Slot: Sendable {
        var base: Int32 = 0
        var check: Int32 = -1
        var value: Int32 = -1
        /// a per-key number stored next to the value (the unigram model keeps piece scores here)
        var score: Float = 0
    }

    private(set) var slots: [Slot]
    static let root: Int32 = 0

    /// `keys` must be non-empty byte strings; the first occurrence of a duplicate key wins.
    init(keys: [(bytes: [UInt8], value: Int32)]) {
        // 1. A pointer trie: children as sorted (label, node) lists.
        var children: [[(UInt8, Int32)]] = [[]]
        var values: [Int32] = [-1]
        for (key, value) in keys {
            var node = 0
            for b in key {
                if let next = children[node].first(where: { $0.0 == b })?.1 {
                    node = Int(next)
                } else {
                    let new = Int32(children.count)
                    children.append([])
                    values.append(-1)
                    children[node].append((b, new))
                    node = Int(new)
                }
            }
            if values[node] < 0 { values[node] = value }
        }
        for i in children.indices { children[i].sort { $0.0 < $1.0 } }

        // 2. Place nodes breadth first: node at slot s, child on byte c at slot base[s] + c. Candidate
        //    bases are found by walking a linked list of the free slots (first fit on the first label).
        var slots = [Slot](repeating: Slot(), count: max(1024, children.count + 512))
        var used = [Bool](repeating: false, count: slots.count)
        var nextFree = [Int32](repeating: -1, count: slots.count)
        var prevFree = [Int32](repeating: -1, count: slots.count)
        for i in 1 ..< slots.count {
            nextFree[i] = i + 1 < slots.count ? Int32(i + 1) : -1
            prevFree[i] = Int32(i - 1)
        }
        var freeHead: Int32 = 1
        prevFree[1] = -1
        var freeTail = Int32(slots.count - 1)
        func grow(to size: Int) {
            let old = slots.count
            guard size > old else { return }
            slots += [Slot](repeating: Slot(), count: size - old)
            used += [Bool](repeating: false, count: size - old)
            nextFree += [Int32](repeating: -1, count: size - old)
            prevFree += [Int32](repeating: -1, count: size - old)
            for i in old ..< size {
                nextFree[i] = i + 1 < size ? Int32(i + 1) : -1
                prevFree[i] = i == old ? freeTail : Int32(i - 1)
            }
            if freeTail >= 0 { nextFree[Int(freeTail)] = Int32(old) } else { freeHead = Int32(old) }
            freeTail = Int32(size - 1)
        }
        func take(_ i: Int) {
            used[i] = true
            let p = prevFree[i], n = nextFree[i]
            if p >= 0 { nextFree[Int(p)] = n } else { freeHead = n }
            if n >= 0 { prevFree[Int(n)] = p } else { freeTail = p }
        }
        used[0] = true
        slots[0].check = 0
        var slotOf = [Int32](repeating: -1, count: children.count)
        slotOf[0] = 0
        var queue: [Int32] = [0]
        var head = 0
        while head < queue.count {
            let node = Int(queue[head])
            head += 1
            let s = Int(slotOf[node])
            slots[s].value = values[node]
            let kids = children[node]
            if kids.isEmpty { continue }
            let first = Int(kids[0].0)
            var p = Int(freeHead)
            var base = 0
            while true {
                if p < 0 {  // no free slot left: grow and continue from the new ones
                    let old = slots.count
                    grow(to: old * 2)
                    p = old
                }
                base = p - first
                if base >= 1 {
                    if base + 256 >= slots.count { grow(to: max(slots.count * 2, base + 257)) }
                    var fits = true
                    for (c, _) in kids.dropFirst() where used[base + Int(c)] { fits = false; break }
                    if fits { break }
                }
                p = Int(nextFree[p])
            }
            slots[s].base = Int32(base)
            for (c, child) in kids {
                let t = base + Int(c)
                take(t)
                slots[t].check = Int32(s)
                slotOf[Int(child)] = Int32(t)
                queue.append(child)
            }
        }
        var last = used.count - 1
        while last > 0, !used[last] { last -= 1 }
        let keep = min(slots.count, last + 257)
        if keep < slots.count { slots.removeSubrange(keep...) }
        self.slots = slots
    }

    /// Calls `body(length, value)` for every key that is a prefix of `bytes[start..<end]`, shortest first.
    @inline(__always)
    func forEachPrefix(_ bytes: UnsafeBufferPointer<UInt8>, from start: Int, to end: Int,
                       _ body: (Int, Int32) -> Void) {
        slots.withUnsafeBufferPointer { s in
            var node = 0
            var i = start
            while i < end {
                let t = Int(s[node].base) + Int(bytes[i])
                guard s[t].check == Int32(node) else { return }
                node = t
                i += 1
                let v = s[t].value
                if v >= 0 { body(i - start, v) }
            }
        }
    }

    /// Stores `score(value)` in the slot of every key.
    mutating func setScores(_ score: (Int32) -> Float) {
        for i in slots.indices where slots[i].value >= 0 { slots[i].score = score(slots[i].value) }
    }

    /// The value of exactly `bytes`, or nil.
    func lookup(_ bytes: some Collection<UInt8>) -> Int32? {
        var node = 0
        for b in bytes {
            let t = Int(slots[node].base) + Int(b)
            guard t < slots.count, slots[t].check == Int32(node) else { return nil }
            node = t
        }
        let v = slots[node].value
        return v >= 0 ? v : nil
    }
}
