#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import COpenCL

// The library and runtime functions of include/normcl.h. The C API's functions are
// SPI (`@_spi(CAPI)`): public so that libnormcl.so exports them, not part of the Swift API.

/// `normcl_api_version`: the header's `NORMCL_API_VERSION` this library implements.
@_spi(CAPI) @_cdecl("normcl_api_version")
public func normcl_api_version() -> Int32 {
    CAPIStatus.apiVersion
}

/// `NormCL.version` as a C string that lives as long as the process.
private nonisolated(unsafe) let versionCString: UnsafeMutablePointer<CChar>? = strdup(version)

/// `normcl_version`: the library version, a static string.
@_spi(CAPI) @_cdecl("normcl_version")
public func normcl_version() -> UnsafePointer<CChar>? {
    versionCString.map { UnsafePointer($0) }
}

/// `normcl_last_error_message`: the calling thread's last error ("" if none).
@_spi(CAPI) @_cdecl("normcl_last_error_message")
public func normcl_last_error_message() -> UnsafePointer<CChar> {
    LastError.message
}

/// `normcl_runtime_create`: an ``OpenCLRuntime`` adopting the caller's context, queue and
/// device, retained into `*out`.
@_spi(CAPI) @_cdecl("normcl_runtime_create")
public func normcl_runtime_create(
    _ context: cl_context?, _ queue: cl_command_queue?, _ device: cl_device_id?,
    _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> Int32 {
    out?.pointee = nil
    return CAPIStatus.catching {
        guard let out else { throw NormError.invalidArgument(argument: "out", reason: "is NULL") }
        guard let context else { throw NormError.invalidArgument(argument: "context", reason: "is NULL") }
        guard let queue else { throw NormError.invalidArgument(argument: "queue", reason: "is NULL") }
        guard let device else { throw NormError.invalidArgument(argument: "device", reason: "is NULL") }
        let runtime = try OpenCLRuntime(adopting: context, queue: queue, device: device)
        out.pointee = OpaquePointer(Unmanaged.passRetained(runtime).toOpaque())
    }
}

/// `normcl_runtime_release`: drops the reference `normcl_runtime_create` returned.
@_spi(CAPI) @_cdecl("normcl_runtime_release")
public func normcl_runtime_release(_ runtime: OpaquePointer?) -> Int32 {
    guard let runtime else { return CAPIStatus.success }
    Unmanaged<OpenCLRuntime>.fromOpaque(UnsafeRawPointer(runtime)).release()
    return CAPIStatus.success
}
