import CKernels
import Foundation
import XCTest

/// `deberta run`, `verify` and `bench` as a user calls them.
final class RuntimeCommandTests: XCTestCase {
    func testVerifyPassesOnEveryFixture() throws {
        for name in modelNames {
            let r = try deberta(["verify", "Fixtures/models/\(name)", "Fixtures/models/\(name)/reference.safetensors"])
            XCTAssertEqual(r.status, 0, "\(name): \(r.stdout) \(r.stderr)")
            XCTAssertTrue(r.stdout.contains("within tolerance"), r.stdout)
            XCTAssertFalse(r.stdout.contains("FAIL"), r.stdout)
            if name == "v3-mlm" { XCTAssertTrue(r.stdout.contains("emd_logits")) }
        }
    }

    func testVerifyFailsWithATinyTolerance() throws {
        let r = try deberta(["verify", "Fixtures/models/v3-mlm", "Fixtures/models/v3-mlm/reference.safetensors", "--atol", "1e-12"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stdout.contains("FAIL"), r.stdout)
    }

    func testRunWritesTheReferenceNames() throws {
        let out = try temporaryDirectory() + "/out.safetensors"
        let r = try deberta(["run", "Fixtures/models/v3-mlm", "--inputs", "Fixtures/models/v3-mlm/reference.safetensors", "--output", out, "--threads", "1"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let inspect = try deberta(["inspect", out, "--json"])
        // The output file is not a model: inspect lists its tensors with no family.
        XCTAssertEqual(inspect.status, 0, inspect.stderr)
        XCTAssertTrue(inspect.stdout.contains(#""family":null"#), inspect.stdout)
        let data = try Data(contentsOf: URL(fileURLWithPath: out))
        let headerLength = data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        let header = try XCTUnwrap(JSONSerialization.jsonObject(with: data.subdata(in: 8 ..< 8 + Int(headerLength))) as? [String: Any])
        XCTAssertEqual(Set(header.keys).subtracting(["__metadata__"]), ["last_hidden_state", "logits", "emd_logits"])
    }

    /// `--pack-weights load|reuse|never` only changes when the weights are packed, and `--threads` and `--kernels`
    /// only how the products are split and which instructions compute them: `deberta run` writes the same bytes under
    /// each, for f32 and int8 stores (v2 conv layer, v3 EMD, v1 split in_proj).
    func testPackingPoliciesWriteTheSameOutputs() throws {
        let dir = try temporaryDirectory()
        for name in ["v3-mlm", "v2-conv-seqcls", "v1-mlm"] {
            let int8 = dir + "/\(name)-int8"
            let converted = try deberta(["convert", "Fixtures/models/\(name)", int8, "--dtype", "int8"])
            XCTAssertEqual(converted.status, 0, converted.stderr)
            for model in ["Fixtures/models/\(name)", int8] {
                var outputs: [Data] = []
                let variants = [["--pack-weights", "load"], ["--pack-weights", "reuse"], ["--pack-weights", "never"],
                                ["--threads", "1"], ["--threads", "3", "--spin-us", "0"], ["--no-packed-quantized-kernels"]]
                for flags in variants {
                    let out = dir + "/\(name)-\(outputs.count).safetensors"
                    let r = try deberta(["run", model, "--inputs", "Fixtures/models/\(name)/reference.safetensors", "--output", out] + flags)
                    XCTAssertEqual(r.status, 0, r.stderr)
                    outputs.append(try Data(contentsOf: URL(fileURLWithPath: out)))
                }
                for (flags, output) in zip(variants, outputs).dropFirst() {
                    XCTAssertEqual(outputs[0], output, "\(model): --pack-weights load vs \(flags.joined(separator: " "))")
                }
                // Other kernels round differently (exp, GELU): the same outputs up to float rounding.
                for kernels in ["scalar", "avx2"] {
                    let out = dir + "/\(name)-\(kernels).safetensors"
                    let r = try deberta(["run", model, "--inputs", "Fixtures/models/\(name)/reference.safetensors", "--output", out, "--kernels", kernels])
                    XCTAssertEqual(r.status, 0, r.stderr)
                    let (a, b) = (floats(outputs[0]), floats(try Data(contentsOf: URL(fileURLWithPath: out))))
                    XCTAssertEqual(a.count, b.count)
                    let scale = a.map { abs($0) }.max() ?? 1
                    let worst = zip(a, b).map { abs($0 - $1) }.max() ?? 0
                    XCTAssertLessThanOrEqual(worst, 1e-4 * scale, "\(model): --kernels \(kernels)")
                }
            }
        }
    }

    /// The f32 values after a safetensors header.
    func floats(_ data: Data) -> [Float] {
        let headerLength = Int(data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        return data.dropFirst(8 + headerLength).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }

    func testBenchPrintsJSON() throws {
        let r = try deberta(["bench", "Fixtures/models/v2-qa-sharded", "--batch", "2", "--seq", "16", "--runs", "3", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        for key in ["median_ms", "tokens_per_s", "gflops", "peak_rss_mb"] { XCTAssertNotNil(object[key] as? Double ?? (object[key] as? Int).map(Double.init), key) }
    }

    /// Bad inputs files: wrong names, dtypes, ids out of vocabulary, shape mismatches → one error, exit 1.
    func testBadInputsFiles() throws {
        let dir = try temporaryDirectory()
        func write(_ name: String, _ tensors: [(String, String, [Int], [UInt8])]) -> String {
            var header = "{"
            var data: [UInt8] = []
            for (k, (tname, dtype, shape, bytes)) in tensors.enumerated() {
                header += (k > 0 ? "," : "") + "\"\(tname)\":{\"dtype\":\"\(dtype)\",\"shape\":\(shape),\"data_offsets\":[\(data.count),\(data.count + bytes.count)]}"
                data += bytes
            }
            header += "}"
            var file: [UInt8] = []
            withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { file += $0 }
            file += Array(header.utf8) + data
            let path = dir + "/" + name
            FileManager.default.createFile(atPath: path, contents: Data(file))
            return path
        }
        func i64(_ values: [Int64]) -> [UInt8] { values.flatMap { v in withUnsafeBytes(of: v.littleEndian) { Array($0) } } }
        func f32(_ values: [Float]) -> [UInt8] { values.flatMap { v in withUnsafeBytes(of: v.bitPattern.littleEndian) { Array($0) } } }
        let cases: [(String, String)] = [
            (write("names.safetensors", [("ids", "I64", [1, 3], i64([1, 5, 2]))]), "input_ids"),
            (write("dtype.safetensors", [("input_ids", "F32", [1, 3], f32([1, 5, 2]))]), "not an integer type"),
            (write("vocab.safetensors", [("input_ids", "I64", [1, 3], i64([1, 99999, 2]))]), "outside the vocabulary"),
            (write("negative.safetensors", [("input_ids", "I64", [1, 3], i64([1, -4, 2]))]), "outside the vocabulary"),
            (write("mask.safetensors", [("input_ids", "I64", [1, 3], i64([1, 5, 2])), ("attention_mask", "I64", [1, 2], i64([1, 1]))]), "attention_mask"),
            (write("rank.safetensors", [("input_ids", "I64", [3], i64([1, 5, 2]))]), "input_ids"),
            (write("maskvalue.safetensors", [("input_ids", "I64", [1, 3], i64([1, 5, 2])), ("attention_mask", "I64", [1, 3], i64([1, 7, 1]))]), "not 0 or 1"),
        ]
        for (path, fragment) in cases {
            for command in [["run", "Fixtures/models/v3-mlm", "--inputs", path, "--output", dir + "/never.safetensors"],
                            ["verify", "Fixtures/models/v3-mlm", path]] {
                let r = try deberta(command)
                XCTAssertEqual(r.status, 1, "\(command): \(r.stdout)")
                XCTAssertTrue(r.stderr.contains(fragment), "\(path): '\(r.stderr)' lacks '\(fragment)'")
                XCTAssertTrue(r.stderr.contains(path), "\(r.stderr) does not name the file")
            }
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/never.safetensors"))
        let long = write("long.safetensors", [("input_ids", "I64", [1, 600], i64([Int64](repeating: 5, count: 600)))])
        let r = try deberta(["run", "Fixtures/models/v1-mlm", "--inputs", long, "--output", dir + "/never.safetensors"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("max_position_embeddings"), r.stderr)
    }

    /// `--precision bf16`: verify applies the bf16 criteria against the f32 reference and passes on the trained
    /// fixture; bench reports the precision; a quantized store refuses it with one line.
    func testPrecisionBF16() throws {
        let model = "Fixtures/models/v3-mlm-trained"
        let verify = try deberta(["verify", model, model + "/reference.safetensors", "--precision", "bf16"])
        XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)
        XCTAssertTrue(verify.stdout.contains("bf16 precision against f32: cosine >= 0.9999"), verify.stdout)
        XCTAssertTrue(verify.stdout.contains("all 3 outputs within tolerance"), verify.stdout)
        let bench = try deberta(["bench", model, "--batch", "1", "--seq", "16", "--runs", "1", "--json", "--precision", "bf16"])
        XCTAssertEqual(bench.status, 0, bench.stderr)
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(bench.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(object["precision"] as? String, "bf16")
        // Attention follows the precision unless --attention-precision says otherwise.
        let hasBF16Attention = String(cString: dk_attention_bf16_isa()) != "none"
        XCTAssertEqual(object["attention_precision"] as? String, hasBF16Attention ? "bf16" : "f32")
        let f32Attention = try deberta(["bench", model, "--batch", "1", "--seq", "16", "--runs", "1", "--json", "--precision", "bf16",
                                        "--attention-precision", "f32"])
        let f32Object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(f32Attention.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(f32Object["attention_precision"] as? String, "f32")
        XCTAssertNotEqual(try deberta(["bench", model, "--attention-precision", "f16"]).status, 0)
        let int8 = try temporaryDirectory() + "/int8"
        XCTAssertEqual(try deberta(["convert", model, int8, "--dtype", "int8"]).status, 0)
        let refused = try deberta(["verify", int8, model + "/reference.safetensors", "--precision", "bf16"])
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.stderr.contains("precision bf16 applies to float checkpoints"), refused.stderr)
        let wrong = try deberta(["verify", model, model + "/reference.safetensors", "--precision", "f16"])
        XCTAssertNotEqual(wrong.status, 0)
    }

    /// Without AVX512_BF16 (here forced by the AVX2 cap) the bf16 tier says on standard error that it runs an
    /// emulation, slower than f32; the f32 tier says nothing.
    func testEmulatedBF16IsNoted() throws {
        #if arch(x86_64)
        let model = "Fixtures/models/v3-mlm"
        let emulated = try deberta(["bench", model, "--batch", "1", "--seq", "8", "--runs", "1", "--json", "--precision", "bf16", "--kernels", "avx2"])
        XCTAssertEqual(emulated.status, 0, emulated.stderr)
        XCTAssertTrue(emulated.stderr.contains("note: --precision bf16 on this CPU runs an emulation") && emulated.stderr.contains("avx2 kernels"), emulated.stderr)
        let f32 = try deberta(["bench", model, "--batch", "1", "--seq", "8", "--runs", "1", "--json", "--kernels", "avx2"])
        XCTAssertEqual(f32.status, 0, f32.stderr)
        XCTAssertFalse(f32.stderr.contains("emulation"), f32.stderr)
        #endif
    }
}
