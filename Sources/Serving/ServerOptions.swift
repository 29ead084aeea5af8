import DeBERTa

/// What `deberta serve` is started with, beside the runtime options of the model.
public struct ServerOptions: Sendable {
    public var hostname = "127.0.0.1"
    /// 0: a free port (the bound address is reported to `onListening`).
    public var port = 8080
    /// How /embed and /v1/embeddings pool the last hidden state.
    public var pooling: Pooling = .mean
    /// Most tokens one forward call holds (calls are packed: no padding).
    public var maxBatchTokens = 16384
    /// Most requests whose sequences share one forward call; nil: as many as the tokens allow.
    public var maxBatchRequests: Int? = nil
    /// How long the batcher waits for more requests before it starts a call that is not full
    /// (0: it takes what has queued while the previous call ran).
    public var maxWaitMilliseconds: Double = 0
    /// Requests admitted at once (queued or running); beyond: 429.
    public var maxConcurrentRequests = 512
    /// Most inputs in one request (texts of /embed, pairs of /predict, texts of /rerank, zero-shot labels).
    public var maxClientBatchSize = 32
    /// Largest request body in bytes; beyond: 413.
    public var payloadLimit = 2_000_000
    /// The name /info and /v1/embeddings report; nil: the model directory's name.
    public var modelId: String? = nil

    public init() {}

    /// Every limit positive and consistent; `maxInputLength` is the longest input in tokens.
    func validate(maxInputLength: Int, maxTokensPerCall: Int) throws {
        func check(_ ok: Bool, _ message: String) throws { if !ok { throw APIError.startup(message) } }
        try check(port >= 0 && port <= 65535, "--port must be between 0 and 65535")
        try check(maxBatchTokens >= 1, "--max-batch-tokens must be positive")
        try check(maxBatchRequests.map { $0 >= 1 } ?? true, "--max-batch-requests must be positive")
        try check(maxWaitMilliseconds >= 0 && maxWaitMilliseconds <= 60_000, "--max-wait-ms must be between 0 and 60000")
        try check(maxConcurrentRequests >= 1, "--max-concurrent-requests must be positive")
        try check(maxClientBatchSize >= 1, "--max-client-batch-size must be positive")
        try check(payloadLimit >= 1, "--payload-limit must be positive")
        try check(maxBatchTokens >= maxInputLength,
                  "--max-batch-tokens (\(maxBatchTokens)) must be at least the longest input (\(maxInputLength) tokens), or one input could never run")
        try check(maxBatchTokens <= maxTokensPerCall,
                  "--max-batch-tokens (\(maxBatchTokens)) is over the runtime's --max-tokens-per-call (\(maxTokensPerCall))")
    }
}
