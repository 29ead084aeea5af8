import Checkpoint
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// `deberta serve` over real HTTP on loopback: every route against the CLI on the same inputs, batching
/// under concurrency, the error classes, and shutdown with requests in flight.
final class ServerRouteTests: XCTestCase {
    func testClassifierRoutesAnswerAsTheCLI() async throws {
        let model = fixture("v2-conv-seqcls")
        let server = try ServerProcess(model)
        defer { XCTAssertEqual(server.stop(), 0) }

        let text = "The river flows past the old town.", pair = "Water moves."
        var r = try await post(server, "/predict", .object([("inputs", .string(text))]))
        XCTAssertEqual(r.status, 200, r.body)
        XCTAssertEqual(r.json, try cli(["classify", model, text, "--json"]))
        r = try await post(server, "/predict", .object([("inputs", strings([text, pair]))]))
        XCTAssertEqual(r.json, try cli(["classify", model, text, "--pair", pair, "--json"]))
        r = try await post(server, "/predict", .object([("inputs", .array([strings([text]), strings(["x y", pair])]))]))
        XCTAssertEqual(r.json, .array([try cli(["classify", model, text, "--json"]), try cli(["classify", model, "x y", "--pair", pair, "--json"])]))
        r = try await post(server, "/predict", .object([("inputs", .string(text)), ("raw_scores", .bool(true))]))
        XCTAssertEqual(r.json, try cli(["classify", model, text, "--function-to-apply", "none", "--json"]))

        // zero-shot, single- and multi-label
        r = try await post(server, "/zero-shot", .object([("inputs", .string(text)), ("candidate_labels", strings(["travel", "water", "sports"]))]))
        XCTAssertEqual(r.json, try cli(["zero-shot", model, text, "--labels", "travel,water,sports", "--json"]))
        r = try await post(server, "/zero-shot", .object([("inputs", .string(text)), ("candidate_labels", strings(["travel", "water"])),
                                                          ("multi_label", .bool(true)), ("hypothesis_template", .string("It is about {}."))]))
        XCTAssertEqual(r.json, try cli(["zero-shot", model, text, "--labels", "travel,water", "--multi-label", "--template", "It is about {}.", "--json"]))

        // rerank on an NLI model: the entailment probability of (query, text), best first
        let texts = ["A cat sleeps on the sofa.", "The river flows.", "Boats sail on the water."]
        r = try await post(server, "/rerank", .object([("query", .string("water")), ("texts", strings(texts)), ("return_text", .bool(true))]))
        XCTAssertEqual(r.status, 200, r.body)
        let ranked = try XCTUnwrap(r.json?.arrayValue)
        XCTAssertEqual(ranked.count, 3)
        var previous = Double.infinity
        for item in ranked {
            let index = try XCTUnwrap(item["index"]?.intValue), score = try XCTUnwrap(item["score"]?.doubleValue)
            XCTAssertLessThanOrEqual(score, previous)
            previous = score
            XCTAssertEqual(item["text"]?.stringValue, texts[index])
            let scores = try XCTUnwrap(try cli(["classify", model, "water", "--pair", texts[index], "--json"]).arrayValue)
            XCTAssertEqual(scores.first { $0["label"]?.stringValue == "entailment" }?["score"]?.doubleValue, score)
        }

        // embeddings: unnormalized equal to the CLI's; normalized has unit length; OpenAI's shape
        r = try await post(server, "/embed", .object([("inputs", .string(text)), ("normalize", .bool(false))]))
        XCTAssertEqual(r.json, .array([try cli(["embed", model, text, "--json"])]))
        r = try await post(server, "/embed", .object([("inputs", strings([text, pair]))]))
        let vectors = try XCTUnwrap(r.json?.arrayValue).map { try XCTUnwrap($0.arrayValue).map { $0.doubleValue ?? .nan } }
        XCTAssertEqual(vectors.count, 2)
        for v in vectors { XCTAssertEqual(v.reduce(0) { $0 + $1 * $1 }.squareRoot(), 1, accuracy: 1e-5) }
        r = try await post(server, "/v1/embeddings", .object([("input", strings([text, pair])), ("model", .string("m"))]))
        XCTAssertEqual(r.json?["object"]?.stringValue, "list")
        XCTAssertEqual(r.json?["model"]?.stringValue, "m")
        XCTAssertEqual(r.json?["data"]?.arrayValue?.map { $0["embedding"]?.arrayValue?.map { $0.doubleValue ?? .nan } ?? [] }, vectors)
        XCTAssertEqual(r.json?["data"]?.arrayValue?.map { $0["index"]?.intValue }, [0, 1])

        // tokenize: the CLI's ids, special tokens without offsets
        r = try await post(server, "/tokenize", .object([("inputs", .string(text))]))
        let tokens = try XCTUnwrap(r.json?.arrayValue?.first?.arrayValue)
        XCTAssertEqual(.array(tokens.map { $0["id"]! }), try cli(["tokenize", model, "--json", "--text", text])["input_ids"])
        XCTAssertEqual(tokens.first?["special"], .bool(true))
        XCTAssertEqual(tokens.first?["start"], .null)
        XCTAssertEqual(tokens[1]["special"], .bool(false))
        r = try await post(server, "/tokenize", .object([("inputs", strings([text])), ("add_special_tokens", .bool(false))]))
        XCTAssertEqual(r.json?.arrayValue?.first?.arrayValue?.count, tokens.count - 2)

        // info, health, metrics, the OpenAPI document
        r = try await request(server.url + "/info", .GET)
        XCTAssertEqual(r.json?["model_type"]?["classifier"]?["id2label"]?["0"]?.stringValue, "entailment")
        XCTAssertEqual(r.json?["max_input_length"]?.intValue, 64)
        XCTAssertEqual(r.json?["max_client_batch_size"]?.intValue, 32)
        XCTAssertEqual(r.json?["model_dtype"]?.stringValue, "float32")
        r = try await request(server.url + "/health", .GET)
        XCTAssertEqual(r.status, 200)
        r = try await request(server.url + "/metrics", .GET)
        for name in ["deberta_requests_total{route=\"/predict\"}", "deberta_batch_size_bucket", "deberta_queue_depth", "deberta_tokens_total",
                     "deberta_request_duration_seconds_bucket", "deberta_forward_duration_seconds"] {
            XCTAssertTrue(r.body.contains(name), "metrics lack \(name)")
        }
        r = try await request(server.url + "/openapi.json", .GET)
        XCTAssertEqual(r.status, 200)
        XCTAssertNotNil(r.json?["paths"]?["/predict"], "the OpenAPI document describes /predict")
    }

