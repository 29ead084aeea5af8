/// Every problem found in a checkpoint, a config or an inputs file. The description is one line a person
/// can act on: the file, the tensor when there is one, and what was expected versus found.
public struct CheckpointError: Error, CustomStringConvertible, Equatable, Sendable {
    public var file: String
    public var tensor: String?
    public var message: String

    public init(file: String, tensor: String? = nil, _ message: String) {
        self.file = file
        self.tensor = tensor
        self.message = message
    }

    public var description: String {
        if let tensor { return "\(file): tensor '\(tensor)': \(message)" }
        return "\(file): \(message)"
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

/// The product of a shape's dimensions, nil when a dimension is negative or the product overflows.
public func elementCount(_ shape: [Int]) -> Int? {
    var n = 1
    for d in shape {
        guard d >= 0, let m = checkedMul(n, d) else { return nil }
        n = m
    }
    return n
}
