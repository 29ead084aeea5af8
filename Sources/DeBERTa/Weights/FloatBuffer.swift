import Checkpoint
import Glibc

/// Contiguous f32 values a kernel can read: the mapped bytes themselves when the tensor is stored as
/// aligned little-endian f32, otherwise a converted copy made once at load time.
final class FloatBuffer: @unchecked Sendable {
    let pointer: UnsafePointer<Float>
    let count: Int
    /// The mapped bytes this buffer reads in place, if it does.
    let region: ByteRegion?
    private let owner: AnyObject?
    private let allocated: UnsafeMutablePointer<Float>?

    /// A view of a tensor as f32, in place when possible.
    init(_ view: TensorView) {
        count = view.elementCount
        if view.dtype == .f32, let base = view.bytes.baseAddress, Int(bitPattern: base) % MemoryLayout<Float>.alignment == 0 {
            pointer = base.assumingMemoryBound(to: Float.self)
            owner = view.region.storage
            region = view.region
            allocated = nil
        } else {
            region = nil
            let values = view.floats()
            let p = UnsafeMutablePointer<Float>.allocate(capacity: max(values.count, 1))
            p.initialize(from: values, count: values.count)
            pointer = UnsafePointer(p)
            owner = nil
            allocated = p
        }
    }

    /// Owned values computed at load time (position projections, split weights).
    init(values: [Float]) {
        count = values.count
        region = nil
        let p = UnsafeMutablePointer<Float>.allocate(capacity: max(values.count, 1))
        p.initialize(from: values, count: values.count)
        pointer = UnsafePointer(p)
        owner = nil
        allocated = p
    }

    /// An owned buffer filled by `fill`.
    /// `fill` gets zeroed memory, or, with `zeroed: false`, memory it must write in full.
    init(count: Int, zeroed: Bool = true, fill: (UnsafeMutablePointer<Float>) -> Void) {
        self.count = count
        region = nil
        let p = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
        if zeroed { p.initialize(repeating: 0, count: max(count, 1)) }
        fill(p)
        pointer = UnsafePointer(p)
        owner = nil
        allocated = p
    }

    deinit { allocated?.deallocate() }

    subscript(i: Int) -> Float { pointer[i] }
    var array: [Float] { Array(UnsafeBufferPointer(start: pointer, count: count)) }
}