    func testTaskRoutesAnswerAsTheCLI() async throws {
        let mlm = fixture("v3-mlm")
        do {
            let server = try ServerProcess(mlm)
            defer { XCTAssertEqual(server.stop(), 0) }
            for (text, k) in [("Paris is the [MASK] of France.", 5), ("The [MASK] played in the [MASK].", 2)] {
                let r = try await post(server, "/fill-mask", .object([("inputs", .string(text)), ("top_k", .int(k))]))
                XCTAssertEqual(r.status, 200, r.body)
                XCTAssertEqual(r.json, try cli(["fill-mask", mlm, text, "--top-k", String(k), "--json"]))
            }
            let r = try await post(server, "/fill-mask", .object([("inputs", .string("A [MASK] day.")), ("decoder", .string("mlm"))]))
            XCTAssertEqual(r.json, try cli(["fill-mask", mlm, "A [MASK] day.", "--decoder", "mlm", "--json"]))
            // a task this model has no head for
            let wrong = try await post(server, "/predict", .object([("inputs", .string("x"))]))
            XCTAssertEqual(wrong.status, 422)
            XCTAssertEqual(wrong.json?["error_type"]?.stringValue, "Validation")
        }
        let ner = fixture("v2-sep-c2p-tokcls")
        do {
            let server = try ServerProcess(ner)
            defer { XCTAssertEqual(server.stop(), 0) }
            let text = "Anna Berg moved from Oslo to the Paris office of Nordic Trade in May."
            for aggregation in ["simple", "none", "first", "average", "max"] {
                let r = try await post(server, "/ner", .object([("inputs", .string(text)), ("aggregation_strategy", .string(aggregation))]))
                XCTAssertEqual(r.status, 200, r.body)
                XCTAssertEqual(r.json, try cli(["ner", ner, text, "--aggregation", aggregation, "--json"]), aggregation)
            }
            let long = String(repeating: "Anna Berg moved from Oslo. ", count: 20)
            let r = try await post(server, "/ner", .object([("inputs", .string(long)), ("stride", .int(8))]))
            XCTAssertEqual(r.json, try cli(["ner", ner, long, "--stride", "8", "--json"]))
        }
        let qa = fixture("v2-qa-sharded")
        do {
            let server = try ServerProcess(qa)
            defer { XCTAssertEqual(server.stop(), 0) }
            let question = "Where did Anna move?", context = String(repeating: "The weather was mild. ", count: 12) + "Anna moved to Oslo in May."
            // a relative-position model takes max_position_embeddings tokens in the server unless --max-length
            // says otherwise; the CLI is given the same limit
            let info = try await request(server.url + "/info", .GET)
            let limit = String(try XCTUnwrap(info.json?["max_input_length"]?.intValue))
            var r = try await post(server, "/qa", .object([("question", .string(question)), ("context", .string(context))]))
            XCTAssertEqual(r.status, 200, r.body)
            XCTAssertEqual(r.json, try cli(["qa", qa, "--question", question, "--context", context, "--max-length", limit, "--json"]))
            r = try await post(server, "/qa", .object([("question", .string(question)), ("context", .string(context)), ("top_k", .int(3)),
                                                      ("max_seq_len", .int(32)), ("doc_stride", .int(8)), ("handle_impossible_answer", .bool(true))]))
            XCTAssertEqual(r.json, try cli(["qa", qa, "--question", question, "--context", context, "--top-k", "3", "--max-seq-len", "32",
                                            "--stride", "8", "--handle-impossible-answer", "--max-length", limit, "--json"]))
        }
    }

