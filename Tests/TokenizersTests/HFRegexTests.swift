import Checkpoint
import Foundation
import XCTest
@testable import Tokenizers

/// Random patterns over a small alphabet, built from the constructs tokenizer.json files use.
struct RegexPatternGenerator {
    var rng: SplitMix
    var lookaheads = true
    var unicodeProperties = true

    mutating func atom(_ depth: Int) -> String {
        let choices = depth > 2 ? 9 : 11
        switch rng.below(choices) {
        case 0, 1: return ["a", "b", "c", " ", "1"][rng.below(5)]
        case 2: return ["[ab]", "[^a]", "[a-c1]", "[\\s1]", "[^\\w]"][rng.below(5)]
        case 3: return ["\\s", "\\S", "\\w", "\\d", "."][rng.below(5)]
        case 4: return ["\\A", "\\z", "^", "$", "\\Z"][rng.below(5)]
        case 5: return unicodeProperties ? ["\\p{L}", "\\p{N}", "[^\\s\\p{L}\\p{N}]", "\\P{L}"][rng.below(4)] : "a"
        case 6: return lookaheads ? (rng.below(2) == 0 ? "(?!" : "(?=") + sequence(depth + 1) + ")" : "b"
        case 7, 8: return "a"
        default: return (rng.below(2) == 0 ? "(?:" : "(") + alternation(depth + 1) + ")"
        }
    }

    mutating func quantified(_ depth: Int) -> String {
        var s = atom(depth)
        // quantified groups inside quantified groups: Swift's backtracking engine can take exponential time
        if rng.below(3) == 0, depth == 0 || !s.hasPrefix("(") {
            s += ["*", "+", "?", "{2}", "{1,}", "{0,2}", "{1,3}", "{2,}"][rng.below(8)]
            if rng.below(3) == 0 { s += "?" }
        }
        return s
    }

    mutating func sequence(_ depth: Int) -> String {
        (0 ..< rng.below(4) + (depth == 0 ? 1 : 0)).map { _ in quantified(depth) }.joined()
    }

    mutating func alternation(_ depth: Int) -> String {
        (0 ..< rng.below(3) + 1).map { _ in sequence(depth) }.joined(separator: "|")
    }

    mutating func text(_ maxLength: Int) -> [Unicode.Scalar] {
        let pool: [Unicode.Scalar] = ["a", "b", "c", " ", "1", "\n", "a", "b", "!"]
        return (0 ..< rng.below(maxLength + 1)).map { _ in pool[rng.below(pool.count)] }
    }
}

private func spans(_ re: HFRegex, _ t: [Unicode.Scalar]) -> [Range<Int>] { re.matches(in: t) }

/// The file and kind of the error a tokenizer.json with this normalizer or pre-tokenizer gives.
private func tokenizerJSONError(_ json: String, file: StaticString = #filePath, line: UInt = #line) -> DebertaError? {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("hfregex-\(UUID().uuidString).json").path
    XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(json.utf8)), file: file, line: line)
    defer { try? FileManager.default.removeItem(atPath: path) }
    do {
        _ = try SentencePieceTokenizer(tokenizerJSON: path)
        XCTFail("no error", file: file, line: line)
        return nil
    } catch let e as DebertaError {
        XCTAssertEqual(e.file, path, file: file, line: line)
        XCTAssertTrue(e.description.contains(path), e.description, file: file, line: line)
        return e
    } catch {
        XCTFail("\(error)", file: file, line: line)
        return nil
    }
}

/// A Unigram tokenizer.json with `normalizer` and `preTokenizer` (JSON) around a tiny vocabulary.
func unigramJSON(normalizer: String = "null", preTokenizer: String = "null", addedTokens: String = "[]") -> String {
    #"{"normalizer": \#(normalizer), "pre_tokenizer": \#(preTokenizer), "added_tokens": \#(addedTokens), "model": {"type": "Unigram", "unk_id": 0, "vocab": [["<unk>", 0.0], ["a", -1.0], ["b", -2.0], ["x", -1.0], ["y", -1.0], ["▁", -3.0]]}}"#
}

func jsonString(_ s: String) -> String {
    String(decoding: try! JSONSerialization.data(withJSONObject: [s], options: [.fragmentsAllowed]), as: UTF8.self)
        .dropFirst().dropLast().description
}

