import XCTest
@testable import Checkpoint

/// Flips random bytes in, and truncates, every committed fixture thousands of times: each attempt
/// must give either a valid store or a thrown error. A crash (trap, out-of-bounds read, runaway
/// allocation) kills the test process and fails the run.
final class MutationTests: XCTestCase {
    /// A deterministic generator so that a failure can be reproduced (SplitMix64).
    struct SplitMix64: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    static func fixtureWeightFiles() -> [String] {
        let root = repositoryRoot + "/Fixtures"
        guard let walker = FileManager.default.enumerator(atPath: root) else { return [] }
        var files: [String] = []
        while let relative = walker.nextObject() as? String {
            let path = root + "/" + relative
            if relative.hasSuffix(".safetensors") || relative.hasSuffix(".bin") || relative.hasSuffix(".pt") {
                files.append(path)
            }
        }
        return files.sorted()
    }

    /// Parses `count` bytes of `storage` and touches every tensor's bytes.
    static func attempt(_ storage: ByteStorage, count: Int, file: String) -> Bool {
        guard let region = ByteRegion(storage: storage, offset: 0, count: count) else { return false }
        do {
            let store = try TensorStore.read(region, file: file)
            var sum: UInt64 = 0
            for t in store.tensors {
                precondition(t.byteCount == t.elementCount * t.dtype.size, "view size disagrees with its shape")
                for b in t.bytes { sum &+= UInt64(b) }
                if t.elementCount <= 4096 { _ = t.floats() }
            }
            _ = sum
            return true
        } catch {
            XCTAssertFalse("\(error)".isEmpty)
            return false
        }
    }

    func testRandomFlipsAndTruncationsNeverCrash() throws {
        let files = Self.fixtureWeightFiles()
        guard files.count >= 8 else { throw XCTSkip("fixtures missing: run Tools/make_fixtures.py") }
        var rng = SplitMix64(state: 0xDEB_E27A)
        var attempts = 0, loaded = 0
        for file in files {
            let mapped = try ByteStorage.map(path: file)
            let original = withExtendedLifetime(mapped) { Array(mapped.bytes) }
            var buffer: UnsafeMutableRawBufferPointer!
            let storage = try ByteStorage.allocate(count: original.count) { dst in
                original.withUnsafeBytes { dst.copyMemory(from: $0) }
                buffer = dst
            }
            let n = original.count
            guard n > 0 else { continue }
            // Single and multiple byte flips, most of them where the structure lives (the first and
            // last 4 KiB: safetensors header, pickle, zip directories).
            for _ in 0 ..< 1500 {
                let flips = Int.random(in: 1 ... 4, using: &rng)
                var positions: [Int] = []
                for _ in 0 ..< flips {
                    let zone = Int.random(in: 0 ..< 10, using: &rng)
                    let p: Int
                    switch zone {
                    case 0 ..< 5: p = Int.random(in: 0 ..< min(n, 4096), using: &rng)
                    case 5 ..< 8: p = Int.random(in: max(0, n - 4096) ..< n, using: &rng)
                    default: p = Int.random(in: 0 ..< n, using: &rng)
                    }
                    positions.append(p)
                    buffer[p] ^= UInt8.random(in: 1 ... 255, using: &rng)
                }
                if Self.attempt(storage, count: n, file: file) { loaded += 1 }
                attempts += 1
                for p in positions { buffer[p] = original[p] }
            }
            // Truncations: every length in the first 512 bytes and around the end, and random ones.
            var lengths = Array(0 ..< min(n, 512)) + Array(max(0, n - 512) ..< n)
            for _ in 0 ..< 300 { lengths.append(Int.random(in: 0 ..< n, using: &rng)) }
            for length in lengths {
                if Self.attempt(storage, count: length, file: file) { loaded += 1 }
                attempts += 1
            }
            XCTAssertTrue(Self.attempt(storage, count: n, file: file) || file.contains("evil") || file.contains("/formats/"), "restored \(file) must load")
        }
        XCTAssertGreaterThan(attempts, 20_000)
        print("mutation test: \(attempts) attempts over \(files.count) files, \(loaded) loaded, the rest refused with an error")
    }
}
