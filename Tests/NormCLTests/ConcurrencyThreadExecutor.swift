#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A task executor that runs every job on a new OS thread of its own.
///
/// Why: the default pool has one thread per core (two here), and a task runs
/// undisturbed from one suspension point to the next, so two launches rarely meet inside
/// the few microseconds that setting a kernel's arguments takes. Eight tasks on this
/// executor are eight preemptively scheduled threads, which the kernel checkout of
/// `ProgramCache` must keep apart (a shared `cl_kernel` failed the stress only with it).
/// Task-locals are kept, so `#expect` still reports to the running test.
final class ThreadPerJobExecutor: TaskExecutor {
    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedTaskExecutor()
        startDetachedThread { job.runSynchronously(on: executor) }
    }
}

private final class ThreadBody {
    let run: @Sendable () -> Void
    init(_ run: @escaping @Sendable () -> Void) { self.run = run }
}

/// Runs `body` on a new detached thread.
private func startDetachedThread(_ body: @escaping @Sendable () -> Void) {
    let context = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
    #if canImport(Darwin)
    var thread: pthread_t?
    #else
    var thread = pthread_t()
    #endif
    let status = pthread_create(
        &thread, nil,
        { raw in
            guard let raw else { return nil }
            Unmanaged<ThreadBody>.fromOpaque(raw).takeRetainedValue().run()
            return nil
        }, context)
    precondition(status == 0, "pthread_create failed: \(status)")
    #if canImport(Darwin)
    if let thread { pthread_detach(thread) }
    #else
    pthread_detach(thread)
    #endif
}
