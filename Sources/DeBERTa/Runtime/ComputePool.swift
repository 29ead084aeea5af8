import Dispatch
import Foundation
import Synchronization

/// Persistent compute threads for the matrix products and the attention: `run(count, body)` runs body(0) on
/// the caller and body(1 ..< count) on workers that wait for jobs by spinning on an atomic generation counter
/// (for `spinSeconds` after their last job, then they block on a semaphore). A forward pass calls it a few
/// hundred times, microseconds apart: waking a sleeping thread through the kernel takes 10-60 µs (up to
/// milliseconds for a halted virtual CPU), which at 1 × 128 tokens was several percent of the run. One job
/// at a time: a caller that finds the pool busy (concurrent forward calls) falls back to
/// DispatchQueue.concurrentPerform, so concurrent use stays correct.
/// `DEBERTA_SPIN_US` sets the spin time in microseconds (default 2000; 0 = block at once).
final class ComputePool: @unchecked Sendable {
    static let shared = ComputePool()

    private let busy = Atomic<Bool>(false)
    private let generation = Atomic<Int>(0)
    private let done = Atomic<Int>(0)
    private let jobCount = Atomic<Int>(0)
    private let lock = NSLock()
    private var workers: [Worker] = []
    /// The current job; written by the caller before the generation is published, read by the workers after.
    private nonisolated(unsafe) var body: ((Int) -> Void)?
    let spinSeconds: Double

    private final class Worker: @unchecked Sendable {
        let sleeping = Atomic<Bool>(false)
        let wake = DispatchSemaphore(value: 0)
    }

    init() {
        if let text = ProcessInfo.processInfo.environment["DEBERTA_SPIN_US"], let us = Double(text), us >= 0 {
            spinSeconds = us * 1e-6
        } else {
            spinSeconds = 0.002
        }
    }

    /// Runs body(0 ..< count), the caller's thread included; returns when all have finished.
    func run(_ count: Int, _ body: (Int) -> Void) {
        if count <= 1 { body(0); return }
        guard busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            withoutActuallyEscaping(body) { body in
                let job = UncheckedBody(body: body)
                DispatchQueue.concurrentPerform(iterations: count) { job.body($0) }
            }
            return
        }
        ensureWorkers(count - 1)
        withoutActuallyEscaping(body) { body in
            self.body = body
            done.store(0, ordering: .relaxed)
            jobCount.store(count, ordering: .relaxed)
            generation.add(1, ordering: .sequentiallyConsistent)
            for i in 0 ..< count - 1 where workers[i].sleeping.load(ordering: .sequentiallyConsistent) {
                workers[i].wake.signal()
            }
            body(0)
            // Spin for the workers; yield the CPU once the wait gets long (a worker preempted by another
            // process needs this core back).
            var spins = 0
            while done.load(ordering: .acquiring) != count - 1 {
                spins &+= 1
                if spins > 2048 { sched_yield() }
            }
            self.body = nil
        }
        busy.store(false, ordering: .releasing)
    }

    private func ensureWorkers(_ n: Int) {
        guard workers.count < n else { return }
        lock.lock()
        defer { lock.unlock() }
        while workers.count < n {
            let worker = Worker()
            let index = workers.count + 1
            workers.append(worker)
            // The generation the worker starts from is read here, before this call publishes its job: a
            // thread that started late would otherwise take the new generation as already seen.
            let start = generation.load(ordering: .acquiring)
            let thread = Thread { [self] in loop(worker, index, start) }
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    private func loop(_ worker: Worker, _ index: Int, _ start: Int) {
        var seen = start
        while true {
            let deadline = monotonicSeconds() + spinSeconds
            var spins = 0
            while generation.load(ordering: .acquiring) == seen {
                spins &+= 1
                if spins & 255 == 0 && monotonicSeconds() > deadline {
                    worker.sleeping.store(true, ordering: .sequentiallyConsistent)
                    if generation.load(ordering: .sequentiallyConsistent) == seen { worker.wake.wait() }
                    worker.sleeping.store(false, ordering: .sequentiallyConsistent)
                }
            }
            seen = generation.load(ordering: .acquiring)
            if index < jobCount.load(ordering: .relaxed) {
                body?(index)
                done.add(1, ordering: .releasing)
            }
        }
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
