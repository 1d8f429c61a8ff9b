// swift-tools-version: 6.0
import PackageDescription

// NormCL over Open MPI (issue #19): synchronized BatchNorm across processes.
//
// An optional package of its own, apart from the library package at the repository root,
// so that the library builds, tests and resolves with no MPI installed: only this package
// needs Open MPI (Debian: libopenmpi-dev, found through pkg-config's `mpi` entry).
// Built and run by scripts/test-mpi.sh (release, scratch path Integrations/MPI/.build):
//
//   swift build -c release --package-path Integrations/MPI
//   mpirun -np 2 Integrations/MPI/.build/release/normcl-mpi-check
//
// The root package is a dependency by path: SwiftPM resolves its products, not its test
// target's packages (swift-numerics, swift-property-based), so nothing is fetched.

let package = Package(
    name: "NormCLMPI",
    products: [
        .library(name: "NormCLMPI", targets: ["NormCLMPI"]),
        .executable(name: "normcl-mpi-check", targets: ["NormCLMPICheck"]),
        .executable(name: "normcl-mpi-example", targets: ["NormCLMPIExample"]),
    ],
    dependencies: [
        .package(name: "NormCL", path: "../.."),
    ],
    targets: [
        // <mpi.h>, plus C accessors for the handles Open MPI defines as macros over its
        // globals (MPI_COMM_WORLD, MPI_DOUBLE, …), which Swift cannot import.
        .systemLibrary(
            name: "CMPI",
            pkgConfig: "mpi",
            providers: [.apt(["libopenmpi-dev"])]
        ),
        .target(
            name: "NormCLMPI",
            dependencies: [
                "CMPI",
                .product(name: "NormCL", package: "NormCL"),
            ]
        ),
        // The check of issue #19 under mpirun (and its --bench mode).
        .executableTarget(
            name: "NormCLMPICheck",
            dependencies: [
                "CMPI",
                "NormCLMPI",
                .product(name: "NormCL", package: "NormCL"),
            ]
        ),
        // README.md's MPI example, run by scripts/test-mpi.sh.
        .executableTarget(
            name: "NormCLMPIExample",
            dependencies: ["NormCLMPI", .product(name: "NormCL", package: "NormCL")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
