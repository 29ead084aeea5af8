import Checkpoint
import Foundation
import XCTest
@testable import DeBERTa

/// The server's batcher relies on this: a sequence's outputs are the same bits alone, in a batch of equal
/// lengths, padded among longer and shorter sequences, and packed (no padding) among them, for every
/// family and head, float and quantized.
final class ForwardBatchingTests: XCTestCase {
    func check(_ model: DebertaModel, _ name: String) throws {
        let V = model.config.vocabSize
        let limit = model.config.maxPositionEmbeddings  // within the Enhanced Mask Decoder's positions
        let lengths = [7, 19, 19, 29, min(60, limit), 3, min(50, limit), 1]
        let sequences = lengths.enumerated().map { s, n in (0 ..< n).map { 5 + ($0 * 37 + s * 11) % (V - 5) } }
        let T = lengths.max()!
        var ids: [Int] = [], mask: [Int] = []
        for s in sequences {
            ids += s + [Int](repeating: 0, count: T - s.count)
            mask += [Int](repeating: 1, count: s.count) + [Int](repeating: 0, count: T - s.count)
        }
        let padded = try model.forward(ModelInputs(inputIds: ids, attentionMask: mask, batch: sequences.count, length: T))
        let equal = try model.forward(ModelInputs(inputIds: sequences[1] + sequences[2], attentionMask: nil, batch: 2, length: 19))
        let packed = try model.forward(ModelInputs(packed: sequences))
        let starts = lengths.indices.map { lengths[..<$0].reduce(0, +) }, rows = lengths.reduce(0, +)
        var compared = 0
        for (b, s) in sequences.enumerated() {
            let alone = try model.forward(ModelInputs(inputIds: s, attentionMask: nil, batch: 1, length: s.count))
            for output in alone.outputs {
                guard let batched = padded[output.name] else { XCTFail("\(name): no \(output.name) in the batch"); continue }
                let own: [Float], fromBatch: [Float]
                if output.shape.count == 3 {
                    let W = output.shape[2]
                    own = output.values
                    fromBatch = Array(batched.values[b * T * W ..< (b * T + s.count) * W])
                    if b == 1 || b == 2, let e = equal[output.name] {
                        XCTAssertTrue(Array(e.values[(b - 1) * 19 * W ..< ((b - 1) * 19 + 19) * W]) == own, "\(name) \(output.name) row \(b): an equal-length batch changed the bits")
                    }
                } else if output.shape.count == 2, output.shape[0] == 1, batched.shape == [sequences.count, output.shape[1]] {
                    let W = output.shape[1]
                    own = output.values
                    fromBatch = Array(batched.values[b * W ..< (b + 1) * W])
                } else if output.shape == [1, s.count], batched.shape == [sequences.count, T] {
                    own = output.values
                    fromBatch = Array(batched.values[b * T ..< b * T + s.count])
                } else { continue }
                compared += own.count
                let differing = zip(own, fromBatch).filter { $0.0.bitPattern != $0.1.bitPattern }.count
                XCTAssertEqual(differing, 0, "\(name) \(output.name) row \(b) (length \(s.count) padded to \(T)): \(differing) values differ from the sequence alone")
                // Packed: per-token outputs are [rows, W] or [rows], per-sequence ones [B, W].
                guard let p = packed[output.name] else { XCTFail("\(name): no \(output.name) in the packed call"); continue }
                let fromPacked: [Float]
                if output.shape.count == 3 {
                    let W = output.shape[2]
                    XCTAssertEqual(p.shape, [rows, W], "\(name) \(output.name)")
                    fromPacked = Array(p.values[starts[b] * W ..< (starts[b] + s.count) * W])
                } else if output.shape == [1, s.count], p.shape == [rows] {
                    fromPacked = Array(p.values[starts[b] ..< starts[b] + s.count])
                } else {
                    let W = output.shape[1]
                    XCTAssertEqual(p.shape, [sequences.count, W], "\(name) \(output.name)")
                    fromPacked = Array(p.values[b * W ..< (b + 1) * W])
                }
                let differingPacked = zip(own, fromPacked).filter { $0.0.bitPattern != $0.1.bitPattern }.count
                XCTAssertEqual(fromPacked.count, own.count, "\(name) \(output.name) row \(b)")
                XCTAssertEqual(differingPacked, 0, "\(name) \(output.name) row \(b) (length \(s.count), packed): \(differingPacked) values differ from the sequence alone")
            }
        }
        XCTAssertGreaterThan(compared, 0, name)
    }

