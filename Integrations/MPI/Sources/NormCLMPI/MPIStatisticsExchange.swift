import CMPI
import NormCL

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A ``StatisticsExchange`` over an MPI communicator: synchronized BatchNorm across
/// processes, one part of the batch per rank.
///
/// Each ``allGather(_:)`` is one `MPI_Iallgather` on the exchange's own duplicate of the
/// communicator (so it never matches a collective the program runs on the original),
/// polled with `MPI_Test` until it completes or ``timeout`` passes: a participant that
/// never takes part makes every other one throw ``MPIExchangeError/timedOut(seconds:)``
/// instead of hanging. Errors from MPI are returned, not fatal (`MPI_ERRORS_RETURN` on
/// the duplicate), and thrown as ``MPIExchangeError/mpiFailed(code:call:)``.
///
/// Every message carries its own length ahead of the values, so a participant that
/// sends fewer values than this one (out of step: another pass, other channels) shows
/// up as a shorter list in the result, which synchronized BatchNorm reports as a
/// `SyncBatchNormError`, rather than as stale values. (MPI requires equal counts in a
/// collective; this is a safeguard, not a licence: a participant that sends more than
/// this one receives gets MPI's truncation error.)
///
/// ```swift
/// try MPIEnvironment.initialize()
/// let exchange = try MPIStatisticsExchange()          // MPI_COMM_WORLD, 60 s
/// var running = try RunningStatistics(channels: 64, on: backend)
/// let forward = try syncBatchNorm(part, weight: γ, bias: β, runningStatistics: &running, over: exchange)
/// ```
///
/// Not thread-safe: one thread at a time calls it (MPI's thread level permitting; see
/// ``MPIEnvironment/initialize(requiring:)``).
public final class MPIStatisticsExchange: StatisticsExchange {
    /// This process's rank in the communicator.
    public let rank: Int
    /// The number of processes in the communicator.
    public let participants: Int
    /// How long one ``allGather(_:)`` waits for every participant before it throws
    /// ``MPIExchangeError/timedOut(seconds:)``. Longer than the slowest participant's
    /// step between two exchanges (its local forward or backward), with room to spare.
    public var timeout: Duration
    /// The exchange's own communicator: a duplicate of the one it was made with.
    public let communicator: MPI_Comm

    /// Gathers that did not complete (timed out, or failed without being freed): their
    /// buffers must outlive the pending collective, so they are kept, never freed.
    private var abandoned: [Gather] = []

    /// An exchange among the processes of `communicator`.
    ///
    /// Collective: every process of `communicator` makes its exchange at the same point
    /// (`MPI_Comm_dup`).
    ///
    /// - Parameters:
    ///   - communicator: the participants, `MPI_COMM_WORLD` by default.
    ///   - timeout: see ``timeout``; 60 seconds by default.
    /// - Throws: ``MPIExchangeError/notInitialized`` before
    ///   ``MPIEnvironment/initialize(requiring:)``, ``MPIExchangeError/mpiFailed(code:call:)``
    ///   when MPI cannot duplicate the communicator.
    public init(communicator: MPI_Comm = normcl_mpi_comm_world(), timeout: Duration = .seconds(60)) throws(MPIExchangeError) {
        guard MPIEnvironment.isActive else { throw .notInitialized }
        var duplicate = normcl_mpi_comm_null()
        try checkMPI(MPI_Comm_dup(communicator, &duplicate), "MPI_Comm_dup")
        guard let duplicate else { throw .mpiFailed(code: -1, call: "MPI_Comm_dup") }
        var rank: Int32 = 0
        var size: Int32 = 0
        do {
            try checkMPI(MPI_Comm_set_errhandler(duplicate, normcl_mpi_errors_return()), "MPI_Comm_set_errhandler")
            try checkMPI(MPI_Comm_rank(duplicate, &rank), "MPI_Comm_rank")
            try checkMPI(MPI_Comm_size(duplicate, &size), "MPI_Comm_size")
        } catch {
            var freed: MPI_Comm? = duplicate
            _ = MPI_Comm_free(&freed)
            throw error
        }
        self.communicator = duplicate
        self.rank = Int(rank)
        self.participants = Int(size)
        self.timeout = timeout
    }

    deinit {
        // After MPI_Finalize no MPI call is allowed; a communicator with a pending
        // collective is not freed (its buffers are leaked with it).
        guard MPIEnvironment.isActive, pendingCount() == 0 else { return }
        var freed: MPI_Comm? = communicator
        _ = MPI_Comm_free(&freed)
    }

    /// Every participant's `values`, in rank order: one `MPI_Iallgather` of
    /// `values.count + 1` doubles per participant (the count, then the values), polled
    /// until complete or ``timeout``.
    ///
    /// - Throws: ``MPIExchangeError/timedOut(seconds:)``,
    ///   ``MPIExchangeError/mpiFailed(code:call:)``,
    ///   ``MPIExchangeError/earlierExchangePending`` after an exchange that never
    ///   completed, ``MPIExchangeError/notInitialized`` when MPI is not running.
    public func allGather(_ values: [Double]) throws -> [[Double]] {
        guard MPIEnvironment.isActive else { throw MPIExchangeError.notInitialized }
        guard pendingCount() == 0 else { throw MPIExchangeError.earlierExchangePending }
        let slot = values.count + 1
        guard let count = Int32(exactly: slot), Int32(exactly: slot * participants) != nil else {
            throw MPIExchangeError.mpiFailed(code: -1, call: "MPI_Iallgather (\(values.count) values: too many for an int count)")
        }
        let gather = Gather(slot: slot, participants: participants)
        gather.send[0] = Double(values.count)
        for (i, value) in values.enumerated() { gather.send[i + 1] = value }

        let double = normcl_mpi_double()
        try checkMPI(
            MPI_Iallgather(
                gather.send.baseAddress, count, double, gather.receive.baseAddress, count, double, communicator,
                &gather.request),
            "MPI_Iallgather")
        try Self.withErrorsReturned { () throws(MPIExchangeError) in try wait(for: gather) }
        return (0..<participants).map { rank in
            let start = rank * slot
            let sent = gather.receive[start]
            // A participant that sent another count (out of step) gets its own length
            // here; synchronized BatchNorm reports the difference.
            guard sent >= 0, sent < Double(slot), sent == sent.rounded() else { return [] }
            return Array(gather.receive[(start + 1)..<(start + 1 + Int(sent))])
        }
    }

