import ArgumentParser
import Checkpoint
import DeBERTa
#if canImport(Glibc)
import Glibc
#endif

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time forward passes on random token ids: median latency, tokens/s, GFLOP/s, peak RSS.")

    @Argument(help: "A model directory or weights file.")
    var model: String

    @Option(help: "Sequences per call.") var batch: Int = 1
    @Option(help: "Tokens per sequence.") var seq: Int = 128
    @Option(help: "Timed runs (after the first call, packing the weights and one more warm-up call).") var runs: Int = 10
    @OptionGroup(title: "Runtime") var runtime: RuntimeFlags
    @Flag(help: "Time the encoder alone (last_hidden_state), without the task head and the EMD.") var encoderOnly = false
    @Flag(help: "Print one JSON line.") var json = false
    @Flag(help: "Print a line \"first-output\" as soon as the first call returns (for a parent timing this process).")
    var markFirstOutput = false

    func validate() throws {
        if batch < 1 || seq < 1 || runs < 1 { throw ValidationError("--batch, --seq and --runs must be positive") }
    }

    func run() throws {
        try InputFile.checkModel(model)
        let start = monotonicSeconds()
        let loaded = try DebertaModel(path: model, options: runtime.options)
        runtime.noteEmulatedBF16(loaded)
        // --encoder-only computes no vocabulary logits: the estimate counts none (as the forward call's own check).
        try IOLimits.checkForward(batch: batch, length: seq, model: loaded, file: model, tensor: nil, logitRows: encoderOnly ? 0 : nil)
        let loadSeconds = monotonicSeconds() - start
        var rng = SystemRandomNumberGenerator()
        let ids = (0 ..< batch * seq).map { i in i % seq == 0 ? 1 : Int.random(in: 4 ..< loaded.config.vocabSize, using: &rng) }
        let inputs = ModelInputs(inputIds: ids, batch: batch, length: seq,
                                 choices: loaded.layout.head == .multipleChoice ? 1 : nil)
        _ = try loaded.forward(inputs, head: !encoderOnly)
        let firstOutput = monotonicSeconds() - start
        if markFirstOutput {
            // For a parent that times this process from its start (Tools/bench_peers.py): the first output exists.
            print("first-output")
            fflush(nil)
        }
        // Steady state: the weights packed (a model does that itself when its second call starts), one more
        // warm-up call, then the timed calls.
        let packStart = monotonicSeconds()
        loaded.prepareForRepeatedCalls()
        let packSeconds = monotonicSeconds() - packStart
        _ = try loaded.forward(inputs, head: !encoderOnly)
        var times: [Double] = []
        for _ in 0 ..< runs {
            let t0 = monotonicSeconds()
            _ = try loaded.forward(inputs, head: !encoderOnly)
            times.append(monotonicSeconds() - t0)
        }
        times.sort()
        let median = times.count % 2 == 1 ? times[times.count / 2] : (times[times.count / 2 - 1] + times[times.count / 2]) / 2
        let flops = loaded.operationCount(batch: batch, length: seq, head: !encoderOnly)
        let tokensPerSecond = Double(batch * seq) / median
        let gflops = flops / median / 1e9
        let rss = peakResidentMegabytes()
        if json {
            print(#"{"median_ms":\#(fixed(median * 1000, 3)),"tokens_per_s":\#(fixed(tokensPerSecond, 1)),"gflops":\#(fixed(gflops, 2)),"peak_rss_mb":\#(fixed(rss, 1)),"load_s":\#(fixed(loadSeconds, 3)),"first_output_s":\#(fixed(firstOutput, 3)),"pack_s":\#(fixed(packSeconds, 3)),"batch":\#(batch),"seq":\#(seq),"runs":\#(runs),"threads":\#(runtime.threads),"encoder_only":\#(encoderOnly),"precision":"\#(loaded.options.precision.rawValue)","attention_precision":"\#(loaded.attentionInBF16 ? "bf16" : "f32")"}"#)
            return
        }
        print("model        \(model) (\(loaded.family.rawValue), \(loaded.layout.head.rawValue), \(loaded.quantization?.rawValue ?? loaded.options.precision.rawValue)\(loaded.attentionInBF16 ? ", bf16 attention" : ""))")
        print("shape        batch \(batch) × \(seq) tokens, \(runtime.threads) threads, \(runs) runs\(encoderOnly ? ", encoder only" : "")")
        print("median       \(fixed(median * 1000, 2)) ms (min \(fixed(times.first! * 1000, 2)), max \(fixed(times.last! * 1000, 2)))")
        print("tokens/s     \(fixed(tokensPerSecond, 1))")
        print("GFLOP/s      \(fixed(gflops, 2)) (\(fixed(flops / 1e9, 2)) GFLOP per call)")
        print("load         \(fixed(loadSeconds, 3)) s; first output \(fixed(firstOutput, 3)) s after start; packing the weights after it \(fixed(packSeconds, 3)) s")
        print("peak RSS     \(fixed(rss, 1)) MB")
    }
}

func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

func peakResidentMegabytes() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_maxrss) / 1024
}
