/// A BatchNorm forward call, described by what decides how to run it.
///
/// Built from the call's tensors by ``validated(input:weight:bias:running:mode:momentum:eps:)``,
/// which is also where every argument check lives; plans and backends take a problem
/// that is known to be valid.
struct BatchNormProblem: Hashable, Sendable {
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

    /// N.
    var batch: Int { shape[0] }
    /// C.
    var channels: Int { shape[1] }
    /// M, the product of the spatial dims (1 for `(N, C)` input).
    var spatial: Int { shape.dropFirst(2).reduce(1, *) }
    /// n = N·M, the values each channel's statistics run over; also the rows of the
    /// `(rows, C)` matrix the column kernels see.
    var valuesPerChannel: Int { batch * spatial }
    /// Whether memory holds a row-major `(N·M, C)` matrix: channels-last input, or
    /// `(N, C)` input of either layout. The column kernels take these.
    var isRowsByChannels: Bool { layout == .channelsLast || spatial == 1 }
    /// Every element of the input.
    var count: Int { shape.reduce(1, *) }

    var isTraining: Bool {
        if case .training = mode { true } else { false }
    }

    /// Checks every argument and describes the call.
    ///
    /// - Throws: ``NormError`` naming the first argument that is wrong.
    static func validated(
        input: Tensor, weight: Tensor?, bias: Tensor?, running: RunningStatistics?,
        mode: Mode, momentum: Float?, eps: Float, renorm: BatchRenormLimits? = nil
    ) throws(NormError) -> BatchNormProblem {
        let shape = input.shape
        guard shape.count >= 2 else {
            throw .invalidShape(argument: "input", reason: "BatchNorm needs (N, C, *spatial), got \(shape)")
        }
        // Kernels take N, C, M and the rows N·M of channels-last input as 32-bit values
        // (element offsets may be 64-bit).
        try NormError.checkDimensions(shape, argument: "input")
        try NormError.check32BitLimit(shape[0] * shape.dropFirst(2).reduce(1, *), "N·M", argument: "input", shape: shape)
        try NormError.check32BitLimit(shape[1], "C", argument: "input", shape: shape)
        let channels = shape[1]
        let backend = input.backend
        try NormError.checkParameter(weight, "weight", shape: [channels], backend: backend)
        try NormError.checkParameter(bias, "bias", shape: [channels], backend: backend)
        try NormError.checkParameter(running?.mean, "runningMean", shape: [channels], backend: backend)
        try NormError.checkParameter(running?.variance, "runningVar", shape: [channels], backend: backend)
        try NormError.checkEps(eps)
        try NormError.checkMomentum(momentum)
        if let running, running.numBatchesTracked < 0 || running.numBatchesTracked == Int.max {
            throw .invalidArgument(
                argument: "numBatchesTracked", reason: "must lie in [0, Int.max), got \(running.numBatchesTracked)")
        }
        if let renorm {
            try renorm.validate()
            guard running != nil, mode == .training(updatesRunningStatistics: true) else {
                throw .invalidArgument(
                    argument: "runningStatistics", reason: "Batch Renorm trains against running statistics: pass them")
            }
        }
        let problem = BatchNormProblem(
            shape: shape, layout: input.layout, elementType: input.elementType, mode: mode, renorm: renorm != nil,
            hasWeight: weight != nil, hasBias: bias != nil)
        // An empty batch is no error (PyTorch returns an empty output); one value is.
        if problem.isTraining && problem.valuesPerChannel == 1 {
            throw .tooFewValuesPerChannel(valuesPerChannel: problem.valuesPerChannel, shape: shape)
        }
        if !problem.isTraining && running == nil {
            // PyTorch: "running_mean must be defined in evaluation mode".
            throw .invalidArgument(argument: "runningStatistics", reason: "inference (training: false) needs running statistics")
        }
        return problem
    }
}
