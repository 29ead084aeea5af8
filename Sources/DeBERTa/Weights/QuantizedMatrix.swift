import CQuantKernels
import Checkpoint
import Synchronization

/// A weight that can be repacked once for a faster kernel (DebertaModel.prepareForRepeatedCalls).
protocol PackableWeight: Sendable {
    func pack()
    var isPacked: Bool { get }
}

/// Quantized codes and scales of an [rows, cols] matrix (QuantizationScheme), used in place from the
/// mapped file when aligned, otherwise copied once at load.
final class QuantizedMatrix: @unchecked Sendable, PackableWeight {
    let scheme: QuantizationScheme
    let rows: Int
    /// Logical K (q4 rows are stored padded to a multiple of 32).
    let cols: Int
    let codes: UnsafeRawPointer
    let scales: FloatBuffer
    /// The mapped bytes of the codes, if used in place.
    let region: ByteRegion?
    /// int8 codes are repacked into dq_gemm_int8_packed's layout (a second, owned copy) by `pack()` when
    /// this CPU has its AVX-512 VNNI kernel (dq_int8_packed_preferred; `RuntimeOptions.packedQuantizedKernels` false turns it off);
    /// until then products pack each thread's columns per call into a scratch buffer. Elsewhere (AVX2,
    /// AVX-VNNI, arm64) the stored codes are used in place by dq_gemm_int8.
    /// q4 codes likewise for dq_gemm_q4_packed where the CPU has AVX-512 VNNI (dq_q4_packed_preferred;
    /// `RuntimeOptions.packedQuantizedKernels` false turns it off; elsewhere dq_gemm_q4 reads the stored codes).
    var usesPackedKernel: Bool {
        scheme.kernels.packedPreferred()
    }
    static var packInt8: Bool { QuantizedKernels.int8.packedPreferred() }
    static var packQ4: Bool { QuantizedKernels.q4.packedPreferred() }

    /// Bytes of the packed codes (the packed q4 scales follow them in the same memory).
    var packedCodeBytes: Int {
        scheme.kernels.packedSize(rows, cols)
    }

    /// Packs rows [o0, o1) of the stored codes (and, for q4, scales) into `codes` / `scales` (a whole packed
    /// matrix of o1 - o0 rows: o0 must be a multiple of 16).
    func packRows(_ o0: Int, _ o1: Int, codes packed: UnsafeMutablePointer<UInt8>, scales packedScales: UnsafeMutablePointer<Float>?) {
        scheme.kernels.pack(codes + o0 * rowBytes, scales.pointer + o0 * scalesPerRow, o1 - o0, cols, packed, packedScales)
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
            let kernels = scheme.kernels
            let scaleFloats = kernels.packedScalesSize(rows, cols)
            let memory = LargeMemory(max(codeBytes + scaleFloats * 4, 64))
            let packed = memory.pointer.bindMemory(to: UInt8.self, capacity: max(codeBytes, 64))
            let packedScales = kernels.packedScalesArePacked ? (memory.pointer + codeBytes).bindMemory(to: Float.self, capacity: scaleFloats) : nil
            let panel = 16
            let panelBytes = kernels.packedSize(panel, cols), panelScales = kernels.packedScalesSize(panel, cols)
            parallelPanels(rows: rows, panel: panel) { o0, o1 in
                self.packRows(o0, o1, codes: packed + o0 / panel * panelBytes, scales: packedScales.map { $0 + o0 / panel * panelScales })
            }
            region?.releaseResidentPages()
            current = memory
        }
    }

    deinit { allocated?.deallocate() }

    /// Bytes of codes per row and scales per row.
    var rowBytes: Int { scheme.kernels.rowBytes(cols) }
    var scalesPerRow: Int { scheme.kernels.scalesPerRow(cols) }
}
