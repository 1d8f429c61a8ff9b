/// A problem with the arguments of a NormCL call: what a caller can get wrong.
///
/// Device and driver failures are ``OpenCLError`` and ``KernelBuildError`` instead.
public enum NormError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A shape that the op cannot take, e.g. fewer than two dimensions for BatchNorm.
    case invalidShape(argument: String, reason: String)
    /// A tensor whose shape differs from the one the op needs.
    case shapeMismatch(argument: String, expected: [Int], actual: [Int])
    /// A tensor with no elements where the call needs some (ops take empty inputs and
    /// return empty outputs; e.g. ``BatchNormFolding`` needs at least one channel).
    case emptyTensor(argument: String, shape: [Int])
    /// A scalar argument out of its range (eps, momentum, …).
    case invalidArgument(argument: String, reason: String)
    /// Training statistics over a single value per channel (PyTorch: "Expected more
    /// than 1 value per channel when training").
    case tooFewValuesPerChannel(valuesPerChannel: Int, shape: [Int])
    /// A tensor on another backend or device than the op's input.
    case backendMismatch(argument: String, expected: String, actual: String)
    /// A tensor layout or element type that this op does not support (yet).
    case unsupported(argument: String, reason: String)
    /// A backward pass whose layer no longer matches its forward pass: a parameter
    /// (`weight`, `bias`) replaced, added or removed after the forward, or a forward
    /// output the op did not make. The gradient would belong to another function, so
    /// NormCL refuses it rather than return it.
    case forwardMismatch(argument: String, reason: String)

    /// The name of the argument at fault (`"input"` for too few values per channel):
    /// what the C API reports, and what a caller branches on.
    public var argument: String {
        switch self {
        case .invalidShape(let argument, _), .shapeMismatch(let argument, _, _), .emptyTensor(let argument, _),
            .invalidArgument(let argument, _), .backendMismatch(let argument, _, _), .unsupported(let argument, _),
            .forwardMismatch(let argument, _):
            argument
        case .tooFewValuesPerChannel: "input"
        }
    }

    /// A sentence naming the argument and what was expected.
    public var description: String {
        switch self {
        case .invalidShape(let argument, let reason):
            "invalid shape for '\(argument)': \(reason)"
        case .shapeMismatch(let argument, let expected, let actual):
            "'\(argument)' has shape \(actual), expected \(expected)"
        case .emptyTensor(let argument, let shape):
            "'\(argument)' is empty (shape \(shape))"
        case .invalidArgument(let argument, let reason):
            "invalid '\(argument)': \(reason)"
        case .tooFewValuesPerChannel(let count, let shape):
            "expected more than 1 value per channel when training, got \(count) for input of shape \(shape)"
        case .backendMismatch(let argument, let expected, let actual):
            "'\(argument)' is on \(actual), expected \(expected)"
        case .unsupported(let argument, let reason):
            "unsupported '\(argument)': \(reason)"
        case .forwardMismatch(let argument, let reason):
            "'\(argument)' does not match the forward pass: \(reason)"
        }
    }
}
