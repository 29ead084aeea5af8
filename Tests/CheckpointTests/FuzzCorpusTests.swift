import Foundation
import XCTest

@testable import Checkpoint

/// Replays the fuzz seed corpus (Fuzz/corpus) and every input a fuzz run found crashing
/// (Fuzz/regressions/<target>/, kept after the fix) through the Checkpoint parsers, as the fuzz targets
/// call them: each input must parse or throw a DebertaError, never crash. Tokenizer and config inputs are
/// replayed by the tokenizer and DeBERTa test targets' own regression tests.
final class FuzzCorpusTests: XCTestCase {
    static let fuzzDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fuzz").path

    static func inputs(_ target: String) -> [String] {
        ["corpus", "regressions"].flatMap { kind -> [String] in
            let dir = "\(fuzzDirectory)/\(kind)/\(target)"
            let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
            return names.sorted().map { "\(dir)/\($0)" }
        }
    }

    func testCorpusAndRegressionsParseOrThrow() throws {
        var replayed = 0
        for target in CheckpointParsers.targets {
            let files = Self.inputs(target)
            XCTAssertFalse(files.isEmpty, "no seed inputs for \(target) under \(Self.fuzzDirectory)")
            for file in files {
                let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: file)))
                do {
                    let known = try CheckpointParsers.exercise(target, bytes)
                    XCTAssertTrue(known)
                } catch is DebertaError {} catch is JSONParseError {}
                replayed += 1
            }
        }
        XCTAssertGreaterThan(replayed, 40)
    }
}
