import Checkpoint
import Foundation
import TestSupport
import XCTest
@testable import Tokenizers


private let spFixtures = repositoryRoot + "/Fixtures/tokenizers/"

/// One row of a fixture `expected.json` (sentencepiece: `pieces`; tokenizers: `tokens`).
private struct SPExpectedRow: Decodable {
    var text: String
    var ids: [Int]
    var pieces: [String]?
    var tokens: [String]?
    var offsets: [[Int]]
    var strings: [String] { pieces ?? tokens ?? [] }
}

private struct SPExpectedFile: Decodable {
    var rows: [SPExpectedRow]
}

private func spLoadRows(_ path: String) throws -> [SPExpectedRow] {
    let data = try Data(contentsOf: URL(fileURLWithPath: spFixtures + path))
    return try JSONDecoder().decode(SPExpectedFile.self, from: data).rows
}

private func spStrings() throws -> [String] {
    let data = try Data(contentsOf: URL(fileURLWithPath: spFixtures + "strings.json"))
    return try JSONDecoder().decode([String].self, from: data)
}

/// Python-style slice of `text` by Unicode scalar offsets.
private func spSlice(_ text: String, _ r: Range<Int>) -> String {
    let scalars = Array(text.unicodeScalars)
    var s = String.UnicodeScalarView()
    s.append(contentsOf: scalars[max(0, r.lowerBound) ..< min(scalars.count, r.upperBound)])
    return String(s)
}

final class SentencePieceTests: XCTestCase {
    /// Compares every fixture row; returns the number of rows checked. Offsets must be equal: both
    /// reference libraries define them exactly (sentencepiece through `norm_to_orig`, the tokenizers
    /// library through its alignments), and this implementation reproduces each library's rule.
    private func check(_ tokenizer: SentencePieceTokenizer, _ expectedPath: String,
                       file: StaticString = #filePath, line: UInt = #line) throws -> Int {
        let rows = try spLoadRows(expectedPath)
        let strings = try spStrings()
        XCTAssertEqual(rows.count, strings.count, "one row per string", file: file, line: line)
        var failures = 0
        for (row, text) in zip(rows, strings) {
            XCTAssertEqual(row.text, text, file: file, line: line)
            let e = tokenizer.encode(row.text)
            let offsets = e.offsets.map { [$0.lowerBound, $0.upperBound] }
            if e.ids != row.ids || e.tokens != row.strings || offsets != row.offsets {
                failures += 1
                if failures <= 8 {
                    XCTFail("""
                        \(expectedPath): \(String(reflecting: row.text))
                          ids      \(e.ids)
                          expected \(row.ids)
                          tokens   \(e.tokens)
                          expected \(row.strings)
                          offsets  \(offsets)
                          expected \(row.offsets)
                        """, file: file, line: line)
                }
            }
            for (i, r) in e.offsets.enumerated() {
                XCTAssertTrue(r.lowerBound >= 0 && r.upperBound <= row.text.unicodeScalars.count && !r.isEmpty || r.isEmpty,
                              "offset \(i) of \(String(reflecting: row.text)) out of range", file: file, line: line)
            }
        }
        XCTAssertEqual(failures, 0, "\(expectedPath): \(failures) of \(rows.count) strings differ", file: file, line: line)
        return rows.count
    }

    func testSpmModelMatchesSentencePiece() throws {
        let tok = try SentencePieceTokenizer(modelFile: spFixtures + "spm/spm.model")
        XCTAssertEqual(tok.vocabularySize, 300)
        XCTAssertEqual(tok.unknownID, 3)
        XCTAssertEqual(tok.id(of: "[CLS]"), 1)
        XCTAssertEqual(tok.token(of: 2), "[SEP]")
        XCTAssertNil(tok.token(of: 300))
        XCTAssertNil(tok.id(of: "[MASK]"))
        let n = try check(tok, "spm/expected.json")
        XCTAssertGreaterThanOrEqual(n, 300)
    }

    func testByteFallbackModelMatchesSentencePiece() throws {
        let tok = try SentencePieceTokenizer(modelFile: spFixtures + "spm-bytefallback/spm.model")
        XCTAssertEqual(tok.vocabularySize, 420)
        XCTAssertEqual(tok.id(of: "<0x41>"), 6 + 0x41)
        XCTAssertEqual(tok.id(of: "<br>"), 4)
        // user-defined pieces are matched before normalization and win over normal pieces
        XCTAssertEqual(tok.encode("a<br>b").tokens, ["▁a", "<br>", "b"])
        _ = try check(tok, "spm-bytefallback/expected.json")
    }

