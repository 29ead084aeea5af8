import Glibc
import Synchronization

/// DEBERTA_TRACE=1 prints, on standard error, the milliseconds since the first mark at each step of loading
/// and of a forward call (what to look at before a profiler: where a first call's time goes).
enum Trace {
    static let enabled = getenv("DEBERTA_TRACE").map { String(cString: $0) == "1" } ?? false
    private static let origin = Mutex<Double?>(nil)

    static func mark(_ what: @autoclosure () -> String) {
        guard enabled else { return }
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        let now = Double(ts.tv_sec) * 1e3 + Double(ts.tv_nsec) / 1e6
        let start = origin.withLock { value in
            if value == nil { value = now }
            return value!
        }
        let line = "trace \(((now - start) * 10).rounded() / 10) ms  \(what())\n"
        _ = line.withCString { write(2, $0, strlen($0)) }
    }
}
