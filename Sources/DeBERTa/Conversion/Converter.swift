import CQuantKernels
import Checkpoint
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `deberta convert`: a checkpoint in → a model directory out (config.json, tokenizer files and one
/// aligned `model.safetensors` under transformers' names), built beside the destination and swapped in
/// at the end, so that a failure leaves the destination exactly as it was.
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

    /// Points of a conversion a caller may watch (the CLI's test hook pauses at one of them); each names
    /// the temporary directory.
    public enum Stage: Sendable {
        /// The temporary directory beside DST exists and is empty.
        case temporaryCreated(String)
        /// `model.safetensors` is complete in it.
        case weightsWritten(String)
        /// Every file is in it; DST is swapped next.
        case beforeSwap(String)
    }

    public static func convert(source: String, destination: String, dtype target: DType?,
                               quantization: QuantizationScheme? = nil, quantizeEmbeddings: Bool = false,
                               stage: ((Stage) -> Void)? = nil) throws -> Report {
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

        // Write: the new model directory is built beside DST (a temporary sibling) and swapped in at the end,
        // so a failure or an interrupt leaves DST exactly as it was.
        let target = try Destination(destination)
        let weightsPath = target.path + "/model.safetensors"
        var copied: [String] = []
        do {
            stage?(.temporaryCreated(target.temporary))
            try SafeTensorsWriter.write(outputs, metadata: metadata, to: target.temporary + "/model.safetensors")
            stage?(.weightsWritten(target.temporary))
            try AtomicFile.write(path: target.temporary + "/config.json", contents: Array(configText.utf8))
            for file in model.files.tokenizerFiles {
                let name = String(file.split(separator: "/").last ?? "")
                try AtomicFile.write(path: target.temporary + "/" + name, contents: try readSmallFile(file, limit: 1 << 30))
                copied.append(name)
            }
            try target.keepOtherFiles()
            stage?(.beforeSwap(target.temporary))
            try target.swap()
        } catch var error as DebertaError {
            target.abandon()
            // Name the file as it would be in DST, not in the temporary directory.
            if error.file.hasPrefix(target.temporary + "/") {
                error.file = target.path + error.file.dropFirst(target.temporary.count)
            }
            throw error
        } catch {
            target.abandon()
            throw error
        }
        return Report(
            destination: destination, weightsFile: weightsPath, tensorsWritten: outputs.count,
            bytesWritten: outputs.reduce(0) { $0 + $1.byteCount }, parameters: outputs.reduce(0) { $0 + (elementCount($1.shape) ?? 0) },
            droppedTies: droppedTies, renamed: renamed, castFrom: castFrom, copiedFiles: copied,
            architectureFilledIn: architectureFilledIn, quantized: log.entries, sourceBytes: model.store.byteCount)
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

/// The model directory a conversion writes. The new directory is built as a temporary sibling of DST
/// (registered with `TemporaryFiles`, so an interrupt removes it) and swapped in at the end: renamed into
/// place when DST is new, exchanged with it atomically (renameat2 RENAME_EXCHANGE; elsewhere: the old one
/// renamed aside, the new one in, the old one back on failure) when DST exists, then the old one removed.
/// Files of an existing DST are kept (hard links into the new directory) unless the new one replaces them
/// (`isModelFile`: safetensors weights and indexes, config, tokenizer files).
final class Destination {
    let path: String
    let temporary: String
    let existed: Bool
    private let directory: String
    private let base: String
    private let token: TemporaryFiles.Token

    init(_ destination: String) throws {
        var p = destination
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        guard !p.isEmpty else { throw DebertaError(.invalidInput, file: destination, "DST is empty; name the model directory to write") }
        let (dir, base) = Destination.split(p)
        guard p != "/", base != ".", base != ".." else {
            throw DebertaError(.io, file: destination, "name the model directory itself (not '/', '.' or '..'): convert replaces DST as a whole")
        }
        path = p
        directory = dir
        self.base = base
        var st = stat()
        var mode: mode_t = 0o755
        if lstat(p, &st) == 0 {
            switch st.st_mode & S_IFMT {
            case S_IFDIR:
                existed = true
                mode = st.st_mode & 0o7777
                let cPath = Array(p.utf8CString)
                for name in TemporaryFiles.directoryEntries(cPath) {
                    var entry = stat()
                    let full = Array(p.utf8) + [UInt8(ascii: "/")] + name
                    if lstat(full.map { CChar(bitPattern: $0) } + [0], &entry) == 0, (entry.st_mode & S_IFMT) == S_IFDIR {
                        throw DebertaError(.io, file: p, "holds the subdirectory '\(String(decoding: name, as: UTF8.self))'; convert replaces DST as a whole, so it must be a model directory of files only (or a new path)")
                    }
                }
            case S_IFLNK:
                throw DebertaError(.io, file: p, "is a symbolic link; convert replaces DST as a whole and never replaces a link (give the directory it points to, or a new path)")
            default:
                throw DebertaError(.io, file: p, "exists and is not a directory; DST must be a model directory")
            }
        } else if errno == ENOENT {
            existed = false
            var parent = stat()
            guard stat(dir.isEmpty ? "." : dir, &parent) == 0, (parent.st_mode & S_IFMT) == S_IFDIR else {
                throw DebertaError(.io, file: p, "cannot create the directory: its parent directory does not exist")
            }
        } else {
            throw DebertaError(.io, file: p, "cannot use as DST: \(String(cString: strerror(errno)))")
        }
        let tmp = dir + "." + base + ".deberta-tmp-\(getpid())-" + String(UInt64.random(in: 0 ... UInt64.max), radix: 36)
        let initialMode: mode_t = existed ? 0o700 : 0o755
        let (made, token) = TemporaryFiles.create(tmp, directory: true) { mkdir(tmp, initialMode) }
        guard made == 0 else {
            let reason = String(cString: strerror(errno))
            TemporaryFiles.forget(token)
            throw DebertaError(.io, file: p, "cannot create the temporary directory \(tmp) beside it: \(reason)")
        }
        if existed { chmod(tmp, mode) }  // the old directory's permissions; a new one has the umask's
        temporary = tmp
        self.token = token
    }

    /// (directory with a trailing slash or "", last component).
    static func split(_ path: String) -> (String, String) {
        guard let slash = path.lastIndex(of: "/") else { return ("", path) }
        return (String(path[...slash]), String(path[path.index(after: slash)...]))
    }

    /// Whether a file of the old DST is replaced rather than kept: what the new directory writes, and what
    /// would be read instead of it (safetensors weights and indexes, which take precedence over the new
    /// model.safetensors or make the weights ambiguous; tokenizer files). PyTorch weights are kept (the new
    /// model.safetensors is preferred over them), and so is everything else (README.md, references, ...).
    static func isModelFile(_ name: String) -> Bool {
        if name == "config.json" || ModelFiles.tokenizerFileNames.contains(name) { return true }
        if name.hasSuffix(".safetensors.index.json") { return true }
        if name.hasSuffix(".safetensors") && !name.hasPrefix("reference") { return true }
        // a temporary of an earlier, killed write
        return name.hasPrefix(".") && name.contains(".tmp-")
    }

    /// Hard-links the old DST's other files into the new directory.
    func keepOtherFiles() throws {
        guard existed else { return }
        for name in TemporaryFiles.directoryEntries(Array(path.utf8CString)) {
            let text = String(decoding: name, as: UTF8.self)
            if Destination.isModelFile(text) { continue }
            let from = (Array(path.utf8) + [UInt8(ascii: "/")] + name).map { CChar(bitPattern: $0) } + [0]
            let to = (Array(temporary.utf8) + [UInt8(ascii: "/")] + name).map { CChar(bitPattern: $0) } + [0]
            var st = stat()
            if lstat(to, &st) == 0 { continue }
            guard linkat(AT_FDCWD, from, AT_FDCWD, to, 0) == 0 else {
                throw DebertaError(.io, file: path, "cannot keep its file '\(text)' in the new directory: \(String(cString: strerror(errno)))")
            }
        }
    }

    /// glibc's renameat2 (2.28+), looked up at run time.
    private typealias RenameAt2 = @convention(c) (Int32, UnsafePointer<CChar>?, Int32, UnsafePointer<CChar>?, UInt32) -> Int32
    private static let renameat2: RenameAt2? = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "renameat2")
        .map { unsafeBitCast($0, to: RenameAt2.self) }
    private static let renameExchange: UInt32 = 2

    /// Puts the new directory at DST (see the type's comment); under the temporaries' lock, so a signal
    /// handler sees either the old DST and the temporary, or the new DST.
    func swap() throws {
        try TemporaryFiles.commit(token) {
            guard existed else {
                guard rename(temporary, path) == 0 else {
                    throw DebertaError(.io, file: path, "cannot rename \(temporary) to it: \(String(cString: strerror(errno)))")
                }
                return
            }
            var current = stat()
            guard lstat(path, &current) == 0, (current.st_mode & S_IFMT) == S_IFDIR else {
                throw DebertaError(.io, file: path, "changed while the conversion ran (it is no longer a directory); nothing was replaced")
            }
            if let exchange = Destination.renameat2, exchange(AT_FDCWD, temporary, AT_FDCWD, path, Destination.renameExchange) == 0 {
                TemporaryFiles.removeTree(temporary)  // now the old model
                return
            }
            let aside = directory + "." + base + ".deberta-old-\(getpid())-" + String(UInt64.random(in: 0 ... UInt64.max), radix: 36)
            guard rename(path, aside) == 0 else {
                throw DebertaError(.io, file: path, "cannot move the old directory aside to \(aside): \(String(cString: strerror(errno)))")
            }
            guard rename(temporary, path) == 0 else {
                let reason = String(cString: strerror(errno))
                if rename(aside, path) != 0 {
                    throw DebertaError(.io, file: path, "cannot rename \(temporary) to it (\(reason)), and the old directory could not be put back: it is at \(aside)")
                }
                throw DebertaError(.io, file: path, "cannot rename \(temporary) to it: \(reason); the old directory is unchanged")
            }
            TemporaryFiles.removeTree(aside)
        }
    }

    /// Removes the temporary directory (nothing, once swapped).
    func abandon() {
        TemporaryFiles.remove(token)
    }
}
