/// How the weights were stored on disk.
public enum CheckpointFormat: String, Sendable {
    case safetensors
    case safetensorsSharded = "safetensors-sharded"
    case pytorchZip = "pytorch-zip"
    case pytorchZipSharded = "pytorch-zip-sharded"
    case pytorchLegacy = "pytorch-legacy"
}

/// Every tensor of a checkpoint by name: dtype, shape and bytes in place (memory-mapped whenever the
/// file's bytes can be used as they are). Immutable and shareable across threads.
public final class TensorStore: Sendable {
    public let format: CheckpointFormat
    /// The weight files read, in order (shards in index order).
    public let files: [String]
    /// Tensors in file order.
    public let tensors: [TensorView]
    /// `__metadata__` of the (first) safetensors file.
    public let metadata: [(String, String)]
    /// State-dict entries that were not tensors (PyTorch files only).
    public let skipped: [String]
    private let byName: [String: Int]

    public init(format: CheckpointFormat, files: [String], tensors: [TensorView], metadata: [(String, String)] = [], skipped: [String] = []) throws {
        var byName: [String: Int] = [:]
        for (k, t) in tensors.enumerated() {
            if let previous = byName[t.name] {
                throw DebertaError(.tensor, file: t.file, tensor: t.name, "appears twice (also in \(tensors[previous].file))")
            }
            byName[t.name] = k
        }
        self.format = format
        self.files = files
        self.tensors = tensors
        self.metadata = metadata
        self.skipped = skipped
        self.byName = byName
    }

    public subscript(name: String) -> TensorView? {
        byName[name].map { tensors[$0] }
    }

    public var names: [String] { tensors.map(\.name) }
    public var parameterCount: Int { tensors.reduce(0) { $0 + $1.elementCount } }
    public var byteCount: Int { tensors.reduce(0) { $0 + $1.byteCount } }

    /// Opens a weights file: safetensors, a PyTorch zip or legacy `.bin`, or a sharded
    /// `*.index.json`. The format comes from the file's content, not its name (except the index).
    public static func open(weights path: String) throws -> TensorStore {
        if path.hasSuffix(".index.json") { return try openSharded(index: path) }
        let (format, tensors, metadata, skipped) = try readSingle(path)
        return try TensorStore(format: format, files: [path], tensors: tensors, metadata: metadata, skipped: skipped)
    }

    /// Parses one weights file already in memory (tests, and callers that mapped it themselves).
    public static func read(_ region: ByteRegion, file: String) throws -> TensorStore {
        let (format, tensors, metadata, skipped) = try readSingle(region, path: file)
        return try TensorStore(format: format, files: [file], tensors: tensors, metadata: metadata, skipped: skipped)
    }

    static func readSingle(_ path: String) throws -> (CheckpointFormat, [TensorView], [(String, String)], [String]) {
        try readSingle(ByteRegion(storage: try ByteStorage.map(path: path)), path: path)
    }

    static func readSingle(_ region: ByteRegion, path: String) throws -> (CheckpointFormat, [TensorView], [(String, String)], [String]) {
        switch sniff(region.bytes, path: path) {
        case .safetensors:
            let parsed = try SafeTensorsReader.read(region, file: path)
            return (.safetensors, parsed.tensors, parsed.metadata, [])
        case .pytorch:
            let dict = try TorchCheckpoint.load(region, file: path)
            let format: CheckpointFormat = dict.format == CheckpointFormat.pytorchLegacy.rawValue ? .pytorchLegacy : .pytorchZip
            return (format, dict.tensors, [], dict.skipped)
        case .unknown(let what):
            throw DebertaError(.malformedFile, file: path, "not a checkpoint this tool reads (\(what)); expected safetensors, a PyTorch zip (.bin) or a sharded *.index.json")
        }
    }

    enum Sniffed { case safetensors, pytorch, unknown(String) }

    /// Decides the format from the first bytes.
    static func sniff(_ bytes: UnsafeRawBufferPointer, path: String) -> Sniffed {
        if bytes.count == 0 { return .unknown("the file is empty") }
        if bytes.count >= 4, bytes[0] == 0x50, bytes[1] == 0x4B, (bytes[2] == 3 && bytes[3] == 4) || (bytes[2] == 5 && bytes[3] == 6) {
            return .pytorch
        }
        if bytes.count >= 9 {
            // safetensors: a plausible little-endian header length, then '{' (possibly after spaces). Checked
            // before the pickle test: a header length whose low byte is 0x80 must not look like a pickle.
            let headerLength = bytes.loadUnaligned(as: UInt64.self).littleEndian
            var k = 8
            while k < bytes.count, k < 64, bytes[k] == 0x20 || bytes[k] == 0x0A || bytes[k] == 0x09 || bytes[k] == 0x0D { k += 1 }
            if headerLength <= UInt64(bytes.count - 8), k < bytes.count, bytes[k] == UInt8(ascii: "{") { return .safetensors }
        }
        if bytes[0] == 0x80 { return .pytorch }  // a raw pickle: the legacy torch format (the reader checks the magic)
        if bytes.count >= 262, Array(bytes[257 ..< 262]) == Array("ustar".utf8) { return .pytorch }  // old tar format: refused there
        if bytes.count >= 9, bytes[8] == UInt8(ascii: "{") || bytes[8] == 0x20 { return .safetensors }  // let the reader say what is wrong
        if path.hasSuffix(".safetensors") { return .safetensors }  // let the reader say what is wrong
        return .unknown("its first bytes match no known format")
    }

