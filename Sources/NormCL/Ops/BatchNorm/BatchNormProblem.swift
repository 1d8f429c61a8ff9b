/// A BatchNorm forward call, described by what decides how to run it.
///
/// Built from the call's tensors by ``validated(input:weight:bias:running:mode:momentum:eps:)``,
/// which is also where every argument check lives; plans and backends take a problem
/// that is known to be valid.
struct BatchNormProblem: ChannelShaped, Hashable, Sendable {
    enum Mode: Hashable, Sendable {
        /// Batch statistics; `updatesRunningStatistics` when running statistics are given.
        case training(updatesRunningStatistics: Bool)
        /// Running statistics.
        case inference
    }

    /// The input shape `(N, C, *S)`.
    let shape: [Int]
    let layout: TensorLayout
    let elementType: ElementType
    let mode: Mode
    /// Batch Renormalization: training corrected by `r` and `d` (limits are kernel
    /// arguments, not part of the problem: they change every step while ramping up).
    let renorm: Bool
    let hasWeight: Bool
    let hasBias: Bool
    /// The activation fused after the norm: `y = f(BN(x) (+ z))`.
    var activation: Activation = .none
    /// Whether an addend z is added before the activation: `y = f(BN(x) + z)`.
    var hasAddend = false

    /// n = N·M, the values each channel's statistics run over; also the rows of the
    /// `(rows, C)` matrix the column kernels see.
    var valuesPerChannel: Int { batchSpatial }
    /// Whether memory holds a row-major `(N·M, C)` matrix: channels-last input, or
    /// `(N, C)` input of either layout. The column kernels take these.
    var isRowsByChannels: Bool { layout == .channelsLast || spatial == 1 }

    var isTraining: Bool {
        if case .training = mode { true } else { false }
    }

    /// Checks every argument and describes the call.
    ///
    /// - Throws: ``NormError`` naming the first argument that is wrong.
    /// - Parameters:
    ///   - wholeBatchValuesPerChannel: when the input is one part of a batch
    ///     (synchronized BatchNorm), the whole batch's values per channel: the one-value
    ///     check applies to it, not to the part.
    ///   - activation: the fused activation, `y = f(BN(x) + z)`.
    ///   - addend: z, checked against the input (``NormError/checkCompanion(_:_:matches:allowsFloat32:)``).
    static func validated(
        input: Tensor, weight: Tensor?, bias: Tensor?, running: RunningStatistics?,
        mode: Mode, momentum: Float?, eps: Float, renorm: BatchRenormLimits? = nil, wholeBatchValuesPerChannel: Int? = nil,
        activation: Activation = .none, addend: Tensor? = nil
    ) throws(NormError) -> BatchNormProblem {
        let shape = input.shape
        try NormError.checkChannelInput(shape, op: "BatchNorm", limits: BatchNormProblem.sizeLimits)
        let channels = shape[1]
        let backend = input.backend
        try NormError.checkParameter(weight, "weight", shape: [channels], backend: backend)
        try NormError.checkParameter(bias, "bias", shape: [channels], backend: backend)
        try NormError.checkEps(eps)
        try NormError.checkRunningStatistics(running, channels: channels, momentum: momentum, backend: backend)
        try NormError.checkCompanion(addend, "addend", matches: input)
        if let renorm {
            try renorm.validate()
            guard running != nil, mode == .training(updatesRunningStatistics: true) else {
                throw .invalidArgument(
                    argument: "runningStatistics", reason: "Batch Renorm trains against running statistics: pass them")
            }
        }
        let problem = BatchNormProblem(
            shape: shape, layout: input.layout, elementType: input.elementType, mode: mode, renorm: renorm != nil,
            hasWeight: weight != nil, hasBias: bias != nil, activation: activation, hasAddend: addend != nil)
        // An empty batch is no error (PyTorch returns an empty output); one value is.
        if problem.isTraining && (wholeBatchValuesPerChannel ?? problem.valuesPerChannel) == 1 {
            throw .tooFewValuesPerChannel(valuesPerChannel: 1, shape: shape)
        }
        if !problem.isTraining && running == nil {
            // PyTorch: "running_mean must be defined in evaluation mode".
            throw .invalidArgument(argument: "runningStatistics", reason: "inference (training: false) needs running statistics")
        }
        return problem
    }

    /// The sizes the kernels of both directions take as 32-bit arguments: N·M (also the
    /// rows of channels-last input) and C.
    static let sizeLimits: [(ChannelShape.Size, String)] = [(.batchSpatial, "N·M"), (.channels, "C")]
}
