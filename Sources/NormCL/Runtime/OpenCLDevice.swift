import COpenCL

/// One OpenCL device and the limits that plans are chosen from.
///
/// A plain description read once at discovery; the handle it wraps is owned by the
/// OpenCL platform and valid for the life of the process.
///
/// Why `@unchecked Sendable` is honest: every property is an immutable value; the only
/// non-`Sendable` ones are the device and platform handles, which are never released
/// and only passed to thread-safe OpenCL queries and context creation.
public struct OpenCLDevice: @unchecked Sendable, CustomStringConvertible {
    /// The kind of processor an OpenCL device reports itself as.
    public enum Kind: String, Sendable {
        case gpu, cpu, accelerator, other
    }

    /// The position of this device in the discovery order (platforms, then devices).
    public let index: Int
    /// `CL_DEVICE_NAME`, e.g. `"NVIDIA H100 80GB HBM3"` or `"pthread-haswell-…"` (PoCL).
    public let name: String
    /// `CL_DEVICE_VENDOR`.
    public let vendor: String
    /// `CL_PLATFORM_NAME` of the platform (driver) the device belongs to.
    public let platformName: String
    /// `CL_PLATFORM_VERSION` of the platform, e.g. `"OpenCL 3.0 PoCL 3.1 …"`.
    public let platformVersion: String
    /// `CL_DRIVER_VERSION`: the driver's own version (e.g. `"3.1"` for PoCL, `"550.54.15"`
    /// for NVIDIA). Part of the key of cached program binaries, so a driver update
    /// recompiles them.
    public let driverVersion: String
    /// GPU, CPU, accelerator or other, from `CL_DEVICE_TYPE`.
    public let kind: Kind
    /// `CL_DEVICE_MAX_COMPUTE_UNITS`.
    public let computeUnits: Int
    /// `CL_DEVICE_MAX_WORK_GROUP_SIZE`.
    public let maxWorkGroupSize: Int
    /// `CL_DEVICE_LOCAL_MEM_SIZE` in bytes.
    public let localMemoryBytes: Int
    /// `CL_DEVICE_GLOBAL_MEM_SIZE` in bytes.
    public let globalMemoryBytes: Int
    /// `CL_DEVICE_MAX_MEM_ALLOC_SIZE` in bytes: the largest single buffer.
    public let maxAllocationBytes: Int
    /// `CL_DEVICE_OPENCL_C_VERSION`, e.g. `"OpenCL C 1.2 pocl"`.
    public let openCLCVersion: String
    /// `CL_DEVICE_MEM_BASE_ADDR_ALIGN` in bytes: the alignment a sub-buffer's origin needs,
    /// so the byte offsets of zero-copy tensor views (``Tensor/init(wrapping:byteOffset:shape:layout:elementType:on:)``).
    public let baseAddressAlignmentBytes: Int
    /// `CL_DEVICE_EXTENSIONS`, split on spaces.
    public let extensions: Set<String>

    /// Whether the device computes in double precision (`cl_khr_fp64`).
    public var supportsFloat64: Bool { extensions.contains("cl_khr_fp64") }
    /// Whether the device does half-precision arithmetic (`cl_khr_fp16`).
    public var supportsFloat16Arithmetic: Bool { extensions.contains("cl_khr_fp16") }

    let id: cl_device_id
    let platform: cl_platform_id
    /// Whether the driver compiles a kernel's work-group function at its first launch,
    /// in-process with LLVM (PoCL), which exit safety waits for (see `ProcessExit`). Read
    /// once: every launch asks, and a substring search costs microseconds.
    let compilesKernelsAtFirstLaunch: Bool

    /// One line: index, name, kind, platform and the limits plans use.
    public var description: String {
        "#\(index) \(name) (\(kind.rawValue), \(platformName)): \(computeUnits) compute units, work-groups ≤ \(maxWorkGroupSize), \(localMemoryBytes / 1024) KiB local, \(globalMemoryBytes >> 20) MiB global"
    }

