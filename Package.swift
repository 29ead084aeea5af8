// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "deberta-swift",
    products: [
        .executable(name: "deberta", targets: ["deberta"]),
        .library(name: "Checkpoint", targets: ["Checkpoint"]),
        .library(name: "DeBERTa", targets: ["DeBERTa"]),
        .library(name: "Tokenizers", targets: ["Tokenizers"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        // the server (deberta serve): HTTP on SwiftNIO, lifecycle, logs and Prometheus metrics
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        // the server tests' HTTP client
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
    ],
    targets: [
        // System libraries. Debian packages: zlib1g-dev, libprotobuf-c-dev (Tools/test installs them).
        .systemLibrary(
            name: "CZlib",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]
        ),
        .systemLibrary(
            name: "CProtobufC",
            pkgConfig: "libprotobuf-c",
            providers: [.apt(["libprotobuf-c-dev"])]
        ),
        .systemLibrary(
            name: "COpenBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]
        ),
        // the one CPU-feature probe of the C kernels, and the cap the runtime configures
        .target(name: "CCPUFeatures"),
        // f32 kernels in C: LayerNorm, activations, attention softmax with the disentangled terms
        .target(name: "CKernels", dependencies: ["CCPUFeatures", "CGemm"]),
        // int8 / q4 quantized matrix products in C: scalar references + AVX2 (run-time dispatch)
        .target(name: "CQuantKernels", dependencies: ["CCPUFeatures"]),
        // f32 products on weights packed into panels of 24 columns (once, or a chunk at a time per call):
        // AVX-512 and AVX2/FMA kernels + scalar reference
        .target(name: "CGemm", dependencies: ["CCPUFeatures"]),
        // checkpoint files -> validated, named tensor views over memory-mapped bytes
        .target(
            name: "Checkpoint",
            dependencies: ["CZlib"]
        ),
        // SentencePiece's ModelProto (spm.model) parsed by protoc-c generated code (Tools/generate_spm_proto.sh)
        .target(
            name: "CSentencePieceModel",
            dependencies: ["CProtobufC"]
        ),
        // text -> ids: SentencePiece unigram, byte-level BPE, tokenizer.json
        .target(
            name: "Tokenizers",
            dependencies: ["Checkpoint", "CProtobufC", "CSentencePieceModel"]
        ),
        // DeBERTa config, family/head detection, converter
        .target(
            name: "DeBERTa",
            dependencies: ["Checkpoint", "Tokenizers", "CCPUFeatures", "CKernels", "CGemm", "CQuantKernels"]
        ),
        // deberta serve: Text Embeddings Inference's HTTP API over the task layer, with a batcher that
        // forms forward calls across requests
        .target(
            name: "Serving",
            dependencies: [
                "Checkpoint", "DeBERTa", "Tokenizers",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            resources: [.copy("openapi.json")]
        ),
        // the command-line tool: thin, parse -> library -> print
        .executableTarget(
            name: "deberta",
            dependencies: [
                "Checkpoint", "DeBERTa", "Serving",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // tokenizer throughput (Tools/bench_tokenizers.py): text file + tokenizer -> lines/s, MB/s
        .executableTarget(
            name: "tokenizer-bench",
            dependencies: ["Tokenizers"]
        ),
        // clocks, median and a seeded generator for the micro-benchmarks
        .target(name: "BenchSupport"),
        // quantized-kernel micro-benchmark: int8 / q4 products vs an f32 loop and sgemm, 1 thread
        .executableTarget(
            name: "quant-bench",
            dependencies: ["CQuantKernels", "COpenBLAS", "BenchSupport"]
        ),
        // packed f32 GEMM micro-benchmark: CGemm vs cblas_sgemm vs the FMA peak, 1 and 2 threads
        .executableTarget(
            name: "gemm-bench",
            dependencies: ["CGemm", "COpenBLAS", "BenchSupport"]
        ),
        // helpers the test targets share: repository root, temporary directories, a seeded generator,
        // error-kind assertions
        .target(
            name: "TestSupport",
            dependencies: ["Checkpoint"],
            path: "Tests/TestSupport"
        ),
        .testTarget(
            name: "CheckpointTests",
            dependencies: ["TestSupport", "Checkpoint", "CZlib"]
        ),
        .testTarget(
            name: "DeBERTaTests",
            dependencies: ["TestSupport", "Checkpoint", "DeBERTa", "CKernels"]
        ),
        .testTarget(
            name: "TokenizersTests",
            dependencies: ["TestSupport", "Tokenizers", "Checkpoint"]
        ),
        .testTarget(
            name: "CLITests",
            dependencies: ["TestSupport", "Checkpoint", "DeBERTa", "CProtobufC", "CKernels"],
            exclude: ["Snapshots"]
        ),
        .testTarget(
            name: "QuantizedKernelTests",
            dependencies: ["TestSupport", "CQuantKernels", "CCPUFeatures"]
        ),
        .testTarget(
            name: "ServingTests",
            dependencies: [
                "TestSupport", "Checkpoint", "DeBERTa", "Serving",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ]
        ),
        .testTarget(
            name: "GemmTests",
            dependencies: ["TestSupport", "CGemm"]
        ),
    ],
    swiftLanguageModes: [.v6]
)

// Coverage-guided fuzzing (Tools/fuzz): only with DEBERTA_FUZZ=1, built in .build-fuzz with
// -sanitize=fuzzer,address. The fuzz build leaves out the command-line tools (and so needs no
// package dependencies).
if Context.environment["DEBERTA_FUZZ"] == "1" {
    let tools: Set<String> = ["deberta", "Serving", "tokenizer-bench", "quant-bench", "gemm-bench"]
    package.dependencies = []
    package.products.removeAll { tools.contains($0.name) }
    package.targets.removeAll { tools.contains($0.name) || $0.type == .test }
    package.targets.append(.executableTarget(
        name: "deberta-fuzz",
        dependencies: ["Checkpoint", "Tokenizers", "DeBERTa"],
        path: "Fuzz/Sources/deberta-fuzz",
        swiftSettings: [.unsafeFlags(["-parse-as-library"])]
    ))
}
