import CQuantKernels
import Checkpoint
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `deberta convert`: a checkpoint in → a model directory out (config.json, tokenizer files and one
/// aligned `model.safetensors` under transformers' names), written so that a failure leaves nothing.
public enum Converter {
    public struct Report: Sendable {
        public var destination: String
        public var weightsFile: String
        public var tensorsWritten: Int
        public var bytesWritten: Int
        public var parameters: Int
        /// (dropped name, kept name) for tied duplicates.
        public var droppedTies: [(String, String)]
        /// (source name, written name) where they differ.
        public var renamed: [(String, String)]
        public var castFrom: [DType: Int]
        public var copiedFiles: [String]
        public var architectureFilledIn: String?
        /// Per quantized tensor: name, logical shape, relative RMS error, bytes before (f32) and after.
        public var quantized: [QuantizedTensorReport]
        public var sourceBytes: Int
    }

    public struct QuantizedTensorReport: Sendable {
        public var name: String
        public var shape: [Int]
        public var relativeRMSError: Double
        public var bytesBefore: Int
        public var bytesAfter: Int
    }

    /// Collects per-tensor quantization reports while the output is written.
    final class QuantizationLog: @unchecked Sendable {
        var entries: [QuantizedTensorReport] = []
    }

    /// Float dtypes the converter writes (quantized formats come later).
    public static let outputFloatTypes: [DType] = [.f32, .f16, .bf16]

    public static func convert(source: String, destination: String, dtype target: DType?,
                               quantization: QuantizationScheme? = nil, quantizeEmbeddings: Bool = false) throws -> Report {
        if let target, !outputFloatTypes.contains(target) {
            throw DebertaError(.invalidInput, file: destination, "cannot convert to \(target.shortName); choose f32, f16 or bf16")
        }
        if quantizeEmbeddings && quantization == nil {
            throw DebertaError(.invalidInput, file: destination, "--quantize-embeddings goes with --dtype int8 or q4")
        }
        let model = try ModelCheckpoint.open(source)
        if try QuantizationInfo.read(model.store) != nil {
            throw DebertaError(.unsupported, file: model.files.weights, "is already quantized; convert from the f32/f16/bf16 checkpoint instead")
        }
        // Quantized stores keep every tensor that is not quantized in f32.
        let floatTarget: DType? = quantization != nil ? .f32 : target
        let log = QuantizationLog()
        var info = quantization.map { QuantizationInfo(scheme: $0, embeddings: quantizeEmbeddings, shapes: [:]) }
        guard let configPath = model.files.config else {
            throw DebertaError(.io, file: source, "no config.json beside the weights; the converter writes a model directory and needs it")
        }
        let configJSON = try readJSONFile(configPath)
        guard case var .object(configMembers) = configJSON else {
            throw DebertaError(.malformedFile, file: configPath, "is not a JSON object")
        }

        // Names, tied duplicates and dtypes, decided before anything is written.
        var outputs: [OutputTensor] = []
        var written: [String: TensorView] = [:]
        var droppedTies: [(String, String)] = []
        var renamed: [(String, String)] = []
        var castFrom: [DType: Int] = [:]
        let canonicalNames = model.store.tensors.map { TensorNaming.canonical($0.name, layout: model.layout) }
        var seenCanonical: [String: String] = [:]
        for (view, name) in zip(model.store.tensors, canonicalNames) {
            if let other = seenCanonical[name] {
                throw DebertaError(.tensor, file: model.files.weights, tensor: view.name, "maps to '\(name)', as '\(other)' does")
            }
            seenCanonical[name] = view.name
        }
        let canonicalByName = Dictionary(uniqueKeysWithValues: zip(canonicalNames, model.store.tensors))
        let schema = model.config.map { WeightSchema(config: $0, layout: model.layout) }
        for (view, name) in zip(model.store.tensors, canonicalNames) {
            if let target = TensorNaming.tiedTo[name], let kept = canonicalByName[target],
               kept.aliases(view) || (kept.dtype == view.dtype && kept.shape == view.shape && kept.bytes.elementsEqual(view.bytes)) {
                droppedTies.append((view.name, target))
                continue
            }
            if name != view.name { renamed.append((view.name, name)) }
            let unprefixed = TensorNaming.unprefixed(name)
            if let scheme = quantization, view.dtype.isFloatingPoint, view.shape.count == 2,
               let stored = schema?.quantization(of: unprefixed, scheme: scheme, embeddings: quantizeEmbeddings) {
                outputs += quantized(view, name: name, scheme: stored, log: log)
                info?.shapes[name] = view.shape
                written[name] = view
                continue
            }
            let outType = (floatTarget != nil && view.dtype.isFloatingPoint) ? floatTarget! : view.dtype
            if outType != view.dtype { castFrom[view.dtype, default: 0] += 1 }
            outputs.append(outType == view.dtype ? .copying(view, as: name) : cast(view, to: outType, name: name))
            written[name] = view
        }

        // config.json: architectures filled in when inferred, dtype recorded.
        var architectureFilledIn: String?
        if !configMembers.contains(where: { $0.0 == "architectures" }), let arch = model.layout.architecture {
            configMembers.insert(("architectures", .array([.string(arch)])), at: 0)
            architectureFilledIn = arch
        }
        if let info {
            configMembers.removeAll { $0.0 == QuantizationScheme.metadataKey }
            configMembers.append((QuantizationScheme.metadataKey, .object([
                ("method", .string("deberta-swift")),
                ("scheme", .string(info.scheme.rawValue)),
                ("version", .int(1)),
                ("weights", .string(info.scheme.weightFormat)),
                ("activations", .string(info.scheme.activationFormat)),
                ("block_size", info.scheme == .q4 ? .int(32) : .null),
                ("quantized_embeddings", .bool(info.embeddings)),
                ("scale_suffix", .string(QuantizationScheme.scaleSuffix)),
            ])))
        }
        let writtenFloat = outputs.first { $0.dtype.isFloatingPoint }?.dtype
        if let writtenFloat {
            let torchName = ["F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64"][writtenFloat.rawValue]
            if let torchName {
                for key in ["dtype", "torch_dtype"] {
                    if let k = configMembers.firstIndex(where: { $0.0 == key }) { configMembers[k].1 = .string(torchName) }
                }
            }
        }
        let configText = JSONValue.object(configMembers).serialized(pretty: true) + "\n"

        var metadata: [(String, String)] = [
            ("format", "pt"),
            ("converter", "deberta-swift"),
            ("source", source),
            ("source_format", model.store.format.rawValue),
            ("dtype", quantization?.rawValue ?? target?.shortName ?? "unchanged"),
        ]
        if let info { metadata.append((QuantizationScheme.metadataKey, info.metadataJSON())) }

        // Write: destination directory (created if missing), each file through a temporary name.
        let createdDirectory = try prepareDirectory(destination)
        var finished: [String] = []
        do {
            let weightsPath = destination + "/model.safetensors"
            try SafeTensorsWriter.write(outputs, metadata: metadata, to: weightsPath)
            finished.append(weightsPath)
            let configOut = destination + "/config.json"
            try AtomicFile.write(path: configOut, contents: Array(configText.utf8))
            finished.append(configOut)
            var copied: [String] = []
            for file in model.files.tokenizerFiles {
                let name = String(file.split(separator: "/").last ?? "")
                let out = destination + "/" + name
                try AtomicFile.write(path: out, contents: try readSmallFile(file, limit: 1 << 30))
                finished.append(out)
                copied.append(name)
            }
            return Report(
                destination: destination, weightsFile: weightsPath, tensorsWritten: outputs.count,
                bytesWritten: outputs.reduce(0) { $0 + $1.byteCount }, parameters: outputs.reduce(0) { $0 + (elementCount($1.shape) ?? 0) },
                droppedTies: droppedTies, renamed: renamed, castFrom: castFrom, copiedFiles: copied,
                architectureFilledIn: architectureFilledIn, quantized: log.entries, sourceBytes: model.store.byteCount)
        } catch {
            for f in finished { unlink(f) }
            if createdDirectory { rmdir(destination) }
            throw error
        }
    }

    /// A float matrix [n, k] as codes (`name`) and scales (`name_scale`), quantized with the C kernels'
    /// reference quantizers; the relative RMS error of the dequantized values is logged.
    static func quantized(_ view: TensorView, name: String, scheme: QuantizationScheme, log: QuantizationLog) -> [OutputTensor] {
        let n = view.shape[0], k = view.shape[1]
        let stored = scheme.storedShapes(n: n, k: k), codeShape = stored.codes, scaleShape = stored.scales
        // Both outputs come from one quantization, done when the codes are written (the codes come first in
        // the layout: their size is the larger multiple of 64 more often than not, but order is not assumed).
        final class Shared: @unchecked Sendable { var scales: [Float]?; var codes: [UInt8]? }
        let shared = Shared()
        func compute() {
            guard shared.codes == nil else { return }
            let w = view.floats()
            var codes = [UInt8](repeating: 0, count: codeShape.reduce(1, *))
            var scales = [Float](repeating: 0, count: scaleShape.reduce(1, *))
            var back = [Float](repeating: 0, count: n * k)
            codes.withUnsafeMutableBytes { c in
                scales.withUnsafeMutableBufferPointer { s in
                    back.withUnsafeMutableBufferPointer { b in
                        scheme.kernels.quantizeWeights(w, n, k, c.baseAddress!, s.baseAddress!)
                        scheme.kernels.dequantizeWeights(c.baseAddress!, s.baseAddress!, n, k, b.baseAddress!)
                    }
                }
            }
            var err = 0.0, norm = 0.0
            for i in 0 ..< n * k {
                let d = Double(w[i]) - Double(back[i])
                err += d * d
                norm += Double(w[i]) * Double(w[i])
            }
            log.entries.append(QuantizedTensorReport(name: name, shape: [n, k], relativeRMSError: norm > 0 ? (err / norm).squareRoot() : 0,
                                                     bytesBefore: n * k * 4, bytesAfter: codes.count + scales.count * 4))
            shared.codes = codes
            shared.scales = scales
        }
        return [
            OutputTensor(name: name, dtype: scheme.codeType, shape: codeShape) { dst in
                compute()
                shared.codes!.withUnsafeBytes { dst.copyMemory(from: $0) }
            },
            OutputTensor(name: name + QuantizationScheme.scaleSuffix, dtype: .f32, shape: scaleShape) { dst in
                compute()
                shared.scales!.withUnsafeBytes { dst.copyMemory(from: $0) }
            },
        ]
    }

    /// Creates `path` when missing; returns whether it did. Refuses a path that is a file.
    static func prepareDirectory(_ path: String) throws -> Bool {
        var st = stat()
        if stat(path, &st) == 0 {
            guard (st.st_mode & S_IFMT) == S_IFDIR else {
                throw DebertaError(.io, file: path, "exists and is not a directory; DST must be a model directory")
            }
            return false
        }
        guard mkdir(path, 0o755) == 0 else {
            throw DebertaError(.io, file: path, "cannot create the directory: \(String(cString: strerror(errno)))")
        }
        return true
    }

    /// A float tensor converted element by element (exact when widening f16/bf16 → f32; round to
    /// nearest even when narrowing).
    static func cast(_ view: TensorView, to dtype: DType, name: String) -> OutputTensor {
        OutputTensor(name: name, dtype: dtype, shape: view.shape) { dst in
            let values = view.floats()
            switch dtype {
            case .f32:
                for (i, v) in values.enumerated() { dst.storeBytes(of: v.bitPattern.littleEndian, toByteOffset: 4 * i, as: UInt32.self) }
            case .f16:
                for (i, v) in values.enumerated() { dst.storeBytes(of: f16FromFloat(v).littleEndian, toByteOffset: 2 * i, as: UInt16.self) }
            case .bf16:
                for (i, v) in values.enumerated() { dst.storeBytes(of: bf16FromFloat(v).littleEndian, toByteOffset: 2 * i, as: UInt16.self) }
            default:
                preconditionFailure("cast target \(dtype) is checked by convert()")
            }
        }
    }
}
