import ArgumentParser
import Checkpoint
import DeBERTa
import Foundation

/// Options every text command shares: the model, JSON output, batch files, threads.
struct TextOptions: ParsableArguments {
    @Argument(help: "A model directory with config.json, weights and tokenizer files.")
    var model: String

    @Flag(help: "Print one JSON object per input instead of a table.")
    var json = false

    @Option(help: "Batch mode: read one JSON object per line from this file, or - for standard input (fields depend on the command).")
    var input: String?

    @Option(help: "Batch mode: write one JSON object per line here (default, or -: standard output).")
    var output: String?

    @Option(help: "Batch mode: stop (exit 1 naming the file and line) or skip (write {\"error\", \"error_type\", \"line\"} for that line and go on).")
    var onError: OnError = .stop

    @Option(help: "Inputs per forward call in batch mode (grouped by length).")
    var batchSize: Int = 16

    @OptionGroup(title: "Runtime") var runtime: RuntimeFlags

    @Option(help: "Longest input in tokens (special tokens included); longer texts are truncated with a warning. Default: the model's own limit (none for relative-position models).")
    var maxLength: Int?

    func validate() throws {
        if batchSize < 1 { throw ValidationError("--batch-size must be positive") }
        if output != nil && input == nil { throw ValidationError("--output goes with --input (batch mode)") }
        if let m = maxLength, m < 3 { throw ValidationError("--max-length must be at least 3") }
    }

    func load() throws -> TextModel {
        try InputFile.checkModel(model)
        if let input, input != "-" { try InputFile.check(input, dashAllowed: true) }
        if let output { try FileOutput.check(output) }
        let loaded = try TextModel(path: model, options: runtime.options, maxLength: maxLength, batchSize: batchSize,
                                   warn: { printError("warning: " + $0) })
        runtime.noteEmulatedBF16(loaded.model)
        return loaded
    }
}
