import Glibc

/// Memory for large buffers that live long or are recycled (packed weights, pooled activations), 64-byte
/// aligned. With `RuntimeOptions.hugePages`, buffers from 4 MiB on are 2 MiB-aligned and advised for transparent huge
/// pages (first writes then fault once per 2 MiB instead of once per 4 KiB). Off by default: with the usual
/// `defrag=madvise` policy the kernel compacts memory synchronously on those faults, and loading the f32
/// v3-base model took 0.19-0.39 s with the advice against 0.17-0.23 s without; pre-populating the mappings
/// (MAP_POPULATE) was slower still (0.26-0.31 s: one kernel thread zeroes what two packing threads would
/// fault in). Measured on the development machine.
final class LargeMemory: @unchecked Sendable {
    let pointer: UnsafeMutableRawPointer
    let byteCount: Int

    init(_ byteCount: Int) {
        self.byteCount = byteCount
        pointer = LargeMemory.allocate(byteCount)
    }

    deinit { LargeMemory.release(pointer, byteCount) }

    static func allocate(_ byteCount: Int) -> UnsafeMutableRawPointer {
        let huge = ComputeContext.current.hugePages && byteCount >= 4 << 20
        let alignment = huge ? 2 << 20 : 64
        var p: UnsafeMutableRawPointer?
        guard posix_memalign(&p, alignment, max(byteCount, 1)) == 0, let p else {
            fatalError("out of memory allocating \(byteCount) bytes")
        }
        if huge { _ = madvise(p, (byteCount + alignment - 1) / alignment * alignment, MADV_HUGEPAGE) }
        return p
    }

    /// Frees what allocate(byteCount) returned.
    static func release(_ pointer: UnsafeMutableRawPointer, _ byteCount: Int) { free(pointer) }
}
