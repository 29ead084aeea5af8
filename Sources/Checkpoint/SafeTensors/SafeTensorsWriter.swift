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
    /// over `path` only when everything has been written; on any error nothing is left behind and a file
    /// that was at `path` is untouched. `path` must be a regular file or absent (see `AtomicFile`).
    public static func write(_ tensors: [OutputTensor], metadata: [(String, String)], to path: String) throws {
        let (header, dataSize) = try header(tensors, metadata: metadata)
        guard let total = checkedAdd(header.count, dataSize) else {
            throw DebertaError(.limit, file: path, "the output would be larger than this machine can address")
        }
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

    /// Writes the same bytes as `write(_:metadata:to:)` to an open descriptor (standard output, a pipe),
    /// one tensor at a time: nothing is renamed, so a failure part-way leaves what was already written.
    /// `name` is what messages call the descriptor.
    public static func write(_ tensors: [OutputTensor], metadata: [(String, String)], descriptor fd: Int32, name: String) throws {
        let (header, _) = try header(tensors, metadata: metadata)
        try header.withUnsafeBytes { try writeAll(fd, $0, name: name) }
        for k in layoutOrder(tensors) {
            let t = tensors[k]
            guard t.byteCount > 0 else { continue }
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: t.byteCount, alignment: 64)
            defer { buffer.deallocate() }
            buffer.initializeMemory(as: UInt8.self, repeating: 0)
            try t.encode(buffer)
            try writeAll(fd, UnsafeRawBufferPointer(buffer), name: name)
        }
    }

    /// write(2) until every byte is out (short writes and EINTR retried); errors name `name`.
    public static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, name: String) throws {
        var done = 0
        while done < bytes.count {
            let n = posixWrite(fd, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw DebertaError(.io, file: name, "cannot write: \(String(cString: strerror(errno)))")
            }
            done += n
        }
    }
}

/// A file written whole or not at all: a temporary sibling (created exclusively, never through a symbolic
/// link), its space reserved up front (a full disk is an error, not a SIGBUS while the mapping is filled),
/// mapped and filled, synced, then renamed over the target. Only a regular file (or nothing) at the target is
/// replaced: a symbolic link, a device node, a FIFO, a socket or a directory there is refused, so writing to
/// e.g. /dev/stdout or /dev/full never turns it into a regular file. On any error, or a signal handled by
/// `TemporaryFiles`, the temporary is removed and the target is what it was.
public enum AtomicFile {
    /// `.NAME.tmp-PID-RANDOM` beside `path`.
    public static func temporaryPath(for path: String) -> String {
        let (dir, base) = splitPath(path)
        return dir + "." + base + ".tmp-\(getpid())-" + randomSuffix()
    }

    /// (directory with a trailing slash or "", last component).
    static func splitPath(_ path: String) -> (String, String) {
        guard let slash = path.lastIndex(of: "/") else { return ("", path) }
        return (String(path[...slash]), String(path[path.index(after: slash)...]))
    }

    static func randomSuffix() -> String {
        String(UInt64.random(in: 0 ... UInt64.max), radix: 36)
    }

    /// "a symbolic link", "a character device", ... for what `lstat` finds at `path` when that is not a
    /// regular file; nil for a regular file. Throws when the path cannot be written as a file at all.
    public static func checkTarget(_ path: String) throws {
        var st = stat()
        guard lstat(path, &st) == 0 else {
            guard errno == ENOENT else {
                throw DebertaError(.io, file: path, "cannot write here: \(String(cString: strerror(errno)))")
            }
            let (dir, _) = splitPath(path)
            var parent = stat()
            guard stat(dir.isEmpty ? "." : dir, &parent) == 0, (parent.st_mode & S_IFMT) == S_IFDIR else {
                throw DebertaError(.io, file: path, "cannot write here: its directory does not exist")
            }
            return
        }
        if let kind = fileKindName(st.st_mode) {
            throw DebertaError(.io, file: path, "is \(kind); outputs are written only as regular files (give a new path, or - for standard output)")
        }
    }

