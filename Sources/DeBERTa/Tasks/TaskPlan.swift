import Checkpoint
import Foundation
import Tokenizers

/// What a forward call computes for the sequences of a plan.
public enum ForwardKind: Hashable, Sendable {
    /// The last hidden state only (embeddings).
    case hidden
    /// The task head's outputs (classification, token classification, QA).
    case head
    /// Vocabulary logits of the [MASK] tokens only, from the Enhanced Mask Decoder or the MLM head.
    case maskedLM(MaskDecoder)
}

/// One sequence's share of a forward call: for each output, its values and width. Token outputs hold the
/// sequence's own rows ([length, width], padding dropped), per-sequence outputs one row ([width]), masked-LM
/// logits one row per [MASK] of the sequence ([masks, vocabulary]).
public struct SequenceOutputs: Sendable {
    public var values: [String: [Float]] = [:]
    public var widths: [String: Int] = [:]
    public init() {}
    public subscript(name: String) -> [Float]? { values[name] }
    public func width(_ name: String) -> Int? { widths[name] }
}

/// A task split where the forward calls go: the encoded sequences, what the forward computes, and the
/// step that turns each sequence's outputs into the task's value. `TextModel.run` runs a plan in chunks
/// of `batchSize`; the server's batcher runs the sequences of many plans together. Both give the same bits:
/// a sequence's outputs do not depend on what it is batched or padded with (ForwardBatchingTests).
public struct TaskPlan<Value>: Sendable {
    public var sequences: [EncodedInput]
    public var kind: ForwardKind
    public var finish: @Sendable ([SequenceOutputs]) throws -> Value

    public init(sequences: [EncodedInput], kind: ForwardKind, finish: @escaping @Sendable ([SequenceOutputs]) throws -> Value) {
        self.sequences = sequences
        self.kind = kind
        self.finish = finish
    }

    /// Tokens of the sequences (their own lengths, no padding).
    public var tokens: Int { sequences.reduce(0) { $0 + $1.length } }

    /// The same plan with its value mapped.
    public func map<Other>(_ transform: @escaping @Sendable (Value) throws -> Other) -> TaskPlan<Other> {
        let finish = self.finish
        return TaskPlan<Other>(sequences: sequences, kind: kind) { try transform(try finish($0)) }
    }
}

extension TextModel {
    /// Runs a plan here: its sequences in forward calls of at most `batchSize`, then its finishing step.
    public func run<Value>(_ plan: TaskPlan<Value>) throws -> Value {
        var outputs: [SequenceOutputs] = []
        outputs.reserveCapacity(plan.sequences.count)
        for start in stride(from: 0, to: plan.sequences.count, by: batchSize) {
            outputs += try forward(Array(plan.sequences[start ..< min(start + batchSize, plan.sequences.count)]), kind: plan.kind)
        }
        return try plan.finish(outputs)
    }

    /// One forward call over `sequences` (packed, each at its own length), split back into each sequence's
    /// outputs: the bits every sequence gets alone.
    public func forward(_ sequences: [EncodedInput], kind: ForwardKind) throws -> [SequenceOutputs] {
        guard !sequences.isEmpty else { return [] }
        let batch = encoder.packed(sequences)
        let B = batch.batch, segments = batch.segments
        var maskRows: [[Int]] = []
        let out: ModelOutputs
        switch kind {
        case .hidden:
            out = try model.forward(batch, head: false)
        case .head:
            out = try model.forward(batch)
        case let .maskedLM(decoder):
            guard let maskId = encoder.special.mask else { throw DebertaError(.task, file: "", "the tokenizer has no [MASK] token") }
            maskRows = sequences.enumerated().map { b, e in e.ids.indices.filter { e.ids[$0] == maskId }.map { segments[b].start + $0 } }
            out = try model.forward(batch, enhancedMaskDecoder: decoder == .emd, maskedLMRows: maskRows.flatMap { $0 })
        }
        var result = [SequenceOutputs](repeating: SequenceOutputs(), count: B)
        for output in out.outputs {
            let shape = output.shape
            if case .maskedLM = kind, output.name == "logits" || output.name == "emd_logits", shape.count == 2 {
                // [masked rows, V], the rows of each sequence in turn
                let V = shape[1]
                var row = 0
                for b in 0 ..< B {
                    let n = maskRows[b].count
                    result[b].values[output.name] = Array(output.values[row * V ..< (row + n) * V])
                    result[b].widths[output.name] = V
                    row += n
                }
            } else if shape.count == 2, shape[0] == batch.rows, output.name != "logits" || ![.sequenceClassification, .multipleChoice].contains(model.layout.head) {
                // per token: [rows, W]
                let W = shape[1]
                for (b, (start, length)) in segments.enumerated() {
                    result[b].values[output.name] = Array(output.values[start * W ..< (start + length) * W])
                    result[b].widths[output.name] = W
                }
            } else if shape == [batch.rows] {
                // one value per token (start/end logits, replaced-token logits)
                for (b, (start, length)) in segments.enumerated() {
                    result[b].values[output.name] = Array(output.values[start ..< start + length])
                    result[b].widths[output.name] = 1
                }
            } else if shape.count == 2, shape[0] == B {
                let W = shape[1]
                for b in 0 ..< B {
                    result[b].values[output.name] = Array(output.values[b * W ..< (b + 1) * W])
                    result[b].widths[output.name] = W
                }
            }
        }
        return result
    }
}

extension SequenceOutputs {
    /// The output `name`, or the task error that the model did not produce it.
    func require(_ name: String) throws -> [Float] {
        guard let v = values[name] else { throw DebertaError(.task, file: "", "the model produced no \(name)") }
        return v
    }
}
