import CoreMetrics
import Foundation

import Prometheus

/// The server's metrics through swift-metrics, kept in a Prometheus registry of its own (no process-wide
/// bootstrap, so several servers can live in one process); GET /metrics prints the registry.
final class ServerMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    private let factory: PrometheusMetricsFactory

    init() {
        var factory = PrometheusMetricsFactory(registry: registry)
        let seconds: [Duration] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30].map { .milliseconds($0 * 1000) }
        factory.defaultDurationHistogramBuckets = seconds
        factory.valueHistogramBuckets = [
            "deberta_batch_size": [1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
            "deberta_batch_tokens": [16, 64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536],
            "deberta_request_tokens": [8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192],
        ]
        self.factory = factory
        queueGauge = CoreMetrics.Gauge(label: "deberta_queue_depth", factory: factory)
        inFlightGauge = CoreMetrics.Gauge(label: "deberta_requests_in_flight", factory: factory)
        batchSize = CoreMetrics.Recorder(label: "deberta_batch_size", factory: factory)
        batchTokens = CoreMetrics.Recorder(label: "deberta_batch_tokens", factory: factory)
        forwardTimer = CoreMetrics.Timer(label: "deberta_forward_duration_seconds", factory: factory)
        queueTimer = CoreMetrics.Timer(label: "deberta_queue_duration_seconds", factory: factory)
        tokens = CoreMetrics.Counter(label: "deberta_tokens_total", factory: factory)
        requestTokens = CoreMetrics.Recorder(label: "deberta_request_tokens", factory: factory)
    }

    private let queueGauge: CoreMetrics.Gauge
    private let inFlightGauge: CoreMetrics.Gauge
    private let batchSize: CoreMetrics.Recorder
    private let batchTokens: CoreMetrics.Recorder
    private let forwardTimer: CoreMetrics.Timer
    private let queueTimer: CoreMetrics.Timer
    private let tokens: CoreMetrics.Counter
    private let requestTokens: CoreMetrics.Recorder

    /// Sequences waiting for a forward call.
    func queueDepth(_ n: Int) { queueGauge.record(n) }
    func inFlight(_ n: Int) { inFlightGauge.record(n) }

    func forward(sequences: Int, tokens: Int, seconds: Double) {
        batchSize.record(sequences)
        batchTokens.record(tokens)
        forwardTimer.recordNanoseconds(Int64(seconds * 1e9))
    }

    func queueWait(seconds: Double) { queueTimer.recordNanoseconds(Int64(max(0, seconds) * 1e9)) }

    /// A request's input tokens (what the model ran, padding excluded).
    func inputTokens(_ n: Int) {
        tokens.increment(by: n)
        requestTokens.record(n)
    }

    func request(route: String, seconds: Double, error: APIError.Kind?) {
        CoreMetrics.Counter(label: "deberta_requests_total", dimensions: [("route", route)], factory: factory).increment()
        CoreMetrics.Timer(label: "deberta_request_duration_seconds", dimensions: [("route", route)], factory: factory)
            .recordNanoseconds(Int64(seconds * 1e9))
        if let error {
            CoreMetrics.Counter(label: "deberta_request_errors_total", dimensions: [("route", route), ("error_type", error.rawValue)], factory: factory).increment()
        }
    }

    func text() -> String { registry.emitToString() }
}
