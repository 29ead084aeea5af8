import CQuantKernels
import Checkpoint

/// The quantized weight formats this project writes and runs (documented in README.md, "Quantized format").
///
/// - `int8`: per output channel symmetric. `NAME.weight` I8 [N, K] codes, `NAME.weight_scale` F32 [N];
///   value = code · scale. Activations are quantized per token (row) to int8 at run time.
/// - `q4`: GGUF Q4_0 semantics with f32 scales: blocks of 32 along K (rows zero-padded to Kp = ceil(K/32)·32),
///   `NAME.weight` U8 [N, Kp/2] (byte j of a block: element j in the low nibble, element j+16 in the high
///   nibble), `NAME.weight_scale` F32 [N, Kp/32]; value = (nibble - 8) · scale. Activations are quantized
///   per block of 32 to int8 at run time.
public enum QuantizationScheme: String, Sendable, CaseIterable {
    case int8
    case q4

    /// `__metadata__` key holding the JSON description, and the config.json block.
    public static let metadataKey = "quantization"
    public static let scaleSuffix = "_scale"

    public var weightFormat: String {
        switch self {
        case .int8: return "int8 symmetric per output channel: weight I8 [N, K], weight_scale F32 [N]"
        case .q4: return "GGUF Q4_0 blocks of 32 along K with f32 scales: weight U8 [N, Kp/2], weight_scale F32 [N, Kp/32]"
        }
    }

    public var activationFormat: String {
        switch self {
        case .int8: return "int8 symmetric per token (row)"
        case .q4: return "int8 symmetric per block of 32 along K (Q8_0 with f32 scale)"
        }
    }

    /// Stored shapes of a logical [n, k] weight.
    public struct StoredShapes: Sendable, Equatable {
        public var codes: [Int]
        public var scales: [Int]
    }

    /// Stored codes and scales shapes for a logical [n, k] weight: int8 codes [n, k] and scales [n]; q4 codes
    /// [n, Kp/2] and scales [n, Kp/32].
    public func storedShapes(n: Int, k: Int) -> StoredShapes {
        let kernels = self.kernels
        return StoredShapes(codes: [n, kernels.rowBytes(k)], scales: self == .int8 ? [n] : [n, kernels.scalesPerRow(k)])
    }

    public var codeType: DType { self == .int8 ? .i8 : .u8 }
}

/// What a store's `__metadata__["quantization"]` says.
public struct QuantizationInfo: Sendable {
    public var scheme: QuantizationScheme
    public var embeddings: Bool
    /// Logical [N, K] shape of every quantized weight, by stored name.
    public var shapes: [String: [Int]]

    public static func read(_ store: TensorStore) throws -> QuantizationInfo? {
        guard let text = store.metadata.first(where: { $0.0 == QuantizationScheme.metadataKey })?.1 else { return nil }
        let file = store.files.first ?? "weights"
        let json: JSONValue
        do { json = try JSONParser.parse(text) } catch {
            throw DebertaError(.malformedFile, file: file, "__metadata__ quantization is not valid JSON: \(error)")
        }
        guard let name = json["scheme"]?.stringValue, let scheme = QuantizationScheme(rawValue: name) else {
            throw DebertaError(.malformedFile, file: file, "__metadata__ quantization names no known scheme (int8 or q4)")
        }
        var shapes: [String: [Int]] = [:]
        for (k, v) in json["shapes"]?.objectValue ?? [] {
            guard let dims = v.arrayValue?.compactMap(\.intValue), dims.count == 2, dims.allSatisfy({ $0 > 0 }) else {
                throw DebertaError(.tensor, file: file, tensor: k, "__metadata__ quantization shape is not [N, K]")
            }
            shapes[k] = dims
        }
        return QuantizationInfo(scheme: scheme, embeddings: json["embeddings"]?.boolValue ?? false, shapes: shapes)
    }

    public func metadataJSON() -> String {
        JSONValue.object([
            ("scheme", .string(scheme.rawValue)),
            ("version", .int(1)),
            ("weights", .string(scheme.weightFormat)),
            ("activations", .string(scheme.activationFormat)),
            ("block_size", scheme == .q4 ? .int(32) : .null),
            ("embeddings", .bool(embeddings)),
            ("shapes", .object(shapes.sorted { $0.key < $1.key }.map { ($0.key, .array($0.value.map { .int($0) })) })),
        ]).serialized()
    }
}
