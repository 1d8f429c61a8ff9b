#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A value guarded by a `pthread_mutex_t`: the runtime's caches and pools use it in
/// place of `Synchronization.Mutex`.
///
/// Why not `Mutex`: on Linux (Swift 6.3) it locks with atomics inside the uninstrumented
/// standard library, so Thread Sanitizer sees no ordering between two `withLock` bodies
/// and reports every access to the guarded state as a race (a four-thread toy program
/// gets three reports). TSan intercepts `pthread_mutex_lock`, so with this lock its
/// reports in NormCL mean real races. Uncontended, both cost an atomic operation.
///
/// Guard a value with storage: with a zero-sized one (`Void`) TSan attributes the
/// `inout` access to the object's header, and reports it against the reads of the
/// header that any access to the object makes.
///
/// Why `@unchecked Sendable` is honest: `value` is only reached through ``withLock(_:)``,
/// under the mutex, and it is itself `Sendable`.
final class PosixMutex<Value: Sendable>: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var value: Value

    init(_ value: Value) {
        self.value = value
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        let status = pthread_mutex_init(mutex, nil)
        precondition(status == 0, "pthread_mutex_init failed: \(status)")
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deinitialize(count: 1)
        mutex.deallocate()
    }

    /// Runs `body` with exclusive access to the value.
    func withLock<Result, Failure: Error>(_ body: (inout Value) throws(Failure) -> Result) throws(Failure) -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
