import NormCL
import NormCLMPI

/// How a call ended, classified by the error types the check expects.
enum Outcome: CustomStringConvertible {
    case succeeded
    case normError(NormError)
    case sync(SyncBatchNormError)
    case exchange(MPIExchangeError)
    case other(any Error)

    init(_ body: () throws -> Void) {
        do {
            try body()
            self = .succeeded
        } catch let error as NormError {
            self = .normError(error)
        } catch let error as SyncBatchNormError {
            self = .sync(error)
        } catch let error as MPIExchangeError {
            self = .exchange(error)
        } catch {
            self = .other(error)
        }
    }

    var isNormError: Bool { if case .normError = self { true } else { false } }

    var isMismatch: Bool { if case .sync(.mismatchedParticipants) = self { true } else { false } }

    func isParticipantsFailed(_ ranks: [Int]) -> Bool {
        if case .sync(.participantsFailed(let failed)) = self { failed == ranks } else { false }
    }

    var description: String {
        switch self {
        case .succeeded: "succeeded"
        case .normError(let error): "NormError: \(error)"
        case .sync(let error): "SyncBatchNormError.\(error.caseName): \(error)"
        case .exchange(let error): "MPIExchangeError: \(error)"
        case .other(let error): "\(type(of: error)): \(error)"
        }
    }
}

extension SyncBatchNormError {
    var caseName: String {
        switch self {
        case .participantsFailed: "participantsFailed"
        case .mismatchedParticipants: "mismatchedParticipants"
        case .malformedExchange: "malformedExchange"
        }
    }
}

/// A failure of the check itself (not of NormCL's API contract).
struct CheckFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