    /// 64 clients at once, with texts of mixed lengths, get exactly the answers of one-at-a-time calls.
    func testConcurrentClientsGetTheAnswersOfSequentialCalls() async throws {
        let server = try ServerProcess(fixture("v2-conv-seqcls"), ["--max-wait-ms", "5"])
        defer { XCTAssertEqual(server.stop(), 0) }
        let words = "the river flows past a quiet town where children play and boats drift slowly under old bridges".split(separator: " ")
        var generator = SplitMix64(11)
        let bodies: [(String, JSONValue)] = (0 ..< 64).map { i in
            let n = 1 + Int(generator.next() % 12)
            let text = (0 ..< n).map { _ in String(words[Int(generator.next() % UInt64(words.count))]) }.joined(separator: " ")
            switch i % 4 {
            case 0: return ("/predict", .object([("inputs", .string(text))]))
            case 1: return ("/predict", .object([("inputs", strings([text, "Water moves."]))]))
            case 2: return ("/embed", .object([("inputs", strings([text, String(text.prefix(9))]))]))
            default: return ("/zero-shot", .object([("inputs", .string(text)), ("candidate_labels", strings(["water", "town", "games"]))]))
            }
        }
        var sequential: [String] = []
        for (path, body) in bodies { sequential.append(try await post(server, path, body).body) }
        let concurrent = try await withThrowingTaskGroup(of: (Int, HTTPResult).self) { group in
            for (i, (path, body)) in bodies.enumerated() { group.addTask { (i, try await post(server, path, body)) } }
            var out = [HTTPResult?](repeating: nil, count: bodies.count)
            for try await (i, r) in group { out[i] = r }
            return out.map { $0! }
        }
        for (i, r) in concurrent.enumerated() {
            XCTAssertEqual(r.status, 200, r.body)
            XCTAssertEqual(r.body, sequential[i], "request \(i) (\(bodies[i].0)) answered otherwise under concurrency")
        }
        // the calls were batched: some forward call held more than one sequence
        let metrics = try await request(server.url + "/metrics", .GET).body
        let single = metrics.split(separator: "\n").first { $0.hasPrefix("deberta_batch_size_bucket{le=\"1.0\"}") }.flatMap { $0.split(separator: " ").last }.flatMap { Double($0) }
        let count = metrics.split(separator: "\n").first { $0.hasPrefix("deberta_batch_size_count") }.flatMap { $0.split(separator: " ").last }.flatMap { Double($0) }
        XCTAssertNotNil(single)
        XCTAssertLessThan(single ?? 0, count ?? 0, "no forward call held more than one sequence")
    }
}

