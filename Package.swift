// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "NormCL",
    products: [
        .library(name: "NormCL", targets: ["NormCL"]),
        .executable(name: "normcl-bench", targets: ["NormCLBenchmark"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-numerics", from: "1.0.0"),
        // Test-only: property-based tests with shrinking (Swift Testing).
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.1"),
    ],
    targets: [
        // The OpenCL C API (<CL/cl.h>), linked against the ICD loader.
        .systemLibrary(
            name: "COpenCL",
            pkgConfig: "OpenCL",
            providers: [.apt(["ocl-icd-opencl-dev", "opencl-headers"])]
        ),
        // Build-time tool: turns Kernels/*.cl into Swift string constants.
        .executableTarget(name: "EmbedKernelsTool"),
        .plugin(
            name: "EmbedKernels",
            capability: .buildTool(),
            dependencies: ["EmbedKernelsTool"]
        ),
        .target(
            name: "NormCL",
            dependencies: ["COpenCL"],
            plugins: ["EmbedKernels"]
        ),
        .executableTarget(
            name: "NormCLBenchmark",
            dependencies: [
                "NormCL",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Benchmarks/NormCLBenchmark"
        ),
        // Test support: enqueues an op and exits at once; `ProcessExitTests` spawns it.
        .executableTarget(
            name: "NormCLExitProbe",
            dependencies: ["NormCL"],
            path: "Tests/NormCLExitProbe"
        ),
        .testTarget(
            name: "NormCLTests",
            dependencies: [
                "NormCL",
                .product(name: "Numerics", package: "swift-numerics"),
                .product(name: "PropertyBased", package: "swift-property-based"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
