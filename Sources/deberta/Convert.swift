import Foundation
import ArgumentParser
import Checkpoint
import DeBERTa

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a checkpoint as a model directory with one aligned model.safetensors.")

    @Argument(help: "A weights file or a model directory (config.json must be beside the weights).")
    var source: String

    @Argument(help: "The model directory to write (created if missing).")
    var destination: String

    /// What `--dtype` accepts: a float type, or a quantization scheme.
    enum OutputType: String, CaseIterable, ExpressibleByArgument {
        case f32, f16, bf16, int8, q4
        init?(argument: String) { self.init(rawValue: argument.lowercased()) }
        var scheme: QuantizationScheme? { QuantizationScheme(rawValue: rawValue) }
        var floatType: DType? { scheme == nil ? DType(rawValue: rawValue.uppercased()) : nil }
    }

    @Option(help: "Output: f32, f16 or bf16 (default: unchanged), or int8 / q4 to quantize every linear weight (other tensors f32).")
    var dtype: OutputType?

    @Flag(help: "With int8/q4: quantize the word-embedding table too.")
    var quantizeEmbeddings = false

    @Flag(help: "With int8/q4: print every quantized tensor, not only the worst ten.")
    var verbose = false

    func validate() throws {
        if quantizeEmbeddings && dtype?.scheme == nil {
            throw ValidationError("--quantize-embeddings goes with --dtype int8 or q4")
        }
    }

    func run() throws {
        try InputFile.checkModel(source)
        let scheme = dtype?.scheme, target = dtype?.floatType
        let report = try Converter.convert(source: source, destination: destination, dtype: target,
                                           quantization: scheme, quantizeEmbeddings: quantizeEmbeddings, stage: Convert.testPause)
        print("converted \(source) -> \(report.destination)")
        print("  \(report.weightsFile): \(grouped(report.tensorsWritten)) tensors, \(grouped(report.bytesWritten)) bytes of data (\(scheme?.rawValue ?? target?.shortName ?? "dtype unchanged"))")
        if let scheme {
            let q = report.quantized
            let before = report.sourceBytes, after = report.bytesWritten
            print("  quantized \(q.count) matrices to \(scheme.rawValue)\(quantizeEmbeddings ? " (word embeddings included)" : ""); size \(grouped(before)) -> \(grouped(after)) bytes (\(fixed(Double(after) / Double(max(before, 1)), 3)) of the source)")
            let shown = verbose ? q : Array(q.sorted { $0.relativeRMSError > $1.relativeRMSError }.prefix(10))
            print("  " + padded(verbose ? "tensor" : "tensor (largest errors first)", 60) + padded("shape", 16) + padded("rel. RMS error", 16) + "bytes before -> after")
            for t in shown {
                print("  " + padded(t.name, 60) + padded(shapeText(t.shape), 16) + padded(scientific(t.relativeRMSError), 16) + "\(grouped(t.bytesBefore)) -> \(grouped(t.bytesAfter))")
            }
            if !verbose && q.count > shown.count { print("  ... \(q.count - shown.count) more (--verbose lists all)") }
            let mean = q.isEmpty ? 0 : q.map(\.relativeRMSError).reduce(0, +) / Double(q.count)
            print("  mean relative RMS error \(scientific(mean))")
        }
        for (from, count) in report.castFrom.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            print("  cast \(count) tensors from \(from.shortName)")
        }
        for (dropped, kept) in report.droppedTies { print("  tied duplicate dropped: \(dropped) (same as \(kept))") }
        if !report.renamed.isEmpty {
            print("  renamed \(report.renamed.count) tensors to transformers names, e.g. \(report.renamed[0].0) -> \(report.renamed[0].1)")
        }
        if let arch = report.architectureFilledIn { print("  config.json: architectures set to [\(arch)] (inferred)") }
        if !report.copiedFiles.isEmpty { print("  copied \(report.copiedFiles.joined(separator: ", "))") }
    }

    /// Test hook, read only by this executable: DEBERTA_TEST_CONVERT_PAUSE=created|written|swap makes convert
    /// print "paused STAGE TEMPORARY" on standard error at that stage and sleep 60 s (the CLI tests send
    /// SIGINT/SIGTERM then and check that DST is unchanged and no temporary is left).
    static let testPause: (@Sendable (Converter.Stage) -> Void)? = {
        guard let wanted = ProcessInfo.processInfo.environment["DEBERTA_TEST_CONVERT_PAUSE"] else { return nil }
        return { stage in
            let (name, dir): (String, String)
            switch stage {
            case let .temporaryCreated(d): (name, dir) = ("created", d)
            case let .weightsWritten(d): (name, dir) = ("written", d)
            case let .beforeSwap(d): (name, dir) = ("swap", d)
            }
            guard name == wanted else { return }
            printError("paused \(name) \(dir)")
            sleep(60)
        }
    }()
}