final class ServerErrorTests: XCTestCase {
    func expect(_ r: HTTPResult, _ status: Int, _ type: String, _ fragment: String? = nil, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.status, status, r.body, file: file, line: line)
        XCTAssertEqual(r.json?["error_type"]?.stringValue, type, r.body, file: file, line: line)
        XCTAssertNotNil(r.json?["error"]?.stringValue, r.body, file: file, line: line)
        if let fragment { XCTAssertTrue(r.body.contains(fragment), "\(r.body) lacks \(fragment)", file: file, line: line) }
    }

    func testEveryErrorClass() async throws {
        let server = try ServerProcess(fixture("v2-conv-seqcls"), ["--payload-limit", "4000", "--max-client-batch-size", "4"])
        defer { XCTAssertEqual(server.stop(), 0) }
        expect(try await request(server.url + "/predict", body: "{\"inputs\": "), 422, "Validation", "not valid JSON")
        expect(try await request(server.url + "/predict", body: "[1, 2]"), 422, "Validation", "JSON object")
        expect(try await post(server, "/predict", .object([("inputs", .int(5))])), 422, "Validation", "`inputs`")
        expect(try await post(server, "/predict", .object([("inputs", .string("x")), ("raw_scores", .string("yes"))])), 422, "Validation", "raw_scores")
        expect(try await post(server, "/predict", .object([])), 422, "Validation", "missing")
        expect(try await post(server, "/embed", .object([("inputs", .array([]))])), 422, "Empty")
        expect(try await post(server, "/predict", .object([("inputs", .string(""))])), 422, "Empty")
        expect(try await post(server, "/embed", .object([("inputs", strings(["a", "b", "c", "d", "e"]))])), 422, "Validation", "--max-client-batch-size")
        // too long: refused with truncate false (the default), truncated with truncate true
        let long = String(repeating: "the river flows ", count: 40)
        expect(try await post(server, "/predict", .object([("inputs", .string(long))])), 422, "Validation", "must have less than 64 tokens")
        let truncated = try await post(server, "/predict", .object([("inputs", .string(long)), ("truncate", .bool(true))]))
        XCTAssertEqual(truncated.status, 200)
        // a task this model has no head for; rerank on a classifier without entailment is tested below
        expect(try await post(server, "/fill-mask", .object([("inputs", .string("a [MASK]"))])), 422, "Validation", "masked-lm")
        expect(try await post(server, "/qa", .object([("question", .string("q")), ("context", .string("c"))])), 422, "Validation")
        // over the payload limit
        expect(try await post(server, "/predict", .object([("inputs", .string(String(repeating: "a", count: 5000)))])), 413, "Validation", "payload")
        // unknown routes
        expect(try await request(server.url + "/nope", .GET), 404, "Validation", "no route")
        expect(try await post(server, "/predict/extra", .object([])), 404, "Validation")
        // and the server still answers
        let still = try await post(server, "/predict", .object([("inputs", .string("still here"))]))
        XCTAssertEqual(still.status, 200)
        let health = try await request(server.url + "/health", .GET)
        XCTAssertEqual(health.status, 200)
    }

    func testRerankNeedsACrossEncoderOrNLI() async throws {
        let server = try ServerProcess(fixture("v1-seqcls-noarch"))
        defer { XCTAssertEqual(server.stop(), 0) }
        expect(try await post(server, "/rerank", .object([("query", .string("q")), ("texts", strings(["a"]))])), 422, "Validation", "cross-encoder")
    }

    /// With one request admitted at a time, a second one while the first waits in the batcher gets 429.
    func testOverloadedBeyondMaxConcurrentRequests() async throws {
        let server = try ServerProcess(fixture("v2-conv-seqcls"), ["--max-concurrent-requests", "1", "--max-wait-ms", "1500"])
        defer { XCTAssertEqual(server.stop(), 0) }
        async let first = post(server, "/predict", .object([("inputs", .string("first"))]))
        try await Task.sleep(for: .milliseconds(400))
        expect(try await post(server, "/predict", .object([("inputs", .string("second"))])), 429, "Overloaded")
        let answered = try await first
        XCTAssertEqual(answered.status, 200)
        let metrics = try await request(server.url + "/metrics", .GET).body
        XCTAssertTrue(metrics.contains("error_type=\"Overloaded\""), metrics)
    }
}

final class ServerLifecycleTests: XCTestCase {
    /// SIGTERM while requests wait in the batcher: every one is answered, then the process exits 0.
    func testSigtermAnswersRequestsInFlight() async throws {
        let server = try ServerProcess(fixture("v2-conv-seqcls"), ["--max-wait-ms", "1500", "--max-batch-requests", "64"])
        let results = try await withThrowingTaskGroup(of: HTTPResult.self) { group in
            for i in 0 ..< 16 { group.addTask { try await post(server, "/predict", .object([("inputs", .string("text number \(i)"))])) } }
            try await Task.sleep(for: .milliseconds(500))
            kill(server.process.processIdentifier, SIGTERM)
            var out: [HTTPResult] = []
            for try await r in group { out.append(r) }
            return out
        }
        XCTAssertEqual(results.count, 16)
        XCTAssertTrue(results.allSatisfy { $0.status == 200 }, results.map { "\($0.status) \($0.body)" }.joined(separator: "\n"))
        XCTAssertEqual(server.stop(), 0, server.standardError)
    }

    func testStartupErrorsAreClear() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: debertaExecutable)
        process.arguments = ["serve", fixture("v2-conv-seqcls"), "--port", "0", "--max-batch-tokens", "10"]
        process.currentDirectoryURL = URL(fileURLWithPath: repositoryRoot)
        let err = Pipe()
        process.standardError = err
        process.standardOutput = Pipe()
        try process.run()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertNotEqual(process.terminationStatus, 0)
        XCTAssertTrue(stderr.contains("--max-batch-tokens"), stderr)
    }
}
