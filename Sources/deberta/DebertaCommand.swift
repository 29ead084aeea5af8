import ArgumentParser

@main
struct DebertaCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "deberta",
        abstract: "Convert, inspect and run DeBERTa checkpoints on the CPU.",
        subcommands: [Inspect.self, Convert.self, Run.self, Verify.self, Bench.self]
    )
}
