/// The regular expressions of tokenizer.json normalizers and pre-tokenizers (`" {2,}"`, `"\A +| +\z"`,
/// `"\s{2,}|[\n\r\t]"`, `"\A▁"`, the GPT-2 split pattern ...), with the Oniguruma meanings the tokenizers
/// library gets: `\s` is Unicode White_Space, `\w` letters, marks, digits and connector punctuation, `\d`
/// decimal digits, `\p{..}` general categories. Supported: literals and escapes, `.`, classes `[...]`
/// (ranges, negation, escapes), `\s \S \w \W \d \D \p{..} \P{..}`, `\A \z \Z ^ $ \b \B`, groups `(...)`
/// `(?:...)`, `(?i)` / `(?i:...)` (simple case folding), lookaheads `(?=...)` `(?!...)`, alternation,
/// `* + ? {n} {n,} {n,m}` and their lazy forms. Anything else (back-references, lookbehind, possessive
/// quantifiers, nested classes) is rejected when the pattern is compiled.
///
/// Matching never recurses and takes time linear in the text: the pattern is compiled to a Thompson
/// program that runs as a backtracking search in priority order (so matches are the leftmost-first
/// spans a backtracking engine such as Oniguruma gives) which never visits the same (branch, position)
/// pair twice: a second visit can only fail again, and that bitmap is kept across the starting positions
/// of one text (RE2's "BitState"). Each lookahead is evaluated once for every position of the text by a
/// backward reachability pass over its own program. Limits: groups nest at most `maxNesting` deep, a
/// repetition count is at most `maxRepeat`, and the compiled program (counted repetitions are expanded)
/// has at most `maxProgramSize` instructions.
struct HFRegex: Sendable {
    /// The deepest nesting of groups accepted.
    static let maxNesting = 1000
    /// The most instructions a compiled pattern (with its lookaheads) may have.
    static let maxProgramSize = 10_000
    /// The largest count accepted in `{n}`, `{n,}` and `{n,m}` (Oniguruma's own limit).
    static let maxRepeat = 100_000
    /// Above this many (branch, position) pairs the visited set is a hash set instead of a bitmap.
    static let maxBitmapBits = 1 << 27

    enum ScalarClass: Sendable {
        case literal(Unicode.Scalar)
        case any  // . (not newline)
        case space, word, digit
        /// A set of general categories, bit `categoryBit(_:)` each.
        case categories(UInt32)
        case alphabetic, uppercase, lowercase, anyScalar, ascii
        case set(items: [SetItem], negated: Bool)
        indirect case not(ScalarClass)
        /// Matches when the scalar or its simple lower/upper/title case form matches.
        indirect case caseless(ScalarClass)

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
            case let .categories(mask): return mask & (1 << HFRegex.categoryBit(c.properties.generalCategory)) != 0
            case .alphabetic: return c.properties.isAlphabetic
            case .uppercase: return c.properties.isUppercase
            case .lowercase: return c.properties.isLowercase
            case .anyScalar: return true
            case .ascii: return c.isASCII
            case let .not(inner): return !inner.matches(c)
            case let .set(items, negated):
                var hit = false
                for item in items where item.matches(c) { hit = true; break }
                return hit != negated
            case let .caseless(inner):
                if inner.matches(c) { return true }
                let p = c.properties
                for form in [p.lowercaseMapping, p.uppercaseMapping, p.titlecaseMapping] {
                    let u = form.unicodeScalars
                    if u.count == 1, let f = u.first, f != c, inner.matches(f) { return true }
                }
                return false
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

    enum Anchor: Sendable {
        case textStart, textEnd, textEndBeforeNewline, lineStart, lineEnd, wordBoundary, notWordBoundary

        func holds(_ t: [Unicode.Scalar], _ i: Int) -> Bool {
            switch self {
            case .textStart: return i == 0
            case .textEnd: return i == t.count
            case .textEndBeforeNewline: return i == t.count || (i == t.count - 1 && t[i] == "\n")
            case .lineStart: return i == 0 || t[i - 1] == "\n"
            case .lineEnd: return i == t.count || t[i] == "\n"
            case .wordBoundary, .notWordBoundary:
                let before = i > 0 && ScalarClass.word.matches(t[i - 1])
                let after = i < t.count && ScalarClass.word.matches(t[i])
                return (before != after) == (self == .wordBoundary)
            }
        }
    }

