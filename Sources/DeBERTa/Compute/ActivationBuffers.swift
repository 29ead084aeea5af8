import Glibc
import Synchronization

/// A buffer of f32 activations owned by one forward call, zero-filled unless asked otherwise.
/// The memory comes from `ActivationPool`: a forward pass allocates the same few sizes again and again, and
/// fresh allocations of that size (hundreds of kilobytes to tens of megabytes) are mapped and unmapped by
/// malloc every time, page-faulting on first touch (several percent of a 1 × 128 forward).
final class Activations {
    let pointer: UnsafeMutablePointer<Float>
    let count: Int

    /// `zeroed: false` for buffers that are written in full before they are read (the pool hands back used
    /// memory).
    init(_ count: Int, zeroed: Bool = true) {
        self.count = count
        pointer = ActivationPool.shared.take(max(count, 1))
        if zeroed { pointer.update(repeating: 0, count: max(count, 1)) }
    }

    deinit { ActivationPool.shared.give(pointer, max(count, 1)) }

    var array: [Float] { Array(UnsafeBufferPointer(start: pointer, count: count)) }
}

/// Free activation buffers by size class, kept up to `capacityBytes` in all (beyond that, returned buffers of
/// other classes are freed first, then the returned one itself): the buffers of one forward shape are reused
/// by the next call of that shape or of a similar one, and memory does not grow with the number of shapes
/// seen. Size classes (`classBytes`: eight per power of two, at most 12.5% larger than asked) matter to the
/// server, whose packed calls hold a different number of tokens nearly every time: with exact sizes every
/// call mapped, populated and unmapped fresh buffers (its RSS grew to 1.3 GB of unusable free buffers and its
/// throughput fell by a quarter over a few thousand requests).
final class ActivationPool: Sendable {
    static let shared = ActivationPool(capacityBytes: 1 << 30)

    /// Buffers by address (pointers are not Sendable; the addresses are only turned back into pointers by
    /// the caller that took them).
    private struct State {
        var free: [Int: [UInt]] = [:]
        var bytes = 0
    }

    private let state = Mutex(State())
    let capacityBytes: Int

    init(capacityBytes: Int) { self.capacityBytes = capacityBytes }

    /// Buffers from 1 MiB on are mapped and populated up front (MADV_POPULATE_WRITE, split over the compute
    /// threads): the kernel provides their pages in a few calls instead of a page fault per 4 KiB on first
    /// write. The first 8 × 128 forward of the int8 v3-base model wrote ~60 MB of fresh activations (17k page
    /// faults, ~40 ms over a 167 ms call); MAP_POPULATE in the calling thread cut that to ~15 ms, the split to
    /// ~7 ms; later calls reuse the buffers. Smaller buffers come from malloc, 64-byte aligned.
    static let mappedThreshold = 1 << 20

    static func allocate(_ byteCount: Int) -> UnsafeMutableRawPointer {
        if byteCount >= mappedThreshold {
            let length = (byteCount + 4095) / 4096 * 4096
            if let p = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED {
                // The compute threads populate a share each (MADV_POPULATE_WRITE, Linux 5.14+; where it fails,
                // first writes fault the pages in).
                let parts = max(1, min(ComputeThreads.count, length / (1 << 20)))
                parallel(parts) { part in
                    let a = length / 4096 * part / parts * 4096, b = length / 4096 * (part + 1) / parts * 4096
                    _ = madvise(p + a, b - a, 23 /* MADV_POPULATE_WRITE */)
                }
                return p
            }
            fatalError("out of memory mapping \(byteCount) bytes of activations")
        }
        return LargeMemory.allocate(byteCount)
    }

    static func release(_ pointer: UnsafeMutableRawPointer, _ byteCount: Int) {
        if byteCount >= mappedThreshold {
            munmap(pointer, (byteCount + 4095) / 4096 * 4096)
        } else {
            LargeMemory.release(pointer, byteCount)
        }
    }

    /// The bytes a buffer of `bytes` is allocated with: multiples of 256 up to 64 KiB, then eight classes per
    /// power of two (2^e + i · 2^(e−3)), so a buffer serves every request up to 12.5% smaller than itself.
    static func classBytes(_ bytes: Int) -> Int {
        if bytes <= 1 << 16 { return (bytes + 255) / 256 * 256 }
        let e = Int.bitWidth - 1 - bytes.leadingZeroBitCount
        let step = 1 << (e - 3)
        return (bytes + step - 1) / step * step
    }

    func take(_ count: Int) -> UnsafeMutablePointer<Float> {
        let size = ActivationPool.classBytes(count * 4)
        let reused: UInt? = state.withLock { s in
            guard let p = s.free[size]?.popLast() else { return nil }
            s.bytes -= size
            return p
        }
        if let reused, let p = UnsafeMutablePointer<Float>(bitPattern: reused) { return p }
        return ActivationPool.allocate(size).bindMemory(to: Float.self, capacity: size / 4)
    }

    func give(_ pointer: UnsafeMutablePointer<Float>, _ count: Int) {
        let address = UInt(bitPattern: pointer)
        let size = ActivationPool.classBytes(count * 4)
        let evicted: [(UInt, Int)] = state.withLock { s in
            var out: [(UInt, Int)] = []
            if size > capacityBytes { return [(address, size)] }
            while s.bytes + size > capacityBytes, let other = s.free.first(where: { $0.key != size && !$0.value.isEmpty }) {
                let p = s.free[other.key]!.removeLast()
                s.bytes -= other.key
                out.append((p, other.key))
            }
            if s.bytes + size > capacityBytes { return out + [(address, size)] }
            s.free[size, default: []].append(address)
            s.bytes += size
            return out
        }
        for (a, bytes) in evicted {
            if let p = UnsafeMutableRawPointer(bitPattern: a) { ActivationPool.release(p, bytes) }
        }
    }
}
