import CGemm
import Synchronization

/// An f32 weight [rows, cols] of a linear layer for the CGemm kernels. Until `pack()` it is multiplied as
/// stored (cg_gemm_unpacked packs a chunk of columns at a time into a small scratch buffer); `pack()` repacks
/// it once into the panel layout (cg_pack_weights), after which products read the packed copy and the stored
/// rows are let go (a mapped original leaves the resident set, an owned copy is freed). Both ways compute
/// the same bits. The model packs its weights once a second call shows it is being reused
/// (DebertaModel.prepareForRepeatedCalls): a one-shot command pays neither for packing nor for the page
/// faults of a second copy of the weights, which took 100-220 ms of a 0.6 s first output (f32 v3-base).
final class PackedMatrix: Sendable, PackableWeight {
    let rows: Int
    let cols: Int

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
