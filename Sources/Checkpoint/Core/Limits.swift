#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The bounds the checkpoint readers put on what an untrusted file may ask for. Each is far above what a
/// real checkpoint needs (the largest DeBERTa, v2-xxlarge, has 1.5 B parameters: 6 GB in f32, ~500 tensors,
/// one file or a few shards) and each turns a hostile file into an error before anything is allocated.
/// The README's "Limits" section lists them.
public enum CheckpointLimits {
    /// Deflated zip storages (torch writes them stored; only a re-zipped file has them) inflate to at
    /// most this many bytes in total...
    public static let maxInflatedBytes = 16 << 30
    /// ... and to at most this many times the archive's size plus `inflateSlack` (real weights hardly
    /// compress: a file whose storages inflate 1000-fold is a zip bomb, not a model) ...
    public static let maxInflateRatio = 32
    public static let inflateSlack = 64 << 20
    // ... and to at most half the memory this process may still use (`MemoryBudget`).

    /// Shards named by one `*.index.json`, and its `weight_map` entries.
    public static let maxShards = 10_000
    public static let maxIndexEntries = 1_000_000
    /// An index file's size.
    public static let maxIndexBytes = 64 << 20

    /// Zip central directory entries (a torch archive has one per storage plus ~5).
    public static let maxZipEntries = 1_000_000

    /// A pickle (data.pkl, or one pickle of the legacy stream): bytes, opcodes, objects built
    /// (tuples, lists, dicts, storages, tensors), one string's bytes, a tensor's dimensions.
    public static let maxPickleBytes = 1 << 30
    public static let maxPickleOpcodes = 100_000_000
    public static let maxPickleObjects = 10_000_000
    public static let maxPickleString = 16 << 20
    public static let maxTensorDimensions = 64
}

/// How much memory this process may still allocate: the smallest of the kernel's MemAvailable, the
/// cgroup's memory.max minus memory.current, and the address-space and data-segment rlimits minus what
/// is in use. Allocations whose size comes from a file are checked against it first, so a forged size
/// is an error instead of an allocation failure (a trap) or a process the OOM killer ends.
public enum MemoryBudget {
    public static func available() -> Int {
        var best = Int.max
        if let meminfo = readProcFile("/proc/meminfo"), let kb = field(meminfo, "MemAvailable:") {
            best = min(best, kb.multipliedReportingOverflow(by: 1024).overflow ? Int.max : kb * 1024)
        }
        if let maxText = readProcFile("/sys/fs/cgroup/memory.max"), let limit = Int(trim(maxText)),
           let currentText = readProcFile("/sys/fs/cgroup/memory.current"), let current = Int(trim(currentText)) {
            best = min(best, max(0, limit - current))
        }
        #if os(Linux)
        let status = readProcFile("/proc/self/status")
        for (resource, key) in [(RLIMIT_AS, "VmSize:"), (RLIMIT_DATA, "VmData:")] {
            var rl = rlimit()
            guard getrlimit(__rlimit_resource_t(resource.rawValue), &rl) == 0, rl.rlim_cur != rlim_t.max,
                  let limit = Int(exactly: rl.rlim_cur) else { continue }
            let used = status.flatMap { field($0, key) }.map { $0 * 1024 } ?? 0
            best = min(best, max(0, limit - used))
        }
        #endif
        return best
    }

    /// Throws `.limit` when `count` bytes are more than the memory available.
    public static func check(_ count: Int, file: String, what: String) throws {
        guard count > 1 << 20 else { return }
        let free = available()
        guard count <= free else {
            throw DebertaError(.limit, file: file, "\(what) needs \(count) bytes but only \(free) bytes of memory are available")
        }
    }

    static func readProcFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while out.count < 1 << 20 {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, 4096) }
            if n <= 0 { break }
            out += chunk[0 ..< n]
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The number after `key` on its line ("MemAvailable:   123 kB" -> 123).
    static func field(_ text: String, _ key: String) -> Int? {
        for line in text.split(separator: "\n") where line.hasPrefix(key) {
            let digits = line.dropFirst(key.count).drop(while: { $0 == " " || $0 == "\t" }).prefix(while: { $0.isNumber })
            return Int(digits)
        }
        return nil
    }

    static func trim(_ s: String) -> String {
        String(s.filter { !$0.isWhitespace })
    }
}
