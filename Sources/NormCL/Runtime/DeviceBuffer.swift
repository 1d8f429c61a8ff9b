import COpenCL

/// A `cl_mem` buffer in one runtime's context: NormCL's own, from the runtime's
/// ``BufferPool`` and back to it when the last reference goes, or a view of the
/// caller's memory (``init(borrowing:byteOffset:byteCount:on:)``), which NormCL never frees.
///
/// Dropping a pooled buffer while kernels on it are still queued is safe: its memory
/// goes back to the runtime's ``BufferPool`` (or to OpenCL, which keeps it alive until
/// those commands finish), and any reuse is queued after them (``CommandOrder``).
///
/// Why `@unchecked Sendable` is honest: its properties are `let`s, and the `cl_mem` is
/// only used through the runtime's queue (thread-safe), on which NormCL's commands run
/// in submission order; it is recycled or released once, in `deinit`.
final class DeviceBuffer: @unchecked Sendable {
    let handle: cl_mem
    let byteCount: Int
    let runtime: OpenCLRuntime
    /// The caller's memory this buffer views, and the view's byte offset in it (nil for
    /// NormCL's own buffers).
    let borrowed: (memory: cl_mem, byteOffset: Int)?

    /// Allocates `byteCount` bytes of uninitialised device memory (see ``BufferPool/allocate(byteCount:in:)``).
    init(byteCount: Int, on runtime: OpenCLRuntime) throws(OpenCLError) {
        precondition(byteCount > 0, "empty buffers are rejected before allocation")
        self.handle = try runtime.buffers.allocate(byteCount: byteCount, in: runtime.context)
        self.byteCount = byteCount
        self.runtime = runtime
        self.borrowed = nil
        self.isStaged = false
    }

    /// Whether this view stands in for the caller's memory through a buffer of NormCL's
    /// (an offset no sub-buffer can start at): ``KernelLaunches`` copies the caller's
    /// bytes in before an op's first launch that uses it, and back after each launch that
    /// may write it.
    let isStaged: Bool

    /// A view of `byteCount` bytes of the caller's `memory` from `byteOffset`: zero-copy
    /// (the buffer itself, retained, at offset 0; a sub-buffer at a multiple of the device's
    /// ``OpenCLDevice/baseAddressAlignmentBytes``), else staged through a pooled buffer
    /// (``isStaged``).
    ///
    /// - Throws: ``NormError/invalidArgument(argument:reason:)`` naming `buffer` for memory
    ///   that is not a valid buffer of the runtime's context (released, or another
    ///   context's), `byteOffset` for a range past the buffer's end.
    init(borrowing memory: cl_mem, byteOffset: Int, byteCount: Int, on runtime: OpenCLRuntime) throws {
        precondition(byteCount > 0, "empty views hold no buffer")
        var context: cl_context?
        let contextStatus = clGetMemObjectInfo(
            memory, cl_mem_info(CL_MEM_CONTEXT), MemoryLayout<cl_context?>.size, &context, nil)
        guard contextStatus == CL_SUCCESS else {
            throw NormError.invalidArgument(
                argument: "buffer", reason: "not a valid OpenCL buffer (\(OpenCLError(code: contextStatus, call: "clGetMemObjectInfo")))")
        }
        guard context == runtime.context else {
            throw NormError.invalidArgument(argument: "buffer", reason: "belongs to another OpenCL context than the runtime's")
        }
        var size = 0
        try check(clGetMemObjectInfo(memory, cl_mem_info(CL_MEM_SIZE), MemoryLayout<Int>.size, &size, nil), "clGetMemObjectInfo(CL_MEM_SIZE)")
        guard byteOffset >= 0, byteOffset <= size, byteCount <= size - byteOffset else {
            throw NormError.invalidArgument(
                argument: "byteOffset",
                reason: "\(byteCount) bytes from offset \(byteOffset) go past the end of the \(size)-byte buffer")
        }
        if byteOffset % runtime.device.baseAddressAlignmentBytes != 0 {
            handle = try runtime.buffers.allocate(byteCount: byteCount, in: runtime.context)
            isStaged = true
            try check(clRetainMemObject(memory), "clRetainMemObject")
        } else if byteOffset == 0 {
            try check(clRetainMemObject(memory), "clRetainMemObject")
            handle = memory
            isStaged = false
        } else {
            var region = cl_buffer_region(origin: byteOffset, size: byteCount)
            var status: cl_int = CL_SUCCESS
            guard let subBuffer = clCreateSubBuffer(
                memory, 0, cl_buffer_create_type(CL_BUFFER_CREATE_TYPE_REGION), &region, &status), status == CL_SUCCESS
            else { throw OpenCLError(code: status, call: "clCreateSubBuffer(origin \(byteOffset), \(byteCount) bytes)") }
            handle = subBuffer
            isStaged = false
        }
        runtime.objects.created(.memory)
        self.byteCount = byteCount
        self.runtime = runtime
        self.borrowed = (memory, byteOffset)
    }