    /// One instruction; jump targets are relative to the instruction, so a fragment can be copied.
    enum Inst: Sendable {
        /// Consumes one scalar of `classes[k]`.
        case scalar(Int32)
        /// Continues at +first, and when that fails at +second.
        case split(Int32, Int32)
        case jump(Int32)
        case assert(Anchor)
        /// Lookahead `k` holds here (or does not, when negated).
        case look(Int32, negated: Bool)
        case match
    }

    /// A lookahead's program, with the ε-predecessors of each instruction for the backward pass.
    struct Lookahead: Sendable {
        var program: [Inst]
        var predecessors: [[Int32]]
    }

    struct ParseError: Error, CustomStringConvertible {
        var description: String
        /// A limit of this engine (nesting, program size, repetition count) rather than a bad pattern.
        var isLimit = false
    }

    let pattern: String
    let classes: [ScalarClass]
    let lookaheads: [Lookahead]
    let program: [Inst]
    /// For each instruction of `program`: its number among the splits, -1 for other instructions.
    private let splitIndex: [Int32]
    private let splitCount: Int
    /// The class every match starts with, when the program begins by consuming a scalar.
    private let firstClass: ScalarClass?
    /// A quantified part can match the empty string (`(a|)+`, `(?:x?){2}`, `(|a)?`). Engines differ
    /// there: an empty iteration of an unbounded loop ends it here (the loop goes on only by consuming),
    /// Swift's engine may count it, and the previous engine of this project refused every empty iteration.
    let hasEmptyLoop: Bool

    init(_ pattern: String) throws {
        self.pattern = pattern
        var compiler = Compiler(scalars: Array(pattern.unicodeScalars))
        var main = try compiler.compile()
        main.append(.match)
        program = main
        classes = compiler.classes
        lookaheads = compiler.lookaheads
        hasEmptyLoop = compiler.hasEmptyLoop
        var index = [Int32](repeating: -1, count: main.count)
        var count: Int32 = 0
        for (pc, inst) in main.enumerated() {
            if case .split = inst { index[pc] = count; count += 1 }
        }
        splitIndex = index
        splitCount = Int(count)
        if case let .scalar(k) = main[0] { firstClass = compiler.classes[Int(k)] } else { firstClass = nil }
    }

    // MARK: Matching

    /// Non-overlapping matches, leftmost first, as scalar index ranges (empty matches advance by one).
    func matches(in text: [Unicode.Scalar]) -> [Range<Int>] {
        let n = text.count
        let tables = lookaheadTables(text)
        var visited = VisitedSet(rows: n + 1, columns: splitCount)
        var stack: [(pc: Int32, pos: Int)] = []
        var out: [Range<Int>] = []
        var start = 0
        while start <= n {
            if let first = firstClass {
                while start < n, !first.matches(text[start]) { start += 1 }
                if start == n { break }
            }
            visited.touched.removeAll(keepingCapacity: true)
            if let end = search(text, from: start, tables, &visited, &stack) {
                out.append(start ..< end)
                // the pairs at `end` on the successful path were marked but did not fail
                visited.clearTouched(row: end)
                start = end > start ? end : start + 1
            } else {
                start += 1
            }
        }
        return out
    }

    /// The end of the first match starting at `start` in priority order, nil if none.
    private func search(_ t: [Unicode.Scalar], from start: Int, _ tables: [[Bool]], _ visited: inout VisitedSet,
                        _ stack: inout [(pc: Int32, pos: Int)]) -> Int? {
        let n = t.count
        stack.removeAll(keepingCapacity: true)
        stack.append((0, start))
        while let job = stack.popLast() {
            var pc = Int(job.pc), pos = job.pos
            thread: while true {
                switch program[pc] {
                case let .scalar(k):
                    guard pos < n, classes[Int(k)].matches(t[pos]) else { break thread }
                    pc += 1
                    pos += 1
                case let .split(a, b):
                    guard visited.insert(row: pos, column: Int(splitIndex[pc])) else { break thread }
                    stack.append((Int32(pc) + b, pos))
                    pc += Int(a)
                case let .jump(a):
                    pc += Int(a)
                case let .assert(anchor):
                    guard anchor.holds(t, pos) else { break thread }
                    pc += 1
                case let .look(k, negated):
                    guard tables[Int(k)][pos] != negated else { break thread }
                    pc += 1
                case .match:
                    return pos
                }
            }
        }
        return nil
    }

