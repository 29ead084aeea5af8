import CGemm

/// A linear layer's weight [rows, cols] in bf16 for the bf16 products (`RuntimeOptions.precision == .bf16`):
/// converted once at load from the float store (round to nearest even) straight into CGemm's bf16 panel layout
/// (cgb_pack_weights: panels of 48 output features, pairs of k in one 32-bit word), half the bytes of the f32
/// copy. The mapped f32 original then leaves the resident set.
final class BF16Matrix: @unchecked Sendable {
    let rows: Int
    let cols: Int
    let packed: UnsafePointer<UInt32>
    private let memory: LargeMemory

    init(_ w: FloatBuffer, rows: Int, cols: Int) {
        self.rows = rows
        self.cols = cols
        let words = cgb_packed_words(rows, cols)
        memory = LargeMemory(max(words, 16) * 4)
        let p = memory.pointer.bindMemory(to: UInt32.self, capacity: max(words, 16))
        let panel = Int(CGB_PANEL)
        parallelPanels(rows: rows, panel: panel) { o0, o1 in
            cgb_pack_panels(w.pointer, rows, cols, cols, p, o0 / panel, (o1 + panel - 1) / panel)
        }
        w.region?.releaseResidentPages()
        packed = UnsafePointer(p)
    }

    /// W[o, j] as f32 (the bf16 value), for row copies and tests.
    func value(_ o: Int, _ j: Int) -> Float {
        let pairs = cgb_pairs(cols), panel = Int(CGB_PANEL)
        let word = packed[o / panel * panel * pairs + (j / 2) * panel + o % panel]
        return cgb_to_f32(UInt16(truncatingIfNeeded: j % 2 == 0 ? word : word >> 16))
    }
}
