import CGemm
import Checkpoint

/// Contiguous f32 values a kernel can read: the mapped bytes themselves when the tensor is stored as
/// aligned little-endian f32, otherwise a converted copy made once at load time.
public final class FloatBuffer: @unchecked Sendable {
    public let pointer: UnsafePointer<Float>
    public let count: Int
    /// The mapped bytes this buffer reads in place, if it does.
    public let region: ByteRegion?
    private let owner: AnyObject?
    private let allocated: UnsafeMutablePointer<Float>?

    /// A view of a tensor as f32, in place when possible.
    public init(_ view: TensorView) {
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
    public init(values: [Float]) {
        count = values.count
        region = nil
        let p = UnsafeMutablePointer<Float>.allocate(capacity: max(values.count, 1))
        p.initialize(from: values, count: values.count)
        pointer = UnsafePointer(p)
        owner = nil
        allocated = p
    }

    /// An owned buffer filled by `fill`.
    public init(count: Int, fill: (UnsafeMutablePointer<Float>) -> Void) {
        self.count = count
        region = nil
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

/// Quantized codes and scales of an [rows, cols] matrix (QuantizationScheme), used in place from the
/// mapped file when aligned, otherwise copied once at load.
public final class QuantizedMatrix: @unchecked Sendable {
    public let scheme: QuantizationScheme
    public let rows: Int
    /// Logical K (q4 rows are stored padded to a multiple of 32).
    public let cols: Int
    public let codes: UnsafeRawPointer
    public let scales: FloatBuffer
    /// The mapped bytes of the codes, if used in place.
    public let region: ByteRegion?
    /// An owned second copy of the codes in a kernel's layout, made once at load (int8 weights in the
    /// layout of dq_gemm_int8_packed, see WeightBinder.linear); nil when the codes are only used as stored.
    public let packedCodes: UnsafePointer<UInt8>?
    private let owner: AnyObject?
    private let allocated: UnsafeMutableRawPointer?

    init(scheme: QuantizationScheme, rows: Int, cols: Int, codes view: TensorView, scales: FloatBuffer) {
        self.scheme = scheme
        self.rows = rows
        self.cols = cols
        self.scales = scales
        packedCodes = nil
        let bytes = view.bytes
        if let base = bytes.baseAddress {
            codes = base
            owner = view.region.storage
            region = view.region
            allocated = nil
        } else {
            region = nil
            let p = UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 64)
            codes = UnsafeRawPointer(p)
            owner = nil
            allocated = p
        }
    }

    /// Owned codes built at load (rows regrouped, e.g. v1's in_proj split per head).
    init(scheme: QuantizationScheme, rows: Int, cols: Int, rowBytes: Int, scalesPerRow: Int, fill: (UnsafeMutableRawPointer, UnsafeMutablePointer<Float>) -> Void) {
        self.scheme = scheme
        self.rows = rows
        self.cols = cols
        let p = UnsafeMutableRawPointer.allocate(byteCount: max(rows * rowBytes, 1), alignment: 64)
        var scaleValues = [Float](repeating: 0, count: rows * scalesPerRow)
        scaleValues.withUnsafeMutableBufferPointer { fill(p, $0.baseAddress!) }
        codes = UnsafeRawPointer(p)
        scales = FloatBuffer(values: scaleValues)
        region = nil
        packedCodes = nil
        owner = nil
        allocated = p
    }

    /// `source` with a packed copy of its codes: `packedByteCount` bytes, 64-byte aligned, written by `fill`.
    /// The stored codes stay readable (source is kept alive; row lookups read them).
    init(_ source: QuantizedMatrix, packedByteCount: Int, fill: (UnsafeMutablePointer<UInt8>) -> Void) {
        scheme = source.scheme
        rows = source.rows
        cols = source.cols
        codes = source.codes
        scales = source.scales
        region = source.region
        owner = source
        let p = UnsafeMutableRawPointer.allocate(byteCount: max(packedByteCount, 64), alignment: 64)
        let bytes = p.initializeMemory(as: UInt8.self, repeating: 0, count: max(packedByteCount, 64))
        fill(bytes)
        packedCodes = UnsafePointer(bytes)
        allocated = p
    }

    deinit { allocated?.deallocate() }

    /// Bytes of codes per row and scales per row.
    public var rowBytes: Int { scheme == .int8 ? cols : scheme.storedShapes(n: 1, k: cols).codes[1] }
    public var scalesPerRow: Int { scheme == .int8 ? 1 : scheme.storedShapes(n: 1, k: cols).scales[1] }
}

/// An f32 weight [rows, cols] repacked once at load into the panel layout of the CGemm kernel.
public final class PackedMatrix: @unchecked Sendable {
    public let rows: Int
    public let cols: Int
    public let packed: UnsafeMutablePointer<Float>

    init(_ w: FloatBuffer, rows: Int, cols: Int) {
        self.rows = rows
        self.cols = cols
        let count = cg_packed_size(rows, cols)
        packed = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 16))
        cg_pack_weights(w.pointer, rows, cols, packed)
    }

    deinit { packed.deallocate() }
}

/// A weight matrix [rows, cols] in f32 (as stored, or packed for the GEMM kernel) or quantized.
public enum MatrixWeight: Sendable {
    case f32(FloatBuffer)
    case packed(PackedMatrix)
    case quantized(QuantizedMatrix)
}

/// A linear layer `y = x Wᵀ + b` with W stored [out, in] as transformers stores it.
public struct Linear: Sendable {
    public let weight: MatrixWeight
    public let bias: FloatBuffer?
    public let outFeatures: Int
    public let inFeatures: Int

    public init(weight: MatrixWeight, bias: FloatBuffer?, outFeatures: Int, inFeatures: Int) {
        self.weight = weight
        self.bias = bias
        self.outFeatures = outFeatures
        self.inFeatures = inFeatures
    }

    public init(weight: FloatBuffer, bias: FloatBuffer?, outFeatures: Int, inFeatures: Int) {
        self.init(weight: .f32(weight), bias: bias, outFeatures: outFeatures, inFeatures: inFeatures)
    }
}

/// LayerNorm parameters.
public struct Norm: Sendable {
    public let weight: FloatBuffer
    public let bias: FloatBuffer
    public let eps: Float
}