    /// nil for a regular file, else "a directory", "a FIFO (named pipe)", ...
    public static func fileKindName(_ mode: mode_t) -> String? {
        switch mode & S_IFMT {
        case S_IFREG: return nil
        case S_IFDIR: return "a directory"
        case S_IFLNK: return "a symbolic link"
        case S_IFIFO: return "a FIFO (named pipe)"
        case S_IFSOCK: return "a socket"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        default: return "not a regular file"
        }
    }

    public static func write(path: String, size: Int, fill: (UnsafeMutableRawBufferPointer) throws -> Void) throws {
        guard size >= 0 else { throw DebertaError(.io, file: path, "negative size \(size)") }
        let out = try AtomicStream(path: path)
        defer { out.abandon() }
        if size > 0 {
            // Reserve the blocks now: a full disk fails here instead of raising SIGBUS in the mapping.
            let reserved = posix_fallocate(out.descriptor, 0, off_t(size))
            if reserved != 0 {
                guard reserved == EOPNOTSUPP || reserved == EINVAL, ftruncate(out.descriptor, off_t(size)) == 0 else {
                    throw DebertaError(.io, file: path, "cannot reserve \(size) bytes: \(String(cString: strerror(reserved)))")
                }
            }
            guard let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, out.descriptor, 0), p != MAP_FAILED else {
                throw DebertaError(.io, file: path, "cannot map \(size) bytes to write: \(String(cString: strerror(errno)))")
            }
            defer { munmap(p, size) }
            try fill(UnsafeMutableRawBufferPointer(start: p, count: size))
            guard msync(p, size, MS_SYNC) == 0 else {
                throw DebertaError(.io, file: path, "cannot write: \(String(cString: strerror(errno)))")
            }
        }
        try out.commit()
    }

    /// Small text files (config.json): same temporary-then-rename rule.
    public static func write(path: String, contents: [UInt8]) throws {
        try write(path: path, size: contents.count) { out in
            contents.withUnsafeBytes { out.copyMemory(from: $0) }
        }
    }
}

/// An output written as a stream (JSONL results) with the same rule as `AtomicFile`: bytes go to an
/// exclusive temporary sibling of `path`; `commit()` syncs it and renames it over `path`; `abandon()` (or
/// an error before the commit) removes it and leaves `path` as it was.
public final class AtomicStream {
    public let path: String
    public let temporary: String
    public let descriptor: Int32
    private let token: TemporaryFiles.Token
    private var isOpen = true
    private var committed = false

    public init(path: String) throws {
        try AtomicFile.checkTarget(path)
        var existing = stat()
        let replacing = lstat(path, &existing) == 0
        let mode: mode_t = replacing ? existing.st_mode & 0o7777 : 0o644
        let tmp = AtomicFile.temporaryPath(for: path)
        let (fd, token) = TemporaryFiles.create(tmp, directory: false) {
            posixOpen(tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        }
        guard fd >= 0 else {
            let reason = String(cString: strerror(errno))
            TemporaryFiles.forget(token)
            throw DebertaError(.io, file: path, "cannot create the temporary file \(tmp): \(reason)")
        }
        if replacing { fchmod(fd, mode) }  // the replaced file's permissions, whatever the umask
        self.path = path
        temporary = tmp
        descriptor = fd
        self.token = token
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        try SafeTensorsWriter.writeAll(descriptor, bytes, name: path)
    }

    /// Syncs, closes and renames the temporary over `path` (which must still be absent or a regular file).
    public func commit() throws {
        guard isOpen else { return }
        guard fsync(descriptor) == 0 || errno == EINVAL || errno == EROFS else {
            throw DebertaError(.io, file: path, "cannot write: \(String(cString: strerror(errno)))")
        }
        isOpen = false
        guard close(descriptor) == 0 else {
            throw DebertaError(.io, file: path, "cannot write: \(String(cString: strerror(errno)))")
        }
        try TemporaryFiles.commit(token) {
            // The target may have changed since the check: never rename over anything but a regular file.
            try AtomicFile.checkTarget(path)
            guard rename(temporary, path) == 0 else {
                throw DebertaError(.io, file: path, "cannot rename \(temporary) to it: \(String(cString: strerror(errno)))")
            }
        }
        committed = true
    }

    /// Removes the temporary unless committed; safe to call more than once.
    public func abandon() {
        if isOpen {
            close(descriptor)
            isOpen = false
        }
        if !committed { TemporaryFiles.remove(token) }
    }

    deinit { abandon() }
}

/// Temporary files and directories that exist only while an output is being written. Creating one,
/// committing it (the rename that makes it the output) and removing it all happen under one lock, and
/// `removeAll()` takes that lock and keeps it: a signal handler (the CLI's) calls it, so after an interrupt
/// every temporary is gone, no new one can appear, and no half-finished rename is left behind.
public enum TemporaryFiles {
    public struct Token: Sendable { let id: Int }

