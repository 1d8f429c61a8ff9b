/// A float4 copy kernel of a fixed size on one runtime: the memory-bound ceiling a norm
/// kernel that moves the same bytes is measured against.
///
/// A copy of `bytes / 2` bytes reads and writes `bytes` in all. Its speed depends on
/// the size (a working set that fits in the last-level cache copies faster than one in
/// DRAM) and on the moment (other load on the machine), so a benchmark compares each op
/// with a probe of the op's own ideal bytes, run alternately with it.
public struct CopyProbe: Sendable {
    /// Bytes one run reads plus writes (a multiple of 32).
    public let bytes: Int
    private let runtime: OpenCLRuntime
    let source: DeviceBuffer
    let destination: DeviceBuffer
    private let program: CompiledProgram
    private let vectors: Int
    private let groups: Int
    private let local: Int

    /// Allocates two buffers of `bytes / 2` bytes each (rounded up to whole float4s),
    /// fills them on the device and builds the copy kernel.
    ///
    /// - Throws: ``NormError/invalidArgument(argument:reason:)`` for `bytes` beyond
    ///   `Int.max / 4` (its arithmetic would overflow); ``OpenCLError`` when the buffers
    ///   cannot be allocated or the kernel fails to build.
    public init(bytes: Int, on runtime: OpenCLRuntime) throws {
        guard bytes <= Int.max / 4 else {
            throw NormError.invalidArgument(argument: "bytes", reason: "must be at most Int.max / 4, got \(bytes)")
        }
        vectors = max(1, (max(bytes, 0) / 2).ceilingDivided(by: 16))
        self.bytes = 2 * vectors * 16
        self.runtime = runtime
        source = try DeviceBuffer(byteCount: vectors * 16, on: runtime)
        destination = try DeviceBuffer(byteCount: vectors * 16, on: runtime)
        // Written, not just allocated: on CPU devices untouched memory reads as one shared
        // zero page, which stays in L1 and made the copy look up to 1.4× faster than any
        // kernel reading real data. Filled on the device: no host arrays of the same size.
        try source.fill(with: Float(1).bitPattern)
        try destination.fill(with: Float(0).bitPattern)
        let geometry = LaunchGeometry(device: runtime.device, tuning: runtime.tuning)
        local = geometry.elementwiseWorkGroupSize
        groups = geometry.elementwiseWorkGroups(vectors: vectors)
        let specialization = KernelSpecialization(
            elementType: .float32, geometry: geometry,
            wideIndices: LaunchGeometry.needsWideIndices(elements: vectors, workItems: groups * local))
        program = try runtime.program(.memory, options: specialization)
    }

    /// Copies once and returns the kernel's device time in nanoseconds (from its
    /// profiling event, after waiting for it).
    public func run() throws -> UInt64 {
        let event = try runtime.enqueue(
            "copy_float4", from: program, global: [groups * local], local: [local],
            arguments: ["x": .buffer(source), "y": .buffer(destination), "count": .ulong(UInt64(vectors))])
        return try event.durationNanoseconds()
    }
}
