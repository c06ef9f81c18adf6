// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "squeeze",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "squeeze", targets: ["squeeze"]),
        .library(name: "SqueezeEngine", targets: ["SqueezeEngine"]),
        .library(name: "SqueezeRecipe", targets: ["SqueezeRecipe"]),
        .library(name: "SqueezeStages", targets: ["SqueezeStages"]),
        .library(name: "SqueezeTensor", targets: ["SqueezeTensor"]),
        .library(name: "SqueezeModels", targets: ["SqueezeModels"]),
        .library(name: "SqueezeCompress", targets: ["SqueezeCompress"]),
        .library(name: "SqueezeReport", targets: ["SqueezeReport"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
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
        // Recipe language: model, validation, references, overrides, schema.
        .target(
            name: "SqueezeRecipe",
            dependencies: [
                "SqueezeYAML",
                .product(name: "Collections", package: "swift-collections"),
            ]
        ),
        // Planner, content-addressed store, scheduler, run records, Stage protocol.
        .target(
            name: "SqueezeEngine",
            dependencies: [
                "SqueezeRecipe",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Collections", package: "swift-collections"),
            ]
        ),
        // Reports over run records: model tables, Pareto plots, training curves
        // (text, JSON, self-contained HTML) and run-to-run metric comparison.
        .target(name: "SqueezeReport", dependencies: ["SqueezeEngine", "SqueezeRecipe"]),
        // OpenBLAS (cblas_sgemm), linked through pkg-config (Debian: libopenblas-dev).
        .systemLibrary(
            name: "CBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"]), .brew(["openblas"])]
        ),
        // Vectorised fp32 kernels (clang vector extensions; AVX2+FMA chosen at run
        // time on x86_64, baseline elsewhere). Always -O3: tests then run the
        // numerics that ship.
        .target(name: "CKernels", cSettings: [.unsafeFlags(["-O3", "-fno-math-errno"])]),
        // Tensors, backends (CPU via BLAS, reference), autodiff, optimisers, RNG.
        // Checked like every target: the preconditions at each op's entry
        // guard the raw-pointer kernels (docs/architecture.md, `-Ounchecked`).
        .target(name: "SqueezeTensor", dependencies: ["CBLAS", "CKernels"]),
        // Model files and models: safetensors, HF configs, WordPiece, BERT.
        .target(
            name: "SqueezeModels",
            dependencies: ["SqueezeTensor", .product(name: "Crypto", package: "swift-crypto")]
        ),
        // Compression algorithms over models: quantization math and calibration observers.
        .target(name: "SqueezeCompress", dependencies: ["SqueezeModels"]),
        // posix_spawn helpers Swift's Glibc module does not export.
        .target(name: "CProcessSupport"),
        // Built-in stage types, one file each.
        .target(name: "SqueezeStages", dependencies: ["SqueezeEngine", "SqueezeModels", "SqueezeCompress", "CProcessSupport"]),
        // The command-line interface only.
        .executableTarget(
            name: "squeeze",
            dependencies: [
                "SqueezeStages",
                "SqueezeModels",
                "SqueezeCompress",
                "SqueezeTensor",
                "SqueezeReport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "SqueezeYAMLTests", dependencies: ["SqueezeYAML"]),
        .testTarget(name: "SqueezeRecipeTests", dependencies: ["SqueezeRecipe"]),
        .testTarget(name: "SqueezeEngineTests", dependencies: ["SqueezeEngine"]),
        .testTarget(name: "SqueezeTensorTests", dependencies: ["SqueezeTensor"]),
        .testTarget(
            name: "SqueezeModelsTests",
            dependencies: ["SqueezeModels"],
            // Token-id fixtures read from the source tree at test time.
            exclude: ["Fixtures"]
        ),
        .testTarget(name: "SqueezeCompressTests", dependencies: ["SqueezeCompress"]),
        .testTarget(name: "SqueezeReportTests", dependencies: ["SqueezeReport", "SqueezeEngine", "SqueezeRecipe"]),
        .testTarget(
            name: "SqueezeCLITests",
            dependencies: ["squeeze", "SqueezeStages", "SqueezeRecipe", "SqueezeYAML", "SqueezeModels"],
            // Recipe corpora read from the source tree at test time.
            exclude: ["recipes"]
        ),
    ]
)
