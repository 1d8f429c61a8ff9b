#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import COpenCL

/// Makes `exit` safe while OpenCL work that NormCL submitted is still in flight.
///
/// Why: ops enqueue their kernels and return without waiting. PoCL compiles a kernel's
/// work-group function in its worker threads at the kernel's first launch (0.1–0.5 s),
/// and `clBuildProgram` compiles on the caller's thread. `exit` (also returning from
/// `main`) runs the exit handlers and C++ static destructors of every loaded library,
/// LLVM's and Clang's among them, while those threads keep compiling; a compile that
/// touches the destroyed state crashes the process — a SIGSEGV in libLLVM (e.g. in
/// `llvm::vfs::FileSystem::exists`, from the Clang driver that links the work-group
/// function), or a SIGABRT after `Failed to create kernel compiler pass inline-kernels`.
///
/// What NormCL does:
/// - An `atexit` handler, ``finishInFlightWork()``, closes the ``gate`` — it waits for
///   the program builds and enqueues running on other threads, and parks every thread
///   that starts one afterwards (the process is ending; `_exit` reclaims them) — and
///   then waits, with `clFinish`, for the queue of every live runtime NormCL created.
/// - The handler must run before the destructors it protects the compiler from. Exit
///   handlers run in reverse order of registration, and LLVM and Clang register some
///   destructors lazily, when their first compile creates the state (the real file
///   system, the driver mode, SelectionDAG's value-type lists, …): so NormCL registers
///   the handler again after each state change that can create such state — creating a
///   runtime (the driver is loaded by then), each program build, and the first launch
///   of each kernel of a program, which waits for that kernel to finish (the launch
///   that makes PoCL compile the work-group function) before registering. Only the
///   first of these calls in a process does real work at exit; the others find the
///   gate closed and idle queues.
///
/// It releases nothing: the runtimes stay reachable from Swift (globals, other threads,
/// exit handlers that run later) and would dangle; the operating system reclaims them.
/// Work a later exit handler submits on the exiting thread itself passes the closed gate
/// (parking that thread would hang the exit) and is not waited for. Not covered: a
/// process's very first program build running on another thread when `exit` starts
/// (the handler waits for it, but the state it created meanwhile may already be gone).
enum ProcessExit {
    /// Every OpenCL call that submits work or compiles passes through here
    /// (``SubmissionGate/pass(_:)``): builds, kernel launches, fills and transfers.
    static let gate = SubmissionGate()

    /// The queue of each live runtime, by runtime identity.
    private static let liveQueues = PosixMutex<[ObjectIdentifier: QueueHandle]>([:])

    /// `@unchecked`: a command queue is a thread-safe OpenCL object; the handle is only
    /// passed to `clFinish`, under ``liveQueues``'s mutex, while its runtime is alive
    /// (the runtime removes it before releasing it).
    private struct QueueHandle: @unchecked Sendable {
        let queue: cl_command_queue
    }

    /// Registers ``finishInFlightWork()`` with `atexit` once more, so that it runs before
    /// every exit-time destructor registered so far (see the type's notes).
    static func registerHandler() {
        _ = atexit { ProcessExit.finishInFlightWork() }
    }

    /// Registers `runtime`'s queue so that exit waits for it, and the exit handler. Call
    /// once the queue exists.
    static func track(_ runtime: OpenCLRuntime) {
        liveQueues.withLock { $0[ObjectIdentifier(runtime)] = QueueHandle(queue: runtime.queue) }
        registerHandler()
    }

    /// Removes `runtime`'s queue; call before releasing it.
    static func untrack(_ runtime: OpenCLRuntime) {
        _ = liveQueues.withLock { $0.removeValue(forKey: ObjectIdentifier(runtime)) }
    }

    /// Call after a program build: the compiler may have registered exit-time destructors.
    static func programBuilt() {
        registerHandler()
    }

    /// Call after the first launch of a kernel of a program: waits for it (PoCL compiles
    /// its work-group function meanwhile, in a worker thread), then registers the handler
    /// after whatever that compile registered. An execution error is left for the
    /// caller's next wait or read to report.
    static func firstLaunchEnqueued(_ event: cl_event) {
        var event: cl_event? = event
        _ = clWaitForEvents(1, &event)
        registerHandler()
    }

    /// First launches whose wait ``deferFirstLaunch(_:)`` left for later, retained.
    private static let deferredFirstLaunches = PosixMutex<[EventHandle]>([])

