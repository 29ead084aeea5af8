#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Memory that tensor views point into: a read-only file mapping or a buffer this process filled
/// (inflated zip entries, materialized strided views, byte-swapped data). Immutable once built.
public final class ByteStorage: @unchecked Sendable {
    public let bytes: UnsafeRawBufferPointer
    private let release: (() -> Void)?

    /// True for file mappings (madvise applies), false for buffers this process filled.
    public let isMapped: Bool
    /// The mapped file, kept open so that scattered small reads can bypass the mapping (`read(at:)`).
    private let descriptor: Int32?

    private init(bytes: UnsafeRawBufferPointer, isMapped: Bool = false, descriptor: Int32? = nil, release: (() -> Void)?) {
        self.bytes = bytes
        self.isMapped = isMapped
        self.descriptor = descriptor
        self.release = release
    }

    deinit {
        release?()
        if let descriptor { close(descriptor) }
    }

    /// Copies `count` bytes at `offset` into `destination` with pread when this is a file mapping, so the
    /// pages are not mapped into the process (a few embedding rows looked up per call must not bring
    /// whole page-cache folios of a 400 MB table into the resident set); otherwise a memory copy.
    public func copy(offset: Int, count: Int, into destination: UnsafeMutableRawPointer) {
        guard offset >= 0, count >= 0, offset + count <= bytes.count else { return }
        if let descriptor {
            var done = 0
            while done < count {
                let n = pread(descriptor, destination + done, count - done, off_t(offset + done))
                if n <= 0 { break }
                done += n
            }
            if done == count { return }
        }
        if let base = bytes.baseAddress { destination.copyMemory(from: base + offset, byteCount: count) }
    }

    /// One piece of a gathered read: `count` bytes at `offset` go to `destination`.
    public struct Piece {
        public var offset: Int
        public var count: Int
        public var destination: UnsafeMutableRawPointer
        public init(offset: Int, count: Int, destination: UnsafeMutableRawPointer) {
            self.offset = offset
            self.count = count
            self.destination = destination
        }
    }

    /// Copies several pieces (embedding rows of one call) like `copy(offset:count:into:)`. Pieces whose
    /// pages are already in the page cache are read at once (preadv2 with RWF_NOWAIT, one system call
    /// each as before); the pages of all the others are then requested together (POSIX_FADV_WILLNEED
    /// starts their reads without waiting), and only then read. A first call on a table that is not in
    /// memory so waits for the disk about once, not once per row: 1024 rows of a 400 MB table read
    /// one after the other took ~60 ms on the development VM's virtual disk.
    public func copy(pieces: [Piece]) {
        guard let descriptor else {
            for p in pieces { copy(offset: p.offset, count: p.count, into: p.destination) }
            return
        }
        var missing: [Int] = []
        for (i, p) in pieces.enumerated() {
            guard p.offset >= 0, p.count > 0, p.offset + p.count <= bytes.count else { continue }
            if ByteStorage.noWaitReads, let preadv2 = ByteStorage.preadv2 {
                var vector = iovec(iov_base: p.destination, iov_len: p.count)
                let n = preadv2(descriptor, &vector, 1, off_t(p.offset), ByteStorage.readNoWait)
                if n == p.count { continue }
                if n < 0 && (errno == EOPNOTSUPP || errno == EINVAL || errno == ENOSYS) {
                    ByteStorage.noWaitReads = false
                }
            }
            missing.append(i)
        }
        guard !missing.isEmpty else { return }
        if missing.count > 1 {
            for i in missing { _ = posix_fadvise(descriptor, off_t(pieces[i].offset), off_t(pieces[i].count), POSIX_FADV_WILLNEED) }
        }
        for i in missing { copy(offset: pieces[i].offset, count: pieces[i].count, into: pieces[i].destination) }
    }

