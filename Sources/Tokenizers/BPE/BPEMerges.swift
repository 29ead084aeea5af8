#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The merge rules keyed by the pair of token ids: (left, right) -> (rank, id of the merged token).
/// Open addressing with linear probing over packed 64-bit keys; immutable after construction.
struct MergeTable: Sendable {
    /// Key and value side by side (key at 2i, rank << 32 | new id at 2i+1): one cache line per probe.
    private var slots: [UInt64]
    private var mask: Int
    private var shift: UInt64
    private(set) var count = 0
    static let empty = UInt64.max
    static let noRank = UInt32.max

    init(capacityFor n: Int) {
        var cap = 16
        while cap < n * 2 { cap <<= 1 }
        slots = [UInt64](repeating: MergeTable.empty, count: 2 * cap)
        mask = cap - 1
        shift = UInt64(64 - cap.trailingZeroBitCount)
    }

    @inline(__always)
    static func key(_ a: Int32, _ b: Int32) -> UInt64 { UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b)) }

    @inline(__always)
    static func slot(_ key: UInt64, _ shift: UInt64) -> Int { Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> shift) }

    /// Inserts or overwrites (a later duplicate line wins, as in the tokenizers library).
    mutating func insert(_ a: Int32, _ b: Int32, rank: UInt32, newId: Int32) {
        let k = MergeTable.key(a, b)
        var i = MergeTable.slot(k, shift)
        while true {
            if slots[2 * i] == MergeTable.empty {
                slots[2 * i] = k
                count += 1
                break
            }
            if slots[2 * i] == k { break }
            i = (i + 1) & mask
        }
        slots[2 * i + 1] = UInt64(rank) << 32 | UInt64(UInt32(bitPattern: newId))
    }

    /// Runs `body` with a pointer view of the table (valid only inside `body`).
    func withView<R>(_ body: (MergeView) throws -> R) rethrows -> R {
        try slots.withUnsafeBufferPointer { s in
            try body(MergeView(slots: s.baseAddress!, mask: mask, shift: shift))
        }
    }

    /// All rules as (left, right, rank, new id), in no particular order.
    func allRules() -> [(Int32, Int32, UInt32, Int32)] {
        var out: [(Int32, Int32, UInt32, Int32)] = []
        for i in 0 ... mask where slots[2 * i] != MergeTable.empty {
            let k = slots[2 * i], v = slots[2 * i + 1]
            out.append((Int32(truncatingIfNeeded: k >> 32), Int32(truncatingIfNeeded: k),
                        UInt32(truncatingIfNeeded: v >> 32), Int32(truncatingIfNeeded: v)))
        }
        return out
    }
}

/// A heap-allocated array of plain values with unchecked access, never copied (so never retained or
/// copied-on-write in the hot loop), freed when it goes out of scope.
struct RawBuffer<Element: BitwiseCopyable>: ~Copyable {
    private(set) var base: UnsafeMutablePointer<Element>
    private(set) var capacity: Int
    var count = 0

    init(capacity: Int = 16) {
        self.capacity = max(capacity, 1)
        base = UnsafeMutablePointer<Element>.allocate(capacity: self.capacity)
    }

    deinit { base.deallocate() }

    /// Makes room for `n` elements, keeping the first `count`.
    @inline(__always)
    mutating func reserve(_ n: Int) {
        if n > capacity { grow(n) }
    }

    private mutating func grow(_ n: Int) {
        var c = capacity
        while c < n { c *= 2 }
        let p = UnsafeMutablePointer<Element>.allocate(capacity: c)
        p.update(from: base, count: count)
        base.deallocate()
        base = p
        capacity = c
    }

    @inline(__always)
    mutating func append(_ x: Element) {
        if count == capacity { grow(count + 1) }
        base[count] = x
        count += 1
    }

    mutating func append(_ p: UnsafePointer<Element>, count n: Int) {
        reserve(count + n)
        (base + count).update(from: p, count: n)
        count += n
    }

    @inline(__always)
    subscript(i: Int) -> Element {
        get { base[i] }
        nonmutating set { base[i] = newValue }
    }
}

/// Working memory for merging one word, reused across the words of one call: symbol ids and lengths
/// (the input and output of `MergeView.merge`), plus the rescan and heap state.
struct MergeBuffers: ~Copyable {
    var ids = RawBuffer<Int32>(capacity: 64)
    var lens = RawBuffer<Int32>(capacity: 64)
    var ranks = RawBuffer<UInt32>(capacity: 64)
    var newIds = RawBuffer<Int32>(capacity: 64)
    var prev = RawBuffer<Int32>(capacity: 64)
    var next = RawBuffer<Int32>(capacity: 64)
    var heap = RawBuffer<UInt64>(capacity: 64)     // rank << 32 | position
    var heapIds = RawBuffer<Int32>(capacity: 64)   // new id of each heap entry, parallel to `heap`

    /// Room for a word of `n` symbols.
    mutating func reserve(_ n: Int) {
        if n > ids.capacity {
            ids.reserve(n); lens.reserve(n); ranks.reserve(n); newIds.reserve(n); prev.reserve(n); next.reserve(n)
        }
    }
}

