import ArgumentParser
import Checkpoint
import DeBERTa
import Foundation

/// `--on-error`: what batch mode does with a line it cannot process.
enum OnError: String, ExpressibleByArgument, CaseIterable {
    /// Exit 1 with the file and the line (results of earlier windows have been written to standard output;
    /// an --output file is left as it was).
    case stop
    /// Write an error object for that line in its place, `{"error": "...", "error_type": KIND, "line": N}`,
    /// and go on; exit 0.
    case skip
}

/// Batch mode: JSONL in (a file, a pipe, or standard input for `-`), JSONL out in the input's order (one
/// result per non-blank line), read `IOLimits.windowLines` lines at a time, grouped by length into forward
/// calls of `--batch-size` inputs, with a progress line on standard error when it is a terminal.
func runBatch(_ options: TextOptions, required: [String],
              process: ([JSONValue]) throws -> [JSONValue]) throws {
    guard let inputPath = options.input else { return }
    let name = InputFile.name(inputPath)
    let reader = try JSONLReader(path: inputPath)
    let output = try OutputSink(options.output ?? "-")
    defer { output.abandon() }
    let progress = Progress(totalBytes: reader.lines.size)
    var done = 0
    while true {
        let window = try reader.window(required: required, skip: options.onError == .skip)
        if window.isEmpty { break }
        var results = [JSONValue?](repeating: nil, count: window.count)
        func failed(_ k: Int, _ error: Error) throws {
            let located = BatchError.located(error, file: name, line: window[k].line)
            guard options.onError == .skip else { throw located.error }
            results[k] = located.object
        }
        var valid: [Int] = []
        for (k, item) in window.enumerated() {
            switch item.value {
            case .success: valid.append(k)
            case let .failure(error): try failed(k, error)
            }
        }
        func value(_ k: Int) -> JSONValue { (try? window[k].value.get()) ?? .null }
        func length(_ k: Int) -> Int { (value(k)["text"]?.stringValue ?? value(k)["context"]?.stringValue ?? "").utf8.count }
        let order = valid.sorted { (length($0), $0) < (length($1), $1) }
        for start in stride(from: 0, to: order.count, by: options.batchSize) {
            let chunk = Array(order[start ..< min(start + options.batchSize, order.count)])
            if let out = try? process(chunk.map(value)), out.count == chunk.count {
                for (k, r) in zip(chunk, out) { results[k] = r }
            } else {
                // Some input of the chunk fails: run each alone, in line order, to name the line.
                for k in chunk.sorted() {
                    do {
                        let out = try process([value(k)])
                        guard out.count == 1 else { throw DebertaError(.task, file: "", "no result") }
                        results[k] = out[0]
                    } catch {
                        try failed(k, error)
                    }
                }
            }
            done += chunk.count
            progress.update(items: done, bytes: reader.lines.bytesRead)
        }
        var text = ""
        for r in results { text += Terminal.jsonSafe((r ?? .null).serialized()) + "\n" }
        try output.write(text)
    }
    progress.finish()
    try output.commit()
}

/// A line's failure as an error naming the file and line, and as the object `--on-error skip` writes.
enum BatchError {
    static func located(_ error: Error, file: String, line: Int) -> (error: DebertaError, object: JSONValue) {
        let kind: DebertaError.Kind
        let text: String
        var field: String?
        if let e = error as? DebertaError {
            kind = e.kind
            field = e.field
            var parts = e.file.isEmpty || e.file == file ? [] : [e.file]
            if let tensor = e.tensor { parts.append("tensor '\(tensor)'") }
            text = (parts + [e.message]).joined(separator: ": ")
        } else {
            kind = .task
            text = String(describing: error)
        }
        let object = JSONValue.object([
            ("error", .string(text)),
            ("error_type", .string(kind.rawValue)),
            ("line", .int(line)),
        ])
        return (DebertaError(kind, file: file, field: field, "line \(line): " + text), object)
    }
}

/// Lines of a file or of standard input, read in blocks of 64 KiB. A line longer than
/// `IOLimits.maxLineBytes` is refused while it is read (its bytes are dropped, never held); more than
/// `IOLimits.maxLinesPerFile` lines are an error.
final class LineReader {
    let name: String
    /// The file's size (nil for a pipe or terminal): progress as a share of it.
    let size: Int?
    private(set) var bytesRead = 0
    private(set) var lineNumber = 0
    private let fd: Int32
    private var buffer = [UInt8](repeating: 0, count: 1 << 16)
    private var start = 0, end = 0
    private var atEOF = false