    /// glibc's preadv2 (2.26+), looked up at run time: the Glibc module does not declare it.
    private typealias PReadV2 = @convention(c) (Int32, UnsafePointer<iovec>?, Int32, off_t, Int32) -> Int
    private static let preadv2: PReadV2? = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "preadv2")
        .map { unsafeBitCast($0, to: PReadV2.self) }
    /// RWF_NOWAIT (linux/fs.h): fail with EAGAIN instead of waiting for the disk.
    private static let readNoWait: Int32 = 0x0000_0008
    /// Cleared when the kernel or file system does not take RWF_NOWAIT (then plain reads).
    nonisolated(unsafe) private static var noWaitReads = true

    /// Maps `path` read-only. An empty file maps to an empty buffer. Only regular files are read: the
    /// path is opened with O_NONBLOCK (a FIFO without a writer would otherwise block the open forever)
    /// and refused unless fstat says it is a regular file (FIFOs, sockets, devices, directories).
    public static func map(path: String) throws -> ByteStorage {
        let fd = try openRegularFile(path)
        var keepOpen = false
        defer { if !keepOpen { close(fd) } }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw DebertaError(.io, file: path, "cannot stat: \(String(cString: strerror(errno)))")
        }
        let size = Int(st.st_size)
        if size == 0 {
            return ByteStorage(bytes: UnsafeRawBufferPointer(start: nil, count: 0), release: nil)
        }
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw DebertaError(.io, file: path, "cannot map \(size) bytes: \(String(cString: strerror(errno)))")
        }
        let raw = UnsafeRawBufferPointer(start: UnsafeRawPointer(p), count: size)
        keepOpen = true
        return ByteStorage(bytes: raw, isMapped: true, descriptor: fd) { munmap(p, size) }
    }

    /// Opens `path` read-only and returns the descriptor only when it is a regular file; anything else
    /// (directory, FIFO, socket, character or block device) is refused with a message naming the kind.
    /// O_NONBLOCK keeps the open of a FIFO from waiting for a writer; it is cleared again afterwards.
    public static func openRegularFile(_ path: String) throws -> Int32 {
        // stat first for the message (opening a socket fails with ENXIO); fstat below decides.
        var before = stat()
        if stat(path, &before) == 0, let kind = nonRegularKind(before.st_mode) {
            throw DebertaError(.io, file: path, "is \(kind), not a regular file; only regular files are read")
        }
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else {
            throw DebertaError(.io, file: path, "cannot open: \(String(cString: strerror(errno)))")
        }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw DebertaError(.io, file: path, "cannot stat: \(reason)")
        }
        if let kind = nonRegularKind(st.st_mode) {
            close(fd)
            throw DebertaError(.io, file: path, "is \(kind), not a regular file; only regular files are read")
        }
        let flags = fcntl(fd, F_GETFL)
        if flags >= 0 { _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) }
        return fd
    }

    /// "a directory", "a FIFO (named pipe)", ... for a mode that is not a regular file; nil for one.
    public static func nonRegularKind(_ mode: mode_t) -> String? {
        switch mode & S_IFMT {
        case S_IFREG: return nil
        case S_IFDIR: return "a directory"
        case S_IFIFO: return "a FIFO (named pipe)"
        case S_IFSOCK: return "a socket"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case S_IFLNK: return "a symbolic link"
        default: return "a special file"
        }
    }

    /// A zero-filled, 64-byte aligned buffer of `count` bytes that `fill` writes once. The size usually
    /// comes from a file, so it is checked against the memory this process may still use
    /// (`MemoryBudget`) and a failed allocation is an error naming `file` and `what`, never a trap.
    public static func allocate(count: Int, file: String = "", what: String = "buffer",
                                _ fill: (UnsafeMutableRawBufferPointer) throws -> Void) throws -> ByteStorage {
        guard count >= 0 else {
            throw DebertaError(.malformedFile, file: file, "\(what): negative size \(count)")
        }
        try MemoryBudget.check(count, file: file, what: what)
        var raw: UnsafeMutableRawPointer?
        guard posix_memalign(&raw, 64, max(count, 1)) == 0, let p = raw else {
            throw DebertaError(.limit, file: file, "\(what): cannot allocate \(count) bytes (out of memory)")
        }
        memset(p, 0, max(count, 1))
        let buffer = UnsafeMutableRawBufferPointer(start: p, count: count)
        do { try fill(buffer) } catch { free(p); throw error }
        return ByteStorage(bytes: UnsafeRawBufferPointer(buffer)) { free(p) }
    }

    /// A private copy of `bytes` (tests and small in-memory files).
    public static func copy(_ bytes: some Collection<UInt8>) -> ByteStorage {
        let array = Array(bytes)
        let p = UnsafeMutableRawPointer.allocate(byteCount: max(array.count, 1), alignment: 64)
        array.withUnsafeBytes { src in if let b = src.baseAddress { p.copyMemory(from: b, byteCount: src.count) } }
        return ByteStorage(bytes: UnsafeRawBufferPointer(start: p, count: array.count)) { p.deallocate() }
    }

    public var count: Int { bytes.count }

}

/// A bounds-checked window into a `ByteStorage`: what a tensor or a zip entry points at.
public struct ByteRegion: @unchecked Sendable {
    public let storage: ByteStorage
    public let offset: Int
    public let count: Int

    public init(storage: ByteStorage) {
        self.storage = storage
        self.offset = 0
        self.count = storage.count
    }

