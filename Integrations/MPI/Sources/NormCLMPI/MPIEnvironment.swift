import CMPI

/// MPI's thread support levels, in increasing order (`MPI_Init_thread`).
public enum MPIThreadLevel: Int, Comparable, Sendable, CustomStringConvertible {
    /// One thread only.
    case single
    /// Several threads; only the one that initialized MPI calls it.
    case funneled
    /// Several threads call MPI, never two at once.
    case serialized
    /// Several threads call MPI at once.
    case multiple

    /// MPI's value for this level.
    public var mpiValue: Int32 {
        switch self {
        case .single: normcl_mpi_thread_single()
        case .funneled: normcl_mpi_thread_funneled()
        case .serialized: normcl_mpi_thread_serialized()
        case .multiple: normcl_mpi_thread_multiple()
        }
    }

    /// The level MPI reports as `value`, or nil for a value it does not define.
    public init?(mpiValue value: Int32) {
        guard let level = Self.allLevels.first(where: { $0.mpiValue == value }) else { return nil }
        self = level
    }

    private static let allLevels: [MPIThreadLevel] = [.single, .funneled, .serialized, .multiple]

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }

    public var description: String {
        switch self {
        case .single: "MPI_THREAD_SINGLE"
        case .funneled: "MPI_THREAD_FUNNELED"
        case .serialized: "MPI_THREAD_SERIALIZED"
        case .multiple: "MPI_THREAD_MULTIPLE"
        }
    }
}

/// Starting and stopping MPI in a process that uses ``MPIStatisticsExchange``.
///
/// A program run under `mpirun` calls ``initialize(requiring:)`` once before its first
/// exchange and ``finalize()`` once after its last; a program that initializes MPI
/// itself (or through another library) need not call either.
///
/// ```swift
/// try MPIEnvironment.initialize()
/// defer { try? MPIEnvironment.finalize() }
/// let exchange = try MPIStatisticsExchange()
/// let out = try syncBatchNorm(part, weight: γ, bias: β, runningStatistics: &running, over: exchange)
/// ```
public enum MPIEnvironment {
    /// Whether `MPI_Init` or `MPI_Init_thread` has been called in this process.
    public static var isInitialized: Bool {
        var flag: Int32 = 0
        return MPI_Initialized(&flag) == normcl_mpi_success() && flag != 0
    }

    /// Whether `MPI_Finalize` has been called in this process.
    public static var isFinalized: Bool {
        var flag: Int32 = 0
        return MPI_Finalized(&flag) == normcl_mpi_success() && flag != 0
    }

    /// Whether MPI can be called now: initialized and not finalized.
    public static var isActive: Bool { isInitialized && !isFinalized }

    /// Initializes MPI with `MPI_Init_thread`, unless it already is.
    ///
    /// NormCL calls MPI only from the thread that calls synchronized BatchNorm, so
    /// ``MPIThreadLevel/funneled`` suffices when that is the thread that initialized MPI
    /// (the main thread, typically); ask for ``MPIThreadLevel/serialized`` to call it
    /// from other threads, one at a time.
    ///
    /// - Parameter level: the thread support to ask for.
    /// - Returns: the thread support MPI provides, which may be lower than `level`
    ///   (MPI's choice; the caller decides whether that is enough). When MPI was
    ///   already initialized, the level it was initialized with.
    /// - Throws: ``MPIExchangeError/mpiFailed(code:call:)`` when MPI fails to start, or
    ///   ``MPIExchangeError/notInitialized`` when it was already finalized (MPI cannot
    ///   start twice in one process).
    @discardableResult
    public static func initialize(requiring level: MPIThreadLevel = .funneled) throws(MPIExchangeError) -> MPIThreadLevel {
        guard !isFinalized else { throw .notInitialized }
        var provided: Int32 = 0
        if isInitialized {
            try checkMPI(MPI_Query_thread(&provided), "MPI_Query_thread")
        } else {
            try checkMPI(MPI_Init_thread(nil, nil, level.mpiValue, &provided), "MPI_Init_thread")
        }
        return MPIThreadLevel(mpiValue: provided) ?? .single
    }

    /// Finalizes MPI (`MPI_Finalize`), when it is initialized and not yet finalized;
    /// otherwise does nothing. Collective: every process calls it. An exchange that
    /// timed out leaves a collective pending, which MPI may wait for here.
    ///
    /// - Throws: ``MPIExchangeError/mpiFailed(code:call:)`` when `MPI_Finalize` fails.
    public static func finalize() throws(MPIExchangeError) {
        guard isActive else { return }
        try checkMPI(MPI_Finalize(), "MPI_Finalize")
    }

    /// This process's rank in `MPI_COMM_WORLD`.
    ///
    /// - Throws: ``MPIExchangeError/notInitialized`` before ``initialize(requiring:)``.
    public static func worldRank() throws(MPIExchangeError) -> Int {
        guard isActive else { throw .notInitialized }
        var rank: Int32 = 0
        try checkMPI(MPI_Comm_rank(normcl_mpi_comm_world(), &rank), "MPI_Comm_rank")
        return Int(rank)
    }

    /// The number of processes in `MPI_COMM_WORLD`.
    ///
    /// - Throws: ``MPIExchangeError/notInitialized`` before ``initialize(requiring:)``.
    public static func worldSize() throws(MPIExchangeError) -> Int {
        guard isActive else { throw .notInitialized }
        var size: Int32 = 0
        try checkMPI(MPI_Comm_size(normcl_mpi_comm_world(), &size), "MPI_Comm_size")
        return Int(size)
    }
}
