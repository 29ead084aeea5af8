import Checkpoint
import DeBERTa
import Foundation
import Synchronization
import Tokenizers

/// The routes' work: a request's fields → the task's plan → the batcher → the JSON value. Task logic
/// (softmax, zero-shot, aggregation, QA windows, pooling) is the library's, the same code the CLI runs.
final class InferenceAPI: Sendable {
    let model: TextModel
    let options: ServerOptions
    let metrics: ServerMetrics
    let batcher: Batcher
    /// The longest input in tokens (the model's limit, --max-length, or max_position_embeddings for
    /// models without absolute positions).
    let maxInputLength: Int
    let modelId: String
    private let admitted = Mutex(0)
    private let warmedUp = Atomic(false)

    init(model: TextModel, options: ServerOptions, maxInputLength: Int) {
        self.model = model
        self.options = options
        self.maxInputLength = maxInputLength
        self.metrics = ServerMetrics()
        self.batcher = Batcher(model: model, limits: .init(maxBatchTokens: options.maxBatchTokens, maxBatchRequests: options.maxBatchRequests,
                                                           maxWaitSeconds: options.maxWaitMilliseconds / 1000), metrics: metrics)
        self.modelId = options.modelId ?? URL(fileURLWithPath: model.model.files.directory).lastPathComponent
    }

    var isReady: Bool { warmedUp.load(ordering: .acquiring) && batcher.isRunning }

    /// Starts the batcher and runs a forward call of each kind the routes use (packing the weights, so the
    /// first request does not pay for it); /health answers 200 after this.
    func warmUp() async throws {
        batcher.start()
        let sample = try model.encoder.encode("Warm up the runtime.", maxLength: maxInputLength)
        for _ in 0 ..< 2 { _ = try await batcher.run([sample], kind: .hidden) }
        switch model.model.layout.head {
        case .sequenceClassification, .tokenClassification, .questionAnswering:
            _ = try await batcher.run([sample], kind: .head)
        case .maskedLM:
            if let plan = try? model.fillMaskPlan(["Warm up the [MASK]."], topK: 1) {
                _ = try plan.finish(try await batcher.run(plan.sequences, kind: plan.kind))
            }
        default: break
        }
        warmedUp.store(true, ordering: .releasing)
    }

    /// Admits a request under --max-concurrent-requests (429 beyond), runs it, and counts it.
    func admit<T>(route: String, _ body: () async throws -> T) async throws -> T {
        let began = DispatchTime.now().uptimeNanoseconds
        let count: Int? = admitted.withLock { n in
            guard n < options.maxConcurrentRequests else { return nil }
            n += 1
            return n
        }
        guard let count else {
            let error = APIError(.tooManyRequests, .overloaded, "the server has \(options.maxConcurrentRequests) requests in progress (--max-concurrent-requests); try again later")
            metrics.request(route: route, seconds: 0, error: error.kind)
            throw error
        }
        metrics.inFlight(count)
        defer {
            let left = admitted.withLock { n in n -= 1; return n }
            metrics.inFlight(left)
        }
        do {
            let value = try await body()
            metrics.request(route: route, seconds: Double(DispatchTime.now().uptimeNanoseconds - began) / 1e9, error: nil)
            return value
        } catch {
            metrics.request(route: route, seconds: Double(DispatchTime.now().uptimeNanoseconds - began) / 1e9, error: APIError(error).kind)
            throw error
        }
    }

    /// A plan through the batcher; with `truncate` false an input over the limit is a 422.
    func run<V>(_ plan: TaskPlan<V>, truncate: Bool = true) async throws -> V {
        if !truncate, let long = plan.sequences.first(where: { !$0.truncated.isEmpty }) {
            let given = long.length + long.truncated.reduce(0) { $0 + $1.tokens.count }
            throw APIError.validation("Input validation error: `inputs` must have less than \(maxInputLength) tokens. Given: \(given)")
        }
        metrics.inputTokens(plan.tokens)
        return try plan.finish(try await batcher.run(plan.sequences, kind: plan.kind))
    }

    // MARK: - TEI routes

