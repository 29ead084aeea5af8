import CKernels
import Checkpoint
import Foundation
import XCTest
@testable import DeBERTa

/// The runtime against the transformers references of every fixture, at the default tolerance.
final class ReferenceTests: XCTestCase {
    func testEveryFixtureMatchesItsReference() throws {
        for fixture in fixtureModels {
            let model = try DebertaModel(path: fixture.path)
            for reference in ["reference.safetensors", "reference.long.safetensors"] {
                let path = fixture.path + "/" + reference
                guard FileManager.default.fileExists(atPath: path) else { continue }
                let results = try Verifier.verify(model: model, reference: path).comparisons
                XCTAssertFalse(results.isEmpty, path)
                for r in results {
                    XCTAssertNil(r.problem, "\(fixture.name)/\(reference) \(r.name): \(r.problem ?? "")")
                    XCTAssertTrue(r.passed, "\(fixture.name)/\(reference) \(r.name): max abs error \(r.maxAbsError) > \(r.tolerance)")
                    XCTAssertEqual(r.argmaxAgree, r.argmaxRows, "\(fixture.name) \(r.name) argmax")
                }
                if fixture.name == "v3-mlm" && reference == "reference.safetensors" {
                    XCTAssertTrue(results.contains { $0.name == "emd_logits" }, "the v3 reference must check the EMD")
                }
            }
        }
    }

    /// A relative-only model runs on 4 × max_position_embeddings tokens.
    func testLongInputOnRelativeOnlyModel() throws {
        let model = try DebertaModel(path: repositoryRoot + "/Fixtures/models/v3-mlm")
        XCTAssertFalse(model.config.positionBiasedInput)
        let store = try TensorStore.open(weights: repositoryRoot + "/Fixtures/models/v3-mlm/reference.long.safetensors")
        XCTAssertEqual(store["input_ids"]?.shape.last, 4 * model.config.maxPositionEmbeddings)
        let results = try Verifier.verify(model: model, reference: repositoryRoot + "/Fixtures/models/v3-mlm/reference.long.safetensors").comparisons
        XCTAssertTrue(results.allSatisfy { $0.passed && $0.problem == nil })
    }

    /// A sequence alone and inside a padded batch gives the same outputs on its tokens.
    func testPaddingInvariance() throws {
        for name in ["v3-mlm", "v1-mlm", "v2-conv-seqcls", "v2-sep-c2p-tokcls"] {
            let path = repositoryRoot + "/Fixtures/models/" + name
            let model = try DebertaModel(path: path)
            let batch = try InputsFile.read(path + "/reference.safetensors", for: model)
            let full = try model.forward(batch)
            let T = batch.length
            for b in 0 ..< batch.batch {
                let length = batch.attentionMask[b * T ..< (b + 1) * T].reduce(0, +)
                let alone = ModelInputs(
                    inputIds: Array(batch.inputIds[b * T ..< b * T + length]), attentionMask: nil,
                    tokenTypeIds: batch.tokenTypeIds.map { Array($0[b * T ..< b * T + length]) }, batch: 1, length: length)
                let single = try model.forward(alone)
                for output in single.outputs {
                    guard let batched = full[output.name] else { XCTFail(output.name); continue }
                    if output.shape.count == 3 {
                        let width = output.shape[2]
                        for t in 0 ..< length {
                            for c in 0 ..< width {
                                let a = output.values[t * width + c], e = batched.values[(b * T + t) * width + c]
                                XCTAssertEqual(a, e, accuracy: 1e-4 * max(1, abs(e)), "\(name) \(output.name) row \(b) token \(t)")
                            }
                        }
                    } else if output.shape == [1, output.shape.last!] && batched.shape[0] == batch.batch && output.name == "logits" && model.layout.head == .sequenceClassification {
                        for c in 0 ..< output.shape[1] {
                            XCTAssertEqual(output.values[c], batched.values[b * output.shape[1] + c], accuracy: 1e-4, "\(name) logits row \(b)")
                        }
                    }
                }
            }
        }
    }
}

