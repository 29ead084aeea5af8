import Checkpoint
import Foundation
import Tokenizers

/// transformers' `aggregation_strategy` of the token-classification pipeline.
public enum Aggregation: String, Sendable, CaseIterable {
    /// One entry per token: `{entity, score, index, word, start, end}`.
    case none
    /// Tokens grouped: a B- tag or another type starts a new entity, I- of the same type continues it.
    case simple
    /// Words first (the tokens of one word take the label of its first / best-averaged / most confident
    /// token), then grouped as `simple`.
    case first, average, max
}

/// One entry of the token-classification value: `{entity_group, score, word, start, end}`, or with
/// aggregation none `{entity, score, index, word, start, end}` (then `index` is set).
public struct Entity: Sendable {
    public var label: String
    public var score: Double
    public var word: String
    public var start: Int
    public var end: Int
    public var index: Int?
}

extension TextModel {
    /// Entities of each text as transformers' pipeline gives them. Texts longer than the model's limit run in
    /// overlapping windows (`stride` tokens shared, default half a window up to 128) and entities of
    /// overlapping windows are merged as transformers does for `stride`.
    public func entities(_ texts: [String], aggregation: Aggregation = .simple, stride: Int? = nil) throws -> [[Entity]] {
        try requireHead([.tokenClassification], for: "ner")
        let plans = try texts.map { try entitiesPlan($0, aggregation: aggregation, stride: stride) }
        // every text's windows in one run, split back per text
        let all = TaskPlan(sequences: plans.flatMap(\.sequences), kind: .head) { outputs in
            var start = 0
            return try plans.map { plan in
                defer { start += plan.sequences.count }
                return try plan.finish(Array(outputs[start ..< start + plan.sequences.count]))
            }
        }
        return try run(all)
    }

    public func entitiesPlan(_ text: String, aggregation: Aggregation = .simple, stride: Int? = nil) throws -> TaskPlan<[Entity]> {
        try requireHead([.tokenClassification], for: "ner")
        let tokens = encoder.tokenizeWithPipelineOffsets(text)
        var windows: [EncodedInput] = []
        var starts: [Int] = []
        if let limit = maxLength, tokens.ids.count + 2 > limit {
            let size = limit - 2
            let ranges = try TextEncoder.windows(count: tokens.ids.count, size: size, stride: stride ?? min(size / 2, 128))
            for r in ranges { windows.append(try encoder.frame(tokens.slice(r), nil, maxLength: nil)); starts.append(r.lowerBound) }
        } else {
            windows = [try encoder.frame(tokens, nil, maxLength: nil)]
            starts = [0]
        }
        let frames = windows, offsets = starts
        return TaskPlan(sequences: frames, kind: .head) { outputs in
            let windows = frames, starts = offsets
            var perWindow: [[PreEntity]] = []
            for (w, output) in outputs.enumerated() {
                let logits = try output.require("logits")
                let C = try self.requireLabels(output.width("logits") ?? 0, for: "ner")
                perWindow.append(self.preEntities(windows[w], text: text, logits: logits, row: 0, width: C))
            }
            if aggregation == .none {
                // One entry per token; a token seen by several windows is taken from the first.
                var seen = Set<Int>()
                var out: [Entity] = []
                for (w, pre) in perWindow.enumerated() {
                    for p in pre where seen.insert(starts[w] + p.index).inserted {
                        let best = argmax(p.scores)
                        let name = self.label(best)
                        if name == "O" { continue }
                        out.append(Entity(label: name, score: p.scores[best], word: p.word, start: p.start, end: p.end, index: starts[w] + p.index))
                    }
                }
                return out
            }
            var all: [Entity] = []
            for pre in perWindow {
                all += self.groupEntities(self.aggregate(pre, aggregation)).filter { $0.label != "O" }
            }
            return windows.count > 1 ? self.mergeOverlapping(all) : all
        }
    }

    struct PreEntity {
        var word: String
        var scores: [Double]
        var start: Int
        var end: Int
        var index: Int
        var isSubword: Bool
    }