    /// POST /predict: `inputs` a text, a pair `[a, b]`, or a batch of texts and pairs.
    func predict(_ f: RequestFields) async throws -> JSONValue {
        guard let inputs = f["inputs"] else { throw APIError.validation("`inputs` is missing") }
        let raw = try f.bool("raw_scores", default: false), truncate = try f.bool("truncate", default: false)
        func sequence(_ v: JSONValue) throws -> (text: String, pair: String?) {
            if let s = v.stringValue { return (s, nil) }
            if let a = v.arrayValue, (1 ... 2).contains(a.count), let first = a[0].stringValue {
                if a.count == 1 { return (first, nil) }
                if let second = a[1].stringValue { return (first, second) }
            }
            throw APIError.validation("`inputs` must be a text, a pair [text, text], or a list of texts and pairs")
        }
        var items: [(text: String, pair: String?)]
        var single = false
        if let s = inputs.stringValue {
            items = [(s, nil)]
            single = true
        } else if let a = inputs.arrayValue, a.count == 2, let x = a[0].stringValue, let y = a[1].stringValue {
            items = [(x, y)]
            single = true
        } else if let a = inputs.arrayValue {
            items = try a.map(sequence)
        } else {
            throw APIError.validation("`inputs` must be a text, a pair [text, text], or a list of texts and pairs")
        }
        if items.isEmpty { throw APIError.empty("`inputs` cannot be empty") }
        if items.count > options.maxClientBatchSize {
            throw APIError.validation("`inputs` holds \(items.count) inputs; the maximum is \(options.maxClientBatchSize) (--max-client-batch-size)")
        }
        if items.contains(where: { $0.text.isEmpty }) { throw APIError.empty("`inputs` cannot hold an empty text") }
        let plan = try model.classifyPlan(items, function: raw ? ClassificationFunction.none : nil)
        let results = try await run(plan, truncate: truncate).map(PipelineJSON.labelScores)
        return single ? results[0] : .array(results)
    }

    /// POST /embed: one vector per text.
    func embed(_ f: RequestFields) async throws -> JSONValue {
        let (texts, _) = try f.texts("inputs", limit: options.maxClientBatchSize)
        if texts.contains(where: \.isEmpty) { throw APIError.empty("`inputs` cannot hold an empty text") }
        let plan = try model.embedPlan(texts, pooling: options.pooling, normalize: try f.bool("normalize", default: true))
        return .array(try await run(plan, truncate: try f.bool("truncate", default: false)).map(PipelineJSON.embedding))
    }

    /// POST /rerank: the texts by relevance to the query.
    func rerank(_ f: RequestFields) async throws -> JSONValue {
        let query = try f.requiredString("query")
        if query.isEmpty { throw APIError.empty("`query` cannot be empty") }
        let (texts, _) = try f.texts("texts", limit: options.maxClientBatchSize)
        let raw = try f.bool("raw_scores", default: false), returnText = try f.bool("return_text", default: false)
        let plan = try model.rerankPlan(query: query, texts: texts, raw: raw)
        let ranked = try await run(plan, truncate: try f.bool("truncate", default: false))
        return .array(ranked.map { r in
            var members: [(String, JSONValue)] = [("index", .int(r.index)), ("score", PipelineJSON.score(r.score))]
            if returnText { members.append(("text", .string(texts[r.index]))) }
            return .object(members)
        })
    }

    /// POST /tokenize: tokens with ids, text, whether special, and character offsets.
    func tokenize(_ f: RequestFields) async throws -> JSONValue {
        let (texts, _) = try f.texts("inputs", limit: options.maxClientBatchSize)
        let special = try f.bool("add_special_tokens", default: true)
        let encoder = model.encoder
        return .array(try texts.map { text in
            let e: EncodedInput
            if special {
                e = try encoder.frame(encoder.tokenize(text), nil, truncation: .none, maxLength: nil)
            } else {
                let t = encoder.tokenize(text)
                e = EncodedInput(ids: t.ids, tokens: t.tokens, typeIds: t.ids.map { _ in 0 }, offsets: t.offsets, sequence: t.ids.map { _ in 0 })
            }
            return .array((0 ..< e.length).map { i in
                let span = e.offsets[i]
                let isSpecial = span == nil
                return .object([
                    ("id", .int(e.ids[i])),
                    ("text", .string(span.map { text.unicodeScalarSlice($0) } ?? e.tokens[i])),
                    ("special", .bool(isSpecial)),
                    ("start", span.map { .int($0.lowerBound) } ?? .null),
                    ("stop", span.map { .int($0.upperBound) } ?? .null),
                ])
            })
        })
    }

    /// POST /v1/embeddings: OpenAI's shape.
    func openAIEmbeddings(_ f: RequestFields) async throws -> JSONValue {
        let (texts, _) = try f.texts("input", limit: options.maxClientBatchSize)
        if texts.contains(where: \.isEmpty) { throw APIError.empty("`input` cannot hold an empty text") }
        let format = try f.string("encoding_format") ?? "float"
        guard format == "float" || format == "base64" else { throw APIError.validation("`encoding_format` must be float or base64") }
        let plan = try model.embedPlan(texts, pooling: options.pooling, normalize: true)
        let vectors = try await run(plan, truncate: true)
        let tokens = plan.tokens
        return .object([
            ("object", .string("list")),
            ("data", .array(vectors.enumerated().map { i, v in
                let embedding: JSONValue = format == "float" ? PipelineJSON.embedding(v)
                    : .string(v.withUnsafeBytes { Data($0).base64EncodedString() })
                return .object([("object", .string("embedding")), ("embedding", embedding), ("index", .int(i))])
            })),
            ("model", .string(try f.string("model") ?? modelId)),
            ("usage", .object([("prompt_tokens", .int(tokens)), ("total_tokens", .int(tokens))])),
        ])
    }