/// Position projections are computed on first use for the rows a length reaches: the outputs of a call must
/// not depend on which lengths came before it.
final class PositionProjectionTests: XCTestCase {
    func testOutputsDoNotDependOnEarlierLengths() throws {
        for name in ["v3-mlm", "v1-mlm", "v2-sep-c2p-tokcls"] {
            let path = repositoryRoot + "/Fixtures/models/" + name
            func inputs(_ length: Int, _ model: DebertaModel) -> ModelInputs {
                ModelInputs(inputIds: (0 ..< length).map { 5 + ($0 * 37) % (model.config.vocabSize - 5) }, batch: 1, length: length)
            }
            let fresh = try DebertaModel(path: path)
            let short = try fresh.forward(inputs(9, fresh))["last_hidden_state"]!.values
            let model = try DebertaModel(path: path)
            let long = min(model.config.positionBiasedInput ? model.config.maxPositionEmbeddings : 4 * model.config.maxPositionEmbeddings, 300)
            _ = try model.forward(inputs(long, model))
            let again = try model.forward(inputs(9, model))["last_hidden_state"]!.values
            XCTAssertTrue(again == short, "\(name): a short call after a long one must give the same bits (max difference \(zip(again, short).map { abs($0 - $1) }.max() ?? -1))")
            let freshLong = try DebertaModel(path: path)
            let longAlone = try freshLong.forward(inputs(long, freshLong))["last_hidden_state"]!.values
            let longAfterShort = try fresh.forward(inputs(long, fresh))["last_hidden_state"]!.values
            XCTAssertTrue(longAfterShort == longAlone, "\(name): a long call after a short one must give the same bits (max difference \(zip(longAfterShort, longAlone).map { abs($0 - $1) }.max() ?? -1))")
        }
    }
}

final class KernelTests: XCTestCase {
    func testLayerNormMatchesDoubleReference() {
        let n = 37
        var x = (0 ..< 3 * n).map { Float(sin(Double($0) * 1.7)) * 3 + 0.5 }
        let residual = (0 ..< 3 * n).map { Float(cos(Double($0))) }
        let gamma = (0 ..< n).map { 1 + Float($0) / 100 }, beta = (0 ..< n).map { Float($0) / 50 - 0.3 }
        let original = x
        dk_layer_norm(&x, 3, n, n, residual, n, gamma, beta, 1e-7)
        for r in 0 ..< 3 {
            let row = (0 ..< n).map { Double(original[r * n + $0]) + Double(residual[r * n + $0]) }
            let mean = row.reduce(0, +) / Double(n)
            let variance = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(n)
            for c in 0 ..< n {
                let expected = (row[c] - mean) / (variance + 1e-7).squareRoot() * Double(gamma[c]) + Double(beta[c])
                XCTAssertEqual(Double(x[r * n + c]), expected, accuracy: 1e-5)
            }
        }
    }

