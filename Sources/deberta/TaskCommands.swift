import ArgumentParser
import Checkpoint
import DeBERTa
import Foundation

// The text commands. `--json` prints, per input, the value transformers' pipeline returns for it; batch
// mode writes one JSON object per line: the input line's own fields plus `result`, that same value.

func jsonString(_ s: String) -> JSONValue { .string(s) }
func jsonScore(_ x: Double) -> JSONValue { PipelineJSON.score(x) }
func jsonSpan(_ r: Range<Int>?) -> JSONValue { PipelineJSON.span(r) }

/// A batch line's fields with `result` set to the task's value.
func withResult(_ item: JSONValue, _ result: JSONValue) -> JSONValue {
    guard case let .object(members) = item else { return .object([("result", result)]) }
    return .object(members.filter { $0.0 != "result" } + [("result", result)])
}

/// Batch mode with the items' own fields kept beside `result`.
func runTaskBatch(_ options: TextOptions, required: [String], _ values: ([JSONValue]) throws -> [JSONValue]) throws {
    try runBatch(options, required: required) { items in zip(items, try values(items)).map(withResult) }
}

// MARK: - tokenize

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Token ids, tokens and character offsets of texts ([CLS] text [SEP]); needs only the tokenizer files.")

    @OptionGroup var options: TextOptions
    @Option(name: .customLong("text"), help: "A text (repeatable). Without --text, one text per line from standard input.")
    var texts: [String] = []
    @Option(help: "A second text, encoded as [CLS] text [SEP] pair [SEP].")
    var pair: String?

    func run() throws {
        var isDirectory: ObjCBool = false
        let encoder: TextEncoder
        if FileManager.default.fileExists(atPath: options.model, isDirectory: &isDirectory), isDirectory.boolValue {
            encoder = try TextEncoder.load(directory: options.model)
        } else {
            let files = try ModelFiles.resolve(options.model)
            encoder = try TextEncoder.load(directory: files.directory)
        }
        let limit = [options.maxLength, encoder.maxLength].compactMap { $0 }.min()
        func encode(_ text: String, _ pair: String?) throws -> EncodedInput {
            let e = try encoder.encode(text, pair: pair, maxLength: limit)
            for t in e.truncated { printError("warning: \"\(text.prefix(40))\": " + t.warning) }
            return e
        }
        func result(_ e: EncodedInput) -> JSONValue {
            .object([
                ("input_ids", .array(e.ids.map { .int($0) })),
                ("tokens", .array(e.tokens.map(jsonString))),
                ("offsets", .array(e.offsets.map(jsonSpan))),
                ("token_type_ids", .array(e.typeIds.map { .int($0) })),
            ])
        }
        if options.input != nil {
            try runTaskBatch(options, required: ["text"]) { items in try items.map { result(try encode($0["text"]!.stringValue!, $0["pair"]?.stringValue)) } }
            return
        }
        var inputs = texts
        if inputs.isEmpty {
            inputs = try LineReader(path: "-").allLines()
        }
        for text in inputs {
            let e = try encode(text, pair)
            if options.json { print(result(e).serialized()); continue }
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
        abstract: "Predict the tokens written as [MASK] (Enhanced Mask Decoder when the model has one, or the MLM head).")

    @OptionGroup var options: TextOptions
    @Argument(help: "Text with one or more [MASK].") var text: String?
    @Option(help: "Predictions per mask.") var topK: Int = 5
    @Option(help: "emd (the Enhanced Mask Decoder, default when the model has one) or mlm (the plain head transformers runs).")
    var decoder: String?

    func validate() throws {
        if topK < 1 { throw ValidationError("--top-k must be positive") }
        if let d = decoder, MaskDecoder(rawValue: d) == nil { throw ValidationError("--decoder must be emd or mlm") }
        if text == nil && options.input == nil { throw ValidationError("give a text with [MASK], or --input FILE.jsonl") }
    }

    static func value(_ r: FillMaskResult) -> JSONValue { PipelineJSON.fillMask(r) }

    func run() throws {
        let model = try options.load()
        let choice = decoder.flatMap(MaskDecoder.init(rawValue:))
        if options.input != nil {
            try runBatch(options, required: ["text"]) { items in
                let results = try model.fillMask(items.map { $0["text"]!.stringValue! }, topK: topK, decoder: choice)
                return zip(items, results).map { item, r in
                    guard case let .object(members) = withResult(item, Self.value(r)) else { return .null }
                    return .object(members + [("decoder", .string(r.decoder.rawValue))])
                }
            }
            return
        }
        let r = try model.fillMask([text!], topK: topK, decoder: choice)[0]
        printError("fill-mask: \(r.fromEMD ? "Enhanced Mask Decoder (--decoder emd)" : "MLM head (--decoder mlm)")")
        if options.json { print(Self.value(r).serialized()); return }
        print("\(text!)   (\(r.fromEMD ? "Enhanced Mask Decoder" : "MLM head"))")
        for (k, m) in r.masks.enumerated() {
            print("  [MASK] #\(k + 1) at characters \(m.offset.lowerBound)..<\(m.offset.upperBound)")
            for p in m.predictions { print("    " + padded(p.piece, 20) + padded(String(p.id), 8) + fixed(p.score, 4)) }
        }
    }
}

