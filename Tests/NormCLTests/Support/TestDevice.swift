@testable import NormCL

/// The OpenCL runtime the tests share: one per process, like a real program.
/// Nil when this machine has no OpenCL device (the OpenCL tests are then skipped,
/// the reference tests still run).
let sharedRuntime: OpenCLRuntime? = {
    guard case .openCL(let runtime)? = try? Backend.default else { return nil }
    return runtime
}()

/// Backends that every op test runs on: OpenCL (when present) and the reference.
var allBackends: [Backend] {
    (sharedRuntime.map { [Backend.openCL($0)] } ?? []) + [.reference]
}

/// Whether the suite can run OpenCL tests here.
var hasOpenCL: Bool { sharedRuntime != nil }
