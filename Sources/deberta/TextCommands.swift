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

    @Option(help: "Batch mode: read one JSON object per line from this file (fields depend on the command).")
    var input: String?

    @Option(help: "Batch mode: write one JSON object per line here (default: standard output).")
    var output: String?

    @Option(help: "Inputs per forward call in batch mode (grouped by length).")
    var batchSize: Int = 16

    @Option(help: "Threads for the matrix products.")
    var threads: Int = 2

    @Option(help: "Longest input in tokens (special tokens included); longer texts are truncated with a warning. Default: the model's own limit (none for relative-position models).")
    var maxLength: Int?

    func validate() throws {
        if batchSize < 1 { throw ValidationError("--batch-size must be positive") }
        if threads < 1 || threads > 256 { throw ValidationError("--threads must be between 1 and 256") }
        if output != nil && input == nil { throw ValidationError("--output goes with --input (batch mode)") }
        if let m = maxLength, m < 3 { throw ValidationError("--max-length must be at least 3") }
    }

    func load() throws -> TextModel {
        setComputeThreads(threads)
        return try TextModel(path: model, maxLength: maxLength, batchSize: batchSize, warn: { printError("warning: " + $0) })
    }
}

/// Batch mode: JSONL in, JSONL out in the input's order, inputs grouped by length into forward calls,
/// a progress bar on standard error when it is a terminal.
func runBatch(_ options: TextOptions, required: [String],
              process: ([JSONValue]) throws -> [JSONValue]) throws {
    guard let inputPath = options.input else { return }
    let bytes = try readSmallFile(inputPath, limit: 1 << 30)
    var items: [JSONValue] = []
    for (n, line) in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated() {
        if line.allSatisfy({ $0 == 0x20 || $0 == 0x0D || $0 == 0x09 }) { continue }
        let value: JSONValue
        do { value = try Array(line).withUnsafeBytes { try JSONParser.parse($0) } } catch {
            throw DebertaError(.invalidInput, file: inputPath, "line \(n + 1) is not JSON: \(error)")
        }
        for key in required where value[key]?.stringValue == nil {
            throw DebertaError(.invalidInput, file: inputPath, "line \(n + 1) has no string field \"\(key)\"")
        }
        items.append(value)
    }
    let order = items.indices.sorted { (items[$0]["text"]?.stringValue ?? items[$0]["context"]?.stringValue ?? "").count
        < (items[$1]["text"]?.stringValue ?? items[$1]["context"]?.stringValue ?? "").count }
    var results = [JSONValue?](repeating: nil, count: items.count)
    let progress = Progress(total: items.count)
    var done = 0
    for start in stride(from: 0, to: order.count, by: options.batchSize) {
        let chunk = Array(order[start ..< min(start + options.batchSize, order.count)])
        let out = try process(chunk.map { items[$0] })
        for (i, r) in zip(chunk, out) { results[i] = r }
        done += chunk.count
        progress.update(done)
    }
    progress.finish()
    let text = results.map { ($0 ?? .null).serialized() }.joined(separator: "\n") + (results.isEmpty ? "" : "\n")
    if let outputPath = options.output {
        try AtomicFile.write(path: outputPath, contents: Array(text.utf8))
    } else {
        print(text, terminator: "")
    }
}

/// items/s and ETA on standard error, only when it is a terminal.
final class Progress {
    let total: Int
    let start = Date()
    let enabled = isatty(2) != 0

    init(total: Int) { self.total = total }

    func update(_ done: Int) {
        guard enabled, total > 0 else { return }
        let elapsed = Date().timeIntervalSince(start)
        let rate = elapsed > 0 ? Double(done) / elapsed : 0
        let eta = rate > 0 ? Double(total - done) / rate : 0
        let width = 30
        let filled = width * done / total
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        FileOutput.writeStandardError("\r[\(bar)] \(done)/\(total)  \(fixed(rate, 1)) items/s  ETA \(Int(eta.rounded()))s ")
    }

    func finish() { if enabled { FileOutput.writeStandardError("\n") } }
}