final class HFRegexTests: XCTestCase {
    /// Swift's own (backtracking, leftmost-first) regex engine on random patterns and ASCII texts, where
    /// the two agree on what \s \w \d and \p{..} mean.
    func testMatchesSwiftRegexOnGeneratedPatterns() throws {
        var gen = RegexPatternGenerator(rng: SplitMix(state: 11))
        var compared = 0
        for _ in 0 ..< 2000 {
            let pattern = gen.alternation(0)
            guard let ours = try? HFRegex(pattern) else { XCTFail("rejected /\(pattern)/"); continue }
            guard let swift = try? Regex(pattern).matchingSemantics(.unicodeScalar).anchorsMatchLineEndings() else { continue }
            for _ in 0 ..< 6 {
                let t = gen.text(10)
                let text = String(String.UnicodeScalarView(t))
                let expected = text.matches(of: swift).map {
                    text.unicodeScalars.distance(from: text.unicodeScalars.startIndex, to: $0.range.lowerBound)
                        ..< text.unicodeScalars.distance(from: text.unicodeScalars.startIndex, to: $0.range.upperBound)
                }
                if ours.hasEmptyLoop { continue }
                let got = spans(ours, t)
                if got != expected { XCTFail("/\(pattern)/ on \(String(reflecting: text)): \(got) expected \(expected)") }
                compared += 1
            }
        }
        XCTAssertGreaterThan(compared, 4000)  // patterns with an empty-matching quantified part are left out (see hasEmptyLoop)
    }

