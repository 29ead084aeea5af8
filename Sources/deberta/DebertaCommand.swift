import ArgumentParser
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@main
struct DebertaCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "deberta",
        abstract: "Convert, inspect and run DeBERTa checkpoints on the CPU.",
        subcommands: [Inspect.self, Convert.self, Run.self, Verify.self, Bench.self, Tokenize.self, FillMask.self, Classify.self, ZeroShot.self, NER.self, QA.self, Embed.self, Serve.self]
    )

    /// Signals first (before any thread exists), then parse and run; every error is printed by
    /// `Terminal.report` (escaped, one line) and ends the process with its status. `serve` leaves SIGTERM and
    /// SIGINT to its service lifecycle (graceful shutdown, exit 0) and writes no temporary files.
    static func main() {
        let serving = CommandLine.arguments.dropFirst().first == "serve"
        if !serving { Signals.install() }
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            fflush(nil)
            terminate(Terminal.report(error))
        }
        terminate(0)
    }
}
