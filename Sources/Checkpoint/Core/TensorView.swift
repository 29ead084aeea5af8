/// One named tensor: dtype, shape and its bytes where they lie (in a file mapping whenever the file's
/// bytes can be used as they are). C order, little-endian, contiguous.
public struct TensorView: Sendable {
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    public let region: ByteRegion
    /// The file the bytes came from (for error messages and `inspect`).
    public let file: String

    public init(name: String, dtype: DType, shape: [Int], region: ByteRegion, file: String) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.region = region
        self.file = file
    }

    public var elementCount: Int { shape.reduce(1, *) }
    public var byteCount: Int { region.count }
    public var bytes: UnsafeRawBufferPointer { region.bytes }

    /// True when two views are the same bytes read the same way (tied weights saved twice).
    public func aliases(_ other: TensorView) -> Bool {
        dtype == other.dtype && shape == other.shape && region.count == other.region.count
            && region.storage === other.region.storage && region.offset == other.region.offset
    }

    /// The values as Float (exact for every float dtype up to f32; f64 and integers are rounded).
    public func floats() -> [Float] {
        let n = elementCount
        var out = [Float](repeating: 0, count: n)
        let src = bytes
        out.withUnsafeMutableBufferPointer { dst in
            switch dtype {
            case .f32:
                for i in 0 ..< n { dst[i] = Float(bitPattern: UInt32(littleEndian: src.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
            case .f16:
                for i in 0 ..< n { dst[i] = floatFromF16(UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
            case .bf16:
                for i in 0 ..< n { dst[i] = floatFromBF16(UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
            case .f64:
                for i in 0 ..< n { dst[i] = Float(Double(bitPattern: UInt64(littleEndian: src.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)))) }
            case .f8e4m3:
                for i in 0 ..< n { dst[i] = floatFromF8E4M3(src[i]) }
            case .f8e5m2:
                for i in 0 ..< n { dst[i] = floatFromF8E5M2(src[i]) }
            case .bool, .u8:
                for i in 0 ..< n { dst[i] = Float(src[i]) }
            case .i8:
                for i in 0 ..< n { dst[i] = Float(Int8(bitPattern: src[i])) }
            case .i16:
                for i in 0 ..< n { dst[i] = Float(Int16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self))) }
            case .u16:
                for i in 0 ..< n { dst[i] = Float(UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
            case .i32:
                for i in 0 ..< n { dst[i] = Float(Int32(littleEndian: src.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self))) }
            case .u32:
                for i in 0 ..< n { dst[i] = Float(UInt32(littleEndian: src.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
            case .i64:
                for i in 0 ..< n { dst[i] = Float(Int64(littleEndian: src.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self))) }
            case .u64:
                for i in 0 ..< n { dst[i] = Float(UInt64(littleEndian: src.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))) }
            }
        }
        return out
    }

    /// Integer values (for ids and masks). nil for floating-point dtypes.
    public func int64s() -> [Int64]? {
        let n = elementCount
        let src = bytes
        switch dtype {
        case .i64: return (0 ..< n).map { Int64(littleEndian: src.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self)) }
        case .i32: return (0 ..< n).map { Int64(Int32(littleEndian: src.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self))) }
        case .i16: return (0 ..< n).map { Int64(Int16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * $0, as: Int16.self))) }
        case .i8: return (0 ..< n).map { Int64(Int8(bitPattern: src[$0])) }
        case .u8, .bool: return (0 ..< n).map { Int64(src[$0]) }
        case .u16: return (0 ..< n).map { Int64(UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self))) }
        case .u32: return (0 ..< n).map { Int64(UInt32(littleEndian: src.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) }
        case .u64: return (0 ..< n).map { Int64(bitPattern: UInt64(littleEndian: src.loadUnaligned(fromByteOffset: 8 * $0, as: UInt64.self))) }
        default: return nil
        }
    }
}
