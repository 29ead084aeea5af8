@testable import Tokenizers
// TEMPORARY: the previous backtracking engine, for differential testing only (removed before merge).
/// A small backtracking regular expression engine for the patterns tokenizer.json normalizers and
/// pre-tokenizers use (`" {2,}"`, `"\A +| +\z"`, `"\s{2,}|[\n\r\t]"`, `"\A▁"` ...), with the Oniguruma
/// meanings the tokenizers library gets: `\s` is Unicode White_Space, `\w` letters, marks, digits and
/// connector punctuation, `\d` decimal digits. Supported: literals and escapes, `.`, classes `[...]`
/// (ranges, negation, escapes), `\s \S \w \W \d \D`, `\A \z \Z ^ $`, groups `(...)` `(?:...)`,
/// alternation, `* + ? {n} {n,} {n,m}` and their lazy forms. Anything else is rejected at load time.
struct OldHFRegex: Sendable {
    indirect enum Node: Sendable {
        case scalar(ScalarClass)
        case sequence([Node])
        case alternation([Node])
        case repetition(Node, min: Int, max: Int?, greedy: Bool)
        case textStart, textEnd, textEndBeforeNewline, lineStart, lineEnd
    }

    enum ScalarClass: Sendable {
        case literal(Unicode.Scalar)
        case any  // . (not newline)
        case space, word, digit
        case set(items: [SetItem], negated: Bool)
        indirect case not(ScalarClass)

        func matches(_ c: Unicode.Scalar) -> Bool {
            switch self {
            case let .literal(l): return c == l
            case .any: return c != "\n"
            case .space: return c.properties.isWhitespace
            case .word:
                let p = c.properties
                switch p.generalCategory {
                case .decimalNumber, .connectorPunctuation, .nonspacingMark, .spacingMark, .enclosingMark: return true
                default: return p.isAlphabetic
                }
            case .digit: return c.properties.generalCategory == .decimalNumber
            case let .not(inner): return !inner.matches(c)
            case let .set(items, negated):
                var hit = false
                for item in items where item.matches(c) { hit = true; break }
                return hit != negated
            }
        }
    }

    enum SetItem: Sendable {
        case range(UInt32, UInt32)
        case cls(ScalarClass)
        func matches(_ c: Unicode.Scalar) -> Bool {
            switch self {
            case let .range(lo, hi): return c.value >= lo && c.value <= hi
            case let .cls(k): return k.matches(c)
            }
        }
    }

    struct ParseError: Error, CustomStringConvertible {
        var description: String
    }

    let pattern: String
    let root: Node

    init(_ pattern: String) throws {
        self.pattern = pattern
        var p = Parser(scalars: Array(pattern.unicodeScalars))
        root = try p.parseAlternation()
        guard p.i == p.scalars.count else { throw ParseError(description: "unexpected ')' in \(pattern)") }
    }

    /// Non-overlapping matches, leftmost first, as scalar index ranges (empty matches advance by one).
    func matches(in text: [Unicode.Scalar]) -> [Range<Int>] {
        var out: [Range<Int>] = []
        var start = 0
        while start <= text.count {
            var found: Int?
            _ = OldHFRegex.match(root, text, start) { end in found = end; return true }
            if let end = found {
                out.append(start ..< end)
                start = end > start ? end : start + 1
            } else {
                start += 1
            }
        }
        return out
    }

    /// Continuation-passing backtracking matcher: calls `k` with each possible end, in priority order,
    /// until it returns true.
    private static func match(_ node: Node, _ t: [Unicode.Scalar], _ i: Int, _ k: (Int) -> Bool) -> Bool {
        switch node {
        case let .scalar(cls):
            return i < t.count && cls.matches(t[i]) && k(i + 1)
        case let .sequence(nodes):
            return matchSequence(nodes[...], t, i, k)
        case let .alternation(options):
            for o in options where match(o, t, i, k) { return true }
            return false
        case let .repetition(inner, min, max, greedy):
            if case let .scalar(cls) = inner {
                // one scalar per repetition: count the run, then try the ends in priority order
                var n = 0
                while i + n < t.count, max.map({ n < $0 }) ?? true, cls.matches(t[i + n]) { n += 1 }
                if n < min { return false }
                if greedy {
                    var c = n
                    while c >= min { if k(i + c) { return true }; c -= 1 }
                } else {
                    for c in min ... n where k(i + c) { return true }
                }
                return false
            }
            return matchRepeat(inner, t, i, count: 0, min: min, max: max, greedy: greedy, k)
        case .textStart: return i == 0 && k(i)
        case .textEnd: return i == t.count && k(i)
        case .textEndBeforeNewline: return (i == t.count || (i == t.count - 1 && t[i] == "\n")) && k(i)
        case .lineStart: return (i == 0 || t[i - 1] == "\n") && k(i)
        case .lineEnd: return (i == t.count || t[i] == "\n") && k(i)
        }
    }

