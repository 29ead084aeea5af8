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

    func validate() throws {
        if batchSize < 1 { throw ValidationError("--batch-size must be positive") }
        if output != nil && input == nil { throw ValidationError("--output goes with --input (batch mode)") }
    }

    func load() throws -> TextModel {
        try InputFile.checkModel(model)
        if let input, input != "-" { try InputFile.check(input, dashAllowed: true) }
        if let output { try FileOutput.check(output) }
        return try TextModel(path: model, options: runtime.options)
    }
}

func jsonString(_ s: String) -> JSONValue { .string(s) }
func jsonNumber(_ x: Double) -> JSONValue { .number(x, isInteger: false, text: fixed(x, 6)) }
func jsonSpan(_ r: Range<Int>?) -> JSONValue { r.map { .array([.int($0.lowerBound), .int($0.upperBound)]) } ?? .null }

// MARK: - tokenize

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Token ids, tokens and character offsets of texts ([CLS] text [SEP]).")

    @OptionGroup var options: TextOptions
    @Option(name: .customLong("text"), help: "A text (repeatable). Without --text, one text per line from standard input.")
    var texts: [String] = []
    @Option(help: "A second text, encoded as [CLS] text [SEP] pair [SEP].")
    var pair: String?

    func run() throws {
        let model = try options.load()
        func result(_ text: String, _ pair: String?) throws -> JSONValue {
            let e = try model.encoder.encode(text, pair: pair)
            return .object([
                ("input_ids", .array(e.ids.map { .int($0) })),
                ("tokens", .array(e.tokens.map(jsonString))),
                ("offsets", .array(e.offsets.map(jsonSpan))),
                ("token_type_ids", .array(e.typeIds.map { .int($0) })),
            ])
        }
        if options.input != nil {
            try runBatch(options, required: ["text"]) { items in try items.map { try result($0["text"]!.stringValue!, $0["pair"]?.stringValue) } }
            return
        }
        var inputs = texts
        if inputs.isEmpty {
            inputs = try LineReader(path: "-").allLines()
        }
        for text in inputs {
            let r = try result(text, pair)
            if options.json { print(r.serialized()); continue }
            let e = try model.encoder.encode(text, pair: pair)
            print(text)
            print("  " + padded("id", 8) + padded("token", 24) + "offsets")
            for i in 0 ..< e.length {
                print("  " + padded(String(e.ids[i]), 8) + padded(e.tokens[i], 24) + (e.offsets[i].map { "\($0.lowerBound)..<\($0.upperBound)" } ?? "-"))
            }
        }
    }
}

// MARK: - fill-mask

struct FillMask: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "fill-mask",
        abstract: "Predict the tokens written as [MASK], from the Enhanced Mask Decoder when the model has one.")

    @OptionGroup var options: TextOptions
    @Argument(help: "Text with one or more [MASK].") var text: String?
    @Option(help: "Predictions per mask.") var topK: Int = 5

    func validate() throws {
        if topK < 1 { throw ValidationError("--top-k must be positive") }
        if text == nil && options.input == nil { throw ValidationError("give a text with [MASK], or --input FILE.jsonl") }
    }

    func run() throws {
        let model = try options.load()
        func render(_ text: String, _ r: (fromEMD: Bool, masks: [FilledMask])) -> JSONValue {
            .object([
                ("text", .string(text)),
                ("decoder", .string(r.fromEMD ? "emd" : "mlm")),
                ("masks", .array(r.masks.map { m in
                    .object([
                        ("position", .int(m.position)),
                        ("offsets", jsonSpan(m.offset)),
                        ("predictions", .array(m.predictions.map { p in
                            .object([("token", .string(p.token)), ("id", .int(p.id)), ("score", jsonNumber(p.score))])
                        })),
                    ])
                })),
            ])
        }
        if options.input != nil {
            try runBatch(options, required: ["text"]) { items in
                let texts = items.map { $0["text"]!.stringValue! }
                return zip(texts, try model.fillMask(texts, topK: topK)).map(render)
            }
            return
        }
        let text = self.text!
        let r = try model.fillMask([text], topK: topK)[0]
        if options.json { print(render(text, r).serialized()); return }
        print("\(text)   (\(r.fromEMD ? "Enhanced Mask Decoder" : "MLM head"))")
        for (k, m) in r.masks.enumerated() {
            print("  [MASK] #\(k + 1) at characters \(m.offset.lowerBound)..<\(m.offset.upperBound)")
            for p in m.predictions { print("    " + padded(p.token, 20) + padded(String(p.id), 8) + fixed(p.score, 4)) }
        }
    }
}

