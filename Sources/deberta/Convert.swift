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

    @Option(help: "Float dtype of the output: f32, f16 or bf16 (default: unchanged).")
    var dtype: String?

    func validate() throws {
        if let dtype, !["f32", "f16", "bf16"].contains(dtype.lowercased()) {
            throw ValidationError("--dtype must be f32, f16 or bf16, not '\(dtype)'")
        }
    }

    func run() throws {
        let target = dtype.flatMap { DType(rawValue: $0.uppercased()) }
        let report = try Converter.convert(source: source, destination: destination, dtype: target)
        print("converted \(source) -> \(report.destination)")
        print("  \(report.weightsFile): \(grouped(report.tensorsWritten)) tensors, \(grouped(report.parameters)) parameters, \(grouped(report.bytesWritten)) bytes of data (\(target?.shortName ?? "dtype unchanged"))")
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
}