    deinit {
        guard let borrowed else { return runtime.buffers.recycle(handle, byteCount: byteCount) }
        if isStaged {
            runtime.buffers.recycle(handle, byteCount: byteCount)
            clReleaseMemObject(borrowed.memory)
        } else {
            clReleaseMemObject(handle)
        }
        runtime.objects.released(.memory)
    }

    /// A staged view: copies the caller's bytes into the stand-in buffer, after `events`.
    func stageIn(waitingFor events: [OpenCLEvent]) throws(OpenCLError) {
        guard let borrowed else { return }
        let (queue, handle, byteCount) = (runtime.queue, handle, byteCount)
        _ = try runtime.submit("clEnqueueCopyBuffer(stage in)", waitingFor: events) { count, list, event in
            clEnqueueCopyBuffer(queue, borrowed.memory, handle, borrowed.byteOffset, 0, byteCount, count, list, event)
        }
    }

    /// A staged view: copies the stand-in buffer back to the caller's bytes; returns the
    /// copy's event.
    func stageOut() throws(OpenCLError) -> KernelEvent {
        guard let borrowed else { preconditionFailure("stageOut of a buffer that is not a view") }
        let (queue, handle, byteCount) = (runtime.queue, handle, byteCount)
        let event = try runtime.submit("clEnqueueCopyBuffer(stage out)", returnsEvent: true) { count, list, event in
            clEnqueueCopyBuffer(queue, handle, borrowed.memory, 0, borrowed.byteOffset, byteCount, count, list, event)
        }
        guard let event else { throw OpenCLError(code: CL_INVALID_EVENT, call: "clEnqueueCopyBuffer(stage out)") }
        return KernelEvent(name: "stage_out", handle: event, runtime: runtime)
    }

    /// Copies `values` into the buffer, blocking until the copy is done.
    func upload<T: BitwiseCopyable>(_ values: [T]) throws(OpenCLError) {
        precondition(values.count * MemoryLayout<T>.stride == byteCount, "upload size mismatch")
        let (queue, handle, byteCount) = (runtime.queue, handle, byteCount)
        let result = values.withUnsafeBytes { bytes in
            Result { () throws(OpenCLError) in
                try runtime.submit("clEnqueueWriteBuffer") { count, list, event in
                    clEnqueueWriteBuffer(queue, handle, cl_bool(CL_TRUE), 0, byteCount, bytes.baseAddress, count, list, event)
                }
            }
        }
        _ = try result.get()
    }

    /// Sets every element to `pattern` on the device, without building a host array or
    /// waiting: `clEnqueueFillBuffer` in the runtime's command order, so the commands
    /// enqueued after it see the filled buffer. OpenCL copies the pattern at the call.
    ///
    /// - Parameter pattern: one element's bits, e.g. a `Float`'s, or a `Float16`'s for
    ///   half storage; the buffer's size must be a multiple of its size.
    func fill<Pattern: BitwiseCopyable>(with pattern: Pattern) throws(OpenCLError) {
        let size = MemoryLayout<Pattern>.size
        precondition(byteCount % size == 0, "fill pattern does not divide the buffer")
        let (queue, handle, byteCount) = (runtime.queue, handle, byteCount)
        let result = withUnsafeBytes(of: pattern) { bytes in
            Result { () throws(OpenCLError) in
                try runtime.submit("clEnqueueFillBuffer") { count, list, event in
                    clEnqueueFillBuffer(queue, handle, bytes.baseAddress, size, 0, byteCount, count, list, event)
                }
            }
        }
        _ = try result.get()
    }

    /// Copies the buffer to the host after every command queued before it has run.
    func download<T: BitwiseCopyable>(as type: T.Type = T.self) throws(OpenCLError) -> [T] {
        let count = byteCount / MemoryLayout<T>.stride
        // A staged view's values are the caller's bytes.
        let (memory, offset) = isStaged ? borrowed! : (handle, 0)
        let (queue, byteCount) = (runtime.queue, byteCount)
        var failure: OpenCLError?
        let values = Array<T>(unsafeUninitializedCapacity: count) { destination, initialized in
            do throws(OpenCLError) {
                _ = try runtime.submit("clEnqueueReadBuffer") { waits, list, event in
                    clEnqueueReadBuffer(queue, memory, cl_bool(CL_TRUE), offset, byteCount, destination.baseAddress, waits, list, event)
                }
                initialized = count
            } catch {
                failure = error
                initialized = 0
            }
        }
        if let failure { throw failure }
        runtime.settleAfterWaiting()
        return values
    }
}
