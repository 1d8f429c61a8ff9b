#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The C API's status codes (`normcl_status` in include/normcl.h) and the one place that
/// turns a Swift error into a code and the calling thread's last-error message.
enum CAPIStatus {
    static let success: Int32 = 0
    static let invalidArgument: Int32 = -1
    static let invalidShape: Int32 = -2
    static let shapeMismatch: Int32 = -3
    static let unsupported: Int32 = -4
    static let openCLError: Int32 = -5
    static let buildError: Int32 = -6
    static let outOfMemory: Int32 = -7
    static let internalError: Int32 = -8

    /// The header's `NORMCL_API_VERSION`.
    static let apiVersion: Int32 = 2

    /// Runs `body`, catching every error: the status code, with the message recorded for
    /// the calling thread on failure. Nothing is thrown across the C boundary.
    static func catching(_ body: () throws -> Void) -> Int32 {
        do {
            try body()
            return success
        } catch {
            let (status, message) = describe(error)
            LastError.set(message)
            return status
        }
    }

    /// The status code and message of an error thrown by NormCL.
    static func describe(_ error: any Error) -> (status: Int32, message: String) {
        switch error {
        case let error as CAPIArgumentError:
            let (status, message) = describe(error.underlying)
            return (status, "\(error.argument): \(message)")
        case let error as NormError:
            return (code(of: error), cNames(error.description))
        case let error as OpenCLError:
            return (error.isOutOfResources ? outOfMemory : openCLError, error.description)
        case let error as KernelBuildError:
            return (buildError, error.description)
        default:
            return (internalError, String(describing: error))
        }
    }

    /// The Swift API's argument names, quoted in NormError's messages, and the C API's
    /// parameters they stand for (the first match of a name wins).
    private static let cArgumentNames: [(swift: String, c: String)] = [
        ("'destinations.output'", "'y'"), ("'destinations.gradInput'", "'dx'"),
        ("'destinations.gradWeight'", "'dweight'"), ("'destinations.gradBias'", "'dbias'"), ("'destinations.gradAddend'", "'dz'"),
        ("'destinations.gradInputBias'", "'dinput_bias'"),
        ("'destinations.residualSum'", "'residual_sum'"), ("'destinations.", "'"),
        ("'input'", "'x'"), ("'gradOutput'", "'dy'"), ("'saveMean'", "'save_mean'"), ("'saveInvstd'", "'save_invstd'"),
        ("'saveInvRms'", "'save_invrms'"), ("'runningMean'", "'running_mean'"), ("'runningVar'", "'running_var'"),
        ("'runningStatistics'", "'running_mean'"), ("'renormR'", "'renorm_r'"), ("'renormD'", "'renorm_d'"),
        ("'byteOffset'", "'byte_offset'"), ("'numGroups'", "'num_groups'"), ("'meanLogits'", "'mean_logits'"),
        ("'varianceLogits'", "'var_logits'"), ("forward.saveMean", "statistics.save_mean"),
        ("forward.saveInvstd", "statistics.save_invstd"), ("forward.instanceMean", "statistics.instance_mean"),
        ("forward.instanceVariance", "statistics.instance_var"), ("forward.layerMean", "statistics.layer_mean"),
        ("forward.layerVariance", "statistics.layer_var"), ("forward.batchMean", "statistics.batch_mean"),
        ("forward.batchVariance", "statistics.batch_var"),
        ("'returnsResidualSum'", "'residual_sum'"), ("'gradResidualSum'", "'grad_residual_sum'"),
        ("'weightOffset'", "'epilogue.weight_offset'"), ("'inputBias'", "'input_bias'"),
    ]

    /// `message` with the Swift argument names it quotes replaced by the C parameters'.
    static func cNames(_ message: String) -> String {
        cArgumentNames.reduce(message) { message, name in message.replacing(name.swift, with: name.c) }
    }

    private static func code(of error: NormError) -> Int32 {
        switch error {
        case .invalidArgument, .backendMismatch: invalidArgument
        case .invalidShape, .emptyTensor, .tooFewValuesPerChannel: invalidShape
        case .shapeMismatch, .forwardMismatch: shapeMismatch
        case .unsupported: unsupported
        }
    }
}

/// An error about one C argument (a tensor descriptor): its message names the argument,
/// its status is the underlying error's.
struct CAPIArgumentError: Error {
    let argument: String
    let underlying: any Error
}

/// The last error message of each thread, in a pthread key: a `malloc`ed C string that
/// stays valid until the thread's next failing call (or its exit, which frees it).
enum LastError {
    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        let status = pthread_key_create(&key) { free($0) }
        precondition(status == 0, "pthread_key_create failed (\(status))")
        return key
    }()

    static func set(_ message: String) {
        let old = pthread_getspecific(key)
        pthread_setspecific(key, strdup(message))
        free(old)
    }

    /// The thread's message, "" before its first failure.
    static var message: UnsafePointer<CChar> {
        guard let message = pthread_getspecific(key) else { return UnsafePointer(empty) }
        return UnsafePointer(message.assumingMemoryBound(to: CChar.self))
    }

    /// "", for threads without a failure (never freed, never written).
    private nonisolated(unsafe) static let empty: UnsafeMutablePointer<CChar> = {
        let empty = UnsafeMutablePointer<CChar>.allocate(capacity: 1)
        empty.initialize(to: 0)
        return empty
    }()
}