// MARK: - classify

struct Classify: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Sequence classification: labels from id2label with probabilities.")

    @OptionGroup var options: TextOptions
    @Argument(help: "The text.") var text: String?
    @Option(help: "A second text (e.g. the hypothesis of an NLI model).") var pair: String?

    func validate() throws {
        if text == nil && options.input == nil { throw ValidationError("give a text, or --input FILE.jsonl") }
    }

    func run() throws {
        let model = try options.load()
        func render(_ text: String, _ pair: String?, _ scores: [LabelScore]) -> JSONValue {
            var members: [(String, JSONValue)] = [("text", .string(text))]
            if let pair { members.append(("pair", .string(pair))) }
            members.append(("labels", .array(scores.map { .object([("label", .string($0.label)), ("score", jsonNumber($0.score))]) })))
            return .object(members)
        }
        if options.input != nil {
            try runBatch(options, required: ["text"]) { items in
                let pairs = items.map { ($0["text"]!.stringValue!, $0["pair"]?.stringValue) }
                return zip(pairs, try model.classify(pairs.map { (text: $0.0, pair: $0.1) })).map { render($0.0, $0.1, $1) }
            }
            return
        }
        let scores = try model.classify([(text: text!, pair: pair)])[0]
        if options.json { print(render(text!, pair, scores).serialized()); return }
        for s in scores { print(padded(s.label, 24) + fixed(s.score, 4)) }
    }
}

// MARK: - zero-shot

struct ZeroShot: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "zero-shot",
        abstract: "NLI-based zero-shot classification over labels given on the command line.")

    @OptionGroup var options: TextOptions
    @Argument(help: "The text to classify.") var text: String?
    @Option(help: "Candidate labels, comma-separated.") var labels: String?
    @Option(help: "Hypothesis template; {} is replaced by each label.") var template = "This example is {}."
    @Flag(help: "Score each label independently (entailment vs contradiction).") var multiLabel = false

    func validate() throws {
        if options.input == nil {
            if text == nil { throw ValidationError("give a text, or --input FILE.jsonl") }
            if (labels ?? "").split(separator: ",").isEmpty { throw ValidationError("--labels needs at least one label, e.g. --labels sports,politics") }
        }
    }

    func run() throws {
        let model = try options.load()
        func parse(_ s: String) -> [String] { s.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }
        func render(_ text: String, _ scores: [LabelScore]) -> JSONValue {
            .object([("text", .string(text)), ("labels", .array(scores.map { .object([("label", .string($0.label)), ("score", jsonNumber($0.score))]) }))])
        }
        if options.input != nil {
            try runBatch(options, required: ["text"]) { items in
                try items.map { item in
                    let candidates = item["labels"]?.arrayValue?.compactMap(\.stringValue) ?? parse(item["labels"]?.stringValue ?? labels ?? "")
                    return render(item["text"]!.stringValue!, try model.zeroShot(item["text"]!.stringValue!, labels: candidates, template: template, multiLabel: multiLabel))
                }
            }
            return
        }
        let scores = try model.zeroShot(text!, labels: parse(labels!), template: template, multiLabel: multiLabel)
        if options.json { print(render(text!, scores).serialized()); return }
        for s in scores { print(padded(s.label, 24) + fixed(s.score, 4)) }
    }
}

// MARK: - ner