    private struct Entry { var path: String; var directory: Bool }
    private nonisolated(unsafe) static var entries: [Int: Entry] = [:]
    private nonisolated(unsafe) static var nextID = 0
    private nonisolated(unsafe) static let mutex: UnsafeMutablePointer<pthread_mutex_t> = {
        let m = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        pthread_mutex_init(m, nil)
        return m
    }()

    private static func locked<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    /// Registers `path` and runs `create` (which makes it) under the lock.
    public static func create<T>(_ path: String, directory: Bool, _ create: () throws -> T) rethrows -> (T, Token) {
        try locked {
            nextID += 1
            entries[nextID] = Entry(path: path, directory: directory)
            return (try create(), Token(id: nextID))
        }
    }

    /// Runs `body` (the rename that turns the temporary into the output) under the lock; the temporary is
    /// forgotten when it succeeds.
    public static func commit(_ token: Token, _ body: () throws -> Void) throws {
        try locked {
            try body()
            entries[token.id] = nil
        }
    }

    /// Forgets a temporary without touching the file system (it was never created, or was moved).
    public static func forget(_ token: Token) {
        locked { entries[token.id] = nil }
    }

    /// Removes a temporary (a directory with everything in it) and forgets it.
    public static func remove(_ token: Token) {
        locked {
            if let e = entries[token.id] { removeTree(e.path) }
            entries[token.id] = nil
        }
    }

    /// Removes every temporary, newest first, and keeps the lock so that none is created or renamed
    /// afterwards: for a handler that ends the process next. Returns the paths removed.
    public static func removeAll() -> [String] {
        pthread_mutex_lock(mutex)
        let all = entries.sorted { $0.key > $1.key }.map(\.value)
        entries = [:]
        var removed: [String] = []
        for e in all {
            var st = stat()
            if lstat(e.path, &st) == 0 {
                removeTree(e.path)
                removed.append(e.path)
            }
        }
        return removed
    }

    /// Deletes `path`; a directory with its contents (symbolic links are removed, never followed).
    public static func removeTree(_ path: String) {
        removeTree(bytes: Array(path.utf8))
    }

    /// The same on a path's exact bytes (names read from a directory need not be UTF-8).
    public static func removeTree(bytes path: [UInt8]) {
        let cPath = path.map { CChar(bitPattern: $0) } + [0]
        var st = stat()
        guard lstat(cPath, &st) == 0 else { return }
        guard (st.st_mode & S_IFMT) == S_IFDIR else {
            unlink(cPath)
            return
        }
        for name in directoryEntries(cPath) { removeTree(bytes: path + [UInt8(ascii: "/")] + name) }
        rmdir(cPath)
    }

    /// The names in a directory (without "." and ".."), as bytes.
    public static func directoryEntries(_ path: [CChar]) -> [[UInt8]] {
        guard let d = opendir(path) else { return [] }
        defer { closedir(d) }
        var names: [[UInt8]] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { Array($0.prefix(while: { $0 != 0 })) }
            if name != [0x2E] && name != [0x2E, 0x2E] { names.append(name) }
        }
        return names
    }
}

/// write(2) and open(2) (the types above have their own `write`).
private func posixWrite(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) -> Int { write(fd, p, n) }
private func posixOpen(_ path: String, _ flags: Int32, _ mode: mode_t) -> Int32 { open(path, flags, mode) }
