import COpenCL
import Synchronization  // Atomic (TSan sees atomics; locks are PosixMutex)

/// A runtime's device allocator: creates `cl_mem` buffers within a byte limit and keeps
/// freed ones for reuse, keyed by size (as PyTorch's caching allocator keeps freed blocks).
///
/// Why reuse: on CPU devices (PoCL) a fresh allocation is fresh virtual memory, and a
/// kernel's first writes to it page-fault; an op that writes a new output tensor each
/// call measured about half as fast as the same op writing into a used buffer. Training
/// loops allocate the same sizes every step, so reuse removes that cost.
///
/// Why it is safe: every command of a runtime goes to its one in-order queue. A buffer
/// is recycled when the last Swift reference goes, possibly while kernels using it are
/// still queued; whatever reuses it is enqueued later on the same queue, so it runs
/// after them.
///
/// Why a limit: PoCL 3.1 accepts any number of buffers (each is only reserved address
/// space) and, when one cannot be backed at its first use, aborts the whole process
/// (an assertion in `pocl_create_migration_commands`) instead of returning an error. So
/// the pool refuses, with the `CL_MEM_OBJECT_ALLOCATION_FAILURE` a driver would give, an
/// allocation that would make the runtime hold more than ``limitBytes`` (by default the
/// device's `CL_DEVICE_GLOBAL_MEM_SIZE`), after first releasing its idle buffers.
final class BufferPool: Sendable {
    /// `@unchecked`: an idle `cl_mem` moves between threads only through `state`'s
    /// mutex, and OpenCL memory objects are thread-safe.
    private struct Handle: @unchecked Sendable {
        let memory: cl_mem
    }

    private struct State {
        var idle: [Int: [Handle]] = [:]
        var idleBytes = 0
    }

    /// The most bytes kept idle; a recycled buffer beyond it is released instead.
    let capacityBytes: Int
    private let state = PosixMutex(State())
    /// Bytes of the buffers this pool created and has not released: in use or idle.
    private let heldBytes = Atomic<Int>(0)
    private let limit: Atomic<Int>
    private let objects: OpenCLObjectCounts

    init(capacityBytes: Int, limitBytes: Int = .max, objects: OpenCLObjectCounts = OpenCLObjectCounts()) {
        self.capacityBytes = capacityBytes
        self.limit = Atomic(limitBytes)
        self.objects = objects
    }

    deinit { releaseAll() }

    /// Bytes held idle now (for tests).
    var idleBytes: Int { state.withLock { $0.idleBytes } }

    /// Bytes of device memory held now, in use or idle.
    var allocatedBytes: Int { heldBytes.load(ordering: .relaxed) }

    /// The most bytes of device memory this pool lets its runtime hold.
    ///
    /// Tests lower it to make an allocation fail exactly as a full device would (the
    /// fault-injection hook); a lower limit does not release buffers already held.
    var limitBytes: Int {
        get { limit.load(ordering: .relaxed) }
        set { limit.store(newValue, ordering: .relaxed) }
    }

    /// An idle buffer of exactly `byteCount` bytes, else a new one in `context`.
    ///
    /// - Throws: ``OpenCLError`` with `CL_MEM_OBJECT_ALLOCATION_FAILURE` when the new
    ///   buffer would take the pool past ``limitBytes``, or the driver's error; idle
    ///   buffers are released and the allocation tried again before either is thrown.
    func allocate(byteCount: Int, in context: cl_context) throws(OpenCLError) -> cl_mem {
        if let idle = take(byteCount: byteCount) { return idle }
        do throws(OpenCLError) {
            return try create(byteCount: byteCount, in: context)
        } catch where idleBytes > 0 {
            releaseAll()
            return try create(byteCount: byteCount, in: context)
        }
    }

    private func create(byteCount: Int, in context: cl_context) throws(OpenCLError) -> cl_mem {
        let call = "clCreateBuffer(\(byteCount) bytes)"
        // Compared alone first: adding a size near Int.max to the held bytes would wrap
        // to a negative total that passes the limit.
        guard byteCount <= limitBytes else { throw OpenCLError(code: CL_MEM_OBJECT_ALLOCATION_FAILURE, call: call) }
        let held = heldBytes.wrappingAdd(byteCount, ordering: .relaxed).newValue
        guard held <= limitBytes else {
            heldBytes.wrappingSubtract(byteCount, ordering: .relaxed)
            throw OpenCLError(code: CL_MEM_OBJECT_ALLOCATION_FAILURE, call: call)
        }
        var status: cl_int = CL_SUCCESS
        guard let memory = clCreateBuffer(context, cl_mem_flags(CL_MEM_READ_WRITE), byteCount, nil, &status),
            status == CL_SUCCESS
        else {
            heldBytes.wrappingSubtract(byteCount, ordering: .relaxed)
            throw OpenCLError(code: status == CL_SUCCESS ? CL_MEM_OBJECT_ALLOCATION_FAILURE : status, call: call)
        }
        objects.created(.memory)
        return memory
    }

    /// An idle allocation of exactly `byteCount` bytes, if one is kept.
    func take(byteCount: Int) -> cl_mem? {
        state.withLock { state in
            guard let handle = state.idle[byteCount]?.popLast() else { return nil }
            state.idleBytes -= byteCount
            return handle.memory
        }
    }

    /// Keeps `memory` for reuse, or releases it when the pool is full.
    func recycle(_ memory: cl_mem, byteCount: Int) {
        let kept = state.withLock { state in
            guard state.idleBytes + byteCount <= capacityBytes else { return false }
            state.idle[byteCount, default: []].append(Handle(memory: memory))
            state.idleBytes += byteCount
            return true
        }
        if !kept { release(memory, byteCount: byteCount) }
    }

    /// Releases every idle allocation.
    func releaseAll() {
        let handles = state.withLock { state in
            defer { state = State() }
            return state.idle.flatMap { size, handles in handles.map { (memory: $0.memory, byteCount: size) } }
        }
        for (memory, byteCount) in handles { release(memory, byteCount: byteCount) }
    }

    private func release(_ memory: cl_mem, byteCount: Int) {
        clReleaseMemObject(memory)
        heldBytes.wrappingSubtract(byteCount, ordering: .relaxed)
        objects.released(.memory)
    }
}
