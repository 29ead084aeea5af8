import CKernels
import Checkpoint
import Foundation
import TestSupport
import XCTest
@testable import DeBERTa

/// The bf16 precision tier (`RuntimeOptions.precision == .bf16`) on the trained DeBERTa-v3-shaped masked LM
/// (Fixtures/models/v3-mlm-trained) against the f32 runtime: the bounds, hidden-state cosine ≥ 0.9999 and
/// masked top-1 agreement ≥ 99.5% (256 held-out sequences, 2,323 masked positions, plain head and EMD).
final class BF16AccuracyTests: XCTestCase {
    let trained = repositoryRoot + "/Fixtures/models/v3-mlm-trained"

    struct Outputs {
        var hidden: [Float]
        var plain: [Int]
        var emd: [Int]
    }

    func run(_ model: DebertaModel, _ store: TensorStore) throws -> Outputs {
        let f = try MaskedForward(model, store), out = f.outputs, mask = f.attentionMask
        let hidden = try XCTUnwrap(out["last_hidden_state"]).values
        // Only non-pad positions count (pad rows are unspecified).
        let H = hidden.count / mask.count
        let kept = mask.indices.filter { mask[$0] != 0 }.flatMap { i in hidden[i * H ..< (i + 1) * H] }
        return Outputs(hidden: kept, plain: try f.top1("logits"), emd: try f.top1("emd_logits"))
    }

    func cosine(_ a: [Float], _ b: [Float]) -> Double {
        var dot = 0.0, na = 0.0, nb = 0.0
        for (x, y) in zip(a, b) {
            dot += Double(x) * Double(y)
            na += Double(x) * Double(x)
            nb += Double(y) * Double(y)
        }
        return dot / (na.squareRoot() * nb.squareRoot())
    }

    func agreement(_ a: [Int], _ b: [Int]) -> Double { Double(zip(a, b).filter { $0 == $1 }.count) / Double(b.count) }

    func testBF16AgreesWithF32OnHeldOutText() throws {
        let heldout = try TensorStore.open(weights: trained + "/heldout.safetensors")
        let f32 = try run(try DebertaModel(path: trained), heldout)
        let bf16Model = try DebertaModel(path: trained, precision: .bf16)
        XCTAssertEqual(bf16Model.options.precision, .bf16)
        let bf16 = try run(bf16Model, heldout)
        XCTAssertGreaterThan(f32.plain.count, 2000)
        XCTAssertEqual(bf16.hidden.count, f32.hidden.count)
        let hiddenCosine = cosine(bf16.hidden, f32.hidden)
        let plain = agreement(bf16.plain, f32.plain), emd = agreement(bf16.emd, f32.emd)
        print("bf16 against f32 on held-out text: hidden cosine \(hiddenCosine), masked top-1 agreement plain \(plain), EMD \(emd)")
        XCTAssertGreaterThanOrEqual(hiddenCosine, 0.9999, "bf16 hidden-state cosine")
        XCTAssertGreaterThanOrEqual(plain, 0.995, "bf16 plain-head masked top-1 agreement")
        XCTAssertGreaterThanOrEqual(emd, 0.995, "bf16 EMD masked top-1 agreement")
        XCTAssertNotEqual(bf16.hidden, f32.hidden, "bf16 products differ from f32 ones")

        // verify --precision bf16 criteria against the transformers reference.
        let result = try Verifier.verify(model: bf16Model, reference: trained + "/reference.safetensors")
        XCTAssertEqual(result.criteria.minCosine, 0.9999)
        for comparison in result.comparisons { XCTAssertTrue(comparison.passed, "\(comparison.name): cosine \(comparison.cosine)") }
    }

    /// bf16 outputs do not depend on the thread split or on when the weights are packed (the kernels' own bit
    /// identity across instruction sets is BF16GemmTests').
    func testBF16OutputsAreTheSameBitsUnderEveryThreadSplit() throws {
        let path = repositoryRoot + "/Fixtures/models/v3-mlm"
        let inputs = try InputsFile.read(path + "/reference.safetensors", for: try DebertaModel(path: path))
        var base = RuntimeOptions()
        base.precision = .bf16
        let expected = try DebertaModel(path: path, options: base).forward(inputs)
        var variants: [RuntimeOptions] = []
        for threads in [1, 3] { var o = base; o.threads = threads; variants.append(o) }
        for packing in [RuntimeOptions.Packing.load, .never] { var o = base; o.packing = packing; variants.append(o) }
        for options in variants {
            let model = try DebertaModel(path: path, options: options)
            for _ in 0 ..< 2 {
                let got = try model.forward(inputs)
                for tensor in expected.outputs {
                    XCTAssertEqual(got[tensor.name]?.values, tensor.values, "\(tensor.name) threads \(options.threads) packing \(options.packing)")
                }
            }
        }
        // And they differ from the f32 ones (the products really are bf16).
        let f32 = try DebertaModel(path: path).forward(inputs)
        XCTAssertNotEqual(f32["last_hidden_state"]?.values, expected["last_hidden_state"]?.values)
    }