    private static func matchSequence(_ nodes: ArraySlice<Node>, _ t: [Unicode.Scalar], _ i: Int, _ k: (Int) -> Bool) -> Bool {
        guard let first = nodes.first else { return k(i) }
        return match(first, t, i) { j in matchSequence(nodes.dropFirst(), t, j, k) }
    }

    private static func matchRepeat(_ inner: Node, _ t: [Unicode.Scalar], _ i: Int, count: Int, min: Int, max: Int?,
                                    greedy: Bool, _ k: (Int) -> Bool) -> Bool {
        let canStop = count >= min
        let canGo = max.map { count < $0 } ?? true
        func more() -> Bool {
            canGo && match(inner, t, i) { j in
                j > i && matchRepeat(inner, t, j, count: count + 1, min: min, max: max, greedy: greedy, k)
            }
        }
        if greedy { return more() || (canStop && k(i)) }
        return (canStop && k(i)) || more()
    }

    private struct Parser {
        let scalars: [Unicode.Scalar]
        var i = 0

        func fail(_ why: String) -> ParseError {
            ParseError(description: "\(why) at position \(i) of /\(String(String.UnicodeScalarView(scalars)))/")
        }

        mutating func parseAlternation() throws -> Node {
            var options = [try parseSequence()]
            while i < scalars.count, scalars[i] == "|" {
                i += 1
                options.append(try parseSequence())
            }
            return options.count == 1 ? options[0] : .alternation(options)
        }

        mutating func parseSequence() throws -> Node {
            var items: [Node] = []
            while i < scalars.count, scalars[i] != "|", scalars[i] != ")" {
                var atom = try parseAtom()
                atom = try parseQuantifiers(atom)
                items.append(atom)
            }
            return items.count == 1 ? items[0] : .sequence(items)
        }

        mutating func parseQuantifiers(_ atom: Node) throws -> Node {
            var node = atom
            while i < scalars.count {
                var lo = 0, hi: Int? = nil
                switch scalars[i] {
                case "*": i += 1
                case "+": lo = 1; i += 1
                case "?": hi = 1; i += 1
                case "{":
                    guard let (a, b, next) = braces(from: i) else { return node }  // a literal "{"
                    lo = a; hi = b; i = next
                default: return node
                }
                var greedy = true
                if i < scalars.count, scalars[i] == "?" { greedy = false; i += 1 }
                if i < scalars.count, scalars[i] == "+" { throw fail("possessive quantifiers are not supported") }
                node = .repetition(node, min: lo, max: hi, greedy: greedy)
            }
            return node
        }

        /// `{n}`, `{n,}`, `{n,m}` starting at `at`: (min, max, index after `}`).
        func braces(from at: Int) -> (Int, Int?, Int)? {
            var j = at + 1
            func number() -> Int? {
                var v: Int?
                while j < scalars.count, let d = Int(String(scalars[j])), scalars[j].isASCII {
                    v = (v ?? 0) * 10 + d
                    j += 1
                }
                return v
            }
            guard let lo = number() else { return nil }
            var hi: Int? = lo
            if j < scalars.count, scalars[j] == "," {
                j += 1
                hi = number()
            }
            guard j < scalars.count, scalars[j] == "}" else { return nil }
            return (lo, hi, j + 1)
        }

        mutating func parseAtom() throws -> Node {
            let c = scalars[i]
            switch c {
            case "(":
                i += 1
                if i + 1 < scalars.count, scalars[i] == "?" {
                    guard scalars[i + 1] == ":" else { throw fail("only (?:...) groups are supported") }
                    i += 2
                }
                let inner = try parseAlternation()
                guard i < scalars.count, scalars[i] == ")" else { throw fail("missing ')'") }
                i += 1
                return inner
            case "[":
                return .scalar(try parseSet())
            case ".":
                i += 1
                return .scalar(.any)
            case "^":
                i += 1
                return .lineStart
            case "$":
                i += 1
                return .lineEnd
            case "\\":
                i += 1
                guard i < scalars.count else { throw fail("trailing backslash") }
                let e = scalars[i]
                switch e {
                case "A": i += 1; return .textStart
                case "z": i += 1; return .textEnd
                case "Z": i += 1; return .textEndBeforeNewline
                default: return .scalar(try parseEscape())
                }
            case "*", "+", "?":
                throw fail("nothing to repeat")
            default:
                i += 1
                return .scalar(.literal(c))
            }
        }

