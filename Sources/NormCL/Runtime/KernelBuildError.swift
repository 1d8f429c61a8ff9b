/// An OpenCL C program that failed to compile for a device.
///
/// ``log`` is the compiler's build log for that device, verbatim.
public struct KernelBuildError: Error, Sendable, CustomStringConvertible {
    /// The kernel source file the program came from, e.g. `"batch_norm"`.
    public let program: String
    /// The build options the program was compiled with (`-D` constants and flags).
    public let options: String
    /// The device the build was for.
    public let device: String
    /// The underlying status (usually `CL_BUILD_PROGRAM_FAILURE`).
    public let status: OpenCLError
    /// The compiler's build log.
    public let log: String

    /// The program, options, device and status, then the build log.
    public var description: String {
        "OpenCL program '\(program)' failed to build for \(device) with options '\(options)': \(status.name)\n\(log)"
    }
}