    /// The dispatching LayerNorm (AVX-512 where the CPU has it) against the portable loop: the same f32
    /// operations, double sums in another order, so equal up to an occasional last-bit difference; odd widths
    /// exercise the masked tails, rows with a residual and a leading dimension.
    func testLayerNormMatchesScalarLoop() {
        var state: UInt64 = 7
        func next() -> Float {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: state >> 11) % 2_000_001 - 1_000_000) / 250_000
        }
        var differing = 0, total = 0
        for n in [1, 7, 16, 17, 31, 128, 768, 1000] {
            let rows = 5, ld = n + 3
            let x0 = (0 ..< rows * ld).map { _ in next() + 3 }, residual = (0 ..< rows * ld).map { _ in next() }
            let gamma = (0 ..< n).map { _ in next() }, beta = (0 ..< n).map { _ in next() }
            for withResidual in [false, true] {
                var a = x0, b = x0
                dk_layer_norm(&a, rows, n, ld, withResidual ? residual : nil, ld, gamma, beta, 1e-7)
                dk_layer_norm_scalar(&b, rows, n, ld, withResidual ? residual : nil, ld, gamma, beta, 1e-7)
                for i in 0 ..< rows * ld {
                    total += 1
                    if a[i].bitPattern != b[i].bitPattern {
                        differing += 1
                        XCTAssertEqual(a[i], b[i], accuracy: 4e-6 * max(1, abs(b[i])), "n=\(n) i=\(i)")
                    }
                }
            }
        }
        XCTAssertLessThanOrEqual(differing, total / 1000, "\(differing) of \(total) values differ in their last bits")
    }

    func testActivationsMatchTheirDefinitions() {
        let xs: [Float] = [-6, -3, -1.5, -0.5, 0, 0.25, 1, 2.5, 7]
        func run(_ act: dk_activation) -> [Float] {
            var y = xs
            dk_bias_activation(&y, 1, y.count, y.count, nil, act)
            return y
        }
        for (x, y) in zip(xs, run(DK_ACT_GELU)) {
            XCTAssertEqual(Double(y), 0.5 * Double(x) * (1 + erf(Double(x) / 2.0.squareRoot())), accuracy: 1e-6)
        }
        for (x, y) in zip(xs, run(DK_ACT_GELU_TANH)) {
            let d = Double(x)
            XCTAssertEqual(Double(y), 0.5 * d * (1 + tanh((2 / Double.pi).squareRoot() * (d + 0.044715 * d * d * d))), accuracy: 1e-6)
        }
        for (x, y) in zip(xs, run(DK_ACT_RELU)) { XCTAssertEqual(y, max(x, 0)) }
        for (x, y) in zip(xs, run(DK_ACT_TANH)) { XCTAssertEqual(Double(y), tanh(Double(x)), accuracy: 1e-6) }
        var biased: [Float] = [1, 2, 3, 4]
        dk_bias_activation(&biased, 2, 2, 2, [10, 20], DK_ACT_IDENTITY)
        XCTAssertEqual(biased, [11, 22, 13, 24])
    }

    func testSoftmaxRows() {
        var x: [Float] = [1, 2, 3, 1000, 1000, 1000]
        dk_softmax_rows(&x, 2, 3, 3)
        let e = [exp(1.0), exp(2.0), exp(3.0)]
        for c in 0 ..< 3 { XCTAssertEqual(Double(x[c]), e[c] / e.reduce(0, +), accuracy: 1e-6) }
        for c in 3 ..< 6 { XCTAssertEqual(x[c], 1.0 / 3, accuracy: 1e-6) }
    }

    /// scores + c2p gathered at [i][idx(i,j)] + p2c gathered at [j][idx(i,j)], masked softmax, against a
    /// direct double-precision evaluation of the disentangled score.
    func testDisentangledGatherMaskAndSoftmax() {
        let t = 6, d = 4, rows = 8
        func values(_ n: Int, _ seed: Double) -> [Float] { (0 ..< n).map { Float(sin(Double($0) * seed + seed)) } }
        let q = values(t * d, 0.9), k = values(t * d, 1.3), pk = values(rows * d, 2.1), pq = values(rows * d, 0.7)
        let mask: [UInt8] = [1, 1, 1, 1, 0, 0]
        let index: (Int, Int) -> Int = { i, j in min(max(i - j + rows / 2, 0), rows - 1) }
        let first = 1  // the reachable rows start here: test the shift too
        let span = rows - first
        let scale: Float = 0.37
        func dot(_ a: [Float], _ ai: Int, _ b: [Float], _ bi: Int) -> Double {
            (0 ..< d).reduce(0.0) { $0 + Double(a[ai * d + $1]) * Double(b[bi * d + $1]) }
        }
        var scores = [Float](repeating: 0, count: t * t)
        var c2p = [Float](repeating: 0, count: t * span), p2c = [Float](repeating: 0, count: t * span)
        var rel = [Int32](repeating: 0, count: t * t)
        for i in 0 ..< t {
            for j in 0 ..< t {
                scores[i * t + j] = Float(dot(q, i, k, j))
                rel[i * t + j] = Int32(max(index(i, j), first) - first)
            }
            for r in 0 ..< span {
                c2p[i * span + r] = Float(dot(q, i, pk, r + first)) * scale
                p2c[i * span + r] = Float(dot(k, i, pq, r + first)) * scale
            }
        }
        dk_attention_probabilities(&scores, t, t, scale, c2p, p2c, span, rel, mask)
        for i in 0 ..< t {
            var logits: [Double] = []
            for j in 0 ..< 4 {
                let r = max(index(i, j), first)
                logits.append((dot(q, i, k, j) + dot(q, i, pk, r) + dot(k, j, pq, r)) * Double(scale))
            }
            let m = logits.max()!
            let z = logits.map { exp($0 - m) }.reduce(0, +)
            for j in 0 ..< 4 { XCTAssertEqual(Double(scores[i * t + j]), exp(logits[j] - m) / z, accuracy: 1e-6) }
            XCTAssertEqual(scores[i * t + 4], 0)
            XCTAssertEqual(scores[i * t + 5], 0)
        }
    }
}

final class RelativePositionTests: XCTestCase {
    func testBucketsKeepShortDistancesAndAreOddSymmetric() {
        for r in -127 ... 127 { XCTAssertEqual(RelativePositions.logBucket(r, buckets: 256, maxPosition: 512), r) }
        for r in 1 ... 2000 {
            XCTAssertEqual(RelativePositions.logBucket(-r, buckets: 256, maxPosition: 512), -RelativePositions.logBucket(r, buckets: 256, maxPosition: 512))
        }
        XCTAssertLessThanOrEqual(RelativePositions.logBucket(511, buckets: 256, maxPosition: 512), 255)
    }

    /// Values recorded from transformers' own make_log_bucket_position (Tools/make_fixtures.py).
    func testBucketsMatchTransformers() throws {
        let path = repositoryRoot + "/Fixtures/ops/log_buckets.json"
        guard FileManager.default.fileExists(atPath: path) else { throw XCTSkip("no recorded buckets") }
        let json = try readJSONFile(path)
        let cases = try XCTUnwrap(json["cases"]?.arrayValue)
        var checked = 0
        for c in cases {
            let buckets = try XCTUnwrap(c["bucket_size"]?.intValue), maxPosition = try XCTUnwrap(c["max_position"]?.intValue)
            let distances = try XCTUnwrap(c["relative_positions"]?.arrayValue).compactMap(\.intValue)
            let expected = try XCTUnwrap(c["buckets"]?.arrayValue).compactMap(\.intValue)
            XCTAssertEqual(distances.count, expected.count)
            for (r, e) in zip(distances, expected) {
                XCTAssertEqual(RelativePositions.logBucket(r, buckets: buckets, maxPosition: maxPosition), e, "r=\(r) buckets=\(buckets) max=\(maxPosition)")
                checked += 1
            }
        }
        XCTAssertGreaterThan(checked, 1000)
    }