    /// For each lookahead (inner ones first), whether its body matches at each position 0 ... n: a
    /// backward pass computing which instructions can reach `match` from each position.
    private func lookaheadTables(_ t: [Unicode.Scalar]) -> [[Bool]] {
        let n = t.count
        var tables: [[Bool]] = []
        tables.reserveCapacity(lookaheads.count)
        for la in lookaheads {
            let prog = la.program
            var table = [Bool](repeating: false, count: n + 1)
            var next = [Bool](repeating: false, count: prog.count)
            var cur = next
            var work: [Int32] = []
            for pos in stride(from: n, through: 0, by: -1) {
                for pc in 0 ..< prog.count {
                    switch prog[pc] {
                    case .match: cur[pc] = true
                    case let .scalar(k): cur[pc] = pos < n && next[pc + 1] && classes[Int(k)].matches(t[pos])
                    default: cur[pc] = false
                    }
                    if cur[pc] { work.append(Int32(pc)) }
                }
                while let x = work.popLast() {
                    for p in la.predecessors[Int(x)] where !cur[Int(p)] {
                        switch prog[Int(p)] {
                        case let .assert(anchor): guard anchor.holds(t, pos) else { continue }
                        case let .look(k, negated): guard tables[Int(k)][pos] != negated else { continue }
                        default: break
                        }
                        cur[Int(p)] = true
                        work.append(p)
                    }
                }
                table[pos] = cur[0]
                swap(&cur, &next)
            }
            tables.append(table)
        }
        return tables
    }

    /// (position, split) pairs already visited: a bitmap, or a hash set when the bitmap would be large.
    /// `touched` lists the pairs marked by the current search.
    private struct VisitedSet {
        let columns: Int
        var bits: [UInt64]
        var sparse: Set<Int>?
        var touched: [Int] = []

        init(rows: Int, columns: Int) {
            self.columns = columns
            let total = rows.multipliedReportingOverflow(by: columns)
            if total.overflow || total.partialValue > HFRegex.maxBitmapBits {
                bits = []
                sparse = []
            } else {
                bits = [UInt64](repeating: 0, count: (total.partialValue + 63) / 64)
                sparse = nil
            }
        }

        /// False when the pair was already there.
        mutating func insert(row: Int, column: Int) -> Bool {
            let k = row * columns + column
            if sparse != nil {
                guard sparse!.insert(k).inserted else { return false }
            } else {
                let mask: UInt64 = 1 << UInt64(k & 63)
                if bits[k >> 6] & mask != 0 { return false }
                bits[k >> 6] |= mask
            }
            touched.append(k)
            return true
        }

        /// Unmarks the pairs of `row` that the current search marked.
        mutating func clearTouched(row: Int) {
            for k in touched where k / columns == row {
                if sparse != nil { sparse!.remove(k) } else { bits[k >> 6] &= ~(1 << UInt64(k & 63)) }
            }
        }
    }

    static func categoryBit(_ c: Unicode.GeneralCategory) -> UInt32 {
        switch c {
        case .uppercaseLetter: return 0
        case .lowercaseLetter: return 1
        case .titlecaseLetter: return 2
        case .modifierLetter: return 3
        case .otherLetter: return 4
        case .nonspacingMark: return 5
        case .spacingMark: return 6
        case .enclosingMark: return 7
        case .decimalNumber: return 8
        case .letterNumber: return 9
        case .otherNumber: return 10
        case .connectorPunctuation: return 11
        case .dashPunctuation: return 12
        case .openPunctuation: return 13
        case .closePunctuation: return 14
        case .initialPunctuation: return 15
        case .finalPunctuation: return 16
        case .otherPunctuation: return 17
        case .mathSymbol: return 18
        case .currencySymbol: return 19
        case .modifierSymbol: return 20
        case .otherSymbol: return 21
        case .spaceSeparator: return 22
        case .lineSeparator: return 23
        case .paragraphSeparator: return 24
        case .control: return 25
        case .format: return 26
        case .surrogate: return 27
        case .privateUse: return 28
        case .unassigned: return 29
        @unknown default: return 29
        }
    }

