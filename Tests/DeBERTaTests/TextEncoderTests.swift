import Checkpoint
import Foundation
import Tokenizers
import XCTest
@testable import DeBERTa

final class TextEncoderTests: XCTestCase {
    func encoder() throws -> TextEncoder {
        let files = try ModelFiles.resolve(repositoryRoot + "/Fixtures/models/v3-mlm")
        return try TextEncoder.load(files: files, config: try DebertaConfig.load(path: files.config!))
    }

    /// Special tokens written in text follow the rule of Fixtures/README.md, recorded with sentencepiece.
    func testSpecialTokensInTextMatchTheRecordedRule() throws {
        let e = try encoder()
        XCTAssertEqual(e.special.mask, 300)
        let json = try readJSONFile(repositoryRoot + "/Fixtures/tokenizers/spm/special.expected.json")
        let rows = try XCTUnwrap(json["rows"]?.arrayValue)
        XCTAssertGreaterThan(rows.count, 300)
        var withSpecials = 0
        for row in rows {
            let text = try XCTUnwrap(row["text"]?.stringValue)
            let got = e.tokenize(text)
            XCTAssertEqual(got.ids, row["ids"]?.arrayValue?.compactMap(\.intValue), text)
            XCTAssertEqual(got.tokens, row["pieces"]?.arrayValue?.compactMap(\.stringValue), text)
            let offsets = row["offsets"]?.arrayValue?.map { pair in (pair.arrayValue![0].intValue!) ..< (pair.arrayValue![1].intValue!) }
            XCTAssertEqual(got.offsets, offsets, text)
            if got.ids.contains(where: { [0, 1, 2, 3, 300].contains($0) }) { withSpecials += 1 }
        }
        XCTAssertGreaterThan(withSpecials, 20)
    }

    func testFrameTypesAndTruncation() throws {
        let e = try encoder()
        let single = try e.encode("hello world")
        XCTAssertEqual(single.ids.first, 1)
        XCTAssertEqual(single.ids.last, 2)
        XCTAssertEqual(Set(single.typeIds), [0])
        let pair = try e.encode("hello world", pair: "the river")
        let firstSep = pair.ids.firstIndex(of: 2)!
        XCTAssertEqual(pair.ids.last, 2)
        XCTAssertEqual(Array(pair.typeIds[...firstSep]), [Int](repeating: 0, count: firstSep + 1))
        XCTAssertEqual(Array(pair.typeIds[(firstSep + 1)...]), [Int](repeating: 1, count: pair.length - firstSep - 1))
        // longest_first trims the longer text first; only_second only the second.
        let long = String(repeating: "river bank ", count: 20), short = "the dog"
        let a = e.tokenize(long).ids.count, b = e.tokenize(short).ids.count
        let t = try e.encode(long, pair: short, truncation: .longestFirst, maxLength: 3 + b + 4)
        XCTAssertEqual(t.length, 3 + b + 4)
        XCTAssertEqual(t.sequence.filter { $0 == 1 }.count, b)
        let o = try e.encode(short, pair: long, truncation: .onlySecond, maxLength: 3 + b + 5)
        XCTAssertEqual(o.sequence.filter { $0 == 0 }.count, b)
        XCTAssertEqual(o.sequence.filter { $0 == 1 }.count, 5)
        assertThrowsDebertaError(.limit, try e.encode(long, pair: short, truncation: .onlySecond, maxLength: 10))
        assertThrowsDebertaError(.limit, try e.encode(long, truncation: .none, maxLength: 10))
        XCTAssertGreaterThan(a, 4)
        // Offsets slice the original text.
        let text = "Ｐａｒｉｓ is the [MASK] of 🇫🇷 France."
        let scalars = Array(text.unicodeScalars)
        for (span, token) in zip(e.tokenize(text).offsets, e.tokenize(text).tokens) {
            XCTAssertLessThanOrEqual(span.upperBound, scalars.count, token)
        }
        // Padding to the longest with [PAD] and mask 0.
        let batch = e.batch([single, pair])
        XCTAssertEqual(batch.length, pair.length)
        XCTAssertEqual(batch.attentionMask.prefix(batch.length).reduce(0, +), single.length)
        XCTAssertEqual(batch.inputIds[single.length], e.special.pad)
    }
}

