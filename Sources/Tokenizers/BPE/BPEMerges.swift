/// The merge rules keyed by the pair of token ids: (left, right) -> (rank, id of the merged token).
/// Open addressing with linear probing over packed 64-bit keys; immutable after construction.
struct MergeTable: Sendable {
    private var keys: [UInt64]
    private var values: [UInt64]  // rank << 32 | new id
    private var mask: Int
    private var shift: UInt64
    private(set) var count = 0
    static let empty = UInt64.max
    static let noRank = UInt32.max

    init(capacityFor n: Int) {
        var cap = 16
        while cap < n * 2 { cap <<= 1 }
        keys = [UInt64](repeating: MergeTable.empty, count: cap)
        values = [UInt64](repeating: 0, count: cap)
        mask = cap - 1
        shift = UInt64(64 - cap.trailingZeroBitCount)
    }

    @inline(__always)
    static func key(_ a: Int32, _ b: Int32) -> UInt64 { UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b)) }

    @inline(__always)
    private func slot(_ key: UInt64) -> Int { Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> shift) }

    /// Inserts or overwrites (a later duplicate line wins, as in the tokenizers library).
    mutating func insert(_ a: Int32, _ b: Int32, rank: UInt32, newId: Int32) {
        let k = MergeTable.key(a, b)
        var i = slot(k)
        while true {
            if keys[i] == MergeTable.empty {
                keys[i] = k
                count += 1
                break
            }
            if keys[i] == k { break }
            i = (i + 1) & mask
        }
        values[i] = UInt64(rank) << 32 | UInt64(UInt32(bitPattern: newId))
    }

    /// (rank, new id), rank `noRank` when the pair does not merge.
    @inline(__always)
    func lookup(_ a: Int32, _ b: Int32) -> (UInt32, Int32) {
        let k = MergeTable.key(a, b)
        return keys.withUnsafeBufferPointer { kp in
            var i = slot(k)
            while true {
                let s = kp[i]
                if s == k {
                    let v = values.withUnsafeBufferPointer { $0[i] }
                    return (UInt32(truncatingIfNeeded: v >> 32), Int32(truncatingIfNeeded: v))
                }
                if s == MergeTable.empty { return (MergeTable.noRank, -1) }
                i = (i + 1) & mask
            }
        }
    }

    /// All rules as (left, right, rank, new id), in no particular order.
    func allRules() -> [(Int32, Int32, UInt32, Int32)] {
        var out: [(Int32, Int32, UInt32, Int32)] = []
        for i in 0 ..< keys.count where keys[i] != MergeTable.empty {
            let k = keys[i], v = values[i]
            out.append((Int32(truncatingIfNeeded: k >> 32), Int32(truncatingIfNeeded: k),
                        UInt32(truncatingIfNeeded: v >> 32), Int32(truncatingIfNeeded: v)))
        }
        return out
    }
}

/// Working memory for merging one word: symbol ids and lengths, reused across the words of one call.
struct MergeScratch {
    var ids: [Int32] = []
    var lens: [Int32] = []
    var ranks: [UInt32] = []
    var newIds: [Int32] = []
    var prev: [Int32] = []
    var next: [Int32] = []
    var heap: [UInt64] = []      // rank << 32 | position
    var heapIds: [Int32] = []    // new id of each heap entry, parallel to `heap`

    mutating func reserve(_ n: Int) {
        if ids.count < n {
            let c = max(n, 64)
            ids = [Int32](repeating: 0, count: c)
            lens = [Int32](repeating: 0, count: c)
            ranks = [UInt32](repeating: 0, count: c)
            newIds = [Int32](repeating: 0, count: c)
            prev = [Int32](repeating: 0, count: c)
            next = [Int32](repeating: 0, count: c)
        }
    }
}

/// Words longer than this (in initial symbols) merge with a heap instead of rescanning.
let heapMergeThreshold = 48