    // MARK: - the other tasks, with the CLI's JSON for one input

    func fillMask(_ f: RequestFields) async throws -> JSONValue {
        let text = try f.requiredString("inputs")
        let topK = try f.int("top_k", default: 5, in: 1 ... 1000)!
        let decoder = try f.string("decoder").map { name -> MaskDecoder in
            guard let d = MaskDecoder(rawValue: name) else { throw APIError.validation("`decoder` must be emd or mlm") }
            return d
        }
        return PipelineJSON.fillMask(try await run(model.fillMaskPlan([text], topK: topK, decoder: decoder))[0])
    }

    func zeroShot(_ f: RequestFields) async throws -> JSONValue {
        let text = try f.requiredString("inputs")
        if text.isEmpty { throw APIError.empty("`inputs` cannot be empty") }
        let labels = try f.labels("candidate_labels", limit: options.maxClientBatchSize)
        let template = try f.string("hypothesis_template") ?? "This example is {}."
        let plan = try model.zeroShotPlan(text, labels: labels, template: template, multiLabel: try f.bool("multi_label", default: false))
        return PipelineJSON.zeroShot(try await run(plan))
    }

    func ner(_ f: RequestFields) async throws -> JSONValue {
        let text = try f.requiredString("inputs")
        let name = try f.string("aggregation_strategy") ?? "simple"
        guard let aggregation = Aggregation(rawValue: name.lowercased()) else {
            throw APIError.validation("`aggregation_strategy` must be none, simple, first, average or max")
        }
        let stride = try f.int("stride", in: 0 ... 100_000)
        return PipelineJSON.entities(try await run(model.entitiesPlan(text, aggregation: aggregation, stride: stride)))
    }

    func qa(_ f: RequestFields) async throws -> JSONValue {
        let question = try f.requiredString("question"), context = try f.requiredString("context")
        if question.isEmpty { throw APIError.empty("`question` cannot be empty") }
        let options = QAOptions(maxSeqLen: try f.int("max_seq_len", default: 384, in: 4 ... 1_000_000)!,
                                docStride: try f.int("doc_stride", in: 0 ... 1_000_000),
                                maxAnswerLen: try f.int("max_answer_len", default: 15, in: 1 ... 100_000)!,
                                topK: try f.int("top_k", default: 1, in: 1 ... 1000)!,
                                handleImpossibleAnswer: try f.bool("handle_impossible_answer", default: false),
                                alignToWords: try f.bool("align_to_words", default: true))
        return PipelineJSON.answers(try await run(model.answerPlan(question: question, context: context, options: options)))
    }

    // MARK: - GET routes

    func info() -> JSONValue {
        func labelMaps() -> JSONValue {
            let labels = model.model.config.id2label.sorted { $0.key < $1.key }
            return .object([
                ("id2label", .object(labels.map { (String($0.key), .string($0.value)) })),
                ("label2id", .object(labels.map { ($0.value, .int($0.key)) })),
            ])
        }
        let type: JSONValue
        switch model.model.layout.head {
        case .sequenceClassification:
            type = .object([(model.model.config.numLabels == 1 ? "reranker" : "classifier", labelMaps())])
        case .tokenClassification: type = .object([("token_classifier", labelMaps())])
        case .questionAnswering: type = .object([("question_answering", .object([]))])
        case .maskedLM: type = .object([("masked_lm", .object([("pooling", .string(options.pooling.rawValue))]))])
        default: type = .object([("embedding", .object([("pooling", .string(options.pooling.rawValue))]))])
        }
        return .object([
            ("model_id", .string(modelId)),
            ("model_sha", .null),
            ("model_dtype", .string(model.model.quantization?.rawValue ?? (model.model.options.precision == .bf16 ? "bfloat16" : "float32"))),
            ("model_type", type),
            ("max_concurrent_requests", .int(options.maxConcurrentRequests)),
            ("max_input_length", .int(maxInputLength)),
            ("max_batch_tokens", .int(options.maxBatchTokens)),
            ("max_batch_requests", options.maxBatchRequests.map { .int($0) } ?? .null),
            ("max_client_batch_size", .int(options.maxClientBatchSize)),
            ("payload_limit", .int(options.payloadLimit)),
            ("version", .string(ServerVersion.string)),
        ])
    }
}

enum ServerVersion {
    static let string = "0.1.0"
}

extension String {
    /// Unicode scalars `range` (the offsets of the tokenizers).
    func unicodeScalarSlice(_ range: Range<Int>) -> String {
        let s = Array(unicodeScalars)
        let lo = max(0, min(range.lowerBound, s.count)), hi = max(lo, min(range.upperBound, s.count))
        return String(String.UnicodeScalarView(s[lo ..< hi]))
    }
}
