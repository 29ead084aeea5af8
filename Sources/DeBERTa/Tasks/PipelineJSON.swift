import Checkpoint
import Foundation

/// The JSON of each task's value, as transformers' pipeline returns it for one input: what the text
/// commands print with `--json` and what `deberta serve` answers.
public enum PipelineJSON {
    /// A score with every digit of its shortest round-trip form (fixed decimals would hide small scores).
    public static func score(_ x: Double) -> JSONValue { x.isFinite ? .number(x, isInteger: false, text: "\(x)") : .null }
    public static func float(_ x: Float) -> JSONValue { x.isFinite ? .number(Double(x), isInteger: false, text: "\(x)") : .null }
    public static func span(_ r: Range<Int>?) -> JSONValue { r.map { .array([.int($0.lowerBound), .int($0.upperBound)]) } ?? .null }

    /// text-classification: `[{label, score}]`, best first.
    public static func labelScores(_ scores: [LabelScore]) -> JSONValue {
        .array(scores.map { .object([("label", .string($0.label)), ("score", score($0.score))]) })
    }

    /// fill-mask: a list of `{score, token, token_str, sequence}`; a list of such lists for several masks.
    public static func fillMask(_ r: FillMaskResult) -> JSONValue {
        let lists: [JSONValue] = r.masks.map { m in
            .array(m.predictions.map { p in
                .object([("score", score(p.score)), ("token", .int(p.id)), ("token_str", .string(p.tokenStr)), ("sequence", .string(p.sequence))])
            })
        }
        return lists.count == 1 ? lists[0] : .array(lists)
    }

    /// zero-shot-classification: `{sequence, labels, scores}`.
    public static func zeroShot(_ r: ZeroShotResult) -> JSONValue {
        .object([("sequence", .string(r.sequence)), ("labels", .array(r.labels.map { .string($0) })), ("scores", .array(r.scores.map(score)))])
    }

    /// token-classification: `[{entity_group, score, word, start, end}]`, or per token
    /// `[{entity, score, index, word, start, end}]` (aggregation none).
    public static func entities(_ entities: [Entity]) -> JSONValue {
        .array(entities.map { e in
            if let index = e.index {
                return .object([("entity", .string(e.label)), ("score", score(e.score)), ("index", .int(index)), ("word", .string(e.word)),
                                ("start", .int(e.start)), ("end", .int(e.end))])
            }
            return .object([("entity_group", .string(e.label)), ("score", score(e.score)), ("word", .string(e.word)), ("start", .int(e.start)), ("end", .int(e.end))])
        })
    }

    /// question-answering: `{score, start, end, answer}`; a list of them when top_k > 1 gives several.
    public static func answers(_ answers: [Answer]) -> JSONValue {
        let objects: [JSONValue] = answers.map { .object([("score", score($0.score)), ("start", .int($0.start)), ("end", .int($0.end)), ("answer", .string($0.answer))]) }
        return objects.count == 1 ? objects[0] : .array(objects)
    }

    /// feature-extraction, pooled: the vector.
    public static func embedding(_ v: [Float]) -> JSONValue { .array(v.map(float)) }
}
