#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The files of one model: where the weights are, config.json and the tokenizer files.
/// A path may name a weights file (its directory supplies config.json) or a model directory.
public struct ModelFiles: Sendable {
    public var directory: String
    /// A weights file or a sharded `*.index.json`.
    public var weights: String
    public var config: String?
    public var tokenizerFiles: [String]

    /// Files a tokenizer may need; copied by the converter.
    public static let tokenizerFileNames = [
        "spm.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
        "added_tokens.json", "vocab.json", "merges.txt", "vocab.txt", "bpe_encoder.bin",
    ]

    /// Weight files in order of preference: safetensors over `.bin`, the index over a single file.
    public static let weightFileNames = [
        "model.safetensors.index.json", "model.safetensors",
        "pytorch_model.bin.index.json", "pytorch_model.bin",
    ]

    public static func resolve(_ path: String) throws -> ModelFiles {
        guard let kind = fileKind(path) else {
            throw DebertaError(.io, file: path, "no such file or directory")
        }
        if kind == .file {
            let dir = parentDirectory(of: path)
            let config = dir + "config.json"
            return ModelFiles(
                directory: dir.isEmpty ? "." : String(dir.dropLast()),
                weights: path,
                config: fileKind(config) == .file ? config : nil,
                tokenizerFiles: tokenizerFileNames.map { dir + $0 }.filter { fileKind($0) == .file })
        }
        let dir = path.hasSuffix("/") ? path : path + "/"
        let entries = listDirectory(dir)
        var weights: String?
        for name in weightFileNames where entries.contains(name) {
            weights = dir + name
            break
        }
        if weights == nil {
            // Non-standard names: one index, or exactly one weights file (reference outputs excluded).
            let indexes = entries.filter { $0.hasSuffix(".index.json") }.sorted()
            let singles = entries.filter {
                ($0.hasSuffix(".safetensors") && !$0.hasPrefix("reference")) || $0.hasSuffix(".bin") || $0.hasSuffix(".pt") || $0.hasSuffix(".pth")
            }.sorted()
            if indexes.count == 1 {
                weights = dir + indexes[0]
            } else if singles.count == 1 {
                weights = dir + singles[0]
            } else if singles.count > 1 {
                throw DebertaError(.io, file: path, "several weight files and no index: \(singles.joined(separator: ", ")); name one of them")
            }
        }
        guard let weights else {
            throw DebertaError(.io, file: path, "no weights found (looked for \(weightFileNames.joined(separator: ", ")))")
        }
        let config = dir + "config.json"
        return ModelFiles(
            directory: path,
            weights: weights,
            config: entries.contains("config.json") ? config : nil,
            tokenizerFiles: tokenizerFileNames.filter { entries.contains($0) }.map { dir + $0 })
    }

    enum FileKind { case file, directory }

    static func fileKind(_ path: String) -> FileKind? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return (st.st_mode & S_IFMT) == S_IFDIR ? .directory : .file
    }

    static func listDirectory(_ path: String) -> Set<String> {
        guard let d = opendir(path) else { return [] }
        defer { closedir(d) }
        var names = Set<String>()
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.insert(name) }
        }
        return names
    }
}

/// Reads a small text/JSON file whole, refusing absurd sizes.
public func readSmallFile(_ path: String, limit: Int = 64 << 20) throws -> [UInt8] {
    let storage = try ByteStorage.map(path: path)
    guard storage.count <= limit else {
        throw DebertaError(.limit, file: path, "file is \(storage.count) bytes, more than the \(limit) this file type may have")
    }
    return Array(storage.bytes)
}

/// Parses a JSON file with the project's bounded parser; errors name the file.
public func readJSONFile(_ path: String) throws -> JSONValue {
    let bytes = try readSmallFile(path)
    do {
        return try bytes.withUnsafeBytes { try JSONParser.parse($0) }
    } catch {
        throw DebertaError(.malformedFile, file: path, "is not valid JSON: \(error)")
    }
}