    init(index: Int, id: cl_device_id, platform: cl_platform_id) throws(OpenCLError) {
        self.index = index
        self.id = id
        self.platform = platform
        name = try Self.string(id, CL_DEVICE_NAME).trimmingSpaces()
        vendor = try Self.string(id, CL_DEVICE_VENDOR).trimmingSpaces()
        platformName = try Self.platformString(platform, CL_PLATFORM_NAME).trimmingSpaces()
        platformVersion = try Self.platformString(platform, CL_PLATFORM_VERSION).trimmingSpaces()
        compilesKernelsAtFirstLaunch = platformName.contains("Portable Computing Language")
        driverVersion = try Self.string(id, CL_DRIVER_VERSION).trimmingSpaces()
        let type: cl_device_type = try Self.scalar(id, CL_DEVICE_TYPE)
        kind =
            if type & cl_device_type(CL_DEVICE_TYPE_GPU) != 0 { .gpu }
            else if type & cl_device_type(CL_DEVICE_TYPE_CPU) != 0 { .cpu }
            else if type & cl_device_type(CL_DEVICE_TYPE_ACCELERATOR) != 0 { .accelerator }
            else { .other }
        computeUnits = Int(try Self.scalar(id, CL_DEVICE_MAX_COMPUTE_UNITS) as cl_uint)
        maxWorkGroupSize = Int(try Self.scalar(id, CL_DEVICE_MAX_WORK_GROUP_SIZE) as Int)
        localMemoryBytes = Int(try Self.scalar(id, CL_DEVICE_LOCAL_MEM_SIZE) as cl_ulong)
        globalMemoryBytes = Int(try Self.scalar(id, CL_DEVICE_GLOBAL_MEM_SIZE) as cl_ulong)
        maxAllocationBytes = Int(try Self.scalar(id, CL_DEVICE_MAX_MEM_ALLOC_SIZE) as cl_ulong)
        openCLCVersion = try Self.string(id, CL_DEVICE_OPENCL_C_VERSION).trimmingSpaces()
        baseAddressAlignmentBytes = max(1, Int(try Self.scalar(id, CL_DEVICE_MEM_BASE_ADDR_ALIGN) as cl_uint) / 8)
        extensions = Set(try Self.string(id, CL_DEVICE_EXTENSIONS).split(separator: " ").map(String.init))
    }

    static func scalar<T: BitwiseCopyable>(_ id: cl_device_id, _ param: Int32) throws(OpenCLError) -> T {
        try withUnsafeTemporaryAllocation(of: T.self, capacity: 1) { buffer throws(OpenCLError) -> T in
            try check(
                clGetDeviceInfo(id, cl_device_info(param), MemoryLayout<T>.size, buffer.baseAddress, nil),
                "clGetDeviceInfo")
            return buffer[0]
        }
    }

    static func string(_ id: cl_device_id, _ param: Int32) throws(OpenCLError) -> String {
        try infoString("clGetDeviceInfo") { clGetDeviceInfo(id, cl_device_info(param), $0, $1, $2) }
    }

    static func platformString(_ id: cl_platform_id, _ param: Int32) throws(OpenCLError) -> String {
        try infoString("clGetPlatformInfo") { clGetPlatformInfo(id, cl_platform_info(param), $0, $1, $2) }
    }
}

/// Reads a string-valued `clGet…Info` query: asks for the size, then the bytes.
/// `query(size, destination, sizeReturned)` is the OpenCL call with its object and parameter bound.
func infoString(
    _ call: String, _ query: (Int, UnsafeMutableRawPointer?, UnsafeMutablePointer<Int>?) -> cl_int
) throws(OpenCLError) -> String {
    var size = 0
    try check(query(0, nil, &size), call)
    var bytes = [CChar](repeating: 0, count: size + 1)
    try check(bytes.withUnsafeMutableBytes { query(size, $0.baseAddress, nil) }, call)
    return String(decoding: bytes.prefix { $0 != 0 }.map(UInt8.init(bitPattern:)), as: UTF8.self)
}

extension OpenCLDevice {
}

extension String {
    func trimmingSpaces() -> String {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }),
            let last = scalars.lastIndex(where: { !$0.properties.isWhitespace })
        else { return "" }
        return String(scalars[first...last])
    }
}
