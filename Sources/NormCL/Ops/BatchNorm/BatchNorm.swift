/// A BatchNorm layer that owns its parameters and running statistics, as
/// `torch.nn.BatchNorm1d/2d/3d` (one type for every rank).
///
/// In training mode (``isTraining``, the default) it normalises with batch statistics
/// and, when it tracks running statistics, updates them; in inference mode it
/// normalises with the running statistics. Without tracking it always uses batch
/// statistics (as PyTorch's modules do). The math is that of ``batchNorm(_:weight:bias:runningStatistics:training:momentum:eps:activation:addend:into:waitingFor:)``,
/// with the layer's ``activation`` fused after the norm.
public struct BatchNorm: Sendable {
    /// C, the number of channels.
    public let numFeatures: Int
    /// Added to the variance inside the square root (default `1e-5`).
    public var eps: Float
    /// Weight of the new batch in the running update (default 0.1); nil for a
    /// cumulative average.
    public var momentum: Float?
    /// γ, initially 1; nil when the layer is not affine.
    public var weight: Tensor?
    /// β, initially 0; nil when the layer is not affine.
    public var bias: Tensor?
    /// The running statistics; nil when the layer does not track them.
    public var runningStatistics: RunningStatistics?
    /// Training (batch statistics) or inference (running statistics) mode.
    public var isTraining: Bool = true
    /// Batch Renormalization's limits for training steps (nil: plain BatchNorm). Set
    /// and ramp them during training; they need tracked running statistics.
    public var renorm: BatchRenormLimits?
    /// The activation fused after the norm, in every mode: `y = f(BN(x))`, or
    /// `f(BN(x) + z)` with ``forward(_:addend:)`` (the ResNet block's
    /// `relu(BN(conv) + shortcut)`). ``Activation/none`` (the default): plain BatchNorm.
    public var activation: Activation = .none

    /// A layer with PyTorch's defaults on `backend`.
    ///
    /// - Throws: ``NormError/invalidArgument(argument:reason:)`` for `numFeatures ≤ 0`,
    ///   non-finite or negative `eps`, or momentum outside [0, 1].
    ///   Too many features for the backend: ``NormError/invalidShape(argument:reason:)``
    ///   naming `numFeatures` (a size that overflows, or beyond the reference backend's limit)
    ///   or ``OpenCLError`` from the device's allocator, before anything is filled (see
    ///   ``Tensor/init(repeating:shape:layout:elementType:on:)``).
    public init(
        numFeatures: Int, eps: Float = 1e-5, momentum: Float? = 0.1, affine: Bool = true,
        trackRunningStats: Bool = true, on backend: Backend
    ) throws {
        (weight, bias, runningStatistics) = try LayerParameters.channelLayer(
            numFeatures: numFeatures, eps: eps, momentum: momentum, affine: affine, tracking: trackRunningStats,
            on: backend)
        self.numFeatures = numFeatures
        self.eps = eps
        self.momentum = momentum
    }

    /// Normalises `input` (then applies ``activation``) and, in training mode, updates
    /// the running statistics.
    public mutating func callAsFunction(_ input: Tensor) throws -> Tensor {
        try forward(input).output
    }

    /// `f(BN(x) + z)` with f = ``activation``: see ``forward(_:addend:)``.
    ///
    /// - Parameters:
    ///   - input: x.
    ///   - addend: z, with the input's shape, layout, element type and backend.
    public mutating func callAsFunction(_ input: Tensor, addend: Tensor) throws -> Tensor {
        try forward(input, addend: addend).output
    }

    /// Like ``callAsFunction(_:)``, also returning the saved statistics and kernel events.
    ///
    /// - Throws: ``NormError/shapeMismatch(argument:expected:actual:)`` (`input`) when the
    ///   input's C is not ``numFeatures``, and what the functional ``batchNorm(_:weight:bias:runningStatistics:training:momentum:eps:activation:addend:into:waitingFor:)`` throws.
    public mutating func forward(_ input: Tensor) throws -> BatchNormOutput {
        try forward(input, addend: nil)
    }

    /// The layer's forward pass with an addend z before its ``activation``:
    /// `y = f(BN(x) + z)`, in one pass over x and z (the ResNet block's
    /// `relu(BN(conv) + shortcut)` with ``activation`` ``Activation/relu``). Its
    /// ``backward(_:forward:outputMask:)`` also returns dz (``NormGradients/addend``).
    ///
    /// - Parameters:
    ///   - input: x, `(N, C, *S)`.
    ///   - addend: z, with the input's shape, layout, element type and backend; nil for
    ///     none (``forward(_:)``).
    /// - Throws: as ``forward(_:)``, and ``NormError`` naming `addend` for an addend that
    ///   does not match the input.
    public mutating func forward(_ input: Tensor, addend: Tensor?) throws -> BatchNormOutput {
        // Without affine parameters and running statistics nothing else would notice.
        try LayerParameters.checkChannels(of: input, numFeatures)
        // As torch.nn.BatchNorm: without running statistics, inference uses batch statistics.
        let training = isTraining || runningStatistics == nil
        return try batchNorm(
            input, weight: weight, bias: bias, runningStatistics: &runningStatistics,
            training: training, momentum: momentum, eps: eps, strategy: nil, renorm: training ? renorm : nil,
            activation: activation, addend: addend)
    }
}
