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
    }

    /// Float dtypes the converter writes (quantized formats come later).
    public static let outputFloatTypes: [DType] = [.f32, .f16, .bf16]

    public static func convert(source: String, destination: String, dtype target: DType?) throws -> Report {
        if let target, !outputFloatTypes.contains(target) {
            throw CheckpointError(file: destination, "cannot convert to \(target.shortName); choose f32, f16 or bf16")
        }
        let model = try ModelCheckpoint.open(source)
        guard let configPath = model.files.config else {
            throw CheckpointError(file: source, "no config.json beside the weights; the converter writes a model directory and needs it")
        }
        let configJSON = try readJSONFile(configPath)
        guard case var .object(configMembers) = configJSON else {
            throw CheckpointError(file: configPath, "is not a JSON object")
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
                throw CheckpointError(file: model.files.weights, tensor: view.name, "maps to '\(name)', as '\(other)' does")
            }
            seenCanonical[name] = view.name
        }
        let canonicalByName = Dictionary(uniqueKeysWithValues: zip(canonicalNames, model.store.tensors))
        for (view, name) in zip(model.store.tensors, canonicalNames) {
            if let target = TensorNaming.tiedTo[name], let kept = canonicalByName[target],
               kept.aliases(view) || (kept.dtype == view.dtype && kept.shape == view.shape && kept.bytes.elementsEqual(view.bytes)) {
                droppedTies.append((view.name, target))
                continue
            }
            if name != view.name { renamed.append((view.name, name)) }
            let outType = (target != nil && view.dtype.isFloatingPoint) ? target! : view.dtype
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

        let metadata: [(String, String)] = [
            ("format", "pt"),
            ("converter", "deberta-swift"),
            ("source", source),
            ("source_format", model.store.format.rawValue),
            ("dtype", target?.shortName ?? "unchanged"),
        ]

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
                architectureFilledIn: architectureFilledIn)
        } catch {
            for f in finished { unlink(f) }
            if createdDirectory { rmdir(destination) }
            throw error
        }
    }

    /// Creates `path` when missing; returns whether it did. Refuses a path that is a file.
    static func prepareDirectory(_ path: String) throws -> Bool {
        var st = stat()
        if stat(path, &st) == 0 {
            guard (st.st_mode & S_IFMT) == S_IFDIR else {
                throw CheckpointError(file: path, "exists and is not a directory; DST must be a model directory")
            }
            return false
        }
        guard mkdir(path, 0o755) == 0 else {
            throw CheckpointError(file: path, "cannot create the directory: \(String(cString: strerror(errno)))")
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
