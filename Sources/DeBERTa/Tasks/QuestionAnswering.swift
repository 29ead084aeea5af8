import Checkpoint
import Foundation
import Tokenizers

public struct Answer: Sendable {
    public var answer: String
    public var score: Double
    public var start: Int
    public var end: Int
}

/// The transformers 4.x question-answering pipeline's parameters, with its defaults.
public struct QAOptions: Sendable {
    /// Tokens per window, special tokens and question included (capped by the model's limit).
    public var maxSeqLen: Int = 384
    /// Tokens shared by consecutive windows; nil: min(maxSeqLen / 2, 128).
    public var docStride: Int?
    /// Longest answer in tokens.
    public var maxAnswerLen: Int = 15
    public var topK: Int = 1
    /// Also offer the empty answer (score p(CLS)·p(CLS), the lowest over windows).
    public var handleImpossibleAnswer = false
    /// Widen answers to whole words of the tokenizer's pre-tokenization.
    public var alignToWords = true

    public init(maxSeqLen: Int = 384, docStride: Int? = nil, maxAnswerLen: Int = 15, topK: Int = 1,
                handleImpossibleAnswer: Bool = false, alignToWords: Bool = true) {
        self.maxSeqLen = maxSeqLen
        self.docStride = docStride
        self.maxAnswerLen = maxAnswerLen
        self.topK = topK
        self.handleImpossibleAnswer = handleImpossibleAnswer
        self.alignToWords = alignToWords
    }
}

extension TextModel {
    /// The best answers (at most `topK`, best first) as the transformers 4.x pipeline finds them: windows of
    /// `[CLS] question [SEP] context part [SEP]`, the softmax of each window over its context tokens and
    /// [CLS] only, spans of at most `maxAnswerLen` tokens scored p(start)·p(end), answers widened to words.
    /// Windows run `batchSize` per forward call.
    public func answer(question: String, context: String, options: QAOptions = QAOptions()) throws -> [Answer] {
        try run(answerPlan(question: question, context: context, options: options))
    }

    public func answerPlan(question: String, context: String, options: QAOptions = QAOptions()) throws -> TaskPlan<[Answer]> {
        try requireHead([.questionAnswering], for: "qa")
        guard options.maxAnswerLen >= 1, options.topK >= 1, options.maxSeqLen >= 4 else {
            throw DebertaError(.invalidInput, file: "", "qa needs max answer length ≥ 1, top-k ≥ 1 and a window of at least 4 tokens")
        }
        let maxSeqLen = min(options.maxSeqLen, maxLength ?? Int.max)
        let docStride = options.docStride ?? min(maxSeqLen / 2, 128)
        guard docStride <= maxSeqLen else {
            throw DebertaError(.invalidInput, file: "", "the stride (\(docStride)) is larger than the window (\(maxSeqLen) tokens)")
        }
        let q = encoder.tokenize(question)
        let c = encoder.tokenizeWithPipelineOffsets(context)
        let room = maxSeqLen - 3 - q.ids.count
        guard room > 0 else { throw DebertaError(.limit, file: "", "the question alone (\(q.ids.count) tokens) fills the window of \(maxSeqLen) tokens") }
        let ranges = c.ids.isEmpty ? [0 ..< 0] : try TextEncoder.windows(count: c.ids.count, size: room, stride: docStride)
        let windows = try ranges.map { try encoder.frame(q, c.slice($0), truncation: .none, maxLength: nil) }
        let words = encoder.wordIds(c)

        return TaskPlan(sequences: windows, kind: .head) { outputs in
            var answers: [Answer] = []
            var minNull = 1_000_000.0
            for (w, output) in outputs.enumerated() {
                let startLogits = try output.require("start_logits"), endLogits = try output.require("end_logits")
                let window = windows[w]
                let n = window.length
                // Context tokens and [CLS] take part in the softmax; the rest get -10000 as in transformers.
                let desired = (0 ..< n).map { window.sequence[$0] == 1 || window.ids[$0] == self.encoder.special.cls }
                func probabilities(_ logits: [Float]) -> [Double] {
                    softmax((0 ..< n).map { desired[$0] ? logits[$0] : -10000 })
                }
                var ps = probabilities(startLogits), pe = probabilities(endLogits)
                if options.handleImpossibleAnswer { minNull = min(minNull, ps[0] * pe[0]) }
                ps[0] = 0; pe[0] = 0
                // Every (s, e) with s ≤ e < s + maxAnswerLen, in row-major order (numpy's tie rule).
                var candidates: [(s: Int, e: Int, score: Double)] = []
                for s in 0 ..< n { for e in s ..< min(n, s + options.maxAnswerLen) { candidates.append((s, e, ps[s] * pe[e])) } }
                let order = candidates.indices.sorted { candidates[$0].score != candidates[$1].score ? candidates[$0].score > candidates[$1].score : $0 < $1 }
                let firstContext = window.sequence.firstIndex(of: 1) ?? n
                for i in order.prefix(options.topK) {
                    let (s, e, score) = candidates[i]
                    guard desired[s], desired[e] else { continue }
                    let (lo, hi) = self.span(of: s, e, window: window, firstContext: firstContext, windowStart: ranges[w].lowerBound,
                                             words: words, context: c, align: options.alignToWords)
                    answers.append(Answer(answer: context.scalarSlice(lo ..< hi), score: score, start: lo, end: hi))
                }
            }
            if options.handleImpossibleAnswer { answers.append(Answer(answer: "", score: minNull, start: 0, end: 0)) }
            let order = ranked(answers.map(\.score))
            return order.prefix(options.topK).map { answers[$0] }
        }
    }

    /// Character span of tokens s...e of a window: whole words when aligning (the first and last token of
    /// each word within this window), else the tokens' offsets; [CLS] has the empty span at 0.
    func span(of s: Int, _ e: Int, window: EncodedInput, firstContext: Int, windowStart: Int, words: [Int],
              context c: Encoding, align: Bool) -> (Int, Int) {
        func offsets(_ t: Int) -> Range<Int> { window.offsets[t] ?? 0 ..< 0 }
        guard align, window.sequence[s] == 1, window.sequence[e] == 1 else { return (offsets(s).lowerBound, offsets(e).upperBound) }
        let contextTokens = (firstContext ..< window.length).filter { window.sequence[$0] == 1 }
        func word(_ t: Int) -> Int { words[windowStart + t - firstContext] }
        let ws = word(s), we = word(e)
        let lo = contextTokens.first { word($0) == ws }!, hi = contextTokens.last { word($0) == we }!
        return (offsets(lo).lowerBound, offsets(hi).upperBound)
    }
}
