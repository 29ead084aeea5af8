import CGemm
import Checkpoint
import CKernels
import CQuantKernels
import Dispatch

extension MatrixWeight {
    /// int8-quantized (scheme 1): products take `QuantizedRows` inputs.
    var isInt8: Bool {
        if case let .quantized(q) = self { return q.scheme == .int8 }
        return false
    }

    /// int8 or q4: the product adds a residual after its own epilogue, as a separate f32 add per value.
    var isQuantized: Bool {
        if case .quantized = self { return true }
        return false
    }

    /// Rows `ids` as f32 (embedding lookups), row r of the result at out + r · width: copies of f32 rows or
    /// the dequantized codes. Mapped tables are read with pread, gathered per call (ByteRegion.copy(pieces:)):
    /// a lookup must not map whole page-cache folios into the process, and rows not in memory are fetched
    /// from the disk together.
    func copyRows(_ ids: [Int], width: Int, into out: UnsafeMutablePointer<Float>) {
        switch self {
        case let .packed(p):
            switch p.operand {
            case let .packed(packed, memory):
                // packed[panel · S + k · 24 + j] = W[24 · panel + j, k] (CGemm's layout)
                let stride = cg_panel_stride(p.cols)
                withExtendedLifetime(memory) {
                    for (r, i) in ids.enumerated() {
                        let panel = i / Int(CG_PANEL), j = i % Int(CG_PANEL)
                        for k in 0 ..< width { out[r * width + k] = packed[panel * stride + k * Int(CG_PANEL) + j] }
                    }
                }
            case let .stored(w):
                MatrixWeight.f32(w).copyRows(ids, width: width, into: out)
            }
        case let .bf16(b):
            for (r, i) in ids.enumerated() {
                for k in 0 ..< width { out[r * width + k] = b.value(i, k) }
            }
        case let .f32(w):
            if let region = w.region {
                region.copy(pieces: ids.enumerated().map { r, i in
                    ByteStorage.Piece(offset: i * width * 4, count: width * 4, destination: out + r * width)
                })
            } else {
                for (r, i) in ids.enumerated() { (out + r * width).update(from: w.pointer + i * width, count: width) }
            }
        case let .quantized(q):
            let rowBytes = q.rowBytes, perRow = q.scalesPerRow, n = ids.count
            let codes = UnsafeMutableRawPointer.allocate(byteCount: max(n * rowBytes, 1), alignment: 64)
            defer { codes.deallocate() }
            let scales = UnsafeMutablePointer<Float>.allocate(capacity: max(n * perRow, 1))
            defer { scales.deallocate() }
            if let region = q.region {
                region.copy(pieces: ids.enumerated().map { r, i in
                    ByteStorage.Piece(offset: i * rowBytes, count: rowBytes, destination: codes + r * rowBytes)
                })
            } else {
                for (r, i) in ids.enumerated() { (codes + r * rowBytes).copyMemory(from: q.codes + i * rowBytes, byteCount: rowBytes) }
            }
            if let region = q.scales.region {
                region.copy(pieces: ids.enumerated().map { r, i in
                    ByteStorage.Piece(offset: i * perRow * 4, count: perRow * 4, destination: UnsafeMutableRawPointer(scales + r * perRow))
                })
            } else {
                for (r, i) in ids.enumerated() { (scales + r * perRow).update(from: q.scales.pointer + i * perRow, count: perRow) }
            }
            for r in 0 ..< n {
                let row = codes + r * rowBytes, rowScales = scales + r * perRow, dst = out + r * width
                q.scheme.kernels.dequantizeWeights(row, rowScales, 1, width, dst)
            }
        }
    }
}