// MARK: - classify

struct Classify: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Sequence classification: every label from id2label with its score, best first.")

    @OptionGroup var options: TextOptions
    @Argument(help: "The text.") var text: String?
    @Option(help: "A second text (e.g. the hypothesis of an NLI model).") var pair: String?
    @Option(help: "softmax, sigmoid or none (default: sigmoid for problem_type multi_label_classification or one output, none for regression, else softmax).")
    var functionToApply: String?

    func validate() throws {
        if text == nil && options.input == nil { throw ValidationError("give a text, or --input FILE.jsonl") }
        if let f = functionToApply, ClassificationFunction(rawValue: f) == nil { throw ValidationError("--function-to-apply must be softmax, sigmoid or none") }
    }

    static func value(_ scores: [LabelScore]) -> JSONValue { PipelineJSON.labelScores(scores) }

    func run() throws {
        let model = try options.load()
        let function = functionToApply.flatMap(ClassificationFunction.init(rawValue:))
        if options.input != nil {
            try runTaskBatch(options, required: ["text"]) { items in
                try model.classify(items.map { (text: $0["text"]!.stringValue!, pair: $0["pair"]?.stringValue) }, function: function).map(Self.value)
            }
            return
        }
        let scores = try model.classify([(text: text!, pair: pair)], function: function)[0]
        if options.json { print(Self.value(scores).serialized()); return }
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

    static func value(_ r: ZeroShotResult) -> JSONValue { PipelineJSON.zeroShot(r) }

    func run() throws {
        let model = try options.load()
        func parse(_ s: String) -> [String] { s.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }
        if options.input != nil {
            try runTaskBatch(options, required: ["text"]) { items in
                try items.map { item in
                    let candidates = item["labels"]?.arrayValue?.compactMap(\.stringValue) ?? parse(item["labels"]?.stringValue ?? labels ?? "")
                    return Self.value(try model.zeroShot(item["text"]!.stringValue!, labels: candidates, template: template, multiLabel: multiLabel))
                }
            }
            return
        }
        let r = try model.zeroShot(text!, labels: parse(labels!), template: template, multiLabel: multiLabel)
        if options.json { print(Self.value(r).serialized()); return }
        for (l, s) in zip(r.labels, r.scores) { print(padded(l, 24) + fixed(s, 4)) }
    }
}

// MARK: - ner

