import XCTest
@testable import DeBERTa

/// The activation pool's size classes: a freed buffer serves later requests of similar sizes (the server's
/// packed calls hold a different number of tokens nearly every time).
final class ActivationPoolTests: XCTestCase {
    func testSizeClassesCoverTheRequestWithinAnEighth() {
        var previous = 0
        for bytes in Array(1 ... 70000) + stride(from: 70001, to: 600_000_000, by: 99991).map({ $0 }) {
            let c = ActivationPool.classBytes(bytes)
            XCTAssertGreaterThanOrEqual(c, bytes)
            XCTAssertLessThanOrEqual(Double(c), max(Double(bytes) * 1.125, Double(bytes + 255)), "\(bytes)")
            XCTAssertGreaterThanOrEqual(c, previous, "classes are monotonic")
            if bytes > 1 << 16 { XCTAssertEqual(c % 4096, 0, "large classes are whole pages") }
            previous = c
        }
    }

    func testABufferIsReusedForSimilarSizes() {
        let pool = ActivationPool(capacityBytes: 64 << 20)
        let count = 300_000  // 1.2 MB: the mapped range
        let p = pool.take(count)
        p.update(repeating: 1, count: count)
        pool.give(p, count)
        let q = pool.take(count - 1_000)  // within the same class
        XCTAssertEqual(q, p)
        pool.give(q, count - 1_000)
        let r = pool.take(count * 2)  // a larger class: a new buffer
        XCTAssertNotEqual(r, p)
        pool.give(r, count * 2)
    }
}
