import ArgumentParser

@main
struct DebertaCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "deberta",
        abstract: "Convert, inspect and run DeBERTa checkpoints on the CPU.",
        subcommands: [Inspect.self, Convert.self, Run.self, Verify.self, Bench.self, Tokenize.self, FillMask.self, Classify.self, ZeroShot.self, NER.self, QA.self, Embed.self]
    )
}
