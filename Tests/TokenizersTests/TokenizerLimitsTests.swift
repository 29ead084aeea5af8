import Checkpoint
import Foundation
import XCTest
@testable import Tokenizers

/// Ids and sizes read from tokenizer files are checked before anything is allocated for them.
final class TokenizerLimitsTests: XCTestCase {
    private var dir = ""

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("tok-limits-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    private func write(_ name: String, _ text: String) -> String {
        let path = dir + "/" + name
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(text.utf8)))
        return path
    }

    private func expectError(_ kind: DebertaError.Kind, file path: String, containing: [String], line: UInt = #line,
                             _ body: () throws -> Any) {
        do {
            _ = try body()
            XCTFail("no error", line: line)
        } catch let e as DebertaError {
            XCTAssertEqual(e.kind, kind, e.description, line: line)
            XCTAssertEqual(e.file, path, line: line)
            XCTAssertFalse(e.description.contains("\n"), line: line)
            for c in containing { XCTAssertTrue(e.description.contains(c), "\(e.description) lacks \(c)", line: line) }
        } catch {
            XCTFail("\(error)", line: line)
        }
    }

    private func added(_ tokens: [(Int, String)]) -> String {
        "[" + tokens.map { #"{"id": \#($0.0), "content": \#(jsonString($0.1)), "special": true}"# }.joined(separator: ", ") + "]"
    }

    /// A Unigram tokenizer.json: an added token may extend the 6-piece vocabulary by the number of added tokens.
    func testUnigramAddedTokenIds() throws {
        let huge = write("huge.json", unigramJSON(addedTokens: added([(16_777_215, "[MASK]")])))
        expectError(.malformedFile, file: huge, containing: ["added_tokens[0]", "\"[MASK]\"", "16777215", "below 7"]) {
            try SentencePieceTokenizer(tokenizerJSON: huge)
        }
        let over = write("over.json", unigramJSON(addedTokens: added([(1, "[CLS]"), (8, "[MASK]")])))
        expectError(.malformedFile, file: over, containing: ["added_tokens[1]", "[MASK]", "below 8"]) {
            try SentencePieceTokenizer(tokenizerJSON: over)
        }
        let ok = write("ok.json", unigramJSON(addedTokens: added([(6, "[CLS]"), (7, "[MASK]")])))
        let tok = try SentencePieceTokenizer(tokenizerJSON: ok)
        XCTAssertEqual(tok.vocabularySize, 8)
        XCTAssertEqual(tok.encode("a[MASK]").ids, [1, 7])
    }

    func testBPEAddedTokenIds() throws {
        let vocab = (0 ..< 256).map { String(ByteLevelAlphabet.scalarForByte[$0]) }
        let v = JSONValue.object(vocab.enumerated().map { ($0.element, JSONValue.int($0.offset)) }).serialized()
        func json(_ tokens: [(Int, String)]) -> String {
            #"{"added_tokens": \#(added(tokens)), "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false}, "model": {"type": "BPE", "vocab": \#(v), "merges": []}}"#
        }
        let huge = write("bpe-huge.json", json([(2_000_000_000, "<mask>")]))
        expectError(.malformedFile, file: huge, containing: ["added_tokens[0]", "\"<mask>\"", "2000000000", "below 257"]) {
            try ByteLevelBPETokenizer(tokenizerJSON: huge)
        }
        let ok = write("bpe-ok.json", json([(0, "<s>"), (256, "<pad>"), (257, "<mask>")]))
        XCTAssertEqual(try ByteLevelBPETokenizer(tokenizerJSON: ok).vocabularySize, 258)
    }

    /// Tokenizer files that are not regular files are refused before reading (a FIFO would block, a device never end).
    func testTokenizerFilesMustBeRegularFiles() throws {
        for path in ["/dev/zero", dir] {
            expectError(.io, file: path, containing: ["not a regular file"]) { try SentencePieceTokenizer(tokenizerJSON: path) }
            expectError(.io, file: path, containing: ["not a regular file"]) { try SentencePieceTokenizer(modelFile: path) }
        }
        let fifo = dir + "/fifo"
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        expectError(.io, file: fifo, containing: ["not a regular file"]) { try SentencePieceTokenizer(tokenizerJSON: fifo) }
        expectError(.io, file: dir + "/missing.json", containing: ["not found"]) {
            try SentencePieceTokenizer(tokenizerJSON: dir + "/missing.json")
        }
    }

    /// A regex error names the file, the JSON path and the pattern, on one line.
    func testRegexErrorsNameFileAndPattern() throws {
        let pattern = "(x\n" + String(repeating: "y", count: 300)
        let path = write("bad-regex.json", unigramJSON(normalizer: #"{"type": "Sequence", "normalizers": [{"type": "Replace", "pattern": {"Regex": \#(jsonString(pattern))}, "content": ""}]}"#))
        expectError(.unsupported, file: path, containing: ["normalizer.normalizers[0].pattern", "missing ')'", "/(x\\nyyy", "..."]) {
            try SentencePieceTokenizer(tokenizerJSON: path)
        }
        let big = write("big-regex.json", unigramJSON(preTokenizer: #"{"type": "Split", "pattern": {"Regex": "(?:a{1000}){1000}"}, "behavior": "Removed"}"#))
        expectError(.limit, file: big, containing: ["pre_tokenizer.pattern", "10000 instructions", "(?:a{1000}){1000}"]) {
            try SentencePieceTokenizer(tokenizerJSON: big)
        }
    }
}
