import CMPI

/// Why an MPI call of ``MPIStatisticsExchange`` or ``MPIEnvironment`` failed.
///
/// Synchronized BatchNorm rethrows these from the exchange unchanged, so a caller of
/// `syncBatchNorm(_:weight:bias:runningStatistics:momentum:eps:over:)` sees them beside
/// NormCL's own `NormError` and `SyncBatchNormError`.
public enum MPIExchangeError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The exchange did not complete within ``MPIStatisticsExchange/timeout``: another
    /// participant did not take part (it hangs, crashed, or is in another exchange).
    ///
    /// MPI cannot cancel a collective, so the abandoned one stays pending on the
    /// exchange's communicator, and every later exchange on it throws
    /// ``earlierExchangePending`` until the missing participants join it
    /// (``MPIStatisticsExchange/pendingExchangeCount()``). Participants for which the same
    /// exchange did complete have gone on to the next one, so after a timeout the
    /// participants are out of step: end the job (`MPI_Abort`), or make a new
    /// ``MPIStatisticsExchange`` on every participant before the next synchronized pass.
    case timedOut(seconds: Double)
    /// An MPI call returned `code` (not `MPI_SUCCESS`); `call` names it.
    case mpiFailed(code: Int, call: String)
    /// An earlier exchange on this communicator timed out or failed and never completed:
    /// a new collective on it would be matched with the wrong one. Make a new
    /// ``MPIStatisticsExchange`` (collectively, on every participant) to continue.
    case earlierExchangePending
    /// MPI is not initialized, or already finalized (see ``MPIEnvironment``).
    case notInitialized

    public var description: String {
        switch self {
        case .timedOut(let seconds):
            "MPI statistics exchange: no completion within \(seconds) s (a participant did not take part)"
        case .mpiFailed(let code, let call):
            "MPI statistics exchange: \(call) failed with code \(code)\(Self.errorString(code).map { " (\($0))" } ?? "")"
        case .earlierExchangePending:
            "MPI statistics exchange: an earlier exchange on this communicator never completed; make a new exchange"
        case .notInitialized:
            "MPI statistics exchange: MPI is not initialized (or already finalized)"
        }
    }

    /// MPI's text for an error code (MPI_Error_string), when it has one.
    private static func errorString(_ code: Int) -> String? {
        guard let code = Int32(exactly: code) else { return nil }
        var buffer = [CChar](repeating: 0, count: Int(normcl_mpi_max_error_string()) + 1)
        var length: Int32 = 0
        guard MPI_Error_string(code, &buffer, &length) == normcl_mpi_success(), length > 0 else { return nil }
        return String(decoding: buffer.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// Throws ``MPIExchangeError/mpiFailed(code:call:)`` unless `code` is `MPI_SUCCESS`.
@inline(__always)
func checkMPI(_ code: Int32, _ call: @autoclosure () -> String) throws(MPIExchangeError) {
    guard code == normcl_mpi_success() else { throw .mpiFailed(code: Int(code), call: call()) }
}
