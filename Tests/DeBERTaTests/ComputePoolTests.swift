import Foundation
import Synchronization
import XCTest
@testable import DeBERTa

final class ComputePoolTests: XCTestCase {
    /// Every part of every job runs exactly once, on back-to-back jobs of varying sizes, also when several
    /// threads submit jobs at once (the pool is taken by one, the others fall back to concurrentPerform).
    func testEveryPartRunsOnce() {
        let submitters = 4, jobs = 400
        let failures = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: submitters) { s in
            for j in 0 ..< jobs {
                let count = 2 + (j + s) % 5
                let hits = UnsafeMutablePointer<Int>.allocate(capacity: count)
                hits.initialize(repeating: 0, count: count)
                defer { hits.deallocate() }
                let shared = Shared(hits)
                ComputePool.shared(spinSeconds: 1e-4).run(count) { part in
                    shared.pointer[part] += 1  // each part writes its own slot
                    if part % 2 == 1 { for _ in 0 ..< (j % 7) * 100 { _ = monotonicSeconds() } }
                }
                if (0 ..< count).contains(where: { hits[$0] != 1 }) { failures.add(1, ordering: .relaxed) }
            }
        }
        XCTAssertEqual(failures.load(ordering: .relaxed), 0)
    }

    /// A job whose first part is slow: the other parts are claimed by whoever is free, and the call returns
    /// only after all of them finished.
    func testReturnsAfterAllParts() {
        for _ in 0 ..< 50 {
            let done = Atomic<Int>(0)
            ComputePool.shared(spinSeconds: 1e-4).run(3) { part in
                if part == 0 { usleep(200) }
                done.add(1, ordering: .relaxed)
            }
            XCTAssertEqual(done.load(ordering: .relaxed), 3)
        }
    }
}

private struct Shared: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Int>
    init(_ pointer: UnsafeMutablePointer<Int>) { self.pointer = pointer }
}
