import ArgumentParser
import DeBERTa
import Foundation
import Serving

extension Pooling: ExpressibleByArgument {}

/// `deberta serve`: thin; the server is the Serving library.
struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "An HTTP inference server with Text Embeddings Inference's API (/predict, /embed, /rerank, /tokenize, /info, /health, /metrics, /v1/embeddings) and /fill-mask, /zero-shot, /ner, /qa.",
        discussion: "The first line on standard output is `deberta serve listening on http://HOST:PORT`. SIGTERM or SIGINT: stop accepting, answer every request received, exit 0."
    )

    @Argument(help: "A model directory with config.json, weights and tokenizer files.")
    var model: String
    @Option(help: "Address to listen on.") var hostname = "127.0.0.1"
    @Option(help: "Port to listen on (0: a free one, printed on the first line).") var port = 8080
    @Option(help: "Pooling of /embed and /v1/embeddings: mean or cls.") var pooling: Pooling = .mean
    @Option(help: "Most tokens in one forward call (calls are packed, without padding).") var maxBatchTokens = 16384
    @Option(help: "Most requests sharing one forward call (default: as many as the tokens allow).") var maxBatchRequests: Int?
    @Option(help: "Milliseconds the batcher waits for more requests before a call that is not full (0: it takes what queued while the previous call ran).")
    var maxWaitMs: Double = 0
    @Option(help: "Requests admitted at once, queued or running; beyond, 429.") var maxConcurrentRequests = 512
    @Option(help: "Most inputs in one request.") var maxClientBatchSize = 32
    @Option(help: "Largest request body in bytes; beyond, 413.") var payloadLimit = 2_000_000
    @Option(help: "Longest input in tokens (default: the model's limit; max_position_embeddings for relative-position models).")
    var maxLength: Int?
    @Option(help: "The model name /info and /v1/embeddings report (default: the directory's name).") var modelId: String?
    @OptionGroup(title: "Runtime") var runtime: RuntimeFlags

    func validate() throws {
        if let m = maxLength, m < 3 { throw ValidationError("--max-length must be at least 3") }
    }

    var serverOptions: ServerOptions {
        var o = ServerOptions()
        o.hostname = hostname
        o.port = port
        o.pooling = pooling
        o.maxBatchTokens = maxBatchTokens
        o.maxBatchRequests = maxBatchRequests
        o.maxWaitMilliseconds = maxWaitMs
        o.maxConcurrentRequests = maxConcurrentRequests
        o.maxClientBatchSize = maxClientBatchSize
        o.payloadLimit = payloadLimit
        o.modelId = modelId
        return o
    }

    /// Runs on the main thread's behalf: the server is async, the command line is not.
    func run() throws {
        try InputFile.checkModel(model)
        let textModel = try TextModel(path: model, options: runtime.options, batchSize: 16)
        runtime.noteEmulatedBF16(textModel.model)
        let server = try DebertaServer(model: textModel, options: serverOptions, maxLength: maxLength)
        let outcome = Outcome()
        let done = DispatchSemaphore(value: 0)
        Task {
            do {
                try await server.run { address in
                    print("deberta serve listening on \(address)")
                    fflush(nil)
                }
            } catch {
                outcome.set(error)
            }
            done.signal()
        }
        done.wait()
        if let error = outcome.error { throw error }
    }
}

/// The server task's error, handed to the waiting main thread.
final class Outcome: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: (any Error)?
    func set(_ error: any Error) { lock.withLock { stored = error } }
    var error: (any Error)? { lock.withLock { stored } }
}
