import Checkpoint
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

enum FileOutput {
    static func writeStandardError(_ s: String) {
        var bytes = Array(s.utf8)
        _ = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
    }

    /// Refuses an output path before any work is done: `-` (standard output) or a path that is absent or a
    /// regular file (`AtomicFile.checkTarget`: a symbolic link, device, FIFO, socket or directory is refused).
    static func check(_ path: String) throws {
        if path == "-" { return }
        try AtomicFile.checkTarget(path)
    }
}

/// Where results go: standard output for `-`, else an `AtomicStream` (a temporary beside the file, renamed
/// over it by `commit()`, removed by `abandon()`).
final class OutputSink {
    let name: String
    private let file: AtomicStream?

    init(_ path: String) throws {
        try FileOutput.check(path)
        name = path == "-" ? "standard output" : path
        file = path == "-" ? nil : try AtomicStream(path: path)
    }

    func write(_ text: String) throws {
        var bytes = Array(text.utf8)
        try bytes.withUnsafeMutableBytes { raw in
            if let file {
                try file.write(UnsafeRawBufferPointer(raw))
            } else {
                fflush(nil)
                try SafeTensorsWriter.writeAll(1, UnsafeRawBufferPointer(raw), name: name)
            }
        }
    }

    func commit() throws { try file?.commit() }
    func abandon() { file?.abandon() }
}

/// Inputs: regular files only, or standard input for `-`. The type is checked with stat (no open, so a FIFO
/// without a writer cannot block and a device is never opened), then again on the descriptor, which is
/// opened with O_NONBLOCK and read with it cleared.
enum InputFile {
    /// What messages call `path`.
    static func name(_ path: String) -> String { path == "-" ? "standard input" : path }

    /// Refuses anything but a regular file (a directory too when `directory`).
    static func check(_ path: String, directory: Bool = false, dashAllowed: Bool = false) throws {
        var st = stat()
        guard stat(path, &st) == 0 else {
            throw DebertaError(.io, file: path, errno == ENOENT ? "no such file or directory" : "cannot open: \(String(cString: strerror(errno)))")
        }
        try checkMode(st.st_mode, path: path, directory: directory, dashAllowed: dashAllowed)
    }

    static func checkMode(_ mode: mode_t, path: String, directory: Bool, dashAllowed: Bool) throws {
        if directory && (mode & S_IFMT) == S_IFDIR { return }
        if let kind = AtomicFile.fileKindName(mode) {
            let allowed = directory ? " or model directories" : dashAllowed ? " (or - for standard input)" : ""
            throw DebertaError(.io, file: path, "is \(kind), not a regular file; inputs are read only from regular files" + allowed)
        }
    }

    /// A model path (a directory or a weights file) and every file of it the tools read (config.json,
    /// weights, tokenizer files): each must be a regular file, so none can block or be a device.
    static func checkModel(_ path: String) throws {
        try check(path, directory: true)
        let files = try ModelFiles.resolve(path)
        for file in [files.weights] + (files.config.map { [$0] } ?? []) + files.tokenizerFiles {
            try check(file)
        }
    }

    /// A descriptor to read `path` from: 0 for `-`, else the regular file (the caller closes it).
    static func open(_ path: String) throws -> Int32 {
        if path == "-" { return 0 }
        try check(path, dashAllowed: true)
        let fd = sysOpen(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)
        guard fd >= 0 else { throw DebertaError(.io, file: path, "cannot open: \(String(cString: strerror(errno)))") }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            close(fd)
            throw DebertaError(.io, file: path, "cannot stat: \(String(cString: strerror(errno)))")
        }
        do { try checkMode(st.st_mode, path: path, directory: false, dashAllowed: true) } catch { close(fd); throw error }
        let flags = fcntl(fd, F_GETFL)
        if flags >= 0 { _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) }
        return fd
    }

    /// read(2) into `buffer`, retrying EINTR and waiting out EAGAIN (a non-blocking standard input).
    static func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, name: String) throws -> Int {
        while true {
            let n = sysRead(fd, buffer.baseAddress, buffer.count)
            if n >= 0 { return n }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK {
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                _ = poll(&p, 1, -1)
                continue
            }
            throw DebertaError(.io, file: name, "cannot read: \(String(cString: strerror(errno)))")
        }
    }

    /// The whole of `path` (or standard input), refused as soon as it passes `limit` bytes.
    static func readAll(_ path: String, limit: Int, what: String) throws -> [UInt8] {
        let fd = try open(path)
        defer { if fd != 0 { close(fd) } }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = try chunk.withUnsafeMutableBytes { try read(fd, into: $0, name: name(path)) }
            if n == 0 { return out }
            guard out.count + n <= limit else {
                throw DebertaError(.limit, file: name(path), "\(what) is larger than \(grouped(limit)) bytes, the limit (see README, \"Limits\")")
            }
            out += chunk[0 ..< n]
        }
    }
}

// open(2) and read(2) (InputFile has its own `open` and `read`).
private func sysOpen(_ path: String, _ flags: Int32) -> Int32 { open(path, flags) }
private func sysRead(_ fd: Int32, _ p: UnsafeMutableRawPointer?, _ n: Int) -> Int { read(fd, p, n) }