/// Words longer than this (in initial symbols) merge with a heap instead of rescanning.
let heapMergeThreshold = 48

/// The merge table seen through pointers, for the hot loop.
struct MergeView {
    let slots: UnsafePointer<UInt64>
    let mask: Int
    let shift: UInt64

    /// (rank, new id), rank `MergeTable.noRank` when the pair does not merge.
    @inline(__always)
    func lookup(_ a: Int32, _ b: Int32) -> (UInt32, Int32) {
        let k = MergeTable.key(a, b)
        var i = MergeTable.slot(k, shift)
        while true {
            let s = slots[2 * i]
            if s == k {
                let v = slots[2 * i + 1]
                return (UInt32(truncatingIfNeeded: v >> 32), Int32(truncatingIfNeeded: v))
            }
            if s == MergeTable.empty { return (MergeTable.noRank, -1) }
            i = (i + 1) & mask
        }
    }

    /// Applies the merges to the `n` symbols in `b.ids`/`b.lens` (lowest rank first, leftmost among
    /// equal ranks — the tokenizers library's order) and returns the number of symbols left, compacted
    /// at the front of `b.ids`/`b.lens`.
    func merge(_ b: inout MergeBuffers, count n: Int) -> Int {
        if n < 2 { return n }
        if n > heapMergeThreshold { return mergeWithHeap(&b, count: n) }
        let ids = b.ids.base, lens = b.lens.base, ranks = b.ranks.base, newIds = b.newIds.base
        var m = n
        for i in 0 ..< m - 1 {
            (ranks[i], newIds[i]) = lookup(ids[i], ids[i + 1])
        }
        while m > 1 {
            var best = -1
            var bestRank = MergeTable.noRank
            for i in 0 ..< m - 1 where ranks[i] < bestRank {
                bestRank = ranks[i]
                best = i
            }
            if best < 0 { break }
            ids[best] = newIds[best]
            lens[best] += lens[best + 1]
            // remove symbol best+1 and the pair that started at it
            let tail = m - 2 - best
            if tail > 0 {
                (ids + best + 1).update(from: ids + best + 2, count: tail)
                (lens + best + 1).update(from: lens + best + 2, count: tail)
                (ranks + best + 1).update(from: ranks + best + 2, count: tail)
                (newIds + best + 1).update(from: newIds + best + 2, count: tail)
            }
            m -= 1
            if best > 0 { (ranks[best - 1], newIds[best - 1]) = lookup(ids[best - 1], ids[best]) }
            if best < m - 1 { (ranks[best], newIds[best]) = lookup(ids[best], ids[best + 1]) }
        }
        return m
    }

    /// The same merge order with a binary min-heap of (rank, position) over a linked list of symbols,
    /// O(n log n) for long words (runs of digits, base64, repeated characters).
    func mergeWithHeap(_ b: inout MergeBuffers, count n: Int) -> Int {
        if n < 2 { return n }
        let ids = b.ids.base, lens = b.lens.base, prev = b.prev.base, next = b.next.base
        b.heap.count = 0
        b.heapIds.count = 0
        for i in 0 ..< n {
            prev[i] = Int32(i - 1)
            next[i] = i + 1 < n ? Int32(i + 1) : -1
        }
        for i in 0 ..< n - 1 {
            let (r, nid) = lookup(ids[i], ids[i + 1])
            if r != MergeTable.noRank { push(&b, UInt64(r) << 32 | UInt64(i), nid) }
        }
        while b.heap.count > 0 {
            let (top, nid) = pop(&b)
            let pos = Int(top & 0xFFFF_FFFF)
            if lens[pos] == 0 { continue }  // merged into its left neighbour
            let right = Int(next[pos])
            if right < 0 { continue }
            // a stale entry: the pair at pos changed since it was pushed
            if lookup(ids[pos], ids[right]).1 != nid { continue }
            ids[pos] = nid
            lens[pos] += lens[right]
            lens[right] = 0
            let after = Int(next[right])
            next[pos] = Int32(after)
            if after >= 0 { prev[after] = Int32(pos) }
            let before = Int(prev[pos])
            if before >= 0 {
                let (r, id) = lookup(ids[before], ids[pos])
                if r != MergeTable.noRank { push(&b, UInt64(r) << 32 | UInt64(before), id) }
            }
            if after >= 0 {
                let (r, id) = lookup(ids[pos], ids[after])
                if r != MergeTable.noRank { push(&b, UInt64(r) << 32 | UInt64(pos), id) }
            }
        }
        var m = 0
        for i in 0 ..< n where lens[i] != 0 {
            ids[m] = ids[i]
            lens[m] = lens[i]
            m += 1
        }
        return m
    }