    func testV1IndicesUseTheCenteredSpan() throws {
        let c = try config(#"{"model_type":"deberta","relative_attention":true,"max_relative_positions":4}"#)
        let idx = RelativePositions.indices(length: 6, family: .deberta, config: c)
        // span = min(6, 4) = 4: rows maxRel - span + clamp(i - j + span, 0, 7) = clamp(i - j + 4, 0, 7)
        for i in 0 ..< 6 { for j in 0 ..< 6 { XCTAssertEqual(Int(idx[i * 6 + j]), min(max(i - j + 4, 0), 7)) } }
        let short = RelativePositions.indices(length: 2, family: .deberta, config: c)
        XCTAssertEqual(short.map(Int.init), [4, 3, 5, 4], "span 2 sits in the middle of the 8-row table")
    }
}

final class ConcurrencyTests: XCTestCase {
    /// One loaded model called from several threads at once gives each caller the single-threaded answer, from
    /// its very first calls on: the position projections (made on first use and extended for a longer length)
    /// and the packing of the weights (at the second call) happen while other calls run. f32 and int8 stores.
    func testConcurrentForwardCalls() throws {
        let source = repositoryRoot + "/Fixtures/models/v3-mlm"
        let int8 = try temporaryDirectory() + "/v3-mlm-int8"
        _ = try Converter.convert(source: source, destination: int8, dtype: nil, quantization: .int8)
        for path in [source, int8] {
            let reference = try DebertaModel(path: path)
            let batch = try InputsFile.read(source + "/reference.safetensors", for: reference)
            // Three lengths: the full batch, and its first sequence cut to 5 and to 17 tokens.
            func cut(_ t: Int) -> ModelInputs {
                ModelInputs(inputIds: Array(batch.inputIds[0 ..< t]), batch: 1, length: t)
            }
            let inputs = [batch, cut(5), cut(min(17, batch.length))]
            let expected = try inputs.map { try reference.forward($0) }
            let model = try DebertaModel(path: path)
            let results = ResultBox(count: 8)
            DispatchQueue.concurrentPerform(iterations: 8) { i in
                var ok = true
                for round in 0 ..< 3 {
                    let which = (i + round) % inputs.count
                    guard let out = try? model.forward(inputs[which]) else { ok = false; continue }
                    ok = ok && out.outputs.allSatisfy { o in
                        o.values.elementsEqual(expected[which][o.name]?.values ?? []) { $0.bitPattern == $1.bitPattern }
                    }
                }
                results.set(i, ok)
            }
            XCTAssertEqual(results.values, [Bool](repeating: true, count: 8), path)
            XCTAssertTrue(model.packableMatrices.allSatisfy { $0.isPacked }, "\(path): packed after the second call")
        }
    }
}

final class ResultBox: @unchecked Sendable {
    private let lock = NSLock()
    private var storage: [Bool]
    init(count: Int) { storage = [Bool](repeating: false, count: count) }
    func set(_ i: Int, _ value: Bool) { lock.lock(); storage[i] = value; lock.unlock() }
    var values: [Bool] { lock.lock(); defer { lock.unlock() }; return storage }
}

final class WeightBindingTests: XCTestCase {
    /// A checkpoint missing one tensor and holding an unknown one: one error naming both.
    func testBindingReportsMissingAndUnexpectedTogether() throws {
        let source = repositoryRoot + "/Fixtures/models/v3-mlm"
        let dir = try temporaryDirectory() + "/broken"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: source + "/config.json", toPath: dir + "/config.json")
        let store = try TensorStore.open(weights: source + "/model.safetensors")
        var tensors = store.tensors.filter { $0.name != "deberta.encoder.layer.1.attention.self.value_proj.bias" }.map { OutputTensor.copying($0) }
        tensors.append(OutputTensor(name: "deberta.encoder.layer.1.attention.self.extra_proj.weight", dtype: .f32, shape: [2]) { $0.initializeMemory(as: UInt8.self, repeating: 0) })
        try SafeTensorsWriter.write(tensors, metadata: [], to: dir + "/model.safetensors")
        let error = assertThrowsDebertaError(.weightsMismatch, file: dir + "/model.safetensors", try DebertaModel(path: dir))
        XCTAssertEqual(error?.weights?.missing, ["encoder.layer.1.attention.self.value_proj.bias"])
        XCTAssertEqual(error?.weights?.unexpected, ["deberta.encoder.layer.1.attention.self.extra_proj.weight"])
        XCTAssertEqual(error?.weights?.misShaped, [])
    }

