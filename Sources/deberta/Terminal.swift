import ArgumentParser
import Checkpoint
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Everything this executable prints goes through `Terminal.safe`: control characters from file names,
/// tensor names, texts and JSON values (ESC, CR, LF, DEL, C1, U+2028/2029) never reach the terminal raw, so
/// a file cannot forge output lines or drive the terminal.
enum Terminal {
    /// A line of human-readable output: `Printable.escaped` (tabs kept). A JSON text (it starts with `{` or
    /// `[`) instead gets JSON escapes (`\u001b`, `\u0085`, `\u2028`), so that it stays valid JSON: the
    /// serializer already escapes U+0000-U+001F, this adds DEL, C1 and the two line separators.
    static func safe(_ text: String) -> String {
        guard let first = text.unicodeScalars.first, first == "{" || first == "[" else {
            return Printable.escaped(text, keepTabs: true)
        }
        return jsonSafe(text)
    }

    static func jsonSafe(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: isControl) else { return text }
        var out = ""
        for u in text.unicodeScalars {
            if isControl(u) {
                let h = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
            } else {
                out.unicodeScalars.append(u)
            }
        }
        return out
    }

    static func isControl(_ u: Unicode.Scalar) -> Bool {
        u.value < 0x20 || (0x7F ... 0x9F).contains(u.value) || u.value == 0x2028 || u.value == 0x2029
    }

    /// Prints an error (or any failure) the way every command reports one: `Error: ` and one escaped line
    /// on standard error; usage errors add ArgumentParser's usage lines. Returns the exit status.
    static func report(_ error: Error) -> Int32 {
        let code = DebertaCommand.exitCode(for: error)
        if code == .success {
            // --help, --version: our own text, to standard output.
            Swift.print(DebertaCommand.fullMessage(for: error))
            return 0
        }
        let message = DebertaCommand.message(for: error)
        if message.isEmpty { return code.rawValue }  // a bare ExitCode: the command has said why
        var full = DebertaCommand.fullMessage(for: error)
        if let range = full.range(of: message) {
            full.replaceSubrange(range, with: Printable.escaped(message, keepTabs: true))
        } else {
            full = "Error: " + Printable.escaped(message, keepTabs: true)
        }
        FileOutput.writeStandardError(full.hasSuffix("\n") ? full : full + "\n")
        return code.rawValue
    }
}

/// The executable's `print`: every line of output goes through `Terminal.safe` (this shadows Swift.print in
/// this module, so no command can print a raw file name or text by accident).
func print(_ items: Any..., separator: String = " ", terminator: String = "\n") {
    let text = items.map { Terminal.safe(String(describing: $0)) }.joined(separator: separator)
    Swift.print(text, terminator: terminator)
}

/// Writes one message line to standard error (diagnostics and progress never mix with results on standard
/// output), escaped like every message.
func printError(_ text: String) {
    FileOutput.writeStandardError(Printable.escaped(text, keepTabs: true) + "\n")
}

/// Flushes standard output and ends the process with `status`.
func terminate(_ status: Int32) -> Never {
    fflush(nil)
    exit(status)
}