    private func push(_ b: inout MergeBuffers, _ key: UInt64, _ id: Int32) {
        b.heap.reserve(b.heap.count + 1)
        b.heapIds.reserve(b.heap.count + 1)
        let heap = b.heap.base, heapIds = b.heapIds.base
        var i = b.heap.count
        b.heap.count += 1
        b.heapIds.count += 1
        while i > 0 {
            let parent = (i - 1) / 2
            if heap[parent] <= key { break }
            heap[i] = heap[parent]
            heapIds[i] = heapIds[parent]
            i = parent
        }
        heap[i] = key
        heapIds[i] = id
    }

    private func pop(_ b: inout MergeBuffers) -> (UInt64, Int32) {
        let heap = b.heap.base, heapIds = b.heapIds.base
        let top = heap[0], topId = heapIds[0]
        let n = b.heap.count - 1
        b.heap.count = n
        b.heapIds.count = n
        if n > 0 {
            let lastKey = heap[n], lastId = heapIds[n]
            var i = 0
            while true {
                let l = 2 * i + 1
                if l >= n { break }
                var c = l
                if l + 1 < n, heap[l + 1] < heap[l] { c = l + 1 }
                if heap[c] >= lastKey { break }
                heap[i] = heap[c]
                heapIds[i] = heapIds[c]
                i = c
            }
            heap[i] = lastKey
            heapIds[i] = lastId
        }
        return (top, topId)
    }
}

/// The words already merged during one `encode` call: byte string -> (ids, byte lengths). Keys live in
/// one byte arena and values in two buffers, so a lookup allocates nothing.
struct WordCache: ~Copyable {
    struct Entry: BitwiseCopyable {
        var hash: UInt64
        var keyStart: Int32
        var keyLength: Int32
        var valueStart: Int32
        var valueCount: Int32
    }

    private var slots = RawBuffer<Int32>(capacity: 1024)
    private var mask = 1023
    private var entries = RawBuffer<Entry>(capacity: 256)
    private var arena = RawBuffer<UInt8>(capacity: 4096)
    private(set) var ids = RawBuffer<Int32>(capacity: 1024)
    private(set) var lens = RawBuffer<Int32>(capacity: 1024)
    static let maxKeyLength = 256
    static let maxEntries = 1 << 20

    init() {
        slots.base.initialize(repeating: -1, count: 1024)
    }

    @inline(__always)
    static func hash(_ p: UnsafeRawPointer, _ n: Int) -> UInt64 {
        var h: UInt64 = 0x243F_6A88_85A3_08D3 ^ UInt64(n)
        var i = 0
        while i + 8 <= n {
            h = (h ^ p.loadUnaligned(fromByteOffset: i, as: UInt64.self)) &* 0x9E37_79B9_7F4A_7C15
            h ^= h >> 29
            i += 8
        }
        var tail: UInt64 = 0
        var shift: UInt64 = 0
        while i < n {
            tail |= UInt64(p.load(fromByteOffset: i, as: UInt8.self)) << shift
            shift += 8
            i += 1
        }
        h = (h ^ tail) &* 0xBF58_476D_1CE4_E5B9
        h ^= h >> 31
        return h
    }

    /// (start, count) of the cached value in `ids`/`lens`.
    @inline(__always)
    func find(_ p: UnsafeRawPointer, _ n: Int, hash h: UInt64) -> (Int, Int)? {
        var i = Int(truncatingIfNeeded: h) & mask
        while true {
            let e = Int(slots[i])
            if e < 0 { return nil }
            let entry = entries[e]
            if entry.hash == h, Int(entry.keyLength) == n, memcmp(arena.base + Int(entry.keyStart), p, n) == 0 {
                return (Int(entry.valueStart), Int(entry.valueCount))
            }
            i = (i + 1) & mask
        }
    }

    mutating func insert(_ p: UnsafeRawPointer, _ n: Int, hash h: UInt64, ids newIds: UnsafePointer<Int32>,
                         lens newLens: UnsafePointer<Int32>, count: Int) {
        guard n <= WordCache.maxKeyLength else { return }
        if entries.count >= WordCache.maxEntries { clear() }
        if (entries.count + 1) * 2 > mask + 1 { grow() }
        let e = Int32(entries.count)
        entries.append(Entry(hash: h, keyStart: Int32(arena.count), keyLength: Int32(n),
                             valueStart: Int32(ids.count), valueCount: Int32(count)))
        arena.append(p.assumingMemoryBound(to: UInt8.self), count: n)
        ids.append(newIds, count: count)
        lens.append(newLens, count: count)
        var i = Int(truncatingIfNeeded: h) & mask
        while slots[i] >= 0 { i = (i + 1) & mask }
        slots[i] = e
    }

    private mutating func clear() {
        slots.base.update(repeating: -1, count: mask + 1)
        entries.count = 0
        arena.count = 0
        ids.count = 0
        lens.count = 0
    }

    private mutating func grow() {
        let cap = (mask + 1) * 2
        slots.reserve(cap)
        slots.base.update(repeating: -1, count: cap)
        mask = cap - 1
        for e in 0 ..< entries.count {
            var i = Int(truncatingIfNeeded: entries[e].hash) & mask
            while slots[i] >= 0 { i = (i + 1) & mask }
            slots[i] = Int32(e)
        }
    }
}