    /// `\p{name}`: a general category (one or two letters, or the long name) or a few binary properties.
    static func property(named raw: String) -> ScalarClass? {
        let name = String(raw.lowercased().unicodeScalars.filter { $0 != "_" && $0 != " " && $0 != "-" })
        func bits(_ r: ClosedRange<UInt32>) -> UInt32 { r.reduce(0) { $0 | 1 << $1 } }
        let table: [String: UInt32] = [
            "l": bits(0 ... 4), "letter": bits(0 ... 4), "lu": 1 << 0, "uppercaseletter": 1 << 0,
            "ll": 1 << 1, "lowercaseletter": 1 << 1, "lt": 1 << 2, "titlecaseletter": 1 << 2,
            "lm": 1 << 3, "modifierletter": 1 << 3, "lo": 1 << 4, "otherletter": 1 << 4, "lc": bits(0 ... 2),
            "m": bits(5 ... 7), "mark": bits(5 ... 7), "combiningmark": bits(5 ... 7), "mn": 1 << 5,
            "nonspacingmark": 1 << 5, "mc": 1 << 6, "spacingmark": 1 << 6, "me": 1 << 7, "enclosingmark": 1 << 7,
            "n": bits(8 ... 10), "number": bits(8 ... 10), "nd": 1 << 8, "decimalnumber": 1 << 8,
            "nl": 1 << 9, "letternumber": 1 << 9, "no": 1 << 10, "othernumber": 1 << 10,
            "p": bits(11 ... 17), "punctuation": bits(11 ... 17), "punct": bits(11 ... 17),
            "pc": 1 << 11, "connectorpunctuation": 1 << 11, "pd": 1 << 12, "dashpunctuation": 1 << 12,
            "ps": 1 << 13, "openpunctuation": 1 << 13, "pe": 1 << 14, "closepunctuation": 1 << 14,
            "pi": 1 << 15, "initialpunctuation": 1 << 15, "pf": 1 << 16, "finalpunctuation": 1 << 16,
            "po": 1 << 17, "otherpunctuation": 1 << 17,
            "s": bits(18 ... 21), "symbol": bits(18 ... 21), "sm": 1 << 18, "mathsymbol": 1 << 18,
            "sc": 1 << 19, "currencysymbol": 1 << 19, "sk": 1 << 20, "modifiersymbol": 1 << 20,
            "so": 1 << 21, "othersymbol": 1 << 21,
            "z": bits(22 ... 24), "separator": bits(22 ... 24), "zs": 1 << 22, "spaceseparator": 1 << 22,
            "zl": 1 << 23, "lineseparator": 1 << 23, "zp": 1 << 24, "paragraphseparator": 1 << 24,
            "c": bits(25 ... 29), "other": bits(25 ... 29), "cc": 1 << 25, "control": 1 << 25, "cntrl": 1 << 25,
            "cf": 1 << 26, "format": 1 << 26, "cs": 1 << 27, "surrogate": 1 << 27,
            "co": 1 << 28, "privateuse": 1 << 28, "cn": 1 << 29, "unassigned": 1 << 29,
        ]
        if let mask = table[name] { return .categories(mask) }
        switch name {
        case "alpha", "alphabetic": return .alphabetic
        case "space", "whitespace": return .space
        case "digit": return .digit
        case "word": return .word
        case "upper", "uppercase": return .uppercase
        case "lower", "lowercase": return .lowercase
        case "any": return .anyScalar
        case "ascii": return .ascii
        default: return nil
        }
    }

    // MARK: Compiling

    /// Parses the pattern with an explicit stack of open groups (no recursion per nesting level) and
    /// builds the program bottom-up: each closed group is a fragment appended to its parent.
    private struct Compiler {
        let scalars: [Unicode.Scalar]
        var i = 0
        var classes: [ScalarClass] = []
        var lookaheads: [Lookahead] = []
        var size = 0
        var hasEmptyLoop = false

