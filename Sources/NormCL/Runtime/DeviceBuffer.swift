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
            clEnqueueWriteBuffer(runtime.queue, handle, cl_bool(CL_TRUE), 0, byteCount, bytes.baseAddress, 0, nil, nil)
        }
        try check(status, "clEnqueueWriteBuffer")
    }

    /// Copies the buffer to the host after every command queued before it has run.
    func download<T: BitwiseCopyable>(as type: T.Type = T.self) throws(OpenCLError) -> [T] {
        let count = byteCount / MemoryLayout<T>.stride
        var status: cl_int = CL_SUCCESS
        let values = Array<T>(unsafeUninitializedCapacity: count) { destination, initialized in
            status = clEnqueueReadBuffer(
                runtime.queue, handle, cl_bool(CL_TRUE), 0, byteCount, destination.baseAddress, 0, nil, nil)
            initialized = status == CL_SUCCESS ? count : 0
        }
        try check(status, "clEnqueueReadBuffer")
        return values
    }
}
