/// Element types a checkpoint can hold, named as safetensors names them. One table, ggml-style:
/// name, byte size, and how an element turns into a Float.
public enum DType: String, CaseIterable, Sendable, Codable {
    case bool = "BOOL"
    case u8 = "U8"
    case i8 = "I8"
    case i16 = "I16"
    case u16 = "U16"
    case f16 = "F16"
    case bf16 = "BF16"
    case i32 = "I32"
    case u32 = "U32"
    case f32 = "F32"
    case f64 = "F64"
    case i64 = "I64"
    case u64 = "U64"
    case f8e4m3 = "F8_E4M3"
    case f8e5m2 = "F8_E5M2"

    public var size: Int {
        switch self {
        case .bool, .u8, .i8, .f8e4m3, .f8e5m2: return 1
        case .i16, .u16, .f16, .bf16: return 2
        case .i32, .u32, .f32: return 4
        case .f64, .i64, .u64: return 8
        }
    }

    public var isFloatingPoint: Bool {
        switch self {
        case .f16, .bf16, .f32, .f64, .f8e4m3, .f8e5m2: return true
        default: return false
        }
    }

    /// The lower-case name the CLI accepts and prints for `--dtype`.
    public var shortName: String {
        switch self {
        case .f8e4m3: return "f8_e4m3"
        case .f8e5m2: return "f8_e5m2"
        default: return rawValue.lowercased()
        }
    }
}

// MARK: - Scalar conversions (reference code; hot paths get their own kernels later)

@inline(__always)
public func floatFromBF16(_ bits: UInt16) -> Float {
    Float(bitPattern: UInt32(bits) << 16)
}

/// Round-to-nearest-even f32 -> bf16, NaN kept quiet (as torch does).
@inline(__always)
public func bf16FromFloat(_ x: Float) -> UInt16 {
    let bits = x.bitPattern
    if x.isNaN { return UInt16(truncatingIfNeeded: (bits >> 16) | 0x0040) }
    let rounding = ((bits >> 16) & 1) &+ 0x7FFF
    return UInt16(truncatingIfNeeded: (bits &+ rounding) >> 16)
}

@inline(__always)
public func floatFromF16(_ bits: UInt16) -> Float {
    Float(Float16(bitPattern: bits))
}

@inline(__always)
public func f16FromFloat(_ x: Float) -> UInt16 {
    Float16(x).bitPattern
}

/// OCP FP8 E4M3 (the "fn" variant: no infinities, S.1111.111 is NaN), bias 7.
public func floatFromF8E4M3(_ b: UInt8) -> Float {
    let sign: Float = (b & 0x80) != 0 ? -1 : 1
    let e = Int((b >> 3) & 0xF)
    let m = Float(b & 0x7)
    if e == 0xF && (b & 0x7) == 0x7 { return .nan }
    if e == 0 { return sign * m / 8 * Float(sign: .plus, exponent: -6, significand: 1) }
    return sign * (1 + m / 8) * Float(sign: .plus, exponent: e - 7, significand: 1)
}

/// FP8 E5M2 is the top byte of an IEEE f16.
public func floatFromF8E5M2(_ b: UInt8) -> Float {
    floatFromF16(UInt16(b) << 8)
}
