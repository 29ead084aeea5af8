import Checkpoint
import DeBERTa
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle

/// `deberta serve`: Text Embeddings Inference's HTTP API (plus the other tasks) over one model, on
/// Hummingbird. SIGTERM and SIGINT stop accepting connections, answer every request already received,
/// then end the run.
public final class DebertaServer: Sendable {
    let api: InferenceAPI
    let logger: Logger

    /// `maxLength` lowers the model's input limit; models without absolute positions take
    /// max_position_embeddings tokens unless it says otherwise.
    public init(model: TextModel, options: ServerOptions, maxLength: Int? = nil, logger: Logger = Logger(label: "deberta.serve")) throws {
        let limit = [maxLength, model.maxLength].compactMap { $0 }.min() ?? model.model.config.maxPositionEmbeddings
        try options.validate(maxInputLength: limit, maxTokensPerCall: model.model.options.limits.maxTokensPerCall)
        let bounded = model.maxLength == limit ? model
            : try TextModel(model: model.model, encoder: model.encoder, maxLength: limit, batchSize: model.batchSize)
        self.api = InferenceAPI(model: bounded, options: options, maxInputLength: limit)
        self.logger = logger
    }

    /// Warms up, listens, and serves until SIGTERM or SIGINT; `onListening` gets the bound address
    /// (`http://host:port`) once the socket is open.
    public func run(onListening: @escaping @Sendable (String) -> Void) async throws {
        try await api.warmUp()
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: ErrorMiddleware())
        addRoutes(router)
        var app = Application(
            router: router,
            configuration: .init(address: .hostname(api.options.hostname, port: api.options.port), serverName: "deberta-serve"),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? 0
                onListening("http://\(Self.urlHost(self.api.options.hostname)):\(port)")
            },
            logger: logger
        )
        app.addServices(BatcherService(batcher: api.batcher))
        try await app.runService(gracefulShutdownSignals: [.sigterm, .sigint])
    }

    static func urlHost(_ host: String) -> String { host.contains(":") ? "[\(host)]" : host }

    private func addRoutes(_ router: Router<BasicRequestContext>) {
        let api = self.api
        let limit = api.options.payloadLimit
        func post(_ path: String, _ handler: @escaping @Sendable (InferenceAPI, RequestFields) async throws -> JSONValue) {
            router.post(RouterPath(path)) { request, _ -> Response in
                do {
                    return try await api.admit(route: path) {
                        var request = request
                        let body = try await request.collectBody(upTo: limit)
                        let fields = try RequestFields(Array(buffer: body))
                        return jsonResponse(try await handler(api, fields))
                    }
                } catch {
                    return APIError(error).response
                }
            }
        }
        post("/predict") { try await $0.predict($1) }
        post("/embed") { try await $0.embed($1) }
        post("/rerank") { try await $0.rerank($1) }
        post("/tokenize") { try await $0.tokenize($1) }
        post("/v1/embeddings") { try await $0.openAIEmbeddings($1) }
        post("/fill-mask") { try await $0.fillMask($1) }
        post("/zero-shot") { try await $0.zeroShot($1) }
        post("/ner") { try await $0.ner($1) }
        post("/qa") { try await $0.qa($1) }
        router.get("/info") { _, _ in jsonResponse(api.info()) }
        router.get("/health") { _, _ -> Response in
            api.isReady ? Response(status: .ok) : APIError(.serviceUnavailable, .backend, "the model is not ready").response
        }
        router.get("/metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                     body: .init(byteBuffer: ByteBuffer(string: api.metrics.text())))
        }
        router.get("/openapi.json") { _, _ -> Response in
            guard let url = Bundle.module.url(forResource: "openapi", withExtension: "json"), let data = try? Data(contentsOf: url) else {
                return APIError(.internalServerError, .backend, "the OpenAPI document is missing from the build").response
            }
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
        }
    }
}

/// Unknown routes and the server's own HTTP errors as TEI's JSON errors.
struct ErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let e as any HTTPResponseError where e.status == .notFound {
            return APIError(.notFound, .validation, "no route \(request.method) \(request.uri.path)").response
        } catch {
            return APIError(error).response
        }
    }
}

/// Keeps the batcher until the HTTP server (which shuts down first) has answered every request.
struct BatcherService: Service {
    let batcher: Batcher
    func run() async throws {
        try? await gracefulShutdown()
        batcher.stop()
    }
}
