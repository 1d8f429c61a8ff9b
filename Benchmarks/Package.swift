// swift-tools-version: 6.0
import PackageDescription

// The benchmark, `normcl-bench`, as a package of its own so that the library package
// (the repository root) has no dependency a consumer does not need: only this package
// brings swift-argument-parser. Built and run by scripts/benchmark.sh (release,
// scratch path Benchmarks/.build); run from the repository root, where its default
// --peer-script path, Benchmarks/peers/pytorch_norms.py, is found.

let package = Package(
    name: "NormCLBenchmarks",
    products: [
        .executable(name: "normcl-bench", targets: ["NormCLBenchmark"]),
    ],
    dependencies: [
        // The library, from this repository (the name is what `.product(package:)` refers to,
        // whatever the folder holding the clone is called).
        .package(name: "NormCL", path: ".."),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        .executableTarget(
            name: "NormCLBenchmark",
            dependencies: [
                .product(name: "NormCL", package: "NormCL"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "NormCLBenchmark"
        ),
    ],
    swiftLanguageModes: [.v6]
)