        enum GroupKind { case root, group, lookahead(negated: Bool) }

        struct Frame {
            var kind: GroupKind
            /// The case-insensitivity in force where the group opened, restored when it closes.
            var outerCaseless: Bool
            var alternatives: [[Inst]] = []
            var current: [Inst] = []
            /// Where the last atom of `current` starts (what a quantifier applies to).
            var atomStart: Int?
        }

        init(scalars: [Unicode.Scalar]) { self.scalars = scalars }

        func shown() -> String {
            let s = String(String.UnicodeScalarView(scalars))
            return scalars.count <= 100 ? s : String(String.UnicodeScalarView(scalars.prefix(100))) + "..."
        }

        func fail(_ why: String, limit: Bool = false) -> ParseError {
            ParseError(description: "\(why) at position \(i) of /\(shown())/", isLimit: limit)
        }

        /// Checks that `added` more instructions keep the program within its limit.
        mutating func grow(_ added: Int) throws {
            let total = size.addingReportingOverflow(added)
            guard !total.overflow, total.partialValue <= maxProgramSize else {
                throw fail("the compiled pattern would have more than \(maxProgramSize) instructions (counted repetitions are expanded)", limit: true)
            }
            size = total.partialValue
        }

        mutating func compile() throws -> [Inst] {
            var stack = [Frame(kind: .root, outerCaseless: false)]
            var caseless = false
            func atom(_ frame: inout Frame, _ insts: [Inst]) {
                frame.atomStart = frame.current.count
                frame.current += insts
            }
            while i < scalars.count {
                let c = scalars[i]
                switch c {
                case "(":
                    i += 1
                    var kind = GroupKind.group
                    var inner = caseless
                    if i < scalars.count, scalars[i] == "?" {
                        guard i + 1 < scalars.count else { throw fail("unterminated group") }
                        switch scalars[i + 1] {
                        case ":": i += 2
                        case "=": kind = .lookahead(negated: false); i += 2
                        case "!": kind = .lookahead(negated: true); i += 2
                        case "i", "-":
                            // (?i) (?-i) (?i:...) (?-i:...)
                            let on = scalars[i + 1] == "i"
                            let skip = on ? 2 : 3
                            guard on || (i + 2 < scalars.count && scalars[i + 2] == "i"),
                                  i + skip < scalars.count, scalars[i + skip] == ")" || scalars[i + skip] == ":" else {
                                throw fail("unsupported group flags (only (?i) and (?-i))")
                            }
                            if scalars[i + skip] == ")" {
                                caseless = on  // to the end of the enclosing group
                                i += skip + 1
                                continue
                            }
                            inner = on
                            i += skip + 1
                        default:
                            throw fail("only (?:...), (?=...), (?!...) and (?i) groups are supported")
                        }
                    }
                    guard stack.count <= maxNesting else { throw fail("groups nest more than \(maxNesting) deep", limit: true) }
                    stack.append(Frame(kind: kind, outerCaseless: caseless))
                    caseless = inner
                case "|":
                    i += 1
                    stack[stack.count - 1].alternatives.append(stack[stack.count - 1].current)
                    stack[stack.count - 1].current = []
                    stack[stack.count - 1].atomStart = nil
                    try grow(2)
                case ")":
                    guard stack.count > 1 else { throw fail("unexpected ')'") }
                    i += 1
                    let frame = stack.removeLast()
                    caseless = frame.outerCaseless
                    var fragment = HFRegex.alternation(frame.alternatives + [frame.current])
                    if case let .lookahead(negated) = frame.kind {
                        fragment.append(.match)
                        try grow(2)
                        lookaheads.append(Lookahead(program: fragment, predecessors: HFRegex.predecessors(fragment)))
                        fragment = [.look(Int32(lookaheads.count - 1), negated: negated)]
                    }
                    atom(&stack[stack.count - 1], fragment)
                case "*", "+", "?", "{":
                    var lo = 0, hi: Int? = nil
                    if c == "{" {
                        guard let (a, b, next) = try braces(from: i), stack[stack.count - 1].atomStart != nil else {
                            i += 1
                            try grow(1)
                            atom(&stack[stack.count - 1], [.scalar(addClass(.literal("{"), caseless))])
                            continue
                        }
                        lo = a
                        hi = b
                        i = next
                    } else {
                        if c == "+" { lo = 1 } else if c == "?" { hi = 1 }
                        i += 1
                    }
                    var greedy = true
                    if i < scalars.count, scalars[i] == "?" { greedy = false; i += 1 }
                    if i < scalars.count, scalars[i] == "+" { throw fail("possessive quantifiers are not supported") }
                    guard let s = stack[stack.count - 1].atomStart else { throw fail("nothing to repeat") }
                    let body = Array(stack[stack.count - 1].current[s...])
                    let repeated = try repetition(body, min: lo, max: hi, greedy: greedy)
                    stack[stack.count - 1].current.replaceSubrange(s..., with: repeated)
                case "[":
                    let set = try parseSet()
                    try grow(1)
                    atom(&stack[stack.count - 1], [.scalar(addClass(set, caseless))])
                case ".":
                    i += 1
                    try grow(1)
                    atom(&stack[stack.count - 1], [.scalar(addClass(.any, false))])
                case "^", "$":
                    i += 1
                    try grow(1)
                    atom(&stack[stack.count - 1], [.assert(c == "^" ? .lineStart : .lineEnd)])
                case "\\":
                    i += 1
                    guard i < scalars.count else { throw fail("trailing backslash") }
                    let anchors: [Unicode.Scalar: Anchor] = ["A": .textStart, "z": .textEnd, "Z": .textEndBeforeNewline,
                                                             "b": .wordBoundary, "B": .notWordBoundary]
                    try grow(1)
                    if let a = anchors[scalars[i]] {
                        i += 1
                        atom(&stack[stack.count - 1], [.assert(a)])
                    } else {
                        let cls = try parseEscape()
                        atom(&stack[stack.count - 1], [.scalar(addClass(cls, caseless))])
                    }
                default:
                    i += 1
                    try grow(1)
                    atom(&stack[stack.count - 1], [.scalar(addClass(.literal(c), caseless))])
                }
            }
            guard stack.count == 1 else { throw fail("missing ')'") }
            return HFRegex.alternation(stack[0].alternatives + [stack[0].current])
        }