    /// transformers' gather_pre_entities: per non-special token its softmax scores, vocabulary string,
    /// offsets and whether it continues a word (no space just before or at its start).
    func preEntities(_ e: EncodedInput, text: String, logits: [Float], row: Int, width C: Int) -> [PreEntity] {
        let scalars = Array(text.unicodeScalars)
        let special = Set([encoder.special.cls, encoder.special.sep, encoder.special.pad] + (encoder.special.mask.map { [$0] } ?? []))
        var out: [PreEntity] = []
        for t in 0 ..< e.length {
            guard let span = e.offsets[t], e.sequence[t] != nil, !special.contains(e.ids[t]) else { continue }
            let isLiteralUnk = e.ids[t] == encoder.special.unk && e.tokens[t] == "[UNK]"
            if isLiteralUnk { continue }
            let start = (row + t) * C
            let scores = softmax(logits[start ..< start + C])
            var word = e.tokens[t]
            let lo = max(0, span.lowerBound - 1), hi = min(scalars.count, span.lowerBound + 1)
            var isSubword = span.lowerBound > 0 && !scalars[lo ..< hi].contains(" ")
            if e.ids[t] == encoder.special.unk {
                word = text.scalarSlice(span)
                isSubword = false
            }
            out.append(PreEntity(word: word, scores: scores, start: span.lowerBound, end: span.upperBound, index: t, isSubword: isSubword))
        }
        return out
    }

    /// Token or word entities (`entity`, per token for none/simple, per word otherwise).
    func aggregate(_ pre: [PreEntity], _ aggregation: Aggregation) -> [Entity] {
        switch aggregation {
        case .none, .simple:
            return pre.map { p in
                let best = argmax(p.scores)
                return Entity(label: label(best), score: p.scores[best], word: p.word, start: p.start, end: p.end, index: p.index)
            }
        case .first, .average, .max:
            var words: [[PreEntity]] = []
            for p in pre {
                if p.isSubword, !words.isEmpty { words[words.count - 1].append(p) } else { words.append([p]) }
            }
            return words.map { group in
                let word = encoder.tokensToString(group.map(\.word))
                let scores: [Double]
                switch aggregation {
                case .first: scores = group[0].scores
                case .max: scores = group.first { $0.scores.max()! == group.map { $0.scores.max()! }.max()! }!.scores
                default:
                    scores = group[0].scores.indices.map { c in group.map { $0.scores[c] }.reduce(0, +) / Double(group.count) }
                }
                let best = argmax(scores)
                return Entity(label: label(best), score: scores[best], word: word, start: group[0].start, end: group.last!.end)
            }
        }
    }

    /// transformers' get_tag: B-X and I-X, anything else continues as I.
    static func tag(_ name: String) -> (bi: Character, type: Substring) {
        if name.hasPrefix("B-") { return ("B", name.dropFirst(2)) }
        if name.hasPrefix("I-") { return ("I", name.dropFirst(2)) }
        return ("I", name[...])
    }

    /// transformers' group_entities: adjacent entities of one type merge unless the next one is B-.
    func groupEntities(_ entities: [Entity]) -> [Entity] {
        var groups: [Entity] = []
        var current: [Entity] = []
        func close() {
            guard let first = current.first else { return }
            let name = first.label.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false).last.map(String.init) ?? first.label
            groups.append(Entity(label: name, score: current.map(\.score).reduce(0, +) / Double(current.count),
                                 word: encoder.tokensToString(current.map(\.word)), start: first.start, end: current.last!.end))
            current = []
        }
        for e in entities {
            if let last = current.last {
                let (bi, type) = Self.tag(e.label)
                if type == Self.tag(last.label).type && bi != "B" { current.append(e); continue }
                close()
            }
            current = [e]
        }
        close()
        return groups
    }

    /// transformers' aggregate_overlapping_entities: by start; of overlapping entities the longer (then
    /// the higher-scoring) one stays.
    func mergeOverlapping(_ entities: [Entity]) -> [Entity] {
        guard !entities.isEmpty else { return [] }
        let sorted = entities.enumerated().sorted { $0.element.start != $1.element.start ? $0.element.start < $1.element.start : $0.offset < $1.offset }.map(\.element)
        var out: [Entity] = []
        var previous = sorted[0]
        for e in sorted {
            if previous.start <= e.start && e.start < previous.end {
                let a = e.end - e.start, b = previous.end - previous.start
                if a > b || (a == b && e.score > previous.score) { previous = e }
            } else {
                out.append(previous)
                previous = e
            }
        }
        out.append(previous)
        return out
    }
}
