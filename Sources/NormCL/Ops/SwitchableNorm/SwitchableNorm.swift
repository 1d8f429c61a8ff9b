/// A Switchable Normalization layer that owns its parameters, mixing logits and running
/// statistics, as the official `SwitchNorm1d/2d/3d` modules (one type for every rank).
///
/// In training mode (``isTraining``, the default) the BN branch uses batch statistics and
/// updates the running ones; in inference mode it uses the running statistics. The math
/// is that of ``switchableNorm(_:meanLogits:varianceLogits:weight:bias:runningStatistics:training:options:into:waitingFor:)``.
public struct SwitchableNorm: Sendable {
    /// C, the number of channels.
    public let numFeatures: Int
    /// Branches, variance estimator, eps and momentum.
    public var options: SwitchableNormOptions
    /// γ, initially 1 (0 with `lastGamma`, for the last norm of a residual block).
    public var weight: Tensor
    /// β, initially 0.
    public var bias: Tensor
    /// The mean mixing logits, one per branch (IN, LN, BN order), initially 1.
    public var meanLogits: Tensor
    /// The variance mixing logits, initially 1.
    public var varianceLogits: Tensor
    /// The running BN statistics; nil without a BN branch.
    public var runningStatistics: RunningStatistics?
    /// Training (batch statistics for BN) or inference (running statistics) mode.
    public var isTraining: Bool = true

    /// A layer with the official code's defaults on `backend`.
    ///
    /// - Parameters:
    ///   - numFeatures: C, the number of channels (positive).
    ///   - options: branches, variance estimator, eps, momentum.
    ///   - lastGamma: initialise γ to 0 instead of 1 (`last_gamma`).
    ///   - backend: where the parameters live and the layer runs.
    /// - Throws: ``NormError/invalidArgument(argument:reason:)`` for `numFeatures ≤ 0`,
    ///   non-finite or negative eps, or momentum outside [0, 1].
    ///   Too many features for the backend: ``NormError/invalidShape(argument:reason:)``
    ///   naming `numFeatures` (a size that overflows, or beyond the reference backend's limit)
    ///   or ``OpenCLError`` from the device's allocator, before anything is filled (see
    ///   ``Tensor/init(repeating:shape:layout:elementType:on:)``).
    public init(
        numFeatures: Int, options: SwitchableNormOptions = SwitchableNormOptions(), lastGamma: Bool = false,
        on backend: Backend
    ) throws {
        try LayerParameters.checkChannelLayer(numFeatures: numFeatures, eps: options.eps, momentum: options.momentum)
        self.numFeatures = numFeatures
        self.options = options
        (weight, bias) = try LayerParameters.affine(channels: numFeatures, weight: lastGamma ? 0 : 1, on: backend, argument: "numFeatures")
        meanLogits = try Tensor(repeating: 1, shape: [options.branches.count], on: backend)
        varianceLogits = try Tensor(repeating: 1, shape: [options.branches.count], on: backend)
        if options.branches.hasBatch {
            runningStatistics = try RunningStatistics(channels: numFeatures, on: backend)
        }
    }

    /// Normalises `input` and, in training mode, updates the running statistics.
    public mutating func callAsFunction(_ input: Tensor) throws -> Tensor {
        try forward(input).output
    }

    /// Like ``callAsFunction(_:)``, also returning the statistics and kernel events.
    public mutating func forward(_ input: Tensor) throws -> SwitchableNormOutput {
        try LayerParameters.checkChannels(of: input, numFeatures)
        return try switchableNorm(
            input, meanLogits: meanLogits, varianceLogits: varianceLogits, weight: weight, bias: bias,
            runningStatistics: &runningStatistics, training: isTraining, options: options)
    }
}