    /// nil when the window does not lie inside the storage.
    public init?(storage: ByteStorage, offset: Int, count: Int) {
        guard offset >= 0, count >= 0, let end = checkedAdd(offset, count), end <= storage.count else { return nil }
        self.storage = storage
        self.offset = offset
        self.count = count
    }

    public var bytes: UnsafeRawBufferPointer {
        guard count > 0, let base = storage.bytes.baseAddress else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: base + offset, count: count)
    }

    /// Copies `count` bytes at `offset` of this window without mapping the pages (see ByteStorage.copy).
    public func copy(offset: Int, count: Int, into destination: UnsafeMutableRawPointer) {
        guard offset >= 0, count >= 0, offset + count <= self.count else { return }
        storage.copy(offset: self.offset + offset, count: count, into: destination)
    }

    /// Gathers pieces of this window (offsets relative to it) without mapping the pages (see
    /// ByteStorage.copy(pieces:)); pieces outside the window are skipped.
    public func copy(pieces: [ByteStorage.Piece]) {
        storage.copy(pieces: pieces.compactMap { p in
            guard p.offset >= 0, p.count >= 0, p.offset + p.count <= count else { return nil }
            return ByteStorage.Piece(offset: offset + p.offset, count: p.count, destination: p.destination)
        })
    }

    /// Drops this window's pages from the process's resident set (a private read-only file mapping: the
    /// data stays in the page cache and is faulted in again if read). For weights repacked at load.
    public func releaseResidentPages() {
        guard storage.isMapped, count > 0, let base = storage.bytes.baseAddress else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        // Only whole pages inside the window: neighbours may still be in use.
        let first = (Int(bitPattern: base) + offset + page - 1) / page * page
        let end = (Int(bitPattern: base) + offset + count) / page * page
        guard end > first else { return }
        _ = madvise(UnsafeMutableRawPointer(bitPattern: first), end - first, MADV_DONTNEED)
    }

    /// Tells the kernel this window of a file mapping is read at random (an embedding table read a few
    /// rows at a time): no read-around, which on a disk with a large read_ahead_kb would otherwise pull
    /// megabytes of the table into memory for every row looked up.
    public func adviseRandomAccess() {
        guard storage.isMapped, count > 0, let base = storage.bytes.baseAddress else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (Int(bitPattern: base) + offset) / page * page
        let end = Int(bitPattern: base) + offset + count
        _ = madvise(UnsafeMutableRawPointer(bitPattern: start), end - start, MADV_RANDOM)
    }

    /// A sub-window, nil when out of range.
    public func slice(offset: Int, count: Int) -> ByteRegion? {
        guard offset >= 0, count >= 0, let end = checkedAdd(offset, count), end <= self.count else { return nil }
        return ByteRegion(storage: storage, offset: self.offset + offset, count: count)
    }
}

/// Sequential little-endian reads over untrusted bytes; every read is bounds-checked and throws.
public struct ByteReader {
    public let bytes: UnsafeRawBufferPointer
    public var position: Int
    public let file: String
    public let what: String

    public init(_ bytes: UnsafeRawBufferPointer, file: String, what: String, position: Int = 0) {
        self.bytes = bytes
        self.position = position
        self.file = file
        self.what = what
    }

    public var remaining: Int { bytes.count - position }
    public var atEnd: Bool { position >= bytes.count }

    func truncated(_ need: Int) -> DebertaError {
        DebertaError(.malformedFile, file: file, "\(what) is truncated: needs \(need) more bytes at offset \(position), \(max(remaining, 0)) remain")
    }

    public mutating func u8() throws -> UInt8 {
        guard remaining >= 1 else { throw truncated(1) }
        defer { position += 1 }
        return bytes[position]
    }

    public mutating func le<T: FixedWidthInteger>(_ type: T.Type) throws -> T {
        let n = MemoryLayout<T>.size
        guard remaining >= n else { throw truncated(n) }
        var v: T = 0
        withUnsafeMutableBytes(of: &v) { dst in
            dst.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[position ..< position + n]))
        }
        position += n
        return T(littleEndian: v)
    }

    /// `count` bytes without copying; count is checked against what remains before anything is used.
    public mutating func take(_ count: Int) throws -> UnsafeRawBufferPointer {
        guard count >= 0 else { throw DebertaError(.malformedFile, file: file, "\(what): negative length \(count) at offset \(position)") }
        guard remaining >= count else { throw truncated(count) }
        defer { position += count }
        return UnsafeRawBufferPointer(rebasing: bytes[position ..< position + count])
    }

    public mutating func skip(_ count: Int) throws { _ = try take(count) }
}