final class FillMaskTests: XCTestCase {
    /// fill-mask ranks tokens at each [MASK] as the emd_logits recorded from transformers' layers do.
    func testFillMaskRanksLikeTheRecordedEMD() throws {
        let path = repositoryRoot + "/Fixtures/models/v3-mlm"
        let model = try TextModel(path: path)
        let reference = try TensorStore.open(weights: path + "/reference.safetensors")
        let ids = try XCTUnwrap(reference["input_ids"]?.int64s()).map(Int.init)
        let mask = try XCTUnwrap(reference["attention_mask"]?.int64s()).map(Int.init)
        let emd = try XCTUnwrap(reference["emd_logits"]).floats()
        let shape = reference["input_ids"]!.shape
        let (B, T, V) = (shape[0], shape[1], reference["emd_logits"]!.shape[2])
        var encoded: [EncodedInput] = []
        for b in 0 ..< B {
            let n = mask[b * T ..< (b + 1) * T].reduce(0, +)
            let row = Array(ids[b * T ..< b * T + n])
            encoded.append(EncodedInput(ids: row, tokens: row.map { model.encoder.tokenizer.token(of: $0) ?? "" }, typeIds: [Int](repeating: 0, count: n),
                                        offsets: [Range<Int>?](repeating: nil, count: n), sequence: [Int?](repeating: 0, count: n)))
        }
        let results = try model.fillMask(encoded: encoded, topK: 5)
        var checked = 0
        for (b, r) in results.enumerated() {
            XCTAssertTrue(r.fromEMD)
            for m in r.masks {
                let logits = Array(emd[((b * T + m.position) * V) ..< ((b * T + m.position + 1) * V)])
                let expected = logits.indices.sorted { logits[$0] > logits[$1] }.prefix(5)
                XCTAssertEqual(m.predictions.map(\.id), Array(expected), "row \(b) position \(m.position)")
                checked += 1
            }
        }
        XCTAssertGreaterThanOrEqual(checked, 3)
    }
}

final class TokenizerJSONModelTests: XCTestCase {
    /// A model directory that ships tokenizer.json instead of spm.model (as many fine-tuned v3 checkpoints do):
    /// the input layer uses it, and texts with special tokens give the tokenizers library's ids.
    func testModelWithTokenizerJSON() throws {
        let dir = try temporaryDirectory() + "/model"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for f in ["config.json", "model.safetensors"] {
            try FileManager.default.copyItem(atPath: repositoryRoot + "/Fixtures/models/v3-mlm/" + f, toPath: dir + "/" + f)
        }
        try FileManager.default.copyItem(atPath: repositoryRoot + "/Fixtures/tokenizers/unigram-json/tokenizer.json", toPath: dir + "/tokenizer.json")
        let model = try TextModel(path: dir)
        XCTAssertEqual(model.encoder.special.mask, 300)
        let expected = try readJSONFile(repositoryRoot + "/Fixtures/tokenizers/unigram-json/expected.json")
        let rows = try XCTUnwrap(expected["rows"]?.arrayValue ?? expected.arrayValue)
        var specials = 0
        for row in rows {
            let text = try XCTUnwrap(row["text"]?.stringValue)
            let ids = model.encoder.tokenize(text).ids
            XCTAssertEqual(ids, row["ids"]?.arrayValue?.compactMap(\.intValue), text)
            if text.contains("[MASK]") { specials += 1 }
        }
        XCTAssertGreaterThan(specials, 10)
        let filled = try model.fillMask(["Paris is the [MASK] of France."], topK: 3)
        XCTAssertEqual(filled[0].masks.count, 1)
    }
}
