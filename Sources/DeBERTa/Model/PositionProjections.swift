import Synchronization

/// Per layer, the key-side (c2p) and query-side (p2c) projections of the relative-position table, kept
/// for the rows the calls so far have reached. They depend only on the weights, so they are computed once,
/// on the first call that needs them, and only for the rows its length reaches (a sequence of 128 tokens
/// of DeBERTa-v3 reaches 255 of the 512 rows): a longer call later extends them to the hull of both
/// ranges. Each row's projection does not depend on which other rows are computed with it, so the values
/// are the same whatever order the lengths come in. Callable from several threads: one computes, the
/// others wait, and every caller keeps the tables it was given alive for its whole call.
final class PositionProjections: Sendable {
    struct Tables: @unchecked Sendable {
        /// Rows of the relative table held: buffer row r is table row rows.lowerBound + r.
        let rows: Range<Int>
        let keys: [FloatBuffer?]
        let queries: [FloatBuffer?]
    }

    private let table: FloatBuffer
    private let width: Int
    private let keyProjections: [Linear?]
    private let queryProjections: [Linear?]
    private let state = Mutex<Tables?>(nil)

    /// `table` [rows, width]; one optional key and query projection per layer.
    init(table: FloatBuffer, width: Int, keys: [Linear?], queries: [Linear?]) {
        self.table = table
        self.width = width
        keyProjections = keys
        queryProjections = queries
    }

    /// Projections covering table rows `needed` (a superset may come back).
    func tables(covering needed: Range<Int>) -> Tables {
        state.withLock { current -> Tables in
            if let current, current.rows.lowerBound <= needed.lowerBound, current.rows.upperBound >= needed.upperBound {
                return current
            }
            let rows = current.map { min($0.rows.lowerBound, needed.lowerBound) ..< max($0.rows.upperBound, needed.upperBound) } ?? needed
            ComputeContext.current.trace.mark("position projections: rows \(rows.lowerBound) ..< \(rows.upperBound)")
            let input = table.pointer + rows.lowerBound * width
            func project(_ linear: Linear?) -> FloatBuffer? {
                guard let linear else { return nil }
                return FloatBuffer(count: rows.count * linear.outFeatures, zeroed: false) { out in
                    applyLinear(linear, input, rows: rows.count, into: out)
                }
            }
            let made = Tables(rows: rows, keys: keyProjections.map(project), queries: queryProjections.map(project))
            current = made
            ComputeContext.current.trace.mark("position projections done")
            return made
        }
    }
}
