import Dispatch
import Foundation
import Synchronization

/// Persistent compute threads for the matrix products and the attention: `run(count, body)` runs body(0 ..< count)
/// on the caller and on workers that wait for jobs by spinning on an atomic ticket (for `spinSeconds` after
/// their last job, then they block on a semaphore). A forward pass calls it a few hundred times, microseconds
/// apart: waking a sleeping thread through the kernel takes 10-60 µs (up to milliseconds for a halted virtual
/// CPU), which at 1 × 128 tokens was several percent of the run.
/// Parts are claimed, not assigned: the caller and the workers take the next unclaimed index from the ticket
/// until none is left, so a worker that is not running (its core busy with another process) delays nothing,
/// the caller does its part. One job at a time: a caller that finds the pool busy (concurrent forward calls)
/// falls back to DispatchQueue.concurrentPerform.
/// `RuntimeOptions.spinMicroseconds` sets the spin time (default 100 µs; 0 = block at once). Workers that get
/// preempted often (another process wants the core) stop spinning until that stops.
final class ComputePool: @unchecked Sendable {
    private static let pools = Mutex<[Double: ComputePool]>([:])

    /// The pool of threads that spin `spinSeconds` (one per spin time: threads of idle pools block).
    static func shared(spinSeconds: Double) -> ComputePool {
        pools.withLock { pools in
            if let pool = pools[spinSeconds] { return pool }
            let pool = ComputePool(spinSeconds: spinSeconds)
            pools[spinSeconds] = pool
            return pool
        }
    }

    private let busy = Atomic<Bool>(false)
    /// generation (bits 32...) | part count (bits 16..31) | next unclaimed part (bits 0..15)
    private let ticket = Atomic<Int>(0)
    private let completed = Atomic<Int>(0)
    private let lock = NSLock()
    private var workers: [Worker] = []
    /// Only the caller holding `busy` changes these.
    private nonisolated(unsafe) var generation = 0
    /// The current job; written by the caller before the ticket is published, read by whoever claims a part.
    private nonisolated(unsafe) var body: ((Int) -> Void)?
    let spinSeconds: Double

    private final class Worker: @unchecked Sendable {
        let sleeping = Atomic<Bool>(false)
        let wake = DispatchSemaphore(value: 0)
    }

    init(spinSeconds: Double) {
        self.spinSeconds = spinSeconds
    }

    /// Runs body(0 ..< count), the caller's thread included; returns when all have finished.
    func run(_ count: Int, _ body: (Int) -> Void) {
        if count <= 1 { body(0); return }
        guard count < 1 << 16, busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            withoutActuallyEscaping(body) { body in
                let job = UncheckedBody(body: body)
                DispatchQueue.concurrentPerform(iterations: count) { job.body($0) }
            }
            return
        }
        ensureWorkers(count - 1)
        withoutActuallyEscaping(body) { body in
            self.body = body
            completed.store(0, ordering: .relaxed)
            generation = (generation + 1) & 0x7FFF_FFFF
            let gen = generation
            ticket.store(gen << 32 | count << 16, ordering: .sequentiallyConsistent)
            for i in 0 ..< count - 1 where workers[i].sleeping.load(ordering: .sequentiallyConsistent) {
                workers[i].wake.signal()
            }
            work(gen)
            // Wait for parts claimed by workers; yield the CPU once the wait gets long (~100 µs: a worker
            // preempted in the middle of its part needs this core back; shorter waits are load imbalance, where
            // a yield per check only adds system calls).
            var spins = 0
            while completed.load(ordering: .acquiring) != count {
                spins &+= 1
                if spins > 1 << 15 { sched_yield() }
            }
            self.body = nil
        }
        busy.store(false, ordering: .releasing)
    }

    /// Claims and runs parts of job `gen` until none is left.
    private func work(_ gen: Int) {
        while true {
            let t = ticket.load(ordering: .acquiring)
            let part = t & 0xFFFF, count = (t >> 16) & 0xFFFF
            guard t >> 32 == gen, part < count else { return }
            guard ticket.compareExchange(expected: t, desired: t + 1, ordering: .acquiringAndReleasing).exchanged else { continue }
            body?(part)
            completed.add(1, ordering: .releasing)
        }
    }

    private func ensureWorkers(_ n: Int) {
        guard workers.count < n else { return }
        lock.lock()
        defer { lock.unlock() }
        while workers.count < n {
            let worker = Worker()
            workers.append(worker)
            // The generation the worker starts from is read here, before this call publishes its job: a
            // thread that started late would otherwise take the new job as already seen.
            let start = ticket.load(ordering: .acquiring) >> 32
            let thread = Thread { [self] in loop(worker, start) }
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    private func loop(_ worker: Worker, _ start: Int) {
        var seen = start
        var jobs = 0, preemptions = involuntarySwitches(), spin = spinSeconds
        while true {
            let deadline = monotonicSeconds() + spin
            var spins = 0
            while ticket.load(ordering: .acquiring) >> 32 == seen {
                spins &+= 1
                if spins & 255 == 0 && monotonicSeconds() > deadline {
                    worker.sleeping.store(true, ordering: .sequentiallyConsistent)
                    if ticket.load(ordering: .sequentiallyConsistent) >> 32 == seen { worker.wake.wait() }
                    worker.sleeping.store(false, ordering: .sequentiallyConsistent)
                }
            }
            seen = ticket.load(ordering: .acquiring) >> 32
            work(seen)
            // Every 256 jobs: if this thread was preempted often meanwhile, another process wants this core
            // and spinning only makes the scheduler preempt it in the middle of its parts (measured: int8
            // 1 × 128 took 38-40 ms spinning against 27-33 ms blocking next to a busy loop, while on an idle
            // machine spinning is ~5% faster); block at once until the next check.
            jobs &+= 1
            if jobs & 255 == 0 {
                let now = involuntarySwitches()
                spin = now - preemptions >= 8 ? 0 : spinSeconds
                preemptions = now
            }
        }
    }

    /// Involuntary context switches of the calling thread so far.
    private func involuntarySwitches() -> Int {
        var usage = rusage()
        guard getrusage(__rusage_who_t(1), &usage) == 0 else { return 0 }  // RUSAGE_THREAD (GNU; not imported)
        return usage.ru_nivcsw
    }
}

private struct UncheckedBody: @unchecked Sendable {
    let body: (Int) -> Void
}

@inline(__always)
func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}