    /// transformers' DebertaV2Encoder builds encoder.LayerNorm from norm_rel_ebd alone, so a checkpoint without
    /// relative attention still carries it: it loads and runs (nothing reads it); with norm_rel_ebd none the
    /// same tensors are unexpected.
    func testUnusedRelativeEmbeddingNormWithoutRelativeAttention() throws {
        let source = repositoryRoot + "/Fixtures/models/v3-mlm"
        let store = try TensorStore.open(weights: source + "/model.safetensors")
        let tensors = store.tensors.filter { $0.name != "deberta.encoder.rel_embeddings.weight" }.map { OutputTensor.copying($0) }
        XCTAssertTrue(tensors.contains { $0.name == "deberta.encoder.LayerNorm.weight" })
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: source + "/config.json"))) as! [String: Any]
        config["relative_attention"] = false
        config["position_biased_input"] = true
        for (norm, loads) in [("layer_norm", true), ("none", false)] {
            let dir = try temporaryDirectory() + "/no-relative-\(norm)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            config["norm_rel_ebd"] = norm
            try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: dir + "/config.json"))
            try SafeTensorsWriter.write(tensors, metadata: [], to: dir + "/model.safetensors")
            if loads {
                let model = try DebertaModel(path: dir)
                let outputs = try model.forward(ModelInputs(inputIds: [1, 5, 6, 7, 2], batch: 1, length: 5))
                XCTAssertTrue(outputs.outputs.allSatisfy { $0.values.allSatisfy(\.isFinite) })
            } else {
                let error = assertThrowsDebertaError(.weightsMismatch, file: dir + "/model.safetensors", try DebertaModel(path: dir))
                XCTAssertEqual(error?.weights?.unexpected, ["deberta.encoder.LayerNorm.bias", "deberta.encoder.LayerNorm.weight"])
            }
        }
    }
}

final class AttentionKernelTests: XCTestCase {
    func values(_ n: Int, _ seed: Double) -> [Float] { (0 ..< n).map { Float(sin(Double($0) * seed + seed * 3)) } }

    /// The SIMD small-matrix product equals the scalar reference within f32 rounding on odd shapes.
    func testGemmNNMatchesScalarAndDouble() {
        for (m, n, k) in [(1, 1, 1), (3, 17, 5), (4, 16, 64), (13, 33, 7), (128, 128, 64), (5, 200, 31)] {
            let a = values(m * k, 0.37), b = values(k * n, 0.91)
            var fast = [Float](repeating: 0, count: m * n), slow = fast
            dk_gemm_nn(m, n, k, 0.5, a, k, b, n, &fast, n)
            dk_gemm_nn_scalar(m, n, k, 0.5, a, k, b, n, &slow, n)
            for i in 0 ..< m {
                for j in 0 ..< n {
                    var exact = 0.0, magnitude = 0.0
                    for p in 0 ..< k { exact += Double(a[i * k + p]) * Double(b[p * n + j]); magnitude += abs(Double(a[i * k + p]) * Double(b[p * n + j])) }
                    let bound = 0.5 * magnitude * Double(k + 2) * 6e-8 + 1e-30
                    XCTAssertEqual(Double(fast[i * n + j]), 0.5 * exact, accuracy: bound, "\(m)x\(n)x\(k) [\(i),\(j)]")
                    XCTAssertEqual(Double(slow[i * n + j]), 0.5 * exact, accuracy: bound)
                }
            }
        }
    }

    /// Disentangled attention of one head in double: q, k, v [t × ld], pk / pq [rows × ld] (nil: term absent).
    func directAttention(t: Int, d: Int, ld: Int, q: [Float], k: [Float], v: [Float], pk: [Float]?, pq: [Float]?,
                         rel: [Int32], mask: [UInt8], scale: Float) -> [Double] {
        var out = [Double](repeating: 0, count: t * d)
        func dot(_ a: [Float], _ i: Int, _ b: [Float], _ j: Int) -> Double {
            var s = 0.0
            for c in 0 ..< d { s += Double(a[i * ld + c]) * Double(b[j * ld + c]) }
            return s
        }
        let keys = (0 ..< t).filter { mask[$0] != 0 }
        guard !keys.isEmpty else { return out }
        for i in 0 ..< t {
            var logits = [Double](repeating: 0, count: keys.count)
            for (n, j) in keys.enumerated() {
                let r = Int(rel[i * t + j])
                var s = dot(q, i, k, j)
                if let pk { s += dot(q, i, pk, r) }
                if let pq { s += dot(k, j, pq, r) }
                logits[n] = Double(scale) * s
            }
            let m = logits.max()!
            let w = logits.map { Foundation.exp($0 - m) }
            let z = w.reduce(0, +)
            for (n, j) in keys.enumerated() {
                for c in 0 ..< d { out[i * d + c] += w[n] / z * Double(v[j * ld + c]) }
            }
        }
        return out
    }