    func testPaddedBatchesGiveTheBitsOfEachSequenceAlone() throws {
        for name in ["v3-mlm", "v1-mlm", "v2-conv-seqcls", "v2-sep-c2p-tokcls", "v2-qa-sharded", "v2-tokcls-relative", "v3-rtd", "v1-seqcls-noarch"] {
            try check(try DebertaModel(path: repositoryRoot + "/Fixtures/models/" + name), name)
        }
    }

    func testQuantizedStoresToo() throws {
        let dir = try temporaryDirectory(prefix: "deberta-batching")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for (name, scheme) in [("v3-mlm", QuantizationScheme.int8), ("v2-conv-seqcls", .int8), ("v2-sep-c2p-tokcls", .q4)] {
            let out = dir + "/" + name + "-" + scheme.rawValue
            _ = try Converter.convert(source: repositoryRoot + "/Fixtures/models/" + name, destination: out, dtype: nil, quantization: scheme)
            try check(try DebertaModel(path: out), name + " " + scheme.rawValue)
        }
    }

    /// The same under the AVX2 and scalar kernel caps, which an AVX-512 machine otherwise never runs here: on an
    /// AVX2-only CPU (Zen 3) the attention scores of a padded sequence once took another rounding in the key tail.
    func testUnderTheAVX2AndScalarCaps() throws {
        defer { RuntimeOptions().configureKernels() }
        for kernels in [RuntimeOptions.Kernels.avx2, .scalar] {
            for name in ["v3-mlm", "v1-mlm", "v2-sep-c2p-tokcls"] {
                let model = try DebertaModel(path: repositoryRoot + "/Fixtures/models/" + name, options: RuntimeOptions(kernels: kernels))
                try check(model, name + " " + kernels.rawValue)
            }
        }
    }

    func testBF16Too() throws {
        try check(try DebertaModel(path: repositoryRoot + "/Fixtures/models/v3-mlm", precision: .bf16), "v3-mlm bf16")
    }

    func testMalformedPackedInputsAreClearErrors() throws {
        let model = try DebertaModel(path: repositoryRoot + "/Fixtures/models/v3-mlm")
        var short = ModelInputs(packed: [[5, 6, 7], [8]])
        short.inputIds.removeLast()
        var lengths = ModelInputs(packed: [[5, 6, 7], [8]])
        lengths.lengths = [3, 0, 1]
        for (inputs, expected) in [(short, "the sum of the lengths"), (lengths, "sequence lengths")] {
            XCTAssertThrowsError(try model.forward(inputs)) { error in
                guard let e = error as? DebertaError else { return XCTFail("\(error)") }
                XCTAssertEqual(e.kind, .invalidInput)
                XCTAssertTrue(e.message.contains(expected), e.message)
            }
        }
    }

    /// The task layer's two ways of running a plan agree: in chunks here, one sequence per call.
    func testPlansRunInChunksOrAloneAlike() throws {
        let model = try TextModel(path: repositoryRoot + "/Fixtures/models/v2-conv-seqcls", batchSize: 3)
        let items: [(text: String, pair: String?)] = [("A short one.", nil), ("The river flows past the old town at night.", "Water moves."),
                                                      ("x", "y"), ("Children played in the park all afternoon long.", nil)]
        let plan = try model.classifyPlan(items)
        let chunked = try model.run(plan)
        let alone = try plan.finish(try plan.sequences.flatMap { try model.forward([$0], kind: plan.kind) })
        XCTAssertEqual(chunked.map { $0.map(\.score) }, alone.map { $0.map(\.score) })
        XCTAssertEqual(chunked.map { $0.map(\.label) }, alone.map { $0.map(\.label) })
    }
}
