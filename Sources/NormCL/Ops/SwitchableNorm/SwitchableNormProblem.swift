/// A Switchable Normalization forward call, described by what decides how to run it.
///
/// Built by ``validated(input:meanLogits:varianceLogits:weight:bias:running:training:options:)``,
/// where every argument check lives; plans and backends take a problem known to be valid.
struct SwitchableNormProblem: ChannelShaped, Hashable, Sendable {
    /// The input shape `(N, C, *S)`.
    let shape: [Int]
    let layout: TensorLayout
    let elementType: ElementType
    let branches: SwitchableNormOptions.Branches
    let unbiased: Bool
    /// Batch statistics for the BN branch (else running statistics).
    let training: Bool
    /// Training with a BN branch and running statistics to update.
    let updatesRunningStatistics: Bool
    let hasWeight: Bool
    let hasBias: Bool

    /// N·C, the instances (L = M is ``spatial``).
    var instances: Int { planes }
    /// Whether the batch statistics come from this batch.
    var usesBatchStatistics: Bool { training && branches.hasBatch }

    /// The sizes the kernels take as 32-bit values (L: the spatial size).
    static let sizeLimits: [(ChannelShape.Size, String)] = [(.batchSpatial, "N·L"), (.planes, "N·C")]

    /// Checks every argument and describes the call.
    ///
    /// - Throws: ``NormError`` naming the first argument that is wrong.
    static func validated(
        input: Tensor, meanLogits: Tensor, varianceLogits: Tensor, weight: Tensor?, bias: Tensor?,
        running: RunningStatistics?, training: Bool, options: SwitchableNormOptions
    ) throws(NormError) -> SwitchableNormProblem {
        let shape = input.shape
        // Kernels take N·C, L and N·L as 32-bit values (L is at most N·L when N > 0; an empty
        // input launches nothing).
        try NormError.checkChannelInput(
            shape, op: "Switchable Norm", limits: Self.sizeLimits)
        let channels = shape[1], spatial = shape.dropFirst(2).reduce(1, *)
        let branches = options.branches
        let unbiased = options.varianceEstimator == .unbiased
        if shape.count == 2 && branches.hasInstance {
            throw .invalidShape(
                argument: "input", reason: "(N, C) input has no instance statistics: use branches .layerBatch (got \(branches))")
        }
        if branches.hasInstance && unbiased && spatial == 1 {
            throw .invalidShape(
                argument: "input",
                reason: "the unbiased instance variance divides by L − 1 = 0 for \(shape); use the biased estimator")
        }
        if !branches.hasInstance && unbiased && channels * spatial == 1 {
            throw .invalidShape(argument: "input", reason: "the unbiased LN variance divides by C·L − 1 = 0 for \(shape)")
        }
        let backend = input.backend
        try NormError.checkParameter(meanLogits, "meanLogits", shape: [branches.count], backend: backend)
        try NormError.checkParameter(varianceLogits, "varianceLogits", shape: [branches.count], backend: backend)
        try NormError.checkParameter(weight, "weight", shape: [channels], backend: backend)
        try NormError.checkParameter(bias, "bias", shape: [channels], backend: backend)
        try NormError.checkEps(options.eps)
        try NormError.checkRunningStatistics(running, channels: channels, momentum: options.momentum, backend: backend)
        if running != nil && !branches.hasBatch {
            throw .invalidArgument(argument: "runningStatistics", reason: "branches \(branches) have no BN statistics to track")
        }
        // An empty batch is no error (as BatchNorm's); one value per channel is.
        if branches.hasBatch && training && shape[0] * spatial == 1 {
            throw .tooFewValuesPerChannel(valuesPerChannel: shape[0] * spatial, shape: shape)
        }
        if branches.hasBatch && !training && running == nil {
            throw .invalidArgument(
                argument: "runningStatistics", reason: "inference (training: false) with a BN branch needs running statistics")
        }
        return SwitchableNormProblem(
            shape: shape, layout: input.layout, elementType: input.elementType, branches: branches, unbiased: unbiased,
            training: training, updatesRunningStatistics: training && running != nil,
            hasWeight: weight != nil, hasBias: bias != nil)
    }
}
