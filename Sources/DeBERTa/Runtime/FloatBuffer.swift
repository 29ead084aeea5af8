import Glibc
import CGemm
import CQuantKernels
import Checkpoint
import Synchronization

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
/// A weight that can be repacked once for a faster kernel (DebertaModel.prepareForRepeatedCalls).
protocol PackableWeight: Sendable {
    func pack()
    var isPacked: Bool { get }
}

public final class QuantizedMatrix: @unchecked Sendable, PackableWeight {
    public let scheme: QuantizationScheme
    public let rows: Int
    /// Logical K (q4 rows are stored padded to a multiple of 32).
    public let cols: Int
    public let codes: UnsafeRawPointer
    public let scales: FloatBuffer
    /// The mapped bytes of the codes, if used in place.
    public let region: ByteRegion?
    /// int8 codes are repacked into dq_gemm_int8_packed's layout (a second, owned copy) by `pack()` when
    /// this CPU has its AVX-512 VNNI kernel (dq_int8_packed_preferred; `RuntimeOptions.packedQuantizedKernels` false turns it off);
    /// until then products pack each thread's columns per call into a scratch buffer. Elsewhere (AVX2,
    /// AVX-VNNI, arm64) the stored codes are used in place by dq_gemm_int8.
    /// q4 codes likewise for dq_gemm_q4_packed where the CPU has AVX-512 VNNI (dq_q4_packed_preferred;
    /// `RuntimeOptions.packedQuantizedKernels` false turns it off; elsewhere dq_gemm_q4 reads the stored codes).
    public var usesPackedKernel: Bool {
        scheme == .int8 ? QuantizedMatrix.packInt8 : QuantizedMatrix.packQ4
    }
    static var packInt8: Bool { dq_int8_packed_preferred() != 0 }
    static var packQ4: Bool { dq_q4_packed_preferred() != 0 }

    /// Bytes of the packed codes (the packed q4 scales follow them in the same memory).
    var packedCodeBytes: Int {
        scheme == .int8 ? dq_int8_packed_size(rows, cols) : dq_q4_packed_size(rows, cols)
    }

    /// Packs rows [o0, o1) of the stored codes (and, for q4, scales) into `codes` / `scales` (a whole packed
    /// matrix of o1 - o0 rows: o0 must be a multiple of 16).
    func packRows(_ o0: Int, _ o1: Int, codes packed: UnsafeMutablePointer<UInt8>, scales packedScales: UnsafeMutablePointer<Float>?) {
        switch scheme {
        case .int8:
            dq_pack_weights_int8(codes.assumingMemoryBound(to: Int8.self) + o0 * cols, o1 - o0, cols, packed)
        case .q4:
            let kp = Int(dq_q4_padded_k(cols))
            dq_pack_weights_q4(codes.assumingMemoryBound(to: UInt8.self) + o0 * kp / 2, scales.pointer + o0 * (kp / 32),
                               o1 - o0, cols, packed, packedScales)
        }
    }
    private let packedCopy = Mutex<LargeMemory?>(nil)
    private let owner: AnyObject?
    private let allocated: UnsafeMutableRawPointer?

    init(scheme: QuantizationScheme, rows: Int, cols: Int, codes view: TensorView, scales: FloatBuffer) {
        self.scheme = scheme
        self.rows = rows
        self.cols = cols
        self.scales = scales
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
        owner = nil
        allocated = p
    }

    var isPacked: Bool { packedCodes != nil }

    /// The packed codes once `pack()` has run (the memory object keeps them alive while held).
    /// The packed q4 scales (after the packed codes) once packed.
    var packedScales: UnsafePointer<Float>? {
        guard scheme == .q4, let (codes, _) = packedCodes else { return nil }
        return UnsafeRawPointer(codes + packedCodeBytes).assumingMemoryBound(to: Float.self)
    }

    var packedCodes: (UnsafePointer<UInt8>, LargeMemory)? {
        packedCopy.withLock { memory in memory.map { (UnsafePointer($0.pointer.assumingMemoryBound(to: UInt8.self)), $0) } }
    }

