// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "squeeze",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "squeeze", targets: ["squeeze"]),
        .library(name: "SqueezeSupport", targets: ["SqueezeSupport"]),
        .library(name: "SqueezeStore", targets: ["SqueezeStore"]),
        .library(name: "SqueezeEngine", targets: ["SqueezeEngine"]),
        .library(name: "SqueezeRecipe", targets: ["SqueezeRecipe"]),
        .library(name: "SqueezeStages", targets: ["SqueezeStages"]),
        .library(name: "SqueezeTensor", targets: ["SqueezeTensor"]),
        .library(name: "SqueezeModels", targets: ["SqueezeModels"]),
        .library(name: "SqueezeCompress", targets: ["SqueezeCompress"]),
        .library(name: "SqueezeReport", targets: ["SqueezeReport"]),
        .library(name: "SqueezeBench", targets: ["SqueezeBench"]),
        .library(name: "SqueezeExport", targets: ["SqueezeExport"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/weichsel/ZIPFoundation", exact: "0.9.20"),
        .package(url: "https://github.com/apple/swift-protobuf", exact: "1.39.0"),
    ],
    targets: [
        // libyaml, linked through pkg-config (Debian: libyaml-dev).
        .systemLibrary(
            name: "CYAML",
            pkgConfig: "yaml-0.1",
            providers: [.apt(["libyaml-dev"]), .brew(["libyaml"])]
        ),
        // YAML text -> node tree with source positions; shared diagnostics.
        .target(name: "SqueezeYAML", dependencies: ["CYAML"]),
        // posix_spawn helpers Swift's Glibc module does not export.
        .target(name: "CProcessSupport"),
        // Shared infrastructure, a leaf: `Value` and the one JSON codec (the
        // strict parser, the canonical and pretty writers, `SqueezeJSON`'s
        // Codable ↔ `Value` coders), atomic file writes, SHA-256 digests and
        // file hashing, POSIX file-system helpers, store errors, child
        // processes, the HTTP client and archive unpacking (zip, tar).
        .target(
            name: "SqueezeSupport",
            dependencies: [
                "CProcessSupport", .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ZIPFoundation", package: "ZIPFoundation"),
            ]
        ),
        // Recipe language: model, validation, references, overrides, schema.
        .target(
            name: "SqueezeRecipe",
            dependencies: [
                "SqueezeSupport",
                "SqueezeYAML",
                .product(name: "Collections", package: "swift-collections"),
            ]
        ),
        // The content-addressed store: blobs, trees and their manifests, stage
        // entries, the stat cache, locks, verify and gc. Knows no recipes.
        .target(
            name: "SqueezeStore",
            dependencies: ["SqueezeSupport", .product(name: "Logging", package: "swift-log")]
        ),
        // Planner, cache keys, scheduler, run records, Stage protocol.
        .target(
            name: "SqueezeEngine",
            dependencies: [
                "SqueezeRecipe",
                "SqueezeStore",
                "SqueezeSupport",
                "SqueezeYAML",
                .product(name: "Collections", package: "swift-collections"),
            ]
        ),
        // Reports over run records: model tables, Pareto plots, training curves
        // (text, JSON, self-contained HTML) and run-to-run metric comparison.
        .target(name: "SqueezeReport", dependencies: ["SqueezeEngine", "SqueezeSupport"]),
        // Vectorised fp32 kernels (clang vector extensions; AVX2+FMA chosen at run
        // time on x86_64, baseline elsewhere), int8 and weight-only GEMM, and the
        // run-time loader of OpenBLAS (sgemm; Debian: libopenblas0), which picks
        // its core type before the library initialises (sq_blas.h). Always -O3:
        // tests then run the numerics that ship.
        .target(
            name: "CKernels",
            cSettings: [.unsafeFlags(["-O3", "-fno-math-errno"])],
            linkerSettings: [.linkedLibrary("dl", .when(platforms: [.linux]))]
        ),
        // Tensors, backends (CPU via BLAS, reference), autodiff, optimisers, RNG.
        // Checked like every target: the preconditions at each op's entry
        // guard the raw-pointer kernels (docs/architecture.md, `-Ounchecked`).
        .target(name: "SqueezeTensor", dependencies: ["CKernels"]),
        // Model files and models: safetensors, HF configs, WordPiece, BERT.
        .target(
            name: "SqueezeModels",
            dependencies: ["SqueezeSupport", "SqueezeTensor", .product(name: "Collections", package: "swift-collections")]
        ),
        // Compression algorithms over models: quantization math, calibration
        // observers, post-training and model quantization, quantized inference,
        // CoFi structured pruning, distillation.
        .target(name: "SqueezeCompress", dependencies: ["SqueezeModels", "SqueezeTensor"]),
        // The ONNX protobuf messages, generated once from onnx.proto (ONNX 1.23.2) by
        // scripts/generate-onnx-proto and committed: no protoc or plugin at build time.
        .target(
            name: "SqueezeONNXProto",
            dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")],
            exclude: ["onnx.proto"]
        ),
        // Exports for the runtimes people serve with: ONNX graphs (fp32, CoFi,
        // int8 QDQ, decoders) and Hugging Face checkpoints (docs/export.md).
        .target(
            name: "SqueezeExport",
            dependencies: [
                "SqueezeSupport", "SqueezeModels", "SqueezeCompress", "SqueezeTensor", "SqueezeONNXProto",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
        // Built-in stage types, one file each.
        .target(
            name: "SqueezeStages",
            dependencies: [
                "SqueezeEngine", "SqueezeRecipe", "SqueezeYAML", "SqueezeSupport", "SqueezeModels", "SqueezeCompress",
                "SqueezeTensor", "SqueezeExport",
            ]
        ),
        // `squeeze bench`: measurements of this machine's numerics against peers,
        // and the profiling backend they use; kept out of the CLI proper.
        .target(
            name: "SqueezeBench",
            dependencies: [
                "SqueezeSupport", "SqueezeEngine", "SqueezeModels", "SqueezeCompress", "SqueezeTensor", "CKernels",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // The command-line interface only.
        .executableTarget(
            name: "squeeze",
            dependencies: [
                "SqueezeStages",
                "SqueezeEngine",
                "SqueezeRecipe",
                "SqueezeStore",
                "SqueezeYAML",
                "SqueezeSupport",
                "SqueezeTensor",
                "SqueezeReport",
                "SqueezeBench",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // Real servers on loopback for the HTTP tests (nginx with WebDAV PUT).
        .target(name: "SqueezeServersTestSupport", path: "Tests/SqueezeServersTestSupport"),
        .testTarget(
            name: "SqueezeSupportTests",
            dependencies: ["SqueezeSupport", "SqueezeServersTestSupport", .product(name: "ZIPFoundation", package: "ZIPFoundation")]
        ),
        .testTarget(name: "SqueezeYAMLTests", dependencies: ["SqueezeYAML"]),
        .testTarget(
            name: "SqueezeRecipeTests",
            dependencies: [
                "SqueezeRecipe", "SqueezeSupport", "SqueezeYAML", .product(name: "Collections", package: "swift-collections"),
            ]
        ),
        .testTarget(name: "SqueezeStoreTests", dependencies: ["SqueezeStore", "SqueezeSupport", "SqueezeServersTestSupport"]),
        .testTarget(
            name: "SqueezeEngineTests",
            dependencies: ["SqueezeEngine", "SqueezeRecipe", "SqueezeStore", "SqueezeSupport", "SqueezeYAML"]
        ),
        .testTarget(name: "SqueezeTensorTests", dependencies: ["SqueezeTensor", "CKernels"]),
        // Fixtures shared by the model and compression tests: a tiny BERT, a temporary directory.
        .target(
            name: "SqueezeModelsTestSupport",
            dependencies: ["SqueezeModels", "SqueezeTensor"],
            path: "Tests/SqueezeModelsTestSupport"
        ),
        .testTarget(
            name: "SqueezeModelsTests",
            dependencies: ["SqueezeModels", "SqueezeTensor", "SqueezeModelsTestSupport"],
            // Token-id fixtures read from the source tree at test time.
            exclude: ["Fixtures"]
        ),
        .testTarget(
            name: "SqueezeCompressTests",
            dependencies: ["SqueezeCompress", "SqueezeModels", "SqueezeTensor", "SqueezeModelsTestSupport"]
        ),
        .testTarget(
            name: "SqueezeExportTests",
            dependencies: [
                "SqueezeExport", "SqueezeONNXProto", "SqueezeModels", "SqueezeSupport", "SqueezeCompress", "SqueezeTensor",
                "SqueezeModelsTestSupport", .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            // The Python runners (onnxruntime, transformers) read from the source tree at test time.
            exclude: ["Support/Python"]
        ),
        .testTarget(name: "SqueezeReportTests", dependencies: ["SqueezeReport", "SqueezeEngine", "SqueezeSupport"]),
        .testTarget(
            name: "SqueezeCLITests",
            dependencies: [
                "squeeze", "SqueezeStages", "SqueezeEngine", "SqueezeRecipe", "SqueezeStore", "SqueezeYAML", "SqueezeSupport",
                "SqueezeModels", "SqueezeCompress", "SqueezeTensor", "SqueezeModelsTestSupport", "SqueezeServersTestSupport",
                .product(name: "ZIPFoundation", package: "ZIPFoundation"),
            ],
            // Recipe corpora read from the source tree at test time.
            exclude: ["recipes"]
        ),
    ]
)
