import Checkpoint
import HTTPTypes
import Hummingbird

/// An error answered as Text Embeddings Inference does: `{"error": "...", "error_type": "..."}` with its status.
public struct APIError: Error, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        case validation = "Validation", tokenizer = "Tokenizer", overloaded = "Overloaded", backend = "Backend", empty = "Empty"
    }

    public var status: HTTPResponse.Status
    public var kind: Kind
    public var message: String
    public var description: String { message }

    public init(_ status: HTTPResponse.Status, _ kind: Kind, _ message: String) {
        self.status = status
        self.kind = kind
        self.message = message
    }

    static func validation(_ message: String) -> APIError { APIError(.unprocessableContent, .validation, message) }
    static func empty(_ message: String) -> APIError { APIError(.unprocessableContent, .empty, message) }
    static func startup(_ message: String) -> APIError { APIError(.internalServerError, .backend, message) }

    /// Any error of a request: the runtime's kinds of bad input are 422, the rest 500.
    init(_ error: any Error) {
        switch error {
        case let e as APIError:
            self = e
        case let e as DebertaError:
            switch e.kind {
            case .invalidInput, .limit, .task, .configField:
                self.init(.unprocessableContent, .validation, e.message)
            default:
                self.init(.internalServerError, .backend, e.description)
            }
        case let e as any HTTPResponseError where e.status == .contentTooLarge:
            self.init(.contentTooLarge, .validation, "the request body is over the payload limit")
        case let e as any HTTPResponseError:
            self.init(e.status, .validation, "\(e.status.code) \(e.status.reasonPhrase)")
        default:
            self.init(.internalServerError, .backend, "\(error)")
        }
    }

    var json: JSONValue { .object([("error", .string(message)), ("error_type", .string(kind.rawValue))]) }

    var response: Response { jsonResponse(json, status: status) }
}

func jsonResponse(_ value: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
    Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: value.serialized())))
}
