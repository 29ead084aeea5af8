import Checkpoint

/// Contiguous f32 values a kernel can read: the mapped bytes themselves when the tensor is stored as
/// aligned little-endian f32, otherwise a converted copy made once at load time.
public final class FloatBuffer: @unchecked Sendable {
    public let pointer: UnsafePointer<Float>
    public let count: Int
    private let owner: AnyObject?
    private let allocated: UnsafeMutablePointer<Float>?

    /// A view of a tensor as f32, in place when possible.
    public init(_ view: TensorView) {
        count = view.elementCount
        if view.dtype == .f32, let base = view.bytes.baseAddress, Int(bitPattern: base) % MemoryLayout<Float>.alignment == 0 {
            pointer = base.assumingMemoryBound(to: Float.self)
            owner = view.region.storage
            allocated = nil
        } else {
            let values = view.floats()
            let p = UnsafeMutablePointer<Float>.allocate(capacity: max(values.count, 1))
            p.initialize(from: values, count: values.count)
            pointer = UnsafePointer(p)
            owner = nil
            allocated = p
        }
    }

    /// Owned values computed at load time (position projections, split weights).
    public init(values: [Float]) {
        count = values.count
        let p = UnsafeMutablePointer<Float>.allocate(capacity: max(values.count, 1))
        p.initialize(from: values, count: values.count)
        pointer = UnsafePointer(p)
        owner = nil
        allocated = p
    }

    /// An owned buffer filled by `fill`.
    public init(count: Int, fill: (UnsafeMutablePointer<Float>) -> Void) {
        self.count = count
        let p = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
        p.initialize(repeating: 0, count: max(count, 1))
        fill(p)
        pointer = UnsafePointer(p)
        owner = nil
        allocated = p
    }

    deinit { allocated?.deallocate() }

    public subscript(i: Int) -> Float { pointer[i] }
    public var array: [Float] { Array(UnsafeBufferPointer(start: pointer, count: count)) }
}

/// A linear layer `y = x Wᵀ + b` with W stored [out, in] as transformers stores it.
public struct Linear: Sendable {
    public let weight: FloatBuffer
    public let bias: FloatBuffer?
    public let outFeatures: Int
    public let inFeatures: Int
}

/// LayerNorm parameters.
public struct Norm: Sendable {
    public let weight: FloatBuffer
    public let bias: FloatBuffer
    public let eps: Float
}
