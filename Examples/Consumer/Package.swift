// swift-tools-version: 6.0
import PackageDescription

// A package that uses NormCL the way any consumer does: through the `NormCL` product
// alone. Tests/Setup/consumer-test.sh builds and runs it in CI and checks that resolving
// it fetched none of the packages only the repository's own tools use
// (swift-argument-parser, swift-docc-plugin) nor the library's test-only ones.
// A real consumer names the repository's URL instead of this path.

let package = Package(
    name: "NormCLConsumer",
    dependencies: [
        .package(name: "NormCL", path: "../.."),
    ],
    targets: [
        .executableTarget(
            name: "NormCLConsumer",
            dependencies: [.product(name: "NormCL", package: "NormCL")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
