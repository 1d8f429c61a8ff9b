/// The device memory NormCL's own buffers take on a runtime: results it allocates, and
/// the scratch (workspace) of ops that reduce in several passes. Both come from the
/// runtime's pool (see `BufferPool`), which reuses freed buffers and holds at most
/// ``memoryLimitBytes``; an allocation past it throws `CL_MEM_OBJECT_ALLOCATION_FAILURE`
/// before anything is enqueued. Views of the caller's memory are not counted.
extension OpenCLRuntime {
    /// The most bytes of device memory NormCL's buffers on this runtime may hold, in use
    /// or idle (default: the device's global memory). Lowering it does not release
    /// buffers already held; an application sharing the device sets it to its budget.
    public var memoryLimitBytes: Int {
        get { buffers.limitBytes }
        set { buffers.limitBytes = newValue }
    }

    /// Bytes of device memory NormCL's buffers hold now, in use or kept idle for reuse.
    public var allocatedBytes: Int { buffers.allocatedBytes }

    /// Releases the idle buffers kept for reuse (the memory of tensors still alive stays).
    public func releaseIdleMemory() { buffers.releaseAll() }
}
