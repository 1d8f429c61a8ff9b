@testable import NormCL

#if canImport(Glibc)
import Glibc
#endif

/// The OpenCL runtime the tests share: one per process, like a real program.
/// Nil when this machine has no OpenCL device (the OpenCL tests are then skipped,
/// the reference tests still run).
///
/// Its program cache keeps every program the suite builds (a few hundred; a user's
/// process needs a few): with the default limit of 64, parallel suites evicted each
/// other's programs and rebuilt them ~330 times, 74 s of a 546 s run. The limit itself
/// is tested on private runtimes (`ProgramCacheTests`).
let sharedRuntime: OpenCLRuntime? = {
    setenv(ProgramCacheConfiguration.memoryLimitEnvironmentVariable, "4096", 0)
    guard case .openCL(let runtime)? = try? Backend.default else { return nil }
    return runtime
}()

/// Backends that every op test runs on: OpenCL (when present) and the reference.
var allBackends: [Backend] {
    (sharedRuntime.map { [Backend.openCL($0)] } ?? []) + [.reference]
}

/// Whether the suite can run OpenCL tests here.
var hasOpenCL: Bool { sharedRuntime != nil }
