// tokenizer-bench: tokenizer throughput on a text file, one encode per line (Tools/bench_tokenizers.py).
//
//   tokenizer-bench <text file> <spm.model | tokenizer.json> [--repeat N] [--threads N] [--dump]
//
// Prints one line of key=value pairs: lines, bytes, tokens, seconds (best wall time of the repeats),
// cpu_seconds (best process CPU time), lines_per_s, mb_per_s (10^6 bytes of UTF-8 input per wall second),
// cpu_mb_per_s (per CPU second) and an FNV-1a checksum of every id in order, which the
// Python script compares with the reference libraries' ids. --dump prints each line's ids instead.
import Foundation
import Tokenizers

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("tokenizer-bench: \(message)\n".utf8))
    exit(2)
}

var positional: [String] = []
var repeats = 3
var threads = 1
var dump = false
var args = CommandLine.arguments.dropFirst()
while let a = args.popFirst() {
    switch a {
    case "--repeat":
        guard let v = args.popFirst().flatMap(Int.init), v > 0 else { fail("--repeat needs a positive integer") }
        repeats = v
    case "--threads":
        guard let v = args.popFirst().flatMap(Int.init), v > 0 else { fail("--threads needs a positive integer") }
        threads = v
    case "--dump":  // print the ids of every line instead of timing (for comparisons)
        dump = true
    case "-h", "--help":
        print("usage: tokenizer-bench <text file> <spm.model | tokenizer.json> [--repeat N] [--threads N]")
        exit(0)
    default:
        positional.append(a)
    }
}
guard positional.count == 2 else { fail("usage: tokenizer-bench <text file> <spm.model | tokenizer.json> [--repeat N] [--threads N]") }
let (textPath, tokenizerPath) = (positional[0], positional[1])

guard let data = FileManager.default.contents(atPath: textPath) else { fail("cannot read \(textPath)") }
guard String(data: data, encoding: .utf8) != nil else { fail("\(textPath) is not UTF-8") }
// split on the byte 0x0A exactly like Python's str.split("\n") (a Character split would keep "\r\n" whole)
let lines = [UInt8](data).split(separator: 0x0A, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }

let tokenizer: SentencePieceTokenizer
do {
    tokenizer = tokenizerPath.hasSuffix(".json")
        ? try SentencePieceTokenizer(tokenizerJSON: tokenizerPath)
        : try SentencePieceTokenizer(modelFile: tokenizerPath)
} catch {
    fail("\(error)")
}

func now(_ clock: clockid_t = CLOCK_MONOTONIC) -> Double {
    var ts = timespec()
    clock_gettime(clock, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// Encodes lines[range]; returns (token count, FNV-1a over the ids in order).
@Sendable func run(_ tokenizer: SentencePieceTokenizer, _ lines: [String], _ range: Range<Int>) -> (Int, UInt64) {
    var tokens = 0
    var hash: UInt64 = 0xCBF2_9CE4_8422_2325
    for i in range {
        let e = tokenizer.encode(lines[i])
        tokens += e.ids.count
        for id in e.ids {
            hash = (hash ^ UInt64(UInt32(truncatingIfNeeded: id))) &* 0x0000_0100_0000_01B3
        }
    }
    return (tokens, hash)
}

/// Per-thread token counts; each thread writes only its own slot.
final class Counts: @unchecked Sendable {
    let slots: UnsafeMutableBufferPointer<Int>
    init(_ n: Int) { slots = .allocate(capacity: n); slots.initialize(repeating: 0) }
    deinit { slots.deallocate() }
}

/// Best wall time and best CPU time (of the process: on a shared machine CPU time is the steadier number).
func measure(_ tokenizer: SentencePieceTokenizer, _ lines: [String], repeats: Int, threads: Int) -> (Double, Double, Int, UInt64) {
    var best = Double.infinity
    var bestCPU = Double.infinity
    var tokenCount = 0
    var checksum: UInt64 = 0
    for _ in 0 ..< repeats {
        let t0 = now()
        let c0 = now(CLOCK_PROCESS_CPUTIME_ID)
        if threads == 1 {
            (tokenCount, checksum) = run(tokenizer, lines, 0 ..< lines.count)
        } else {
            // contiguous chunks, one per thread; the checksum is only computed with --threads 1
            let chunk = (lines.count + threads - 1) / threads
            let counts = Counts(threads)
            DispatchQueue.concurrentPerform(iterations: threads) { t in
                let lo = min(lines.count, t * chunk), hi = min(lines.count, lo + chunk)
                let n = run(tokenizer, lines, lo ..< hi).0
                counts.slots[t] = n
            }
            tokenCount = counts.slots.reduce(0, +)
            checksum = 0
        }
        best = min(best, now() - t0)
        bestCPU = min(bestCPU, now(CLOCK_PROCESS_CPUTIME_ID) - c0)
    }
    return (best, bestCPU, tokenCount, checksum)
}

if dump {
    var out = ""
    for line in lines {
        out += tokenizer.encode(line).ids.map(String.init).joined(separator: " ") + "\n"
    }
    FileHandle.standardOutput.write(Data(out.utf8))
    exit(0)
}

let (best, bestCPU, tokenCount, checksum) = measure(tokenizer, lines, repeats: repeats, threads: threads)
let bytes = data.count
print(String(format: "lines=%d bytes=%d tokens=%d seconds=%.4f cpu_seconds=%.4f lines_per_s=%.0f mb_per_s=%.2f cpu_mb_per_s=%.2f threads=%d checksum=%016llx",
             lines.count, bytes, tokenCount, best, bestCPU, Double(lines.count) / best, Double(bytes) / best / 1e6,
             Double(bytes) / bestCPU / 1e6, threads, checksum))
