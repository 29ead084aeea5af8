import ArgumentParser
import Checkpoint
import DeBERTa

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a model on a reference file's inputs and compare every output it records.")

    @Argument(help: "A model directory or weights file.")
    var model: String

    @Argument(help: "A reference safetensors file (inputs plus expected outputs).")
    var reference: String

    @Option(help: "Maximum absolute error for every output (default: 1e-4 × max(1, largest |reference value|) for f32; 1e-3 × largest for a quantized model against its scheme's simulation).")
    var atol: Double?

    @Option(help: "Minimum cosine similarity per output (default for quantized models: 0.99999 against the simulation; 0.999 int8 / 0.99 q4 against f32).")
    var minCosine: Double?

    @Option(help: "Minimum argmax agreement per output, 0-1 (default for quantized models against f32: 0.99 int8, 0.95 q4; MLM outputs count masked positions when the reference records them).")
    var minAgreement: Double?

    @OptionGroup(title: "Runtime") var runtime: RuntimeFlags

    func run() throws {
        try InputFile.checkModel(model)
        try InputFile.check(reference)
        let loaded = try DebertaModel(path: model, options: runtime.options)
        runtime.noteEmulatedBF16(loaded)
        try IOLimits.checkForward(inputsOf: try TensorStore.open(weights: reference), model: loaded, file: reference)
        let verification = try Verifier.verify(model: loaded, reference: reference, atol: atol, minCosine: minCosine, minAgreement: minAgreement)
        let results = verification.comparisons
        print("model     \(model) (\(loaded.family.rawValue), \(loaded.layout.head.rawValue)\(loaded.quantization.map { ", " + $0.rawValue } ?? ", " + loaded.options.precision.rawValue)\(loaded.attentionInBF16 ? ", bf16 attention" : ""))")
        print("reference \(reference) (\(verification.referenceKind))")
        print("criteria  \(verification.criteria.description)")
        print("")
        print(padded("output", 20) + padded("shape", 16) + padded("max abs err", 14) + padded("max rel err", 14)
              + padded("cosine", 12) + padded("argmax", 12) + padded("tolerance", 12) + "result")
        var failed = 0
        for r in results {
            let ok = r.passed
            if !ok { failed += 1 }
            let argmax = "\(r.argmaxAgree)/\(r.argmaxRows)"
            print(padded(r.name, 20) + padded(shapeText(r.shape), 16) + padded(scientific(r.maxAbsError), 14)
                  + padded(scientific(r.maxRelError), 14) + padded(fixed(r.cosine, 7), 12) + padded(argmax, 12)
                  + padded(scientific(r.tolerance), 12) + (ok ? "ok" : "FAIL" + (r.problem.map { ": " + $0 } ?? "")))
        }
        if results.isEmpty {
            printError("error: \(reference) holds no outputs to compare")
            throw ExitCode(1)
        }
        print("")
        if failed > 0 {
            print("\(failed) of \(results.count) outputs outside tolerance")
            throw ExitCode(1)
        }
        print("all \(results.count) outputs within tolerance")
    }
}
