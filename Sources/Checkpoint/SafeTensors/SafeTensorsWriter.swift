#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// One tensor to write: its bytes are produced straight into the output mapping by `encode`,
/// which must fill exactly `byteCount` bytes.
public struct OutputTensor {
    public var name: String
    public var dtype: DType
    public var shape: [Int]
    public var encode: (UnsafeMutableRawBufferPointer) throws -> Void

    public init(name: String, dtype: DType, shape: [Int], encode: @escaping (UnsafeMutableRawBufferPointer) throws -> Void) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.encode = encode
    }

    /// A tensor whose bytes are copied unchanged from a view.
    public static func copying(_ view: TensorView, as name: String? = nil) -> OutputTensor {
        OutputTensor(name: name ?? view.name, dtype: view.dtype, shape: view.shape) { dst in
            dst.copyMemory(from: view.bytes)
        }
    }

    public var byteCount: Int { (elementCount(shape) ?? 0) * dtype.size }
}

/// Writes safetensors laid out for use in place: the data buffer starts on a 64-byte boundary (the
/// header is padded with spaces), every tensor whose byte size is a multiple of 64 starts on a
/// 64-byte boundary, and every tensor starts on a multiple of its element size. The format allows
/// no gaps, so this comes from ordering alone: the 64-multiples first, then the rest by decreasing
/// element size.
public enum SafeTensorsWriter {
    public static let alignment = 64

    /// The order in which tensors are placed in the data buffer (indices into `tensors`).
    public static func layoutOrder(_ tensors: [OutputTensor]) -> [Int] {
        let aligned = tensors.indices.filter { tensors[$0].byteCount % alignment == 0 }
        let rest = tensors.indices.filter { tensors[$0].byteCount % alignment != 0 }
        // Stable sort by decreasing element size keeps every start a multiple of its element size.
        let restSorted = rest.enumerated().sorted { a, b in
            let (sa, sb) = (tensors[a.element].dtype.size, tensors[b.element].dtype.size)
            return sa != sb ? sa > sb : a.offset < b.offset
        }.map(\.element)
        return aligned + restSorted
    }

    /// Builds the padded header and the data offsets; returns (header bytes including the 8-byte length, data size).
    public static func header(_ tensors: [OutputTensor], metadata: [(String, String)]) throws -> (header: [UInt8], dataSize: Int) {
        var seen = Set<String>()
        for t in tensors where !seen.insert(t.name).inserted {
            throw DebertaError(.tensor, file: "(output)", tensor: t.name, "tensor name written twice")
        }
        var members: [(String, JSONValue)] = []
        if !metadata.isEmpty {
            members.append(("__metadata__", .object(metadata.map { ($0.0, .string($0.1)) })))
        }
        var offset = 0
        for k in layoutOrder(tensors) {
            let t = tensors[k]
            guard elementCount(t.shape) != nil else {
                throw DebertaError(.tensor, file: "(output)", tensor: t.name, "shape \(t.shape) is invalid")
            }
            let end = offset + t.byteCount
            members.append((t.name, .object([
                ("dtype", .string(t.dtype.rawValue)),
                ("shape", .array(t.shape.map { JSONValue.int($0) })),
                ("data_offsets", .array([.int(offset), .int(end)])),
            ])))
            offset = end
        }
        var json = Array(JSONValue.object(members).serialized().utf8)
        while (8 + json.count) % alignment != 0 { json.append(0x20) }
        var out = [UInt8]()
        out.reserveCapacity(8 + json.count)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: json)
        return (out, offset)
    }

    /// Writes `tensors` to `path` through a temporary file in the same directory that is renamed
    /// over `path` only when everything has been written; on any error nothing is left behind.
    public static func write(_ tensors: [OutputTensor], metadata: [(String, String)], to path: String) throws {
        let (header, dataSize) = try header(tensors, metadata: metadata)
        let total = header.count + dataSize
        try AtomicFile.write(path: path, size: total) { out in
            header.withUnsafeBytes { out.copyMemory(from: $0) }
            var offset = header.count
            for k in layoutOrder(tensors) {
                let t = tensors[k]
                let dst = UnsafeMutableRawBufferPointer(rebasing: out[offset ..< offset + t.byteCount])
                try t.encode(dst)
                offset += t.byteCount
            }
        }
    }
}

/// A file written whole or not at all: a temporary sibling, mapped and filled, synced, then renamed.
public enum AtomicFile {
    public static func temporaryPath(for path: String) -> String {
        let dir = path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        let base = path.split(separator: "/").last.map(String.init) ?? path
        let prefix = dir.isEmpty ? "" : dir + "/"
        return "\(prefix).\(base).tmp-\(getpid())"
    }

    public static func write(path: String, size: Int, fill: (UnsafeMutableRawBufferPointer) throws -> Void) throws {
        let tmp = temporaryPath(for: path)
        let fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw DebertaError(.io, file: path, "cannot create \(tmp): \(String(cString: strerror(errno)))")
        }
        var ok = false
        defer {
            close(fd)
            if !ok { unlink(tmp) }
        }
        guard ftruncate(fd, off_t(size)) == 0 else {
            throw DebertaError(.io, file: path, "cannot size \(tmp) to \(size) bytes: \(String(cString: strerror(errno)))")
        }
        if size > 0 {
            guard let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), p != MAP_FAILED else {
                throw DebertaError(.io, file: path, "cannot map \(tmp): \(String(cString: strerror(errno)))")
            }
            defer { munmap(p, size) }
            try fill(UnsafeMutableRawBufferPointer(start: p, count: size))
            guard msync(p, size, MS_SYNC) == 0 else {
                throw DebertaError(.io, file: path, "cannot write \(tmp): \(String(cString: strerror(errno)))")
            }
        }
        guard rename(tmp, path) == 0 else {
            throw DebertaError(.io, file: path, "cannot rename \(tmp) to \(path): \(String(cString: strerror(errno)))")
        }
        ok = true
    }

    /// Small text files (config.json): same temporary-then-rename rule.
    public static func write(path: String, contents: [UInt8]) throws {
        try write(path: path, size: contents.count) { out in
            contents.withUnsafeBytes { out.copyMemory(from: $0) }
        }
    }
}