    /// Runs `body` with `MPI_ERRORS_RETURN` on `MPI_COMM_WORLD` and `MPI_COMM_SELF`, their
    /// own error handlers restored after.
    ///
    /// An error in a non-blocking collective is raised by Open MPI 4.1 on
    /// `MPI_COMM_WORLD`, not on the request's communicator (its requests carry none; Open
    /// MPI 5 raises it on `MPI_COMM_SELF`, open-mpi/ompi#10460): with the world's default
    /// `MPI_ERRORS_ARE_FATAL`, a participant that sent more values than this one receives
    /// (MPI_ERR_TRUNCATE) would abort the job from `MPI_Test` instead of throwing.
    /// NormCL calls MPI from one thread at a time (MPI_THREAD_FUNNELED or above), so no
    /// other call runs under the changed handlers.
    private static func withErrorsReturned<Failure: Error>(_ body: () throws(Failure) -> Void) throws(Failure) {
        let communicators = [normcl_mpi_comm_world(), normcl_mpi_comm_self()]
        var saved: [MPI_Errhandler?] = []
        for communicator in communicators {
            var handler: MPI_Errhandler? = nil
            guard MPI_Comm_get_errhandler(communicator, &handler) == normcl_mpi_success() else { break }
            saved.append(handler)
            _ = MPI_Comm_set_errhandler(communicator, normcl_mpi_errors_return())
        }
        defer {
            for (communicator, handler) in zip(communicators, saved) {
                var handler = handler
                _ = MPI_Comm_set_errhandler(communicator, handler)
                _ = MPI_Errhandler_free(&handler)
            }
        }
        try body()
    }

    /// Polls `gather` with `MPI_Test` until it completes (busy for the first
    /// millisecond, then yielding the processor, then sleeping in steps of up to a
    /// millisecond), or throws at ``timeout``.
    private func wait(for gather: Gather) throws(MPIExchangeError) {
        let seconds = Self.seconds(timeout)
        let start = MPI_Wtime()
        var pause = 10_000  // nanoseconds, doubled up to 1 ms
        while true {
            var done: Int32 = 0
            let code = MPI_Test(&gather.request, &done, normcl_mpi_status_ignore())
            if code != normcl_mpi_success() {
                if gather.request != normcl_mpi_request_null() { abandon(gather) }
                throw .mpiFailed(code: Int(code), call: "MPI_Test (MPI_Iallgather)")
            }
            if done != 0 { return }
            let elapsed = MPI_Wtime() - start
            if elapsed > seconds {
                abandon(gather)
                throw .timedOut(seconds: seconds)
            }
            if elapsed < 1e-3 { continue }
            if elapsed < 20e-3 {
                sched_yield()
                continue
            }
            var interval = timespec(tv_sec: 0, tv_nsec: pause)
            nanosleep(&interval, nil)
            pause = min(pause * 2, 1_000_000)
        }
    }

    /// How many exchanges that timed out or failed are still pending on the communicator
    /// (each tested once with `MPI_Test`, so one that the late participants have joined
    /// since completes here). While any is, ``allGather(_:)`` throws
    /// ``MPIExchangeError/earlierExchangePending``; at zero the exchange is in step again.
    public func pendingExchangeCount() -> Int { pendingCount() }

    /// How many abandoned gathers are still pending; those that completed since are
    /// dropped, and their buffers freed.
    private func pendingCount() -> Int {
        if MPIEnvironment.isActive, !abandoned.isEmpty {
            Self.withErrorsReturned {
                abandoned.removeAll { gather in
                    var done: Int32 = 0
                    if gather.request != normcl_mpi_request_null() {
                        // An error completes the request too (MPI frees it, sets it to null).
                        _ = MPI_Test(&gather.request, &done, normcl_mpi_status_ignore())
                    }
                    guard done != 0 || gather.request == normcl_mpi_request_null() else { return false }
                    gather.leaksBuffers = false
                    return true
                }
            }
        }
        return abandoned.count
    }

    /// Keeps a gather whose collective is still pending: MPI may still read and write
    /// its buffers, so they are never freed while it is.
    private func abandon(_ gather: Gather) {
        gather.leaksBuffers = true
        abandoned.append(gather)
    }

    private static func seconds(_ duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        return Double(seconds) + Double(attoseconds) * 1e-18
    }
}

/// One all-gather's buffers and request.
private final class Gather {
    let send: UnsafeMutableBufferPointer<Double>
    let receive: UnsafeMutableBufferPointer<Double>
    var request: MPI_Request? = normcl_mpi_request_null()
    /// Set while the request is abandoned and pending: MPI may still use the buffers.
    var leaksBuffers = false

    init(slot: Int, participants: Int) {
        send = .allocate(capacity: slot)
        receive = .allocate(capacity: slot * participants)
        receive.initialize(repeating: 0)
        send.initialize(repeating: 0)
    }

    deinit {
        guard !leaksBuffers else { return }
        send.deallocate()
        receive.deallocate()
    }
}