    /// Which attention the options select: `auto` follows the precision; `f32` and `bf16` force it (bf16 only
    /// where the CPU has AVX-512, `dk_attention_bf16_isa`). Forcing f32 attention in the bf16 tier changes its
    /// outputs (the attention products really switch).
    func testAttentionPrecisionFollowsTheOptions() throws {
        let path = repositoryRoot + "/Fixtures/models/v3-mlm"
        let inputs = try InputsFile.read(path + "/reference.safetensors", for: try DebertaModel(path: path))
        let available = String(cString: dk_attention_bf16_isa()) != "none"
        func model(_ precision: RuntimeOptions.Precision, _ attention: RuntimeOptions.AttentionPrecision) throws -> DebertaModel {
            try DebertaModel(path: path, options: RuntimeOptions(precision: precision, attentionPrecision: attention))
        }
        XCTAssertFalse(try model(.f32, .auto).attentionInBF16)
        XCTAssertFalse(try model(.bf16, .f32).attentionInBF16)
        XCTAssertEqual(try model(.bf16, .auto).attentionInBF16, available)
        XCTAssertEqual(try model(.f32, .bf16).attentionInBF16, available)
        guard available else { return }
        let bf16Attention = try model(.bf16, .auto).forward(inputs)["last_hidden_state"]?.values
        let f32Attention = try model(.bf16, .f32).forward(inputs)["last_hidden_state"]?.values
        XCTAssertNotEqual(bf16Attention, f32Attention)
        // The f32 tier with bf16 attention only: verify applies the bf16 criteria against the f32 reference.
        let result = try Verifier.verify(model: try model(.f32, .bf16), reference: path + "/reference.safetensors")
        XCTAssertEqual(result.criteria.minCosine, 0.9999)
        XCTAssertTrue(result.referenceKind.contains("bf16 attention"), result.referenceKind)
    }

    /// An int8 store with bf16 attention (what OpenVINO's int8 does on AVX-512 BF16 CPUs) on the trained fixture:
    /// the int8 accuracy bounds against f32 hold (top-1 agreement ≥ 99%, hidden cosine ≥ 0.999), and verify against
    /// the int8 simulation (f32 attention) applies those accuracy criteria instead of the exact ones.
    func testInt8WithBF16AttentionKeepsInt8Accuracy() throws {
        guard String(cString: dk_attention_bf16_isa()) != "none" else { throw XCTSkip("no AVX-512: attention stays f32") }
        let heldout = try TensorStore.open(weights: trained + "/heldout.safetensors")
        let f32 = try run(try DebertaModel(path: trained), heldout)
        let out = try temporaryDirectory() + "/int8"
        _ = try Converter.convert(source: trained, destination: out, dtype: nil, quantization: .int8)
        let model = try DebertaModel(path: out, options: RuntimeOptions(attentionPrecision: .bf16))
        XCTAssertTrue(model.attentionInBF16)
        let int8 = try run(model, heldout)
        let plain = agreement(int8.plain, f32.plain), emd = agreement(int8.emd, f32.emd)
        let hiddenCosine = cosine(int8.hidden, f32.hidden)
        print("int8 with bf16 attention against f32 on held-out text: hidden cosine \(hiddenCosine), agreement plain \(plain), EMD \(emd)")
        XCTAssertGreaterThanOrEqual(plain, 0.99)
        XCTAssertGreaterThanOrEqual(emd, 0.99)
        XCTAssertGreaterThanOrEqual(hiddenCosine, 0.999)
        let result = try Verifier.verify(model: model, reference: trained + "/reference.int8.safetensors")
        XCTAssertEqual(result.criteria.minCosine, Criteria.accuracy(.int8).minCosine)
        XCTAssertTrue(result.referenceKind.contains("bf16 attention"), result.referenceKind)
        for comparison in result.comparisons { XCTAssertTrue(comparison.passed, "\(comparison.name): cosine \(comparison.cosine)") }
    }

    /// The kernel cap is process-wide: a model loaded later with `--kernels avx2` lowers it below AVX-512 for a bf16
    /// model loaded before. Its attention then runs the f32 head (its linear layers' bf16 products keep their bits on
    /// every kernel), with the same outputs as a model that asked for f32 attention under that cap.
    func testBF16AttentionFallsBackWhenALaterModelLowersTheKernelCap() throws {
        guard String(cString: dk_attention_bf16_isa()) != "none" else { throw XCTSkip("no AVX-512: attention stays f32") }
        defer { RuntimeOptions().configureKernels() }
        let path = repositoryRoot + "/Fixtures/models/v3-mlm"
        let inputs = try InputsFile.read(path + "/reference.safetensors", for: try DebertaModel(path: path))
        let first = try DebertaModel(path: path, precision: .bf16)
        XCTAssertTrue(first.attentionInBF16)
        let capped = try DebertaModel(path: path, options: RuntimeOptions(kernels: .avx2, precision: .bf16, attentionPrecision: .f32))
        XCTAssertFalse(capped.attentionInBF16)
        let got = try first.forward(inputs), expected = try capped.forward(inputs)
        for tensor in expected.outputs {
            XCTAssertEqual(got[tensor.name]?.values, tensor.values, tensor.name)
            XCTAssertTrue(tensor.values.allSatisfy(\.isFinite), tensor.name)
        }
    }
}