    enum Entry: CaseIterable { case table, generic, distance }

    /// Runs one head through an entry point; nil when `distance` cannot express `rel` (not a function of i - j).
    func runHead(_ entry: Entry, t: Int, d: Int, ld: Int, q: [Float], k: [Float], v: [Float], pk: [Float]?, pq: [Float]?,
                 span: Int, rel: [Int32], mask: [UInt8], scale: Float) -> [Float]? {
        var out = [Float](repeating: .nan, count: t * ld)
        // Scratch starts as NaN: every value the kernels read must have been written first.
        var scratch = [Float](repeating: .nan, count: entry == .distance ? dk_attention_distance_scratch(t, d, span) : dk_attention_scratch(t, d, span))
        switch entry {
        case .table:
            dk_attention_head(t, d, q, ld, k, ld, v, ld, pk, pq, ld, span, rel, mask, scale, &out, ld, &scratch)
        case .generic:
            dk_attention_head_generic(t, d, q, ld, k, ld, v, ld, pk, pq, ld, span, rel, mask, scale, &out, ld, &scratch)
        case .distance:
            var byDistance = [Int32](repeating: 0, count: 2 * t - 1)
            for i in 0 ..< t { for j in 0 ..< t { byDistance[i - j + t - 1] = rel[i * t + j] } }
            for i in 0 ..< t { for j in 0 ..< t where byDistance[i - j + t - 1] != rel[i * t + j] { return nil } }
            dk_attention_head_distance(t, d, q, ld, k, ld, v, ld, pk, pq, ld, span, byDistance, mask, scale, &out, ld, &scratch)
        }
        return out
    }

    func checkHead(t: Int, d: Int, ld: Int, span: Int, rel: [Int32], mask: [UInt8], terms: (c2p: Bool, p2c: Bool) = (true, true),
                   magnitude: Float = 1, tolerance: Double = 2e-6, _ label: String) {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15 &+ UInt64(t * 1000 + d)
        func noise(_ n: Int) -> [Float] {  // xorshift, uniform with unit variance × magnitude
            (0 ..< n).map { _ in
                state ^= state << 13; state ^= state >> 7; state ^= state << 17
                return (Float(state >> 40) / Float(1 << 24) * 2 - 1) * 1.7320508 * magnitude
            }
        }
        let q = noise(t * ld), k = noise(t * ld), v = values(t * ld, 1.1)
        let pk = terms.c2p ? noise(span * ld) : nil
        let pq = terms.p2c ? noise(span * ld) : nil
        let scale = 1 / Float(d * 3).squareRoot()
        let expected = directAttention(t: t, d: d, ld: ld, q: q, k: k, v: v, pk: pk, pq: pq, rel: rel, mask: mask, scale: scale)
        for entry in Entry.allCases {
            guard let out = runHead(entry, t: t, d: d, ld: ld, q: q, k: k, v: v, pk: pk, pq: pq, span: span, rel: rel, mask: mask, scale: scale) else { continue }
            var worst = 0.0
            for i in 0 ..< t { for c in 0 ..< d { worst = max(worst, abs(Double(out[i * ld + c]) - expected[i * d + c])) } }
            XCTAssertLessThanOrEqual(worst, tolerance, "\(label) \(entry) (\(String(cString: dk_attention_isa()))): max abs error \(worst)")
            // Columns past d in each row are untouched.
            for i in 0 ..< t { for c in d ..< ld { XCTAssertTrue(out[i * ld + c].isNaN, "\(label) \(entry) wrote [\(i), \(c)]") } }
        }
    }

    /// One head end to end against a direct double-precision evaluation of disentangled attention.
    func testAttentionHeadMatchesDirectEvaluation() {
        let t = 7, d = 5, span = 9
        var rel = [Int32](repeating: 0, count: t * t)
        for i in 0 ..< t { for j in 0 ..< t { rel[i * t + j] = Int32(min(max(i - j + 4, 0), span - 1)) } }
        checkHead(t: t, d: d, ld: 12, span: span, rel: rel, mask: [1, 1, 1, 0, 1, 1, 0], "t=7 d=5")
    }