        /// After a backslash (at `i`): a class or a literal scalar.
        mutating func parseEscape() throws -> ScalarClass {
            let e = scalars[i]
            i += 1
            switch e {
            case "s": return .space
            case "S": return .not(.space)
            case "w": return .word
            case "W": return .not(.word)
            case "d": return .digit
            case "D": return .not(.digit)
            case "n": return .literal("\n")
            case "t": return .literal("\t")
            case "r": return .literal("\r")
            case "f": return .literal("\u{0C}")
            case "v": return .literal("\u{0B}")
            case "a": return .literal("\u{07}")
            case "e": return .literal("\u{1B}")
            case "0": return .literal("\u{00}")
            case "x", "u":
                var digits = ""
                if i < scalars.count, scalars[i] == "{" {
                    i += 1
                    while i < scalars.count, scalars[i] != "}" { digits.unicodeScalars.append(scalars[i]); i += 1 }
                    i += 1
                } else {
                    let n = e == "x" ? 2 : 4
                    for _ in 0 ..< n where i < scalars.count { digits.unicodeScalars.append(scalars[i]); i += 1 }
                }
                guard let v = UInt32(digits, radix: 16), let s = Unicode.Scalar(v) else { throw fail("bad \\\(e) escape") }
                return .literal(s)
            default:
                if e.properties.isAlphabetic || e.properties.numericType != nil {
                    throw fail("unsupported escape \\\(e)")
                }
                return .literal(e)
            }
        }

        mutating func parseSet() throws -> ScalarClass {
            i += 1  // [
            var negated = false
            if i < scalars.count, scalars[i] == "^" { negated = true; i += 1 }
            var items: [SetItem] = []
            var first = true
            while i < scalars.count, scalars[i] != "]" || first {
                first = false
                var lo: Unicode.Scalar
                if scalars[i] == "\\" {
                    i += 1
                    guard i < scalars.count else { throw fail("trailing backslash") }
                    let cls = try parseEscape()
                    guard case let .literal(l) = cls else { items.append(.cls(cls)); continue }
                    lo = l
                } else if scalars[i] == "[" {
                    throw fail("nested classes are not supported")
                } else {
                    lo = scalars[i]
                    i += 1
                }
                if i + 1 < scalars.count, scalars[i] == "-", scalars[i + 1] != "]" {
                    i += 1
                    var hi: Unicode.Scalar
                    if scalars[i] == "\\" {
                        i += 1
                        guard case let .literal(h) = try parseEscape() else { throw fail("bad range") }
                        hi = h
                    } else {
                        hi = scalars[i]
                        i += 1
                    }
                    guard lo.value <= hi.value else { throw fail("bad range") }
                    items.append(.range(lo.value, hi.value))
                } else {
                    items.append(.range(lo.value, lo.value))
                }
            }
            guard i < scalars.count else { throw fail("missing ']'") }
            i += 1
            return .set(items: items, negated: negated)
        }
    }
}

import XCTest
final class OldEngineComparisonTests: XCTestCase {
    func testSameSpansAsPreviousEngine() throws {
        var gen = RegexPatternGenerator(rng: SplitMix(state: 5), lookaheads: false, unicodeProperties: false)
        var diffs = 0, compared = 0
        for _ in 0 ..< 20000 {
            let pattern = gen.alternation(0)
            guard let old = try? OldHFRegex(pattern) else { continue }
            guard let new = try? HFRegex(pattern) else { XCTFail("new rejects /\(pattern)/"); continue }
            if new.hasEmptyLoop { continue }
            for _ in 0 ..< 8 {
                let t = gen.text(9)
                let a = old.matches(in: t), b = new.matches(in: t)
                compared += 1
                if a != b {
                    diffs += 1
                    if diffs < 40 { print("DIFF /\(pattern)/ on \(String(reflecting: String(String.UnicodeScalarView(t)))): old \(a) new \(b)") }
                }
            }
        }
        print("compared \(compared), diffs \(diffs)")
        XCTAssertEqual(diffs, 0)
    }
}
