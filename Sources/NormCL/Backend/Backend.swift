import COpenCL

/// Where an op runs: an OpenCL device, or the plain-Swift CPU reference path.
///
/// Every op has both implementations with the same semantics; the reference path is
/// what tests compare against and what runs on machines without OpenCL.
public enum Backend: Sendable {
    /// OpenCL kernels on one device.
    case openCL(OpenCLRuntime)
    /// The CPU reference: float64 accumulation, two passes, written for clarity.
    case reference

    /// The backend NormCL picks when none is given: the device `NORMCL_DEVICE` names
    /// (see ``DeviceDiscovery``), else the first GPU, else the first OpenCL device,
    /// else — when no OpenCL driver or device is installed — ``reference``, with
    /// ``fallbackNotice`` saying why (also printed once to standard error unless
    /// `NORMCL_QUIET` is set).
    ///
    /// Resolved once per process; later reads return the same backend.
    ///
    /// - Throws: ``DeviceSelectionError/noMatch(request:available:)`` when
    ///   `NORMCL_DEVICE` names no device, or the ``OpenCLError`` that set-up failed with.
    public static var `default`: Backend {
        get throws { try defaultResolution.get().backend }
    }

    /// Why ``default`` is the reference path rather than OpenCL, or nil when it is not.
    public static var fallbackNotice: String? {
        (try? defaultResolution.get())?.notice
    }

    /// The OpenCL runtime, or nil on the reference path.
    public var runtime: OpenCLRuntime? {
        if case .openCL(let runtime) = self { runtime } else { nil }
    }

    /// A short description: the device name, or "CPU reference".
    public var name: String {
        switch self {
        case .openCL(let runtime): runtime.device.name
        case .reference: "CPU reference"
        }
    }

    /// Whether two backends are the same device runtime (or both the reference).
    func isSame(as other: Backend) -> Bool {
        switch (self, other) {
        case (.reference, .reference): true
        case (.openCL(let a), .openCL(let b)): a === b
        default: false
        }
    }

    private static let defaultResolution: Result<(backend: Backend, notice: String?), any Error> = Result {
        let resolved = try resolve(
            request: environment(DeviceDiscovery.environmentVariable), discover: DeviceDiscovery.defaultDevice)
        if let notice = resolved.notice, environment("NORMCL_QUIET") == nil { printToStandardError(notice) }
        return resolved
    }

    /// The default-backend decision, apart from the process environment so tests can
    /// feed it any discovery outcome.
    static func resolve(
        request: String?, discover: () throws -> OpenCLDevice
    ) throws -> (backend: Backend, notice: String?) {
        if request?.lowercased() == "reference" { return (.reference, nil) }
        let device: OpenCLDevice
        do {
            device = try discover()
        } catch let error as OpenCLError where error.code == CL_PLATFORM_NOT_FOUND_KHR || error.code == CL_DEVICE_NOT_FOUND {
            return (.reference, fallbackNotice(because: "no OpenCL platform is installed (\(error.name))"))
        } catch DeviceSelectionError.noDevice {
            return (.reference, fallbackNotice(because: "OpenCL reports no device"))
        }
        return (.openCL(try OpenCLRuntime(device: device)), nil)
    }

    private static func fallbackNotice(because reason: String) -> String {
        "NormCL: \(reason); running on the CPU reference path."
    }
}
