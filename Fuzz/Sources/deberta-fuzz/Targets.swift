// libFuzzer entry point for every parser of untrusted files (Tools/fuzz). One binary; the target is
// chosen by DEBERTA_FUZZ_TARGET. Built only with DEBERTA_FUZZ=1 and -sanitize=fuzzer,address, in its own
// build folder; never part of Tools/test. A target may throw any DebertaError: only crashes, hangs,
// leaks of memory safety (ASan) and broken invariants (the JSON round trip) are findings.
import Checkpoint
import DeBERTa
import Foundation
import Tokenizers

#if canImport(Glibc)
import Glibc
#endif

enum FuzzTarget: String, CaseIterable {
    case safetensors, pickle, zip, legacy, shardIndex = "shard-index", json, spm, tokenizerJSON = "tokenizer-json",
         vocabMerges = "vocab-merges", config
}

/// Text every tokenizer that loads is run on: ASCII, combining marks, CJK, emoji, specials, spaces.
let sampleText = "Hello, wörld!  e\u{301}  東京 🇫🇷 [MASK] [CLS]x\u{200B}y 123.45 don't\tnew\nline ▁"

nonisolated(unsafe) var selected: FuzzTarget = .json
nonisolated(unsafe) var scratchDirectory = ""

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>) -> Int32 {
    let name = ProcessInfo.processInfo.environment["DEBERTA_FUZZ_TARGET"] ?? ""
    guard let t = FuzzTarget(rawValue: name) else {
        say("set DEBERTA_FUZZ_TARGET to one of: \(FuzzTarget.allCases.map(\.rawValue).joined(separator: " "))")
        exit(2)
    }
    selected = t
    var template = Array("/tmp/deberta-fuzz-XXXXXX".utf8CString)
    guard let dir = mkdtemp(&template) else { say("cannot create a scratch directory"); exit(2) }
    scratchDirectory = String(cString: dir)
    atexit {
        for name in ["vocab.json", "merges.txt", "tokenizer.json"] { unlink(scratchDirectory + "/" + name) }
        rmdir(scratchDirectory)
    }
    return 0
}

func say(_ line: String) {
    let bytes = Array((line + "\n").utf8)
    _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func testOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    _ = try? run(selected, bytes)
    return 0
}

/// Writes `bytes` to `name` in the scratch directory (the BPE readers take paths).
func scratchFile(_ name: String, _ bytes: ArraySlice<UInt8>) -> String {
    let path = scratchDirectory + "/" + name
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    precondition(fd >= 0, "cannot write \(path)")
    bytes.withUnsafeBytes { raw in
        var done = 0
        while done < raw.count {
            let n = write(fd, raw.baseAddress! + done, raw.count - done)
            precondition(n > 0)
            done += n
        }
    }
    close(fd)
    return path
}

func run(_ target: FuzzTarget, _ bytes: [UInt8]) throws {
    if try CheckpointParsers.exercise(target.rawValue, bytes) { return }
    switch target {
    case .safetensors, .pickle, .zip, .legacy, .shardIndex, .json:
        break // CheckpointParsers
    case .spm:
        let t = try SentencePieceTokenizer(modelData: bytes, name: "fuzz.model")
        _ = t.encode(sampleText)
    case .tokenizerJSON:
        if let t = try? SentencePieceTokenizer(tokenizerJSONData: bytes, name: "fuzz.json") {
            _ = t.encode(sampleText)
        }
        let path = scratchFile("tokenizer.json", bytes[...])
        let bpe = try ByteLevelBPETokenizer(tokenizerJSON: path)
        _ = bpe.encode(sampleText)
    case .vocabMerges:
        // vocab.json, a NUL byte, merges.txt.
        let split = bytes.firstIndex(of: 0) ?? bytes.count
        let vocab = scratchFile("vocab.json", bytes[..<split])
        let merges = scratchFile("merges.txt", split < bytes.count ? bytes[(split + 1)...] : [])
        let bpe = try ByteLevelBPETokenizer(vocabFile: vocab, mergesFile: merges)
        _ = bpe.encode(sampleText)
    case .config:
        let config = try DebertaConfig.parse(bytes, file: "config.json")
        try config.validate(file: "config.json")
    }
}

/// SwiftPM links an executable's entry point as `<module>_main` (and points `main` at it): hand the
/// process to libFuzzer's driver from there.
typealias FuzzCallback = @convention(c) (UnsafePointer<UInt8>, Int) -> Int32
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>, _ callback: FuzzCallback) -> Int32

@_cdecl("deberta_fuzz_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    var count = argc
    var vector = argv
    return LLVMFuzzerRunDriver(&count, &vector) { data, size in testOneInput(data, size) }
}
