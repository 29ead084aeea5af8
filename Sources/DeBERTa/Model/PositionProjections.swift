import CKernels
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
        /// Rows of the relative table held: column c of a head's block is table row rows.lowerBound + c.
        let rows: Range<Int>
        /// Per layer, the key-side and query-side projections transposed per head as the f32 heads read them
        /// (dk_attention_position_transposed): head h's d rows × `rows.count` at h · d · rows.count.
        let keys: [FloatBuffer?]
        let queries: [FloatBuffer?]
        /// With bf16 attention, the same projections as the bf16 head reads them (dk_attention_bf16_position_words):
        /// per head, (d + 1)/2 rows of words × `rows.count` (nil otherwise).
        let keyWords: [FloatBuffer?]
        let queryWords: [FloatBuffer?]
        let headFloats: Int
        let headWords: Int

        /// Head h's transposed rows of a layer's keys / queries, from table row `first`.
        func transposed(_ buffer: FloatBuffer?, head h: Int, fromRow first: Int) -> UnsafePointer<Float>? {
            buffer.map { $0.pointer + h * headFloats + (first - rows.lowerBound) }
        }

        /// Head h's words of a layer's keyWords / queryWords, from table row `first`.
        func words(_ buffer: FloatBuffer?, head h: Int, fromRow first: Int) -> UnsafePointer<UInt32>? {
            buffer.map { UnsafeRawPointer($0.pointer).assumingMemoryBound(to: UInt32.self) + h * headWords + (first - rows.lowerBound) }
        }
    }

    private let table: FloatBuffer
    private let width: Int
    private let heads: Int, headSize: Int
    private let keyProjections: [Linear?]
    private let queryProjections: [Linear?]
    private let state = Mutex<Tables?>(nil)

    /// `table` [rows, width]; one optional key and query projection per layer.
    init(table: FloatBuffer, width: Int, heads: Int, headSize: Int, keys: [Linear?], queries: [Linear?]) {
        self.table = table
        self.width = width
        (self.heads, self.headSize) = (heads, headSize)
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
            let headWords = (headSize + 1) / 2 * rows.count, headFloats = headSize * rows.count
            let bf16 = ComputeContext.current.attentionInBF16
            // One layer's projection at a time: projected, then kept transposed (and as bf16 words).
            func made(_ linear: Linear?) -> (FloatBuffer?, FloatBuffer?) {
                guard let projected = project(linear) else { return (nil, nil) }
                return (transposed(projected, rows: rows.count, headFloats: headFloats),
                        bf16 ? positionWords(projected, rows: rows.count, headWords: headWords) : nil)
            }
            let keys = keyProjections.map(made), queries = queryProjections.map(made)
            let made = Tables(rows: rows, keys: keys.map(\.0), queries: queries.map(\.0), keyWords: keys.map(\.1),
                              queryWords: queries.map(\.1), headFloats: headFloats, headWords: headWords)
            current = made
            ComputeContext.current.trace.mark("position projections done")
            return made
        }
    }

    /// A projection [rows, heads · d] as the f32 heads read it: per head, its d columns transposed into d rows × rows.
    private func transposed(_ projected: FloatBuffer, rows: Int, headFloats: Int) -> FloatBuffer {
        let d = headSize, width = heads * d
        return FloatBuffer(count: heads * headFloats, zeroed: false) { out in
            let workers = max(1, min(ComputeThreads.count, heads))
            parallel(workers) { w in
                for h in Swift.stride(from: w, to: heads, by: workers) {
                    _ = dk_attention_position_transposed(projected.pointer + h * d, rows, d, width, out + h * headFloats, rows)
                }
            }
        }
    }

    /// A projection [rows, heads · d] as the bf16 head reads it: per head, its d columns rounded and transposed
    /// into (d + 1)/2 rows of words × rows, the heads split over the compute threads. nil when the kernels
    /// cannot run (a later model lowered the process-wide kernel cap): the heads then read the f32 rows.
    private func positionWords(_ projected: FloatBuffer, rows: Int, headWords: Int) -> FloatBuffer? {
        let d = headSize, width = heads * d
        let failed = Atomic<Int>(0)
        let words = FloatBuffer(count: heads * headWords, zeroed: false) { out in
            let words = UnsafeMutableRawPointer(out).assumingMemoryBound(to: UInt32.self)
            let workers = max(1, min(ComputeThreads.count, heads))
            let stage = Activations(workers * headWords, zeroed: false)
            let stages = UnsafeMutableRawPointer(stage.pointer).assumingMemoryBound(to: UInt32.self)
            parallel(workers) { w in
                for h in Swift.stride(from: w, to: heads, by: workers)
                where dk_attention_bf16_position_words(projected.pointer + h * d, rows, d, width, words + h * headWords, rows,
                                                       stages + w * headWords) != 1 {
                    failed.add(1, ordering: .relaxed)
                }
            }
            withExtendedLifetime(stage) {}
        }
        return failed.load(ordering: .relaxed) == 0 ? words : nil
    }
}
