import COpenCL

/// Device allocations kept for reuse once their ``DeviceBuffer`` is gone, keyed by size
/// (as PyTorch's caching allocator keeps freed blocks).
///
/// Why: on CPU devices (PoCL) a fresh allocation is fresh virtual memory, and a
/// kernel's first writes to it page-fault; an op that writes a new output tensor each
/// call measured about half as fast as the same op writing into a used buffer. Training
/// loops allocate the same sizes every step, so reuse removes that cost.
///
/// Why it is safe: every command of a runtime goes to its one in-order queue. A buffer
/// is recycled when the last Swift reference goes, possibly while kernels using it are
/// still queued; whatever reuses it is enqueued later on the same queue, so it runs
/// after them.
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

    init(capacityBytes: Int) {
        self.capacityBytes = capacityBytes
    }

    deinit { releaseAll() }

    /// Bytes held idle now (for tests).
    var idleBytes: Int { state.withLock { $0.idleBytes } }

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
        if !kept { clReleaseMemObject(memory) }
    }

    /// Releases every idle allocation.
    func releaseAll() {
        let handles = state.withLock { state in
            defer { state = State() }
            return state.idle.values.joined().map(\.memory)
        }
        for memory in handles { clReleaseMemObject(memory) }
    }
}
