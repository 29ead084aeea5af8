import Checkpoint
import Foundation
import XCTest

/// The repository root, found from this file's path.
public let repositoryRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    while url.path != "/" {
        url.deleteLastPathComponent()
        if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { return url.path }
    }
    return FileManager.default.currentDirectoryPath
}()

/// A new empty directory under the system's temporary directory.
public func temporaryDirectory(prefix: String = "deberta-tests") throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// SplitMix64: a deterministic generator, so that a failure can be reproduced.
public struct SplitMix64: RandomNumberGenerator {
    public var state: UInt64
    public init(state: UInt64) { self.state = state }
    public init(_ seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    public mutating func unit() -> Float { Float(Double(next() >> 11) / Double(1 << 53) * 2 - 1) }
    public mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
}

/// Asserts that `body` throws a `DebertaError` of `kind` (naming `file` when given) and returns it for
/// further checks.
@discardableResult
public func assertThrowsDebertaError<T>(_ kind: DebertaError.Kind, file expectedFile: String? = nil,
                                        _ body: @autoclosure () throws -> T, _ message: String = "",
                                        file: StaticString = #filePath, line: UInt = #line) -> DebertaError? {
    do {
        _ = try body()
        XCTFail("expected a \(kind) error, nothing was thrown. \(message)", file: file, line: line)
    } catch let error as DebertaError {
        XCTAssertEqual(error.kind, kind, "\(error) \(message)", file: file, line: line)
        if let expectedFile { XCTAssertEqual(error.file, expectedFile, "\(error)", file: file, line: line) }
        return error
    } catch {
        XCTFail("expected a DebertaError (\(kind)), got \(error) \(message)", file: file, line: line)
    }
    return nil
}