struct NER: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ner", abstract: "Named entities: spans with labels, scores and character offsets.")

    @OptionGroup var options: TextOptions
    @Argument(help: "The text.") var text: String?

    func validate() throws {
        if text == nil && options.input == nil { throw ValidationError("give a text, or --input FILE.jsonl") }
    }

    func run() throws {
        let model = try options.load()
        func render(_ text: String, _ entities: [Entity]) -> JSONValue {
            .object([("text", .string(text)), ("entities", .array(entities.map {
                .object([("label", .string($0.label)), ("text", .string($0.text)), ("start", .int($0.start)), ("end", .int($0.end)), ("score", jsonNumber($0.score))])
            }))])
        }
        if options.input != nil {
            try runBatch(options, required: ["text"]) { items in
                let texts = items.map { $0["text"]!.stringValue! }
                return zip(texts, try model.entities(texts)).map(render)
            }
            return
        }
        let entities = try model.entities([text!])[0]
        if options.json { print(render(text!, entities).serialized()); return }
        if entities.isEmpty { print("(no entities)") }
        for e in entities { print(padded(e.label, 10) + padded("\(e.start)..<\(e.end)", 12) + padded(fixed(e.score, 4), 8) + e.text) }
    }
}

// MARK: - qa

struct QA: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "qa", abstract: "Extractive question answering: the best span of the context.")

    @OptionGroup var options: TextOptions
    @Option(help: "The question.") var question: String?
    @Option(help: "The context holding the answer.") var context: String?
    @Option(help: "Tokens of overlap between windows of a long context.") var stride: Int = 128
    @Option(help: "Longest answer, in tokens.") var maxAnswerTokens: Int = 30

    func validate() throws {
        if options.input == nil && (question == nil || context == nil) { throw ValidationError("give --question and --context, or --input FILE.jsonl") }
        if stride < 0 || maxAnswerTokens < 1 { throw ValidationError("--stride must be ≥ 0 and --max-answer-tokens ≥ 1") }
    }

    func run() throws {
        let model = try options.load()
        func render(_ q: String, _ a: Answer) -> JSONValue {
            .object([("question", .string(q)), ("answer", .string(a.text)), ("score", jsonNumber(a.score)), ("start", .int(a.start)), ("end", .int(a.end))])
        }
        if options.input != nil {
            try runBatch(options, required: ["question", "context"]) { items in
                try items.map { item in
                    let q = item["question"]!.stringValue!
                    return render(q, try model.answer(question: q, context: item["context"]!.stringValue!, stride: stride, maxAnswerTokens: maxAnswerTokens))
                }
            }
            return
        }
        let a = try model.answer(question: question!, context: context!, stride: stride, maxAnswerTokens: maxAnswerTokens)
        if options.json { print(render(question!, a).serialized()); return }
        print("answer  \(a.text)")
        print("score   \(fixed(a.score, 4))")
        print("span    \(a.start)..<\(a.end)")
    }
}

// MARK: - embed

struct Embed: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "A vector per text from the last hidden state (mean over tokens, or [CLS]).")

    @OptionGroup var options: TextOptions
    @Argument(help: "Texts to embed.") var texts: [String] = []
    @Option(help: "mean or cls.") var pooling: String = "mean"

    func validate() throws {
        if Pooling(rawValue: pooling) == nil { throw ValidationError("--pooling must be mean or cls") }
        if texts.isEmpty && options.input == nil { throw ValidationError("give texts, or --input FILE.jsonl") }
    }

    func run() throws {
        let model = try options.load()
        let mode = Pooling(rawValue: pooling)!
        func render(_ text: String, _ v: [Float]) -> JSONValue {
            .object([("text", .string(text)), ("embedding", .array(v.map { jsonNumber(Double($0)) }))])
        }
        if options.input != nil {
            try runBatch(options, required: ["text"]) { items in
                let t = items.map { $0["text"]!.stringValue! }
                return zip(t, try model.embed(t, pooling: mode)).map(render)
            }
            return
        }
        for (text, v) in zip(texts, try model.embed(texts, pooling: mode)) {
            if options.json { print(render(text, v).serialized()); continue }
            print(text)
            print("  [\(v.count)] " + v.prefix(8).map { fixed(Double($0), 4) }.joined(separator: " ") + (v.count > 8 ? " ..." : ""))
        }
    }
}
