import COpenCL

/// A `cl_mem` buffer in one runtime's context, released when the last reference goes.
///
/// Dropping a buffer while kernels on it are still queued is safe: its memory goes
/// back to the runtime's ``BufferPool`` (or to OpenCL, which keeps it alive until
/// those commands finish), and any reuse is queued after them.
///
/// Why `@unchecked Sendable` is honest: its properties are `let`s, and the `cl_mem` is
/// only used through the runtime's queue (thread-safe), whose in-order execution
/// orders every read and write of the memory; it is recycled once, in `deinit`.
final class DeviceBuffer: @unchecked Sendable {
    let handle: cl_mem
    let byteCount: Int
    let runtime: OpenCLRuntime

    /// Allocates `byteCount` bytes of uninitialised device memory (see ``BufferPool/allocate(byteCount:in:)``).
    init(byteCount: Int, on runtime: OpenCLRuntime) throws(OpenCLError) {
        precondition(byteCount > 0, "empty buffers are rejected before allocation")
        self.handle = try runtime.buffers.allocate(byteCount: byteCount, in: runtime.context)
        self.byteCount = byteCount
        self.runtime = runtime
    }

    deinit { runtime.buffers.recycle(handle, byteCount: byteCount) }

    /// Copies `values` into the buffer, blocking until the copy is done.
    func upload<T: BitwiseCopyable>(_ values: [T]) throws(OpenCLError) {
        precondition(values.count * MemoryLayout<T>.stride == byteCount, "upload size mismatch")
        let status = values.withUnsafeBytes { bytes in
            ProcessExit.gate.pass {
                clEnqueueWriteBuffer(runtime.queue, handle, cl_bool(CL_TRUE), 0, byteCount, bytes.baseAddress, 0, nil, nil)
            }
        }
        try check(status, "clEnqueueWriteBuffer")
    }

    /// Sets every element to `pattern` on the device, without building a host array or
    /// waiting: `clEnqueueFillBuffer` on the runtime's in-order queue, so the commands
    /// enqueued after it see the filled buffer. OpenCL copies the pattern at the call.
    ///
    /// - Parameter pattern: one element's bits, e.g. a `Float`'s, or a `Float16`'s for
    ///   half storage; the buffer's size must be a multiple of its size.
    func fill<Pattern: BitwiseCopyable>(with pattern: Pattern) throws(OpenCLError) {
        let size = MemoryLayout<Pattern>.size
        precondition(byteCount % size == 0, "fill pattern does not divide the buffer")
        let status = withUnsafeBytes(of: pattern) { bytes in
            ProcessExit.gate.pass {
                clEnqueueFillBuffer(runtime.queue, handle, bytes.baseAddress, size, 0, byteCount, 0, nil, nil)
            }
        }
        try check(status, "clEnqueueFillBuffer")
    }

    /// Copies the buffer to the host after every command queued before it has run.
    func download<T: BitwiseCopyable>(as type: T.Type = T.self) throws(OpenCLError) -> [T] {
        let count = byteCount / MemoryLayout<T>.stride
        var status: cl_int = CL_SUCCESS
        let values = Array<T>(unsafeUninitializedCapacity: count) { destination, initialized in
            status = ProcessExit.gate.pass {
                clEnqueueReadBuffer(
                    runtime.queue, handle, cl_bool(CL_TRUE), 0, byteCount, destination.baseAddress, 0, nil, nil)
            }
            initialized = status == CL_SUCCESS ? count : 0
        }
        try check(status, "clEnqueueReadBuffer")
        return values
    }
}
