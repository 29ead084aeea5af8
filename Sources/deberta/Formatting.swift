import Foundation
import Checkpoint

/// 1234567 → "1,234,567"
func grouped(_ n: Int) -> String {
    let digits = String(n.magnitude)
    var out = ""
    for (i, c) in digits.enumerated() {
        if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
        out.append(c)
    }
    return (n < 0 ? "-" : "") + out
}

func shapeText(_ shape: [Int]) -> String { "[" + shape.map(String.init).joined(separator: ", ") + "]" }

func padded(_ s: String, _ width: Int) -> String {
    s.count >= width ? s : s + String(repeating: " ", count: width - s.count)
}

func scientific(_ x: Double) -> String {
    if x.isInfinite { return "inf" }
    if x.isNaN { return "nan" }
    if x == 0 { return "0" }
    let exponent = Int((log10(abs(x))).rounded(.down))
    let mantissa = x / pow(10, Double(exponent))
    return fixed(mantissa, 2) + "e" + (exponent < 0 ? "-" : "+") + (abs(exponent) < 10 ? "0" : "") + String(abs(exponent))
}

func fixed(_ x: Double, _ digits: Int) -> String {
    if x.isNaN { return "nan" }
    if x.isInfinite { return x > 0 ? "inf" : "-inf" }
    var scale = 1.0
    for _ in 0 ..< digits { scale *= 10 }
    let rounded = (abs(x) * scale).rounded() / scale
    let whole = Int(rounded)
    var frac = Int(((rounded - Double(whole)) * scale).rounded())
    var w = whole
    if frac >= Int(scale) { w += 1; frac -= Int(scale) }
    let fracText = digits > 0 ? "." + String(repeating: "0", count: digits - String(frac).count) + String(frac) : ""
    return (x < 0 && (w != 0 || frac != 0) ? "-" : "") + String(w) + fracText
}