    init(path: String) throws {
        name = InputFile.name(path)
        fd = try InputFile.open(path)
        var st = stat()
        size = fd != 0 && fstat(fd, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG ? Int(st.st_size) : nil
    }

    deinit { if fd != 0 { close(fd) } }

    /// The next line's bytes without its newline (nil at the end), or that it broke the length limit:
    /// then, with `stopAtLimit`, at once (the rest of the line is not read), else after dropping it up
    /// to its newline.
    func nextLine(stopAtLimit: Bool) throws -> (bytes: [UInt8], tooLong: Bool)? {
        var line: [UInt8] = []
        var tooLong = false
        var any = false
        while true {
            if start == end {
                if atEOF { return any ? try counted(line, tooLong) : nil }
                let n = try buffer.withUnsafeMutableBytes { try InputFile.read(fd, into: $0, name: name) }
                bytesRead += n
                start = 0
                end = n
                if n == 0 { atEOF = true }
                continue
            }
            any = true
            let newline = buffer[start ..< end].firstIndex(of: UInt8(ascii: "\n"))
            let stop = newline ?? end
            if !tooLong {
                if line.count + (stop - start) > IOLimits.maxLineBytes {
                    tooLong = true
                    line = []
                    if stopAtLimit { return try counted(line, true) }
                } else {
                    line += buffer[start ..< stop]
                }
            }
            start = newline.map { $0 + 1 } ?? end
            if newline != nil { return try counted(line, tooLong) }
        }
    }

    private func counted(_ line: [UInt8], _ tooLong: Bool) throws -> (bytes: [UInt8], tooLong: Bool) {
        lineNumber += 1
        guard lineNumber <= IOLimits.maxLinesPerFile else {
            throw DebertaError(.limit, file: name, "line \(lineNumber): more than \(grouped(IOLimits.maxLinesPerFile)) lines, the limit for one input file (see README, \"Limits\"); split it")
        }
        return (lineNumber == 1 && line.starts(with: [0xEF, 0xBB, 0xBF]) ? Array(line.dropFirst(3)) : line, tooLong)  // UTF-8 BOM
    }

    static func tooLongError(_ name: String) -> DebertaError {
        DebertaError(.limit, file: name, "longer than \(grouped(IOLimits.maxLineBytes)) bytes, the limit for one input line (see README, \"Limits\")")
    }

    /// Every line as text (standard input of `tokenize`); a line over the limit ends it with an error.
    func allLines() throws -> [String] {
        var lines: [String] = []
        while let (bytes, tooLong) = try nextLine(stopAtLimit: true) {
            if tooLong { throw BatchError.located(LineReader.tooLongError(name), file: name, line: lineNumber).error }
            lines.append(String(decoding: bytes.last == 0x0D ? bytes.dropLast() : bytes[...], as: UTF8.self))
        }
        return lines
    }
}

/// A JSONL file (or standard input) read a window of lines at a time.
final class JSONLReader {
    struct Item {
        var line: Int
        var value: Result<JSONValue, DebertaError>
    }

    let lines: LineReader
    var name: String { lines.name }

    init(path: String) throws { lines = try LineReader(path: path) }

    /// Up to `IOLimits.windowLines` non-blank lines (fewer when they pass `IOLimits.windowBytes`), each parsed
    /// and checked for the `required` string fields. Without `skip`, the first bad line throws (a line over
    /// the length limit as soon as its limit is passed).
    func window(required: [String], skip: Bool) throws -> [Item] {
        var items: [Item] = []
        var bytes = 0
        while items.count < IOLimits.windowLines && bytes < IOLimits.windowBytes, let (line, tooLong) = try lines.nextLine(stopAtLimit: !skip) {
            let number = lines.lineNumber
            if tooLong {
                guard skip else { throw BatchError.located(LineReader.tooLongError(name), file: name, line: number).error }
                items.append(Item(line: number, value: .failure(LineReader.tooLongError(name))))
                continue
            }
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x0D || $0 == 0x09 }) { continue }
            bytes += line.count
            let item = Item(line: number, value: parse(line, required: required))
            if case let .failure(error) = item.value, !skip { throw BatchError.located(error, file: name, line: number).error }
            items.append(item)
        }
        return items
    }

    private func parse(_ line: [UInt8], required: [String]) -> Result<JSONValue, DebertaError> {
        let value: JSONValue
        do { value = try line.withUnsafeBytes { try JSONParser.parse($0) } } catch {
            return .failure(DebertaError(.invalidInput, file: name, "is not JSON: \(error)"))
        }
        guard case .object = value else {
            return .failure(DebertaError(.invalidInput, file: name, "is not a JSON object"))
        }
        for key in required where value[key]?.stringValue == nil {
            return .failure(DebertaError(.invalidInput, file: name, field: key, "has no string field \"\(key)\""))
        }
        return .success(value)
    }
}

/// Items done, rate and (for a file) the share read, on standard error, only when it is a terminal.
final class Progress {
    let totalBytes: Int?
    let start = Date()
    let enabled = isatty(2) != 0

    init(totalBytes: Int?) { self.totalBytes = totalBytes }

    func update(items: Int, bytes: Int) {
        guard enabled else { return }
        let elapsed = Date().timeIntervalSince(start)
        let rate = elapsed > 0 ? Double(items) / elapsed : 0
        var line = "\r\(items) done  \(fixed(rate, 1)) items/s"
        if let total = totalBytes, total > 0 {
            let share = min(1, Double(bytes) / Double(total))
            let width = 30
            let filled = Int(Double(width) * share)
            let eta = share > 0 ? elapsed * (1 - share) / share : 0
            line = "\r[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "] " + line.dropFirst() + "  ETA \(Int(eta.rounded()))s "
        }
        FileOutput.writeStandardError(line)
    }

    func finish() { if enabled { FileOutput.writeStandardError("\n") } }
}