    /// Relative rows of a v2/v3 model (log buckets) for a length-t sequence, shifted to start at 0, and their span.
    func bucketedRows(t: Int, buckets: Int, maxPosition: Int) -> (rel: [Int32], span: Int) {
        var rel = [Int32](repeating: 0, count: t * t)
        for i in 0 ..< t {
            for j in 0 ..< t {
                let b = RelativePositions.logBucket(i - j, buckets: buckets, maxPosition: maxPosition) + buckets
                rel[i * t + j] = Int32(min(max(b, 0), 2 * buckets - 1))
            }
        }
        let low = rel.min()!, high = rel.max()!
        return (rel.map { $0 - low }, Int(high - low) + 1)
    }

    /// Model-shaped heads (d = 64, several heads side by side in a row, log-bucketed distances, padded keys,
    /// lengths that are and are not multiples of 16), every combination of the c2p / p2c terms, every entry point.
    func testAttentionHeadAtModelShapes() {
        for (t, buckets, maxPosition, padding) in [(128, 256, 512, 0), (77, 16, 64, 5), (33, 8, 40, 0), (16, 256, 512, 3)] {
            let (rel, span) = bucketedRows(t: t, buckets: buckets, maxPosition: maxPosition)
            let mask = (0 ..< t).map { UInt8($0 < t - padding ? 1 : 0) }
            for terms in [(true, true), (true, false), (false, true), (false, false)] where t != 128 || terms == (true, true) {
                checkHead(t: t, d: 64, ld: 3 * 64 + 5, span: span, rel: rel, mask: mask, terms: terms, magnitude: 1.5,
                          "t=\(t) buckets=\(buckets) c2p=\(terms.0) p2c=\(terms.1)")
            }
        }
    }

    /// Indices that jump by more than 16 rows between neighbouring distances (not a DeBERTa table, but allowed):
    /// the AVX-512 kernel gathers those pieces; and a table that is not a function of i - j takes the generic kernel.
    func testAttentionHeadWithUnusualIndices() {
        let t = 45, d = 20, span = 90
        var byDistance = [Int32](repeating: 0, count: 2 * t - 1)
        for x in 0 ..< byDistance.count { byDistance[x] = Int32((x * 37 + x * x * 11) % span) }
        var rel = [Int32](repeating: 0, count: t * t)
        for i in 0 ..< t { for j in 0 ..< t { rel[i * t + j] = byDistance[i - j + t - 1] } }
        let mask = (0 ..< t).map { UInt8($0 % 7 == 3 ? 0 : 1) }
        checkHead(t: t, d: d, ld: 2 * d + 1, span: span, rel: rel, mask: mask, "wide windows")
        var irregular = rel
        for n in 0 ..< irregular.count where n % 5 == 0 { irregular[n] = Int32((n * 13) % span) }
        checkHead(t: t, d: d, ld: 2 * d + 1, span: span, rel: irregular, mask: mask, "not by distance")
    }

    /// A sequence whose keys are all masked gives zeros (not NaN).
    func testAttentionHeadWithNoKeys() {
        let t = 20, d = 16, ld = 16
        let (rel, span) = bucketedRows(t: t, buckets: 256, maxPosition: 512)
        let q = values(t * ld, 0.3), k = values(t * ld, 0.7), v = values(t * ld, 1.1)
        let pk = values(span * ld, 1.7), pq = values(span * ld, 2.3)
        for entry in Entry.allCases {
            let out = runHead(entry, t: t, d: d, ld: ld, q: q, k: k, v: v, pk: pk, pq: pq, span: span, rel: rel,
                              mask: [UInt8](repeating: 0, count: t), scale: 0.2)
            XCTAssertEqual(out, [Float](repeating: 0, count: t * ld), "\(entry)")
        }
    }

    /// The AVX-512 kernel's exp against the double exp: within 2 ulp over the softmax's range, 0 at -inf.
    func testVectorExpAccuracy() throws {
        var x: [Float] = stride(from: -104.0, through: 0.0, by: 0.0037).map { Float($0) }
        x += [-Float.infinity, -200, -87.3, -1e-6, -0.0, 0, -Float.leastNormalMagnitude]
        var y = [Float](repeating: .nan, count: x.count)
        guard dk_exp_avx512(x, &y, x.count) != 0 else { throw XCTSkip("no AVX-512 on this CPU") }
        var worstUlps = 0.0
        for (a, b) in zip(x, y) {
            let exact = Foundation.exp(Double(a))
            if exact < Double(Float.leastNormalMagnitude) {
                XCTAssertLessThanOrEqual(Double(b), Double(Float.leastNormalMagnitude), "exp(\(a))")
                continue
            }
            worstUlps = max(worstUlps, abs(Double(b) - exact) / Double(Float(exact).ulp))
        }
        XCTAssertLessThanOrEqual(worstUlps, 2, "worst error in ulps")
        XCTAssertEqual(y[x.count - 7], 0, "exp(-inf)")
        XCTAssertEqual(y[x.count - 6], 0, "exp(-200)")
        XCTAssertEqual(y[x.count - 2], 1, "exp(0)")
    }
}