    /// `@unchecked`: an OpenCL event is thread-safe; it is only queried and released.
    private struct EventHandle: @unchecked Sendable {
        let event: cl_event
    }

    /// Call instead of ``firstLaunchEnqueued(_:)`` when the launch may wait for a caller's
    /// event that is still pending (a user event set after the op returns): waiting for
    /// it there could wait forever. The handler is registered once the kernel has run,
    /// by the next call that waits anyway (a read, `finish`, an event's wait) — exit
    /// before that is not covered.
    static func deferFirstLaunch(_ event: cl_event) {
        clRetainEvent(event)
        deferredFirstLaunches.withLock { $0.append(EventHandle(event: event)) }
    }

    /// Registers the handler after the deferred first launches that have completed since
    /// (their compiles done), and forgets them. Never waits.
    static func settleDeferredFirstLaunches() {
        let completed = deferredFirstLaunches.withLock { handles -> [EventHandle] in
            guard !handles.isEmpty else { return [] }
            let completed = handles.filter { !CommandOrder.isPending($0.event) }
            handles.removeAll { handle in completed.contains { $0.event == handle.event } }
            return completed
        }
        guard !completed.isEmpty else { return }
        for handle in completed { clReleaseEvent(handle.event) }
        registerHandler()
    }

    /// Whether exit waits for `runtime`'s queue (for tests).
    static func isTracked(_ runtime: OpenCLRuntime) -> Bool {
        liveQueues.withLock { $0[ObjectIdentifier(runtime)] != nil }
    }

    /// The exit handler: closes the gate, then finishes every live runtime's queue.
    /// Registered several times (see the type's notes); later calls find the gate closed
    /// and only finish the queues again.
    static func finishInFlightWork() {
        gate.close()
        liveQueues.withLock { queues in
            for handle in queues.values { clFinish(handle.queue) }
        }
    }
}

/// A gate that OpenCL submissions pass through, and that the exit handler closes.
///
/// ``pass(_:)`` counts a call in while it runs; ``close()`` waits until none is in
/// progress and from then on parks every other thread at the gate for good. Cheaper than
/// the calls it guards: a mutex taken twice, against 1.5–60 µs per OpenCL enqueue.
///
/// Bodies must not pass the gate again (a nested pass after `close()` would park while
/// counted in, and `close()` would wait for it forever); each body is one OpenCL call.
///
/// Why `@unchecked Sendable` is honest: `active` and `closer` are read and written only
/// with the mutex held, and the mutex and condition are created once and never freed
/// (the gate is a process-wide global).
final class SubmissionGate: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>
    /// Calls inside ``pass(_:)`` now.
    private var active = 0
    /// The thread that closed the gate (the exiting one); nil while open.
    private var closer: pthread_t?

    init() {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        condition = .allocate(capacity: 1)
        condition.initialize(to: pthread_cond_t())
        precondition(pthread_mutex_init(mutex, nil) == 0 && pthread_cond_init(condition, nil) == 0, "gate set-up failed")
    }

    /// Whether ``close()`` has been called.
    var isClosed: Bool {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return closer != nil
    }

    /// Runs `body` (one OpenCL call) while the gate is open; after ``close()`` it never
    /// returns on any thread but the one that closed it.
    func pass<Result, Failure: Error>(_ body: () throws(Failure) -> Result) throws(Failure) -> Result {
        let counted = enter()
        defer { if counted { leave() } }
        return try body()
    }

    /// Waits for the calls in progress, and closes the gate to every other thread for
    /// the rest of the process. A second call returns at once.
    func close() {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        guard closer == nil else { return }
        closer = pthread_self()
        while active > 0 { pthread_cond_wait(condition, mutex) }
    }

    /// Counts the caller in; false for the closing thread itself once closed (let
    /// through uncounted). Any other thread arriving after `close()` waits here until
    /// the process ends.
    private func enter() -> Bool {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        if let closer {
            if pthread_equal(closer, pthread_self()) != 0 { return false }
            parkForever()
        }
        active += 1
        return true
    }

    /// Waits on the condition (mutex held) until the process ends.
    private func parkForever() -> Never {
        while true { pthread_cond_wait(condition, mutex) }
    }

    private func leave() {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        active -= 1
        if closer != nil && active == 0 { pthread_cond_broadcast(condition) }
    }
}