    /// What a sharded index says: the shard files in order of first mention and, per shard, the tensor
    /// names the weight_map places in it. Linear in the index's size; at most
    /// `CheckpointLimits.maxShards` shards and `maxIndexEntries` entries.
    public struct ShardIndex: Sendable {
        public var shards: [String]
        public var tensorsByShard: [String: [String]]
        public var entryCount: Int
    }

    /// Parses the JSON of a `*.index.json` (`file` names it in errors).
    public static func parseShardIndex(_ bytes: UnsafeRawBufferPointer, file path: String) throws -> ShardIndex {
        guard bytes.count <= CheckpointLimits.maxIndexBytes else {
            throw DebertaError(.limit, file: path, "index file is \(bytes.count) bytes; an index over \(CheckpointLimits.maxIndexBytes >> 20) MiB is not plausible")
        }
        let json: JSONValue
        do { json = try JSONParser.parse(bytes) } catch {
            throw DebertaError(.malformedFile, file: path, "index is not valid JSON: \(error)")
        }
        guard let map = json["weight_map"]?.objectValue else {
            throw DebertaError(.malformedFile, file: path, "index has no \"weight_map\" object")
        }
        guard map.count <= CheckpointLimits.maxIndexEntries else {
            throw DebertaError(.limit, file: path, "weight_map has \(map.count) entries, more than the limit of \(CheckpointLimits.maxIndexEntries)")
        }
        var shards: [String] = []
        var byShard: [String: [String]] = [:]
        for (tensor, value) in map {
            guard let file = value.stringValue else {
                throw DebertaError(.tensor, file: path, tensor: tensor, "weight_map value is not a file name")
            }
            guard isPlainFileName(file) else {
                throw DebertaError(.tensor, file: path, tensor: tensor, "shard name '\(file)' must be a plain file name beside the index")
            }
            if byShard[file] == nil {
                guard shards.count < CheckpointLimits.maxShards else {
                    throw DebertaError(.limit, file: path, "weight_map names more than \(CheckpointLimits.maxShards) shard files, the limit for one index")
                }
                shards.append(file)
            }
            byShard[file, default: []].append(tensor)
        }
        guard !shards.isEmpty else { throw DebertaError(.malformedFile, file: path, "weight_map is empty") }
        return ShardIndex(shards: shards, tensorsByShard: byShard, entryCount: map.count)
    }

    /// A sharded checkpoint: `{"metadata": {...}, "weight_map": {tensor: file}}`, shards beside the index.
    static func openSharded(index path: String) throws -> TensorStore {
        let storage = try ByteStorage.map(path: path)
        let index = try parseShardIndex(storage.bytes, file: path)
        var expected: [String: String] = [:]
        expected.reserveCapacity(index.entryCount)
        for (shard, names) in index.tensorsByShard { for name in names { expected[name] = shard } }
        let directory = parentDirectory(of: path)
        var tensors: [TensorView] = []
        var files: [String] = []
        var metadata: [(String, String)] = []
        var skipped: [String] = []
        var shardFormat: CheckpointFormat?
        for shard in index.shards {
            let shardPath = directory + shard
            let (format, shardTensors, shardMetadata, shardSkipped) = try readSingle(shardPath)
            if let f = shardFormat, f != format {
                throw DebertaError(.malformedFile, file: shardPath, "shard is \(format.rawValue) but earlier shards are \(f.rawValue)")
            }
            shardFormat = format
            for t in shardTensors {
                guard let listed = expected[t.name] else {
                    throw DebertaError(.tensor, file: shardPath, tensor: t.name, "is in the shard but not in \(path)'s weight_map")
                }
                guard listed == shard else {
                    throw DebertaError(.tensor, file: shardPath, tensor: t.name, "weight_map places it in \(listed)")
                }
            }
            let present = Set(shardTensors.map(\.name))
            for name in index.tensorsByShard[shard] ?? [] where !present.contains(name) {
                throw DebertaError(.tensor, file: shardPath, tensor: name, "listed in the weight_map of \(path) but missing from the shard")
            }
            if metadata.isEmpty { metadata = shardMetadata }
            skipped += shardSkipped
            tensors += shardTensors
            files.append(shardPath)
        }
        let format: CheckpointFormat = shardFormat == .safetensors ? .safetensorsSharded : .pytorchZipSharded
        return try TensorStore(format: format, files: files, tensors: tensors, metadata: metadata, skipped: skipped)
    }
}

func parentDirectory(of path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "" }
    return String(path[...slash])
}

func isPlainFileName(_ name: String) -> Bool {
    !name.isEmpty && name != "." && name != ".." && !name.contains("/") && !name.contains("\\") && !name.contains("\0")
}