        mutating func addClass(_ cls: ScalarClass, _ caseless: Bool) -> Int32 {
            classes.append(caseless ? .caseless(cls) : cls)
            return Int32(classes.count - 1)
        }

        /// `body` repeated `min` to `max` (nil: unbounded) times. Bounded optional copies are nested
        /// (`X{1,3}` is `X(?:X(?:X)?)?`), the form a backtracking engine tries.
        mutating func repetition(_ body: [Inst], min lo: Int, max hi: Int?, greedy: Bool) throws -> [Inst] {
            if let hi, hi < lo { throw fail("the upper bound of a repetition is smaller than the lower bound") }
            let f = body.count
            let optional = hi.map { $0 - lo } ?? 0
            let (a, o1) = lo.multipliedReportingOverflow(by: f)
            let (b, o2) = optional.multipliedReportingOverflow(by: f + 1)
            let total = a + b + (hi == nil ? f + 2 : 0)
            guard !o1, !o2, total - f <= maxProgramSize else {
                throw fail("the compiled pattern would have more than \(maxProgramSize) instructions (counted repetitions are expanded)", limit: true)
            }
            try grow(total - f)
            if HFRegex.nullable(body) { hasEmptyLoop = true }
            var out: [Inst] = []
            out.reserveCapacity(total)
            for _ in 0 ..< lo { out += body }
            if hi == nil {
                let exit = Int32(f + 2)
                out.append(greedy ? .split(1, exit) : .split(exit, 1))
                out += body
                out.append(.jump(-Int32(f + 1)))
            } else {
                let end = optional * (f + 1)
                for k in 0 ..< optional {
                    let skip = Int32(end - k * (f + 1))
                    out.append(greedy ? .split(1, skip) : .split(skip, 1))
                    out += body
                }
            }
            return out
        }