    func testTokenizerPatterns() throws {
        func m(_ p: String, _ t: String) throws -> [String] {
            let s = Array(t.unicodeScalars)
            return try HFRegex(p).matches(in: s).map { String(String.UnicodeScalarView(s[$0])) }
        }
        let gpt2 = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
        XCTAssertEqual(try m(gpt2, "Hello world's  12 3!!  \n"), ["Hello", " world", "'s", " ", " 12", " 3", "!!", "  \n"])
        XCTAssertEqual(try m(#"(?i:'s|'T)|\p{Lu}\p{Ll}*"#, "'S'tAbc"), ["'S", "'t", "Abc"])
        XCTAssertEqual(try m(#"\b\w+\b"#, "ab, c"), ["ab", "c"])
        XCTAssertEqual(try m("a{2,3}?", "aaaaa"), ["aa", "aa"])
        XCTAssertEqual(try m("(?:a|ab)(?:c|bcd)", "abcd"), ["abcd"])
        XCTAssertEqual(try m("(?:ab|a)(?:c|bcd)d?", "abcd"), ["abcd"])
        XCTAssertEqual(try m("(?:ab|a)(?:c|bcd)", "abcd"), ["abc"])
        XCTAssertEqual(try m(#"x(?=y)|y"#, "xyxz"), ["x", "y"])
        XCTAssertEqual(try m("", "ab"), ["", "", ""])
    }

    /// Patterns whose backtracking search was exponential finish after a number of steps linear in the
    /// text (each (branch, position) pair is visited once): these would not return otherwise.
    func testExponentialPatternsRunInLinearTime() throws {
        let a41 = Array(repeating: Unicode.Scalar("a"), count: 41) + ["b"]
        XCTAssertEqual(try HFRegex("(a|aa)+$").matches(in: a41), [])
        XCTAssertEqual(try HFRegex("(a|aa)+$").matches(in: Array(a41.dropLast())), [0 ..< 41])
        let x = [Unicode.Scalar](repeating: "x", count: 5000)
        XCTAssertEqual(try HFRegex("(x+x+)+y").matches(in: x), [])
        XCTAssertEqual(try HFRegex("(?:x*)*y|(?:x?){30}x{30}z").matches(in: x), [])
        XCTAssertEqual(try HFRegex("(.*a){12}b").matches(in: [Unicode.Scalar](repeating: "a", count: 3000)), [])
        XCTAssertEqual(try HFRegex(#"(\s+)+(?!\S)x"#).matches(in: [Unicode.Scalar](repeating: " ", count: 3000)), [])
    }

    /// Long matches do not recurse per repetition; deep nesting is a limit error, not a stack overflow.
    func testLongInputsAndDeepNesting() throws {
        let long = [Unicode.Scalar](repeating: "a", count: 400_000)
        XCTAssertEqual(try HFRegex("a+").matches(in: long), [0 ..< 400_000])
        XCTAssertEqual(try HFRegex("(?:a|b)*?$").matches(in: long), [0 ..< 400_000, 400_000 ..< 400_000])
        XCTAssertEqual(try HFRegex("(?:(?:a)|b)+(?!c)").matches(in: long), [0 ..< 400_000])

        // 1,400 branches x 100,001 positions: past the bitmap's size, the visited set is a hash set
        let sparse = try HFRegex("x(?:a|b){0,700}")
        var text = [Unicode.Scalar](repeating: "a", count: 100_000)
        text[99_000] = "x"
        text[10] = "x"
        XCTAssertEqual(sparse.matches(in: text), [10 ..< 711, 99_000 ..< 99_701])
        XCTAssertEqual(sparse.matches(in: Array(text[0 ..< 1000])), [10 ..< 711])

        let deep = String(repeating: "(", count: 100_000) + "a" + String(repeating: ")", count: 100_000)
        XCTAssertThrowsError(try HFRegex(deep)) { e in
            let p = e as? HFRegex.ParseError
            XCTAssertEqual(p?.isLimit, true)
            XCTAssertTrue(p?.description.contains("1000 deep") ?? false, "\(e)")
        }
        let ok = String(repeating: "(?:", count: HFRegex.maxNesting) + "a" + String(repeating: ")", count: HFRegex.maxNesting)
        XCTAssertEqual(try HFRegex(ok).matches(in: ["a", "a"]), [0 ..< 1, 1 ..< 2])
        XCTAssertThrowsError(try HFRegex(String(repeating: "(", count: 100_000))) { e in
            XCTAssertEqual((e as? HFRegex.ParseError)?.isLimit, true)
        }
        for big in ["(a{1000}){1000}", "((a{100}){100}){100}", "a{100001}", "a{99999999999999999999999}",
                    String(repeating: "a", count: 20_000)] {
            XCTAssertThrowsError(try HFRegex(big), big) { e in
                XCTAssertEqual((e as? HFRegex.ParseError)?.isLimit, true, "\(e)")
            }
        }
        for bad in ["a{3,2}", "[a-\\", "(?", "(?<=a)b", "\\1", "a*+", "(?x)a", "\\p{Klingon}", "[a", "a)", "*"] {
            XCTAssertThrowsError(try HFRegex(bad), bad) { e in
                XCTAssertEqual((e as? HFRegex.ParseError)?.isLimit, false, "\(e)")
            }
        }
    }

    /// The same hostile patterns through tokenizer.json: a clear error naming the file, or a quick result.
    func testHostilePatternsInTokenizerJSON() throws {
        let deep = String(repeating: "(", count: 100_000) + "a" + String(repeating: ")", count: 100_000)
        for (pattern, kind) in [(deep, DebertaError.Kind.limit), ("(a{1000}){1000}", .limit), ("(?<=a)b", .unsupported)] {
            let replace = #"{"type": "Replace", "pattern": {"Regex": \#(jsonString(pattern))}, "content": ""}"#
            let split = #"{"type": "Split", "pattern": {"Regex": \#(jsonString(pattern))}, "behavior": "Isolated"}"#
            for json in [unigramJSON(normalizer: replace), unigramJSON(preTokenizer: split)] {
                let e = tokenizerJSONError(json)
                XCTAssertEqual(e?.kind, kind)
                XCTAssertTrue(e?.message.contains("regular expression") ?? false, "\(String(describing: e))")
                XCTAssertTrue(e?.message.contains(String(pattern.prefix(10))) ?? false, "\(String(describing: e))")
            }
        }
        let replace = #"{"type": "Replace", "pattern": {"Regex": "(x+x+)+y"}, "content": "b"}"#
        let tok = try SentencePieceTokenizer(tokenizerJSONData: Array(unigramJSON(normalizer: replace).utf8))
        XCTAssertEqual(tok.encode(String(repeating: "x", count: 2000) + "y").tokens, ["b"])
        XCTAssertEqual(tok.encode(String(repeating: "x", count: 2000)).ids, [Int](repeating: 3, count: 2000))
        let split = #"{"type": "Split", "pattern": {"Regex": "(a|aa)+$"}, "behavior": "Isolated"}"#
        let tok2 = try SentencePieceTokenizer(tokenizerJSONData: Array(unigramJSON(preTokenizer: split).utf8))
        XCTAssertEqual(tok2.encode(String(repeating: "a", count: 41) + "b").ids.count, 42)
        XCTAssertEqual(tok2.encode(String(repeating: "a", count: 400_000)).ids.count, 400_000)
    }
}
