import Glibc
import Synchronization

/// The clock behind `Trace`: milliseconds since the first mark of the process, one line per mark on
/// standard error (what to look at before a profiler: where a first call's time goes).
enum TraceClock {
    private static let origin = Mutex<Double?>(nil)

    static func mark(_ what: String) {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        let now = Double(ts.tv_sec) * 1e3 + Double(ts.tv_nsec) / 1e6
        let start = origin.withLock { value in
            if value == nil { value = now }
            return value!
        }
        let line = "trace \(((now - start) * 10).rounded() / 10) ms  \(what)\n"
        _ = line.withCString { write(2, $0, strlen($0)) }
    }
}
