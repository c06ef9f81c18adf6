// swift-tools-version: 6.1
// Squeeze's performance benchmarks: a package of its own so that the product
// never depends on the benchmark harness. Run with `swift package benchmark`
// here, or `./swift-benchmarks.sh` for the harness output plus a summary line.
import PackageDescription

let package = Package(
    name: "SqueezeBenchmarks",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(name: "squeeze", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        // Shared by the benchmark targets: sample files for `summary.py`, fixtures.
        .target(
            name: "BenchmarkSupport",
            path: "Sources/BenchmarkSupport"
        ),
        .executableTarget(
            name: "Hashing",
            dependencies: [
                "BenchmarkSupport",
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "SqueezeSupport", package: "squeeze"),
            ],
            path: "Benchmarks/Hashing",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .executableTarget(
            name: "Planning",
            dependencies: [
                "BenchmarkSupport",
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "SqueezeEngine", package: "squeeze"),
                .product(name: "SqueezeRecipe", package: "squeeze"),
                .product(name: "SqueezeStages", package: "squeeze"),
                .product(name: "SqueezeStore", package: "squeeze"),
                .product(name: "SqueezeTensor", package: "squeeze"),
            ],
            path: "Benchmarks/Planning",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
