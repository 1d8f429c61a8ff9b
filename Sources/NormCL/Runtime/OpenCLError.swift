import COpenCL

/// An OpenCL call that returned an error code.
///
/// Carries the numeric code, its symbolic name (`CL_OUT_OF_RESOURCES`, …) and the
/// API call that failed, so a log line says what went wrong without a lookup table.
public struct OpenCLError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The raw OpenCL status code (always negative).
    public let code: Int32
    /// The OpenCL API function that returned `code`, e.g. `"clCreateBuffer"`.
    public let call: String

    /// An error for `call` returning `code`.
    public init(code: Int32, call: String) {
        self.code = code
        self.call = call
    }

    /// The symbolic name of ``code``, e.g. `"CL_INVALID_WORK_GROUP_SIZE"`.
    public var name: String { Self.name(of: code) }

    /// Whether the error means the device ran out of memory or another resource.
    public var isOutOfResources: Bool {
        code == CL_MEM_OBJECT_ALLOCATION_FAILURE || code == CL_OUT_OF_RESOURCES
            || code == CL_OUT_OF_HOST_MEMORY || code == CL_INVALID_BUFFER_SIZE
    }

    /// E.g. `"clCreateBuffer(…) failed with CL_INVALID_BUFFER_SIZE (-61)"`.
    public var description: String { "\(call) failed with \(name) (\(code))" }
}

/// Throws an ``OpenCLError`` unless `status` is `CL_SUCCESS`.
@inline(__always)
func check(_ status: cl_int, _ call: @autoclosure () -> String) throws(OpenCLError) {
    if status != CL_SUCCESS { throw OpenCLError(code: status, call: call()) }
}
