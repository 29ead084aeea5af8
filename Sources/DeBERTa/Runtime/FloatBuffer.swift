import Glibc
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
    /// `fill` gets zeroed memory, or, with `zeroed: false`, memory it must write in full.
    public init(count: Int, zeroed: Bool = true, fill: (UnsafeMutablePointer<Float>) -> Void) {
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
        let memory = LargeMemory(max(packedByteCount, 64))
        let bytes = memory.pointer.bindMemory(to: UInt8.self, capacity: max(packedByteCount, 64))
        fill(bytes)
        packedCodes = UnsafePointer(bytes)
        packedMemory = memory
        allocated = nil
    }

    private var packedMemory: LargeMemory?

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

    private let memory: LargeMemory

    /// Packs `w` (panels split over the compute threads).
    init(_ w: FloatBuffer, rows: Int, cols: Int) {
        self.rows = rows
        self.cols = cols
        let count = cg_packed_size(rows, cols)
        memory = LargeMemory(max(count, 16) * 4)
        let packed = memory.pointer.bindMemory(to: Float.self, capacity: max(count, 16))
        self.packed = packed
        let stride = cg_panel_stride(cols), panel = Int(CG_PANEL)
        parallelPanels(rows: rows, panel: panel) { o0, o1 in
            cg_pack_weights(w.pointer + o0 * cols, o1 - o0, cols, packed + o0 / panel * stride)
        }
    }
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

/// Memory for large buffers that live long or are recycled (packed weights, pooled activations), 64-byte
/// aligned. With DEBERTA_HUGEPAGES=1, buffers from 4 MiB on are 2 MiB-aligned and advised for transparent huge
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
        let huge = useHugePages && byteCount >= 4 << 20
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

    static let useHugePages = getenv("DEBERTA_HUGEPAGES").map { String(cString: $0) == "1" } ?? false
}

/// Splits rows [0, rows) into whole panels of `panel` rows, one contiguous range per compute thread
/// (packing: every panel is written independently).
func parallelPanels(rows: Int, panel: Int, _ body: (Int, Int) -> Void) {
    let panels = (rows + panel - 1) / panel
    let parts = max(1, min(ComputeThreads.count, panels / 4))
    parallel(parts) { part in
        let p0 = panels * part / parts, p1 = panels * (part + 1) / parts
        if p1 > p0 { body(p0 * panel, min(rows, p1 * panel)) }
    }
}
