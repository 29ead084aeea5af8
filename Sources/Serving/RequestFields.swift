import Checkpoint
import Foundation

/// A request body's JSON object with typed access; every wrong type or range is a 422 naming the field.
/// Unknown fields are ignored and `null` is the same as absent, as in Text Embeddings Inference.
struct RequestFields {
    let members: [(String, JSONValue)]

    init(_ bytes: [UInt8]) throws {
        let value: JSONValue
        do {
            value = try bytes.withUnsafeBytes { try JSONParser.parse($0) }
        } catch let e as JSONParseError {
            throw APIError.validation("the body is not valid JSON: \(e.description)")
        } catch {
            throw APIError.validation("the body is not valid JSON: \(error)")
        }
        guard case let .object(members) = value else { throw APIError.validation("the body must be a JSON object") }
        self.members = members
    }

    /// The last member named `key` (a repeated key takes its last value), nil when absent or null.
    subscript(key: String) -> JSONValue? {
        guard let v = members.last(where: { $0.0 == key })?.1 else { return nil }
        if case .null = v { return nil }
        return v
    }

    func bool(_ key: String, default value: Bool) throws -> Bool {
        guard let v = self[key] else { return value }
        guard let b = v.boolValue else { throw APIError.validation("`\(key)` must be true or false") }
        return b
    }

    func int(_ key: String, default value: Int? = nil, in range: ClosedRange<Int>) throws -> Int? {
        guard let v = self[key] else { return value }
        guard let n = v.intValue, range.contains(n) else {
            throw APIError.validation("`\(key)` must be an integer from \(range.lowerBound) to \(range.upperBound)")
        }
        return n
    }

    func string(_ key: String) throws -> String? {
        guard let v = self[key] else { return nil }
        guard let s = v.stringValue else { throw APIError.validation("`\(key)` must be a string") }
        return s
    }

    func requiredString(_ key: String) throws -> String {
        guard let s = try string(key) else { throw APIError.validation("`\(key)` is missing") }
        return s
    }

    /// A string, or a list of strings; at least one, at most `limit`.
    func texts(_ key: String, limit: Int) throws -> (texts: [String], single: Bool) {
        guard let v = self[key] else { throw APIError.validation("`\(key)` is missing") }
        if let s = v.stringValue { return ([s], true) }
        guard let list = v.arrayValue else { throw APIError.validation("`\(key)` must be a string or a list of strings") }
        let texts = try list.map { item -> String in
            guard let s = item.stringValue else { throw APIError.validation("`\(key)` must be a string or a list of strings") }
            return s
        }
        if texts.isEmpty { throw APIError.empty("`\(key)` cannot be empty") }
        if texts.count > limit { throw APIError.validation("`\(key)` holds \(texts.count) texts; the maximum is \(limit) (--max-client-batch-size)") }
        return (texts, false)
    }

    /// A string, a list of them (comma-separated in one string, as transformers accepts), at most `limit`.
    func labels(_ key: String, limit: Int) throws -> [String] {
        guard let v = self[key] else { throw APIError.validation("`\(key)` is missing") }
        let labels: [String]
        if let s = v.stringValue {
            labels = s.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        } else if let list = v.arrayValue {
            labels = try list.map { item in
                guard let s = item.stringValue else { throw APIError.validation("`\(key)` must be a list of strings") }
                return s
            }
        } else {
            throw APIError.validation("`\(key)` must be a list of strings")
        }
        if labels.isEmpty { throw APIError.empty("`\(key)` cannot be empty") }
        if labels.count > limit { throw APIError.validation("`\(key)` holds \(labels.count) labels; the maximum is \(limit) (--max-client-batch-size)") }
        return labels
    }
}
