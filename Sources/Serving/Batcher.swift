import DeBERTa
import Foundation
import Tokenizers

/// Forms forward calls across requests. Each request's plan queues its sequences as one job; a worker
/// thread takes the jobs of one forward kind that have queued (waiting at most `maxWait` for more while a
/// call is not full), sorts their sequences by length and runs them in packed calls (no padding) of at most
/// `maxBatchTokens` tokens, then hands each job its sequences' outputs. A sequence's outputs do not depend on what
/// it shares a call with (ForwardBatchingTests), so every request gets the bits it would get alone.
final class Batcher: @unchecked Sendable {
    struct Limits: Sendable {
        var maxBatchTokens: Int
        var maxBatchRequests: Int?
        var maxWaitSeconds: Double
    }

    private struct Job {
        var sequences: [EncodedInput]
        var kind: ForwardKind
        var enqueued: Double
        var continuation: CheckedContinuation<[SequenceOutputs], any Error>
        var tokens: Int { sequences.reduce(0) { $0 + $1.length } }
    }

    private let model: TextModel
    private let limits: Limits
    private let metrics: ServerMetrics
    private let condition = NSCondition()
    private var queue: [Job] = []
    private var queuedSequences = 0
    private var stopping = false
    private var running = false
    private var worker: Thread?

    init(model: TextModel, limits: Limits, metrics: ServerMetrics) {
        self.model = model
        self.limits = limits
        self.metrics = metrics
    }

    func start() {
        condition.lock()
        defer { condition.unlock() }
        guard worker == nil else { return }
        let thread = Thread { [self] in self.loop() }
        thread.name = "deberta-batcher"
        thread.stackSize = 8 << 20
        worker = thread
        running = true
        thread.start()
    }

    /// Ends the worker once the queue is empty; later submissions fail.
    func stop() {
        condition.lock()
        stopping = true
        condition.broadcast()
        condition.unlock()
    }

    var isRunning: Bool {
        condition.lock()
        defer { condition.unlock() }
        return running && !stopping
    }

    /// The outputs of `sequences`, in order, computed in calls shared with other requests.
    func run(_ sequences: [EncodedInput], kind: ForwardKind) async throws -> [SequenceOutputs] {
        guard !sequences.isEmpty else { return [] }
        return try await withCheckedThrowingContinuation { continuation in
            condition.lock()
            if stopping || !running {
                condition.unlock()
                continuation.resume(throwing: APIError(.serviceUnavailable, .backend, "the server is shutting down"))
                return
            }
            queue.append(Job(sequences: sequences, kind: kind, enqueued: now(), continuation: continuation))
            queuedSequences += sequences.count
            metrics.queueDepth(queuedSequences)
            condition.signal()
            condition.unlock()
        }
    }

    private func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

    private func loop() {
        while let jobs = nextJobs() {
            execute(jobs)
        }
        condition.lock()
        running = false
        let left = queue
        queue = []
        condition.unlock()
        for job in left { job.continuation.resume(throwing: APIError(.serviceUnavailable, .backend, "the server is shutting down")) }
    }

    /// Waits for work and takes the jobs of the next call: the oldest job's kind, in arrival order, while
    /// they fit the request and token limits; nil once stopping with nothing queued.
    private func nextJobs() -> [Job]? {
        condition.lock()
        defer { condition.unlock() }
        while queue.isEmpty {
            if stopping { return nil }
            condition.wait()
        }
        if limits.maxWaitSeconds > 0 {
            let deadline = queue[0].enqueued + limits.maxWaitSeconds
            while !stopping, !isFull(), now() < deadline {
                _ = condition.wait(until: Date(timeIntervalSinceNow: deadline - now()))
            }
        }
        let kind = queue[0].kind
        var taken: [Job] = [], kept: [Job] = []
        var tokens = 0
        for job in queue {
            let fits = job.kind == kind && (limits.maxBatchRequests.map { taken.count < $0 } ?? true) && tokens + job.tokens <= limits.maxBatchTokens
            if taken.isEmpty || fits {
                taken.append(job)
                tokens += job.tokens
            } else {
                kept.append(job)
            }
        }
        queue = kept
        queuedSequences = kept.reduce(0) { $0 + $1.sequences.count }
        metrics.queueDepth(queuedSequences)
        return taken
    }

    /// Whether the queued jobs of the oldest one's kind already fill a call.
    private func isFull() -> Bool {
        let kind = queue[0].kind
        let same = queue.filter { $0.kind == kind }
        if let cap = limits.maxBatchRequests, same.count >= cap { return true }
        return same.reduce(0) { $0 + $1.tokens } >= limits.maxBatchTokens
    }

    /// Forward calls over the jobs' sequences, longest first, each under the token limit; a call that fails
    /// is retried job by job, so only the request that caused an error gets it.
    private func execute(_ jobs: [Job]) {
        let start = now()
        for job in jobs { metrics.queueWait(seconds: start - job.enqueued) }
        var items: [(job: Int, index: Int, length: Int)] = []
        for (j, job) in jobs.enumerated() {
            for (i, s) in job.sequences.enumerated() { items.append((j, i, s.length)) }
        }
        items.sort { $0.length != $1.length ? $0.length > $1.length : ($0.job, $0.index) < ($1.job, $1.index) }
        var outputs = jobs.map { [SequenceOutputs?](repeating: nil, count: $0.sequences.count) }
        var failures = [(any Error)?](repeating: nil, count: jobs.count)
        let kind = jobs[0].kind

        func call(_ chunk: ArraySlice<(job: Int, index: Int, length: Int)>) {
            let sequences = chunk.map { jobs[$0.job].sequences[$0.index] }
            let began = now()
            do {
                let result = try model.forward(sequences, kind: kind)
                metrics.forward(sequences: sequences.count, tokens: chunk.reduce(0) { $0 + $1.length },
                                seconds: now() - began)
                for (item, output) in zip(chunk, result) { outputs[item.job][item.index] = output }
            } catch {
                let owners = Set(chunk.map(\.job))
                if owners.count == 1 {
                    failures[owners.first!] = error
                } else {
                    for owner in owners.sorted() { call(ArraySlice(chunk.filter { $0.job == owner })) }
                }
            }
        }

        // Longest first (sequences of similar lengths share the attention threads evenly); calls are packed,
        // with no padding, so a call ends only where the next sequence would pass the token limit.
        var begin = 0
        while begin < items.count {
            var end = begin + 1, tokens = items[begin].length
            while end < items.count, tokens + items[end].length <= limits.maxBatchTokens {
                tokens += items[end].length
                end += 1
            }
            call(items[begin ..< end])
            begin = end
        }
        for (j, job) in jobs.enumerated() {
            if let error = failures[j] {
                job.continuation.resume(throwing: error)
            } else {
                job.continuation.resume(returning: outputs[j].map { $0 ?? SequenceOutputs() })
            }
        }
    }
}