    func testTokenizerJSONMatchesTokenizersLibrary() throws {
        let tok = try SentencePieceTokenizer(tokenizerJSON: spFixtures + "unigram-json/tokenizer.json")
        XCTAssertEqual(tok.vocabularySize, 301)
        XCTAssertEqual(tok.id(of: "[MASK]"), 300)
        XCTAssertEqual(tok.token(of: 300), "[MASK]")
        XCTAssertEqual(tok.unknownID, 3)
        // added tokens are matched in the text; an lstrip token's string and span include the space it took
        let e = tok.encode("Paris is the [MASK] of France.")
        XCTAssertEqual(e.tokens[e.ids.firstIndex(of: 300)!], " [MASK]")
        XCTAssertEqual(e.offsets[e.ids.firstIndex(of: 300)!], 12 ..< 19)
        _ = try check(tok, "unigram-json/expected.json")
    }

    /// The spm.model and tokenizer.json paths agree on ids wherever the two libraries agree.
    func testBothPathsAgreeWhereTheLibrariesAgree() throws {
        let spmRows = try spLoadRows("spm/expected.json")
        let jsonRows = try spLoadRows("unigram-json/expected.json")
        let a = try SentencePieceTokenizer(modelFile: spFixtures + "spm/spm.model")
        let b = try SentencePieceTokenizer(tokenizerJSON: spFixtures + "unigram-json/tokenizer.json")
        var same = 0
        for (x, y) in zip(spmRows, jsonRows) where x.ids == y.ids {
            XCTAssertEqual(a.encode(x.text).ids, b.encode(x.text).ids, String(reflecting: x.text))
            same += 1
        }
        XCTAssertGreaterThan(same, 300)
    }

    func testBadTokenizerJSON() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sp-json-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cases: [(String, String, String)] = [
            ("notjson", "{ nope", "JSON"),
            ("bpe", #"{"model": {"type": "BPE", "vocab": {}, "merges": []}}"#, "BPE"),
            ("novocab", #"{"model": {"type": "Unigram", "vocab": []}}"#, "vocab"),
            ("badunk", #"{"model": {"type": "Unigram", "vocab": [["a", -1.0]], "unk_id": 5}}"#, "unk_id"),
            ("normalizer", #"{"normalizer": {"type": "BertNormalizer"}, "model": {"type": "Unigram", "vocab": [["a", -1.0]], "unk_id": 0}}"#,
             "BertNormalizer"),
            ("regex", #"{"normalizer": {"type": "Replace", "pattern": {"Regex": "(?<=a)b"}, "content": ""}, "model": {"type": "Unigram", "vocab": [["a", -1.0]], "unk_id": 0}}"#,
             "regular expression"),
        ]
        for (name, text, mention) in cases {
            let path = dir + "/\(name).json"
            XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(text.utf8)))
            XCTAssertThrowsError(try SentencePieceTokenizer(tokenizerJSON: path), name) { error in
                guard let e = error as? DebertaError else { return XCTFail("\(name): \(error)") }
                XCTAssertEqual(e.file, path)
                XCTAssertTrue(e.description.contains(mention), "\(name): \(e.description)")
            }
        }
        XCTAssertThrowsError(try SentencePieceTokenizer(tokenizerJSON: dir + "/missing.json")) { error in
            XCTAssertTrue((error as? DebertaError)?.description.contains("not found") ?? false, "\(error)")
        }
    }