        /// `{n}`, `{n,}`, `{n,m}` starting at `at`: (min, max, index after `}`); nil when it is a literal `{`.
        func braces(from at: Int) throws -> (Int, Int?, Int)? {
            var j = at + 1
            func number() throws -> Int? {
                var v: Int?
                while j < scalars.count, scalars[j].isASCII, let d = Int(String(scalars[j])) {
                    v = (v ?? 0) * 10 + d
                    guard v! <= maxRepeat else {
                        throw ParseError(description: "a repetition count is more than \(maxRepeat) at position \(at) of /\(shown())/", isLimit: true)
                    }
                    j += 1
                }
                return v
            }
            guard let lo = try number() else { return nil }
            var hi: Int? = lo
            if j < scalars.count, scalars[j] == "," {
                j += 1
                hi = try number()
            }
            guard j < scalars.count, scalars[j] == "}" else { return nil }
            return (lo, hi, j + 1)
        }

        /// After a backslash (at `i`): a class or a literal scalar.
        mutating func parseEscape() throws -> ScalarClass {
            guard i < scalars.count else { throw fail("trailing backslash") }
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
            case "p", "P":
                var name = ""
                if i < scalars.count, scalars[i] == "{" {
                    i += 1
                    while i < scalars.count, scalars[i] != "}", name.unicodeScalars.count < 64 {
                        name.unicodeScalars.append(scalars[i])
                        i += 1
                    }
                    guard i < scalars.count, scalars[i] == "}" else { throw fail("bad \\\(e){...} property") }
                    i += 1
                } else if i < scalars.count {
                    name.unicodeScalars.append(scalars[i])
                    i += 1
                }
                var negated = e == "P"
                if name.hasPrefix("^") { negated.toggle(); name.removeFirst() }
                guard let cls = HFRegex.property(named: name) else { throw fail("unsupported Unicode property \\\(e){\(name)}") }
                return negated ? .not(cls) : cls
            case "x", "u":
                var digits = ""
                if i < scalars.count, scalars[i] == "{" {
                    i += 1
                    while i < scalars.count, scalars[i] != "}", digits.unicodeScalars.count <= 8 {
                        digits.unicodeScalars.append(scalars[i])
                        i += 1
                    }
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

    /// Options in priority order: `split(1, next option) option jump(end)` for all but the last.
    static func alternation(_ options: [[Inst]]) -> [Inst] {
        if options.count == 1 { return options[0] }
        let total = options.reduce(0) { $0 + $1.count } + 2 * (options.count - 1)
        var out: [Inst] = []
        out.reserveCapacity(total)
        for (k, o) in options.enumerated() {
            if k < options.count - 1 { out.append(.split(1, Int32(o.count + 2))) }
            out += o
            if k < options.count - 1 { out.append(.jump(Int32(total - out.count))) }
        }
        return out
    }

    /// Whether the fragment can reach its end without consuming a scalar (assertions taken as true).
    static func nullable(_ fragment: [Inst]) -> Bool {
        var seen = [Bool](repeating: false, count: fragment.count + 1)
        var work = [0]
        seen[0] = true
        while let pc = work.popLast() {
            if pc == fragment.count { return true }
            var next: [Int] = []
            switch fragment[pc] {
            case let .split(a, b): next = [pc + Int(a), pc + Int(b)]
            case let .jump(a): next = [pc + Int(a)]
            case .assert, .look: next = [pc + 1]
            case .scalar, .match: break
            }
            for t in next where !seen[t] { seen[t] = true; work.append(t) }
        }
        return false
    }

    /// The ε-predecessors of each instruction (splits, jumps, assertions and lookaheads lead on without
    /// consuming a scalar).
    static func predecessors(_ prog: [Inst]) -> [[Int32]] {
        var preds = [[Int32]](repeating: [], count: prog.count)
        for (pc, inst) in prog.enumerated() {
            switch inst {
            case let .split(a, b):
                preds[pc + Int(a)].append(Int32(pc))
                preds[pc + Int(b)].append(Int32(pc))
            case let .jump(a): preds[pc + Int(a)].append(Int32(pc))
            case .assert, .look: preds[pc + 1].append(Int32(pc))
            case .scalar, .match: break
            }
        }
        return preds
    }
}
