import Checkpoint
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// SIGINT, SIGTERM and SIGHUP are blocked in every thread (before any other thread exists, so the compute
/// threads inherit the mask) and taken by one thread with sigwait: it removes every temporary file and
/// directory (`TemporaryFiles.removeAll`, which keeps the lock so no new one appears and no rename
/// completes), prints one line and ends the process with 128 + the signal number. An interrupted convert
/// thus leaves DST as it was and nothing beside it. SIGXFSZ is ignored (see `install`).
enum Signals {
    static let handled: [Int32] = [SIGINT, SIGTERM, SIGHUP]

    static func signalSet() -> sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for s in handled { sigaddset(&set, s) }
        return set
    }

    static func install() {
        // Past a file-size limit (ulimit -f) a write fails with EFBIG, an error like a full disk, instead
        // of the default SIGXFSZ ending the process with its temporaries on disk.
        signal(SIGXFSZ, SIG_IGN)
        var blocked = signalSet()
        pthread_sigmask(SIG_BLOCK, &blocked, nil)
        let thread = Thread {
            var set = signalSet()
            var signal: Int32 = 0
            while sigwait(&set, &signal) != 0 {}
            let removed = TemporaryFiles.removeAll()
            let name = signal == SIGINT ? "SIGINT" : signal == SIGTERM ? "SIGTERM" : signal == SIGHUP ? "SIGHUP" : "signal \(signal)"
            let what = removed.isEmpty ? "" : "; removed the temporary " + removed.joined(separator: ", ")
            FileOutput.writeStandardError(Printable.escaped("Error: interrupted by \(name)\(what)") + "\n")
            _exit(128 + signal)
        }
        thread.start()
    }
}