extension AttentionKernelTests {
    /// The AVX2 exp of the fixed-order (int8 / q4) heads gives dk_exp_lane's bits everywhere, the subnormal results
    /// below e^-87.3 and the underflow to 0 near e^-103.97 included, and the AVX-512 exp's where the CPU has it.
    func testAVX2ExpIsBitIdenticalToTheLaneExp() throws {
        var x: [Float] = stride(from: -210.0, through: 0.0, by: 0.00113).map { Float($0) }
        x += stride(from: -104.5, through: -86.5, by: 0.0000371).map { Float($0) }  // the subnormal results, densely
        x += stride(from: 0.0, through: 120.0, by: 0.0173).map { Float($0) }  // and overflow to inf past 88.7
        x += [-Float.infinity, -Float.greatestFiniteMagnitude, -1e30, -200, -0.0, 0, Float.nan, -Float.leastNonzeroMagnitude,
              -Float.leastNormalMagnitude, Float.leastNonzeroMagnitude]
        var lane = [Float](repeating: .nan, count: x.count), avx2 = lane
        dk_exp_lanes_scalar(x, &lane, x.count)
        guard dk_exp_avx2(x, &avx2, x.count) != 0 else { throw XCTSkip("no AVX2/FMA on this CPU") }
        let differing = x.indices.filter { lane[$0].bitPattern != avx2[$0].bitPattern }
        XCTAssertEqual(differing.count, 0, "first: " + differing.prefix(5).map { "exp(\(x[$0])) = \(lane[$0]) vs \(avx2[$0])" }.joined(separator: ", "))
        XCTAssertTrue(lane.contains { $0 > 0 && $0 < Float.leastNormalMagnitude }, "subnormal results were covered")
        // odd lengths: the masked tail
        for n in [1, 7, 9, 15] {
            var y = [Float](repeating: .nan, count: n)
            _ = dk_exp_avx2(Array(x[1000 ..< 1000 + n]), &y, n)
            XCTAssertEqual(y.map(\.bitPattern), lane[1000 ..< 1000 + n].map(\.bitPattern), "n = \(n)")
        }
        let nonPositive = x.indices.filter { x[$0] <= 0 || x[$0].isNaN }
        var wide = [Float](repeating: .nan, count: nonPositive.count)
        if dk_exp_avx512(nonPositive.map { x[$0] }, &wide, nonPositive.count) != 0 {
            XCTAssertEqual(wide.map(\.bitPattern), nonPositive.map { avx2[$0].bitPattern }, "AVX-512 exp")
        }
    }
}

final class ProbsTimesValuesTests: XCTestCase {
    func testSIMDMatchesScalarExactlyOnOddShapes() {
        for (t, d) in [(1, 1), (3, 7), (25, 32), (17, 13), (130, 64)] {
            let p = (0 ..< t * t).map { Float(abs(sin(Double($0)))) / Float(t) }
            let v = (0 ..< t * d).map { Float(cos(Double($0) * 0.7)) }
            var fast = [Float](repeating: 0, count: t * d), slow = fast
            dk_probs_times_values(t, d, p, t, v, d, &fast, d)
            dk_probs_times_values_scalar(t, d, p, t, v, d, &slow, d)
            // Both sum products of f32 values in double in the same order (FMA in double is exact here:
            // the products of two f32 fit in a double), so they agree to the last bit.
            XCTAssertEqual(fast, slow, "\(t)x\(d)")
        }
    }
}

final class ForwardLimitTests: XCTestCase {
    /// An over-large call is a `.limit` error before anything is allocated; the limits are per model.
    func testOverLargeCallsAreRefusedBeforeAllocating() throws {
        let path = repositoryRoot + "/Fixtures/models/v3-mlm"
        let model = try DebertaModel(path: path, options: RuntimeOptions(limits: Limits(maxTokensPerCall: 1000)))
        let ids = [Int](repeating: 5, count: 1001)
        let error = assertThrowsDebertaError(.limit, try model.forward(ModelInputs(inputIds: ids, batch: 1, length: 1001)))
        XCTAssertTrue("\(error.map { "\($0)" } ?? "")".contains("1001"))
        let small = try DebertaModel(path: path, options: RuntimeOptions(limits: Limits(maxBytesPerCall: 1 << 20)))
        assertThrowsDebertaError(.limit, try small.forward(ModelInputs(inputIds: [Int](repeating: 5, count: 512), batch: 1, length: 512)))
        XCTAssertNoThrow(try model.forward(ModelInputs(inputIds: [Int](repeating: 5, count: 1000), batch: 1, length: 1000), maskedLMRows: [0]))
        XCTAssertLessThan(model.estimatedBytes(batch: 1, length: 1000, logitRows: 1), model.estimatedBytes(batch: 1, length: 1000))
    }
}
