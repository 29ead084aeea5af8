import Synchronization

/// Per-call working memory of the spm.model encoder: the normalized bytes, their original offsets, the
/// Viterbi table, the best path and the byte-to-scalar table, as manually grown raw buffers (no
/// uniqueness checks or per-append capacity checks in the hot loops). Instances are recycled through
/// `SPScratchPool`, so a thread encoding many lines allocates only the `Encoding` it returns.
final class SPScratch: @unchecked Sendable {
    struct BestNode {
        var score: Float
        var start: Int32
        var id: Int32
    }

    struct PathPiece {
        var start: Int32
        var end: Int32
        var id: Int32
    }

    private(set) var norm: UnsafeMutablePointer<UInt8>
    private(set) var map: UnsafeMutablePointer<Int32>
    private(set) var normCapacity: Int
    private(set) var best: UnsafeMutablePointer<BestNode>
    private(set) var path: UnsafeMutablePointer<PathPiece>
    private(set) var bestCapacity: Int
    private(set) var scalars: UnsafeMutablePointer<Int32>
    private(set) var scalarsCapacity: Int
    /// the output before it becomes an `Encoding`: id, original byte begin and end of each token
    private(set) var outID: UnsafeMutablePointer<Int32>
    private(set) var outBegin: UnsafeMutablePointer<Int32>
    private(set) var outEnd: UnsafeMutablePointer<Int32>
    private(set) var outCapacity: Int

    init() {
        normCapacity = 256
        norm = .allocate(capacity: normCapacity)
        map = .allocate(capacity: normCapacity + 1)
        bestCapacity = 256
        best = .allocate(capacity: bestCapacity + 1)
        path = .allocate(capacity: bestCapacity)
        scalarsCapacity = 256
        scalars = .allocate(capacity: scalarsCapacity + 1)
        outCapacity = 256
        outID = .allocate(capacity: outCapacity)
        outBegin = .allocate(capacity: outCapacity)
        outEnd = .allocate(capacity: outCapacity)
    }

    deinit {
        norm.deallocate()
        map.deallocate()
        best.deallocate()
        path.deallocate()
        scalars.deallocate()
        outID.deallocate()
        outBegin.deallocate()
        outEnd.deallocate()
    }

    /// The capacity, doubled until it holds `n`.
    private static func grown(_ capacity: Int, toHold n: Int) -> Int {
        var cap = max(capacity, 1)
        while cap < n { cap *= 2 }
        return cap
    }

    /// Makes room for `n` output tokens.
    func reserveOutput(_ n: Int) {
        if n <= outCapacity { return }
        let cap = SPScratch.grown(outCapacity, toHold: n)
        outID.deallocate(); outBegin.deallocate(); outEnd.deallocate()
        outID = .allocate(capacity: cap)
        outBegin = .allocate(capacity: cap)
        outEnd = .allocate(capacity: cap)
        outCapacity = cap
    }

    /// Makes room for `needed` normalized bytes, keeping the first `used`.
    @inline(never)
    func growNormalized(to needed: Int, keeping used: Int) {
        let cap = SPScratch.grown(normCapacity, toHold: needed)
        let n = UnsafeMutablePointer<UInt8>.allocate(capacity: cap)
        let m = UnsafeMutablePointer<Int32>.allocate(capacity: cap + 1)
        n.update(from: norm, count: used)
        m.update(from: map, count: used)
        norm.deallocate()
        map.deallocate()
        norm = n
        map = m
        normCapacity = cap
    }

    /// Makes room for a Viterbi table over `n` normalized bytes.
    func reserveViterbi(_ n: Int) {
        if n <= bestCapacity { return }
        let cap = SPScratch.grown(bestCapacity, toHold: n)
        best.deallocate(); path.deallocate()
        (best, path, bestCapacity) = (.allocate(capacity: cap + 1), .allocate(capacity: cap), cap)
    }

    /// Makes room for a byte-to-scalar table over `n` input bytes.
    func reserveScalars(_ n: Int) {
        if n <= scalarsCapacity { return }
        let cap = SPScratch.grown(scalarsCapacity, toHold: n)
        scalars.deallocate()
        (scalars, scalarsCapacity) = (.allocate(capacity: cap + 1), cap)
    }
}

/// A small free list of scratch buffers shared by the threads that use one tokenizer.
final class SPScratchPool: Sendable {
    private let free = Mutex<[SPScratch]>([])
    private static let keep = 16

    func take() -> SPScratch {
        free.withLock { $0.popLast() } ?? SPScratch()
    }

    func put(_ s: SPScratch) {
        free.withLock { list in
            if list.count < SPScratchPool.keep { list.append(s) }
        }
    }
}