    /// Packs the int8 codes (panels split over the compute threads) unless done or not wanted; the mapped
    /// stored codes then leave the resident set (row lookups may still read them).
    func pack() {
        guard usesPackedKernel else { return }
        packedCopy.withLock { current in
            guard current == nil else { return }
            let rows = rows, cols = cols, codeBytes = packedCodeBytes
            let scaleFloats = scheme == .q4 ? dq_q4_packed_scales_size(rows, cols) : 0
            let memory = LargeMemory(max(codeBytes + scaleFloats * 4, 64))
            let packed = memory.pointer.bindMemory(to: UInt8.self, capacity: max(codeBytes, 64))
            let packedScales = scheme == .q4 ? (memory.pointer + codeBytes).bindMemory(to: Float.self, capacity: scaleFloats) : nil
            let panel = 16
            let panelBytes = scheme == .int8 ? dq_int8_packed_size(panel, cols) : dq_q4_packed_size(panel, cols)
            let panelScales = scheme == .q4 ? dq_q4_packed_scales_size(panel, cols) : 0
            parallelPanels(rows: rows, panel: panel) { o0, o1 in
                self.packRows(o0, o1, codes: packed + o0 / panel * panelBytes, scales: packedScales.map { $0 + o0 / panel * panelScales })
            }
            region?.releaseResidentPages()
            current = memory
        }
    }

    deinit { allocated?.deallocate() }

    /// Bytes of codes per row and scales per row.
    public var rowBytes: Int { scheme == .int8 ? cols : scheme.storedShapes(n: 1, k: cols).codes[1] }
    public var scalesPerRow: Int { scheme == .int8 ? 1 : scheme.storedShapes(n: 1, k: cols).scales[1] }
}

/// An f32 weight [rows, cols] of a linear layer for the CGemm kernels. Until `pack()` it is multiplied as
/// stored (cg_gemm_unpacked packs a chunk of columns at a time into a small scratch buffer); `pack()` repacks
/// it once into the panel layout (cg_pack_weights), after which products read the packed copy and the stored
/// rows are let go (a mapped original leaves the resident set, an owned copy is freed). Both ways compute
/// the same bits. The model packs its weights once a second call shows it is being reused
/// (DebertaModel.prepareForRepeatedCalls): a one-shot command pays neither for packing nor for the page
/// faults of a second copy of the weights, which took 100-220 ms of a 0.6 s first output (f32 v3-base).
public final class PackedMatrix: Sendable, PackableWeight {
    public let rows: Int
    public let cols: Int

    /// What a product reads; holding it keeps that memory alive for the product's duration.
    enum Operand: @unchecked Sendable {
        case stored(FloatBuffer)
        case packed(UnsafePointer<Float>, LargeMemory)
    }

    private let state: Mutex<Operand>

    init(_ w: FloatBuffer, rows: Int, cols: Int) {
        self.rows = rows
        self.cols = cols
        state = Mutex(.stored(w))
    }

    var operand: Operand { state.withLock { $0 } }

    var isPacked: Bool {
        if case .packed = operand { return true }
        return false
    }

    /// Packs (panels split over the compute threads) unless already packed. Products running meanwhile on
    /// other threads keep reading the stored rows they started with.
    func pack() {
        state.withLock { current in
            guard case let .stored(w) = current else { return }
            let count = cg_packed_size(rows, cols)
            let memory = LargeMemory(max(count, 16) * 4)
            let packed = memory.pointer.bindMemory(to: Float.self, capacity: max(count, 16))
            let stride = cg_panel_stride(cols), panel = Int(CG_PANEL), cols = cols
            parallelPanels(rows: rows, panel: panel) { o0, o1 in
                cg_pack_weights(w.pointer + o0 * cols, o1 - o0, cols, packed + o0 / panel * stride)
            }
            w.region?.releaseResidentPages()
            current = .packed(UnsafePointer(packed), memory)
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