struct NER: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ner", abstract: "Named entities: spans with labels, scores and character offsets.")

    @OptionGroup var options: TextOptions
    @Argument(help: "The text.") var text: String?
    @Option(help: "none, simple, first, average or max (transformers' aggregation_strategy).") var aggregation: String = "simple"
    @Option(help: "Tokens shared by consecutive windows of a text longer than the model takes (default: half a window, at most 128).")
    var stride: Int?

    func validate() throws {
        if text == nil && options.input == nil { throw ValidationError("give a text, or --input FILE.jsonl") }
        if Aggregation(rawValue: aggregation) == nil { throw ValidationError("--aggregation must be none, simple, first, average or max") }
        if let s = stride, s < 0 { throw ValidationError("--stride must be ≥ 0") }
    }

    static func value(_ entities: [Entity]) -> JSONValue { PipelineJSON.entities(entities) }

    func run() throws {
        let model = try options.load()
        let mode = Aggregation(rawValue: aggregation)!
        if options.input != nil {
            try runTaskBatch(options, required: ["text"]) { items in
                try model.entities(items.map { $0["text"]!.stringValue! }, aggregation: mode, stride: stride).map(Self.value)
            }
            return
        }
        let entities = try model.entities([text!], aggregation: mode, stride: stride)[0]
        if options.json { print(Self.value(entities).serialized()); return }
        if entities.isEmpty { print("(no entities)") }
        for e in entities { print(padded(e.label, 10) + padded("\(e.start)..<\(e.end)", 12) + padded(fixed(e.score, 4), 8) + e.word) }
    }
}

// MARK: - qa

struct QA: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "qa", abstract: "Extractive question answering (the transformers 4.x pipeline's algorithm).")

    @OptionGroup var options: TextOptions
    @Option(help: "The question.") var question: String?
    @Option(help: "The context holding the answer.") var context: String?
    @Option(help: "Tokens of overlap between windows of a long context (doc_stride; default min(window / 2, 128)).") var stride: Int?
    @Option(help: "Tokens per window, question and special tokens included (max_seq_len).") var maxSeqLen: Int = 384
    @Option(help: "Longest answer, in tokens (max_answer_len).") var maxAnswerTokens: Int = 15
    @Option(help: "Answers to return (top_k).") var topK: Int = 1
    @Flag(help: "Also offer the empty answer (handle_impossible_answer).") var handleImpossibleAnswer = false
    @Flag(help: "Keep token offsets instead of widening answers to whole words (align_to_words=False).") var noAlignToWords = false

    func validate() throws {
        if options.input == nil && (question == nil || context == nil) { throw ValidationError("give --question and --context, or --input FILE.jsonl") }
        if (stride ?? 0) < 0 || maxAnswerTokens < 1 || topK < 1 || maxSeqLen < 4 {
            throw ValidationError("--stride must be ≥ 0, --max-answer-tokens and --top-k ≥ 1, --max-seq-len ≥ 4")
        }
    }

    static func value(_ answers: [Answer]) -> JSONValue { PipelineJSON.answers(answers) }

    func run() throws {
        let model = try options.load()
        let qa = QAOptions(maxSeqLen: maxSeqLen, docStride: stride, maxAnswerLen: maxAnswerTokens, topK: topK,
                           handleImpossibleAnswer: handleImpossibleAnswer, alignToWords: !noAlignToWords)
        if options.input != nil {
            try runTaskBatch(options, required: ["question", "context"]) { items in
                try items.map { Self.value(try model.answer(question: $0["question"]!.stringValue!, context: $0["context"]!.stringValue!, options: qa)) }
            }
            return
        }
        let answers = try model.answer(question: question!, context: context!, options: qa)
        if options.json { print(Self.value(answers).serialized()); return }
        for a in answers {
            print("answer  \(a.answer)")
            print("score   \(fixed(a.score, 4))")
            print("span    \(a.start)..<\(a.end)")
        }
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

    static func value(_ v: [Float]) -> JSONValue { PipelineJSON.embedding(v) }

    func run() throws {
        let model = try options.load()
        let mode = Pooling(rawValue: pooling)!
        if options.input != nil {
            try runTaskBatch(options, required: ["text"]) { items in try model.embed(items.map { $0["text"]!.stringValue! }, pooling: mode).map(Self.value) }
            return
        }
        for (text, v) in zip(texts, try model.embed(texts, pooling: mode)) {
            if options.json { print(Self.value(v).serialized()); continue }
            print(text)
            print("  [\(v.count)] " + v.prefix(8).map { fixed(Double($0), 4) }.joined(separator: " ") + (v.count > 8 ? " ..." : ""))
        }
    }
}
