import COpenCL

/// Finds the OpenCL devices of this process and picks the default one.
public enum DeviceDiscovery {
    /// The environment variable that overrides the default device: an index into
    /// ``devices()``, a case-insensitive substring of a device name, `gpu`, `cpu`, or
    /// `reference` for the plain-Swift CPU path (no OpenCL at all).
    public static let environmentVariable = "NORMCL_DEVICE"

    /// Every device of every platform, in discovery order.
    ///
    /// - Throws: ``OpenCLError`` with `CL_PLATFORM_NOT_FOUND_KHR` when no OpenCL driver
    ///   (ICD) is installed, or any other discovery failure.
    public static func devices() throws(OpenCLError) -> [OpenCLDevice] {
        try discovered.get()
    }

    /// The device `NORMCL_DEVICE` names, or by default the first GPU, else the first device.
    ///
    /// - Throws: ``DeviceSelectionError`` when the override matches nothing or there is
    ///   no device; ``OpenCLError`` when discovery itself fails.
    public static func defaultDevice() throws -> OpenCLDevice {
        let all = try devices()
        if let request = environment(environmentVariable), !request.isEmpty {
            return try select(request, from: all)
        }
        guard let first = all.first(where: { $0.kind == .gpu }) ?? all.first else {
            throw DeviceSelectionError.noDevice
        }
        return first
    }

    /// Picks the device a selector string names: an index, `gpu`, `cpu`, or a
    /// case-insensitive substring of the device or platform name.
    public static func select(_ request: String, from all: [OpenCLDevice]) throws(DeviceSelectionError) -> OpenCLDevice {
        let wanted = request.lowercased()
        let match: OpenCLDevice? =
            if let index = Int(wanted) { all.first { $0.index == index } }
            else if wanted == "gpu" { all.first { $0.kind == .gpu } }
            else if wanted == "cpu" { all.first { $0.kind == .cpu } }
            else {
                all.first { $0.name.lowercased().contains(wanted) }
                    ?? all.first { $0.platformName.lowercased().contains(wanted) }
            }
        guard let match else {
            throw DeviceSelectionError.noMatch(request: request, available: all.map(\.description))
        }
        return match
    }

    /// Discovery runs exactly once per process: PoCL's first device setup is not
    /// thread-safe, and parallel first calls return CL_DEVICE_NOT_FOUND or half-set-up
    /// devices (see docs/POCL.md). A global's initializer is run once, safely.
    private static let discovered: Result<[OpenCLDevice], OpenCLError> = Result { () throws(OpenCLError) in
        var platformCount: cl_uint = 0
        try check(clGetPlatformIDs(0, nil, &platformCount), "clGetPlatformIDs")
        var platforms = [cl_platform_id?](repeating: nil, count: Int(platformCount))
        try check(clGetPlatformIDs(platformCount, &platforms, nil), "clGetPlatformIDs")
        var devices: [OpenCLDevice] = []
        for case let platform? in platforms {
            var deviceCount: cl_uint = 0
            let status = clGetDeviceIDs(platform, cl_device_type(CL_DEVICE_TYPE_ALL), 0, nil, &deviceCount)
            if status == CL_DEVICE_NOT_FOUND { continue }  // a platform with no devices
            try check(status, "clGetDeviceIDs")
            var ids = [cl_device_id?](repeating: nil, count: Int(deviceCount))
            try check(clGetDeviceIDs(platform, cl_device_type(CL_DEVICE_TYPE_ALL), deviceCount, &ids, nil), "clGetDeviceIDs")
            for case let id? in ids {
                devices.append(try OpenCLDevice(index: devices.count, id: id, platform: platform))
            }
        }
        return devices
    }
}

/// The default device could not be chosen.
public enum DeviceSelectionError: Error, Equatable, Sendable, CustomStringConvertible {
    /// `NORMCL_DEVICE` (or an explicit request) named no device; `available` lists them.
    case noMatch(request: String, available: [String])
    /// OpenCL is installed but reports no device.
    case noDevice

    /// What went wrong; for ``noMatch(request:available:)``, the list of devices.
    public var description: String {
        switch self {
        case .noMatch(let request, let available):
            "no OpenCL device matches '\(request)'; available devices:\n"
                + (available.isEmpty ? "  (none)" : available.map { "  \($0)" }.joined(separator: "\n"))
                + "\n(or use 'reference' for the CPU reference path)"
        case .noDevice:
            "OpenCL reports no device"
        }
    }
}
