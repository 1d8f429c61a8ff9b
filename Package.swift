// swift-tools-version: 6.0
import PackageDescription

// The library package: what a consumer of the `NormCL` product resolves and builds.
// Tools that only this repository needs live elsewhere, so consumers never fetch them:
// the benchmark (and swift-argument-parser) is its own package in Benchmarks/, and
// swift-docc-plugin is added only when NORMCL_DOCS is set (scripts/build-docs.sh), so that
// neither a consumer nor this package's own builds and tests resolve it.
// swift-numerics and swift-property-based are used by the test target only, and
// SwiftPM does not resolve a dependency's test-only packages
// (Tests/Setup/consumer-test.sh checks all of this on a real consumer).

var dependencies: [Package.Dependency] = [
    // Test-only: approximate comparisons and real functions (Numerics, RealModule).
    .package(url: "https://github.com/apple/swift-numerics", from: "1.0.0"),
    // Test-only: property-based tests with shrinking (Swift Testing).
    .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.1"),
]
if Context.environment["NORMCL_DOCS"] != nil {
    // `swift package generate-documentation` (scripts/build-docs.sh, CI).
    dependencies.append(.package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"))
}

let package = Package(
    name: "NormCL",
    products: [
        .library(name: "NormCL", targets: ["NormCL"]),
        // The C API (include/normcl.h, Sources/NormCL/CAPI): libnormcl.so for C, C++ and
        // Python (ctypes) programs with their own OpenCL context, queue and buffers.
        // Built only when asked for (`swift build --product normcl`) or by a plain
        // `swift build`; a package that depends on the `NormCL` product never builds it.
        .library(name: "normcl", type: .dynamic, targets: ["NormCL"]),
    ],
    dependencies: dependencies,
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
                // Raw OpenCL calls: the interop tests act as the caller's own OpenCL program.
                "COpenCL",
                .product(name: "Numerics", package: "swift-numerics"),
                .product(name: "PropertyBased", package: "swift-property-based"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