    func testRegexSubset() throws {
        func m(_ p: String, _ t: String) throws -> [String] {
            let s = Array(t.unicodeScalars)
            return try HFRegex(p).matches(in: s).map { String(String.UnicodeScalarView(s[$0])) }
        }
        XCTAssertEqual(try m(" {2,}", "a  b c    d"), ["  ", "    "])
        XCTAssertEqual(try m(#"\A +| +\z"#, "  a b  "), ["  ", "  "])
        XCTAssertEqual(try m(#"\s{2,}|[\n\r\t]"#, "a\u{3000}\u{3000}b\tc d"), ["\u{3000}\u{3000}", "\t"])
        XCTAssertEqual(try m(#"\A▁"#, "▁▁a"), ["▁"])
        XCTAssertEqual(try m(#"[^\w\s]+"#, "ab, c!?"), [",", "!?"])
        XCTAssertEqual(try m("(?:ab)+c?", "xababcab"), ["ababc", "ab"])
        XCTAssertThrowsError(try HFRegex("(?<=a)b"))
    }

    /// The special-token rule of Fixtures/README.md against special.expected.json (sentencepiece per chunk).
    func testSpecialTokensWrittenInText() throws {
        let tok = try SentencePieceTokenizer(modelFile: spFixtures + "spm/spm.model")
        let specials = SentencePieceTokenizer.debertaSpecialTokens(mask: 300)
        var failures = 0
        for row in try spLoadRows("spm/special.expected.json") {
            let e = tok.encode(row.text, specialTokens: specials)
            let offsets = e.offsets.map { [$0.lowerBound, $0.upperBound] }
            if e.ids != row.ids || e.tokens != row.strings || offsets != row.offsets {
                failures += 1
                if failures <= 5 {
                    XCTFail("\(String(reflecting: row.text)): \(e.tokens) \(offsets) expected \(row.strings) \(row.offsets)")
                }
            }
        }
        XCTAssertEqual(failures, 0)
        let e = tok.encode("Paris is the [MASK] of France.", specialTokens: specials)
        XCTAssertEqual(e.ids[e.tokens.firstIndex(of: "[MASK]")!], 300)
        XCTAssertEqual(tok.encode("a[MASK]b", specialTokens: specials).tokens, ["▁a", "[MASK]", "▁b"])
    }

    func testUnknownAndByteFallbackShapes() throws {
        let plain = try SentencePieceTokenizer(modelFile: spFixtures + "spm/spm.model")
        // a run of unknown characters is one token whose string is the normalized run
        let e = plain.encode("🙂🙂 x")
        XCTAssertEqual(e.ids.filter { $0 == 3 }.count, 1)
        XCTAssertEqual(e.tokens[e.ids.firstIndex(of: 3)!], "🙂🙂")
        XCTAssertEqual(e.offsets[e.ids.firstIndex(of: 3)!], 0 ..< 2)
        let bytes = try SentencePieceTokenizer(modelFile: spFixtures + "spm-bytefallback/spm.model")
        let b = bytes.encode("€")
        XCTAssertEqual(b.tokens, ["▁", "<0xE2>", "<0x82>", "<0xAC>"])
        // every byte piece but the last has an empty span at the character's start
        XCTAssertEqual(b.offsets, [0 ..< 0, 0 ..< 0, 0 ..< 0, 0 ..< 1])
    }

    func testOffsetsSliceTheOriginalText() throws {
        let tok = try SentencePieceTokenizer(modelFile: spFixtures + "spm/spm.model")
        for text in try spStrings() {
            let e = tok.encode(text)
            var last = 0
            for r in e.offsets {
                XCTAssertGreaterThanOrEqual(r.lowerBound, last, String(reflecting: text))
                last = r.upperBound
                _ = spSlice(text, r)
            }
        }
    }

    func testMissingAndCorruptModelFiles() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sp-tests-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }

        let missing = dir + "/nope/spm.model"
        XCTAssertThrowsError(try SentencePieceTokenizer(modelFile: missing)) { error in
            guard let e = error as? DebertaError else { return XCTFail("\(error)") }
            XCTAssertEqual(e.file, missing)
            XCTAssertTrue(e.description.contains("not found"), e.description)
        }

        let good = try [UInt8](Data(contentsOf: URL(fileURLWithPath: spFixtures + "spm/spm.model")))
        let cases: [(String, [UInt8])] = [
            ("empty", []),
            ("text", Array("this is not a protobuf\n".utf8)),
            ("truncated", Array(good.prefix(good.count / 2))),
            ("json", Array("{\"model\": {}}".utf8)),
        ]
        for (name, bytes) in cases {
            let path = dir + "/\(name).model"
            XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
            XCTAssertThrowsError(try SentencePieceTokenizer(modelFile: path), name) { error in
                guard let e = error as? DebertaError else { return XCTFail("\(name): \(error)") }
                XCTAssertEqual(e.file, path, name)
                XCTAssertFalse(e.message.isEmpty)
            }
        }
        // a directory is not a model
        XCTAssertThrowsError(try SentencePieceTokenizer(modelFile: dir)) { error in
            XCTAssertTrue(error is DebertaError, "\(error)")
        }
    }

    func testRandomByteFlipsNeverCrash() throws {
        let good = try [UInt8](Data(contentsOf: URL(fileURLWithPath: spFixtures + "spm/spm.model")))
        var rng = SystemRandomNumberGenerator()
        var parsed = 0
        for _ in 0 ..< 200 {
            var bytes = good
            for _ in 0 ..< 8 {
                let i = Int.random(in: 0 ..< bytes.count, using: &rng)
                bytes[i] = UInt8.random(in: 0 ... 255, using: &rng)
            }
            if let tok = try? SentencePieceTokenizer(modelData: bytes, name: "flipped") {
                parsed += 1
                _ = tok.encode("Hello ﬁne ① world 🙂 e\u{301} 東京  ")
            }
        }
        XCTAssertGreaterThan(parsed, 0)
    }

    func testConcurrentEncodeIsDeterministic() throws {
        let tok = try SentencePieceTokenizer(modelFile: spFixtures + "spm/spm.model")
        let strings = try spStrings()
        let expected = strings.map { tok.encode($0) }
        DispatchQueue.concurrentPerform(iterations: 4) { _ in
            for (s, e) in zip(strings, expected) where tok.encode(s) != e {
                XCTFail("concurrent encode differs for \(String(reflecting: s))")
            }
        }
    }
}