extension MergeTable {
    /// Applies the merges to `count` symbols in `s.ids`/`s.lens` (lowest rank first, leftmost among
    /// equal ranks — the tokenizers library's order) and returns the number of symbols left, compacted
    /// at the front of `s.ids`/`s.lens`.
    func mergeWord(_ s: inout MergeScratch, count n: Int) -> Int {
        if n < 2 { return n }
        if n > heapMergeThreshold { return mergeWithHeap(&s, count: n) }
        return s.ids.withUnsafeMutableBufferPointer { ids in
            s.lens.withUnsafeMutableBufferPointer { lens in
                s.ranks.withUnsafeMutableBufferPointer { ranks in
                    s.newIds.withUnsafeMutableBufferPointer { newIds in
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
                            // remove symbol best+1 (and the pair that started at it)
                            var j = best + 1
                            while j < m - 1 {
                                ids[j] = ids[j + 1]
                                lens[j] = lens[j + 1]
                                ranks[j] = ranks[j + 1]
                                newIds[j] = newIds[j + 1]
                                j += 1
                            }
                            m -= 1
                            if best > 0 { (ranks[best - 1], newIds[best - 1]) = lookup(ids[best - 1], ids[best]) }
                            if best < m - 1 { (ranks[best], newIds[best]) = lookup(ids[best], ids[best + 1]) }
                        }
                        return m
                    }
                }
            }
        }
    }

    /// The same merge order with a binary min-heap of (rank, position) over a linked list of symbols,
    /// O(n log n) for long words (runs of digits, base64, repeated characters).
    func mergeWithHeap(_ s: inout MergeScratch, count n: Int) -> Int {
        s.heap.removeAll(keepingCapacity: true)
        s.heapIds.removeAll(keepingCapacity: true)
        for i in 0 ..< n {
            s.prev[i] = Int32(i - 1)
            s.next[i] = i + 1 < n ? Int32(i + 1) : -1
        }
        for i in 0 ..< n - 1 {
            let (r, nid) = lookup(s.ids[i], s.ids[i + 1])
            if r != MergeTable.noRank { heapPush(&s, UInt64(r) << 32 | UInt64(i), nid) }
        }
        while let (top, nid) = heapPop(&s) {
            let pos = Int(top & 0xFFFF_FFFF)
            if s.lens[pos] == 0 { continue }  // merged into its left neighbour
            let right = Int(s.next[pos])
            if right < 0 { continue }
            // a stale entry: the pair at pos changed since it was pushed
            let (_, current) = lookup(s.ids[pos], s.ids[right])
            if current != nid { continue }
            s.ids[pos] = nid
            s.lens[pos] += s.lens[right]
            s.lens[right] = 0
            let after = s.next[right]
            s.next[pos] = after
            if after >= 0 { s.prev[Int(after)] = Int32(pos) }
            let before = Int(s.prev[pos])
            if before >= 0 {
                let (r, id) = lookup(s.ids[before], s.ids[pos])
                if r != MergeTable.noRank { heapPush(&s, UInt64(r) << 32 | UInt64(before), id) }
            }
            if after >= 0 {
                let (r, id) = lookup(s.ids[pos], s.ids[Int(after)])
                if r != MergeTable.noRank { heapPush(&s, UInt64(r) << 32 | UInt64(pos), id) }
            }
        }
        var m = 0
        for i in 0 ..< n where s.lens[i] != 0 {
            s.ids[m] = s.ids[i]
            s.lens[m] = s.lens[i]
            m += 1
        }
        return m
    }

    private func heapPush(_ s: inout MergeScratch, _ key: UInt64, _ id: Int32) {
        s.heap.append(key)
        s.heapIds.append(id)
        var i = s.heap.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            if s.heap[parent] <= key { break }
            s.heap[i] = s.heap[parent]
            s.heapIds[i] = s.heapIds[parent]
            i = parent
        }
        s.heap[i] = key
        s.heapIds[i] = id
    }

    private func heapPop(_ s: inout MergeScratch) -> (UInt64, Int32)? {
        guard let top = s.heap.first else { return nil }
        let topId = s.heapIds[0]
        let lastKey = s.heap.removeLast()
        let lastId = s.heapIds.removeLast()
        let n = s.heap.count
        if n > 0 {
            var i = 0
            while true {
                let l = 2 * i + 1
                if l >= n { break }
                var c = l
                if l + 1 < n, s.heap[l + 1] < s.heap[l] { c = l + 1 }
                if s.heap[c] >= lastKey { break }
                s.heap[i] = s.heap[c]
                s.heapIds[i] = s.heapIds[c]
                i = c
            }
            s.heap[i] = lastKey
            s.heapIds[i] = lastId
        }
        return (top, topId)
    }
}

/// The words already merged during one `encode` call: byte string -> (ids, byte lengths). Keys live in
/// one byte arena and values in two arrays, so a lookup allocates nothing.
struct WordCache {
    private var slots: [Int32]
    private var mask: Int
    private var hashes: [UInt64] = []
    private var keyStarts: [Int32] = []
    private var keyLens: [Int32] = []
    private var valueStarts: [Int32] = []
    private var valueCounts: [Int32] = []
    private var arena: [UInt8] = []
    private(set) var ids: [Int32] = []
    private(set) var lens: [Int32] = []
    static let maxKeyLength = 256
    static let maxEntries = 1 << 20

    init() {
        slots = [Int32](repeating: -1, count: 1024)
        mask = 1023
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
    func find(_ p: UnsafeRawPointer, _ n: Int, hash h: UInt64) -> (Int, Int)? {
        var i = Int(truncatingIfNeeded: h) & mask
        return arena.withUnsafeBytes { a in
            while true {
                let e = Int(slots[i])
                if e < 0 { return nil }
                if hashes[e] == h, Int(keyLens[e]) == n,
                   memcmp(a.baseAddress! + Int(keyStarts[e]), p, n) == 0 {
                    return (Int(valueStarts[e]), Int(valueCounts[e]))
                }
                i = (i + 1) & mask
            }
        }
    }

    mutating func insert(_ p: UnsafeRawPointer, _ n: Int, hash h: UInt64, ids newIds: UnsafeBufferPointer<Int32>,
                         lens newLens: UnsafeBufferPointer<Int32>) {
        guard n <= WordCache.maxKeyLength else { return }
        if hashes.count >= WordCache.maxEntries { self = WordCache() }
        if (hashes.count + 1) * 2 > slots.count { grow() }
        let e = Int32(hashes.count)
        hashes.append(h)
        keyStarts.append(Int32(arena.count))
        keyLens.append(Int32(n))
        arena.append(contentsOf: UnsafeRawBufferPointer(start: p, count: n))
        valueStarts.append(Int32(ids.count))
        valueCounts.append(Int32(newIds.count))
        ids.append(contentsOf: newIds)
        lens.append(contentsOf: newLens)
        var i = Int(truncatingIfNeeded: h) & mask
        while slots[i] >= 0 { i = (i + 1) & mask }
        slots[i] = e
    }

    private mutating func grow() {
        let cap = slots.count * 2
        slots = [Int32](repeating: -1, count: cap)
        mask = cap - 1
        for e in 0 ..< hashes.count {
            var i = Int(truncatingIfNeeded: hashes[e]) & mask
            while slots[i] >= 0 { i = (i + 1) & mask }
            slots[i] = Int32(e)
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
