/// Every problem this project reports: in a checkpoint, a config, a tokenizer, an inputs file, a request.
/// `kind` says what went wrong in a form a program can act on (a server maps it to an HTTP status and
/// error type); the description is one line a person can act on: the file, the tensor or field when there
/// is one, and what was expected versus found.
public struct DebertaError: Error, CustomStringConvertible, Equatable, Sendable {
    public enum Kind: String, Sendable, CaseIterable {
        /// A path cannot be opened, read or written, or is not a regular file.
        case io
        /// The bytes of a file do not parse as the format they claim (safetensors, zip, pickle, JSON, protobuf).
        case malformedFile
        /// One tensor is wrong: dtype, shape, offsets, values.
        case tensor
        /// A config.json (or tokenizer config) field is missing, of the wrong type or out of range.
        case configField
        /// The weights do not fit the config: see `weights` for the missing, mis-shaped and unexpected names.
        case weightsMismatch
        /// Valid, but a feature this runtime does not implement.
        case unsupported
        /// What the caller passed: ids, masks, texts, flags, an inputs file's values.
        case invalidInput
        /// A request over a limit of the model or of the tool (tokens per call, file size, line length).
        case limit
        /// The model cannot do the task asked of it (its head, its labels).
        case task
    }

    /// The names behind a `.weightsMismatch`, in transformers' spelling of the source file.
    public struct WeightMismatch: Equatable, Sendable {
        public var missing: [String]
        public var misShaped: [String]
        public var unexpected: [String]
        public init(missing: [String] = [], misShaped: [String] = [], unexpected: [String] = []) {
            self.missing = missing
            self.misShaped = misShaped
            self.unexpected = unexpected
        }
        public var isEmpty: Bool { missing.isEmpty && misShaped.isEmpty && unexpected.isEmpty }
    }

    public var kind: Kind
    public var file: String
    public var tensor: String?
    /// The config field, flag or JSON key concerned, when there is one.
    public var field: String?
    public var message: String
    public var weights: WeightMismatch?

    public init(_ kind: Kind, file: String, tensor: String? = nil, field: String? = nil, _ message: String,
                weights: WeightMismatch? = nil) {
        self.kind = kind
        self.file = file
        self.tensor = tensor
        self.field = field
        self.message = message
        self.weights = weights
    }

    public var description: String {
        var parts = file.isEmpty ? [] : [Printable.escaped(file)]
        if let tensor { parts.append("tensor '\(Printable.escaped(tensor))'") }
        parts.append(Printable.escaped(message, keepTabs: true))
        return parts.joined(separator: ": ")
    }
}

/// Text from files and users made safe to print on one line: control characters (ESC, CR, LF, DEL, C1)
/// become visible escapes, so a file name or a value cannot forge log lines or drive the terminal.
public enum Printable {
    public static func escaped(_ text: String, keepTabs: Bool = false) -> String {
        guard text.unicodeScalars.contains(where: { isControl($0) && !(keepTabs && $0 == "\t") }) else { return text }
        var out = ""
        out.unicodeScalars.reserveCapacity(text.unicodeScalars.count)
        for u in text.unicodeScalars {
            if isControl(u) && !(keepTabs && u == "\t") {
                switch u {
                case "\n": out += "\\n"
                case "\r": out += "\\r"
                case "\t": out += "\\t"
                default: out += "\\u{" + String(u.value, radix: 16) + "}"
                }
            } else {
                out.unicodeScalars.append(u)
            }
        }
        return out
    }

    static func isControl(_ u: Unicode.Scalar) -> Bool {
        u.value < 0x20 || (0x7F ... 0x9F).contains(u.value) || u.value == 0x2028 || u.value == 0x2029
    }
}

/// Overflow-checked arithmetic on lengths that come from untrusted files: Swift traps on overflow,
/// and a checkpoint must never be able to crash the tool.
@inline(__always)
func checkedAdd(_ a: Int, _ b: Int) -> Int? {
    let (r, o) = a.addingReportingOverflow(b)
    return o ? nil : r
}

@inline(__always)
func checkedMul(_ a: Int, _ b: Int) -> Int? {
    let (r, o) = a.multipliedReportingOverflow(by: b)
    return o ? nil : r
}

/// The product of a shape's dimensions, nil when a dimension is negative or the product overflows,
/// also when only the product of its non-zero dimensions does ([2^40, 0, 2^40] holds no elements, but
/// code multiplying two of its dimensions would trap).
public func elementCount(_ shape: [Int]) -> Int? {
    var n = 1
    var nonZero = 1
    for d in shape {
        guard d >= 0, let m = checkedMul(n, d) else { return nil }
        n = m
        if d > 0 {
            guard let p = checkedMul(nonZero, d) else { return nil }
            nonZero = p
        }
    }
    return n
}
