import AsyncHTTPClient
import Checkpoint
import Foundation
import NIOCore
import XCTest
@_exported import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The built `deberta` executable beside the test bundle.
let debertaExecutable: String = {
    let candidates = [
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("deberta").path,
        Bundle.main.bundleURL.appendingPathComponent("deberta").path,
        repositoryRoot + "/.build/debug/deberta",
    ]
    return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates[0]
}()

func fixture(_ name: String) -> String { "Fixtures/models/" + name }

/// `deberta serve MODEL --port 0 ...` as a child process: the URL from its first line, its exit status.
final class ServerProcess: @unchecked Sendable {
    let process = Process()
    let url: String
    private let errors = Pipe()

    init(_ model: String, _ arguments: [String] = [], file: StaticString = #filePath, line: UInt = #line) throws {
        process.executableURL = URL(fileURLWithPath: debertaExecutable)
        process.arguments = ["serve", model, "--port", "0"] + arguments
        process.currentDirectoryURL = URL(fileURLWithPath: repositoryRoot)
        let out = Pipe()
        process.standardOutput = out
        process.standardError = errors
        try process.run()
        // the first line, within 60 s
        var line = Data()
        let deadline = Date().addingTimeInterval(60)
        let handle = out.fileHandleForReading
        while !line.contains(UInt8(ascii: "\n")), Date() < deadline {
            let chunk = handle.availableData
            if chunk.isEmpty { break }
            line.append(chunk)
        }
        let first = String(decoding: line, as: UTF8.self).split(separator: "\n").first.map(String.init) ?? ""
        guard first.hasPrefix("deberta serve listening on http://"), let address = first.split(separator: " ").last else {
            process.terminate()
            let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            throw DebertaError(.io, file: model, "the server did not start: first line \(first.debugDescription), stderr: \(stderr)")
        }
        url = String(address)
    }

    /// Sends `signal` and waits for the exit status.
    @discardableResult
    func stop(_ signal: Int32 = SIGTERM) -> Int32 {
        if process.isRunning { kill(process.processIdentifier, signal) }
        process.waitUntilExit()
        return process.terminationStatus
    }

    var standardError: String { String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self) }

    deinit { if process.isRunning { process.terminate(); process.waitUntilExit() } }
}

struct HTTPResult: Sendable {
    var status: Int
    var body: String
    var json: JSONValue? { try? JSONParser.parse(body) }
}

/// One connection per concurrent request (the pool's default is 8 per host), so that "in flight" means
/// received by the server.
let client: HTTPClient = {
    var configuration = HTTPClient.Configuration()
    configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 128
    return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
}()

enum Method { case GET, POST }

func request(_ url: String, _ method: Method = .POST, body: String? = nil) async throws -> HTTPResult {
    var request = HTTPClientRequest(url: url)
    request.method = method == .GET ? .GET : .POST
    if let body {
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(string: body))
    }
    let response = try await client.execute(request, timeout: .seconds(120))
    let bytes = try await response.body.collect(upTo: 64 << 20)
    return HTTPResult(status: Int(response.status.code), body: String(buffer: bytes))
}

func post(_ server: ServerProcess, _ path: String, _ body: JSONValue) async throws -> HTTPResult {
    try await request(server.url + path, body: body.serialized())
}

/// The CLI's `--json` output for the same input, parsed.
func cli(_ arguments: [String]) throws -> JSONValue {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: debertaExecutable)
    process.arguments = arguments
    process.currentDirectoryURL = URL(fileURLWithPath: repositoryRoot)
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let stdout = out.fileHandleForReading.readDataToEndOfFile()
    let stderr = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw DebertaError(.io, file: "deberta", "\(arguments) failed: \(String(decoding: stderr, as: UTF8.self))")
    }
    return try JSONParser.parse(String(decoding: stdout, as: UTF8.self))
}

func strings(_ values: [String]) -> JSONValue { .array(values.map { .string($0) }) }
