/// An InstanceNorm layer, as `torch.nn.InstanceNorm1d/2d/3d` (one type for every rank).
///
/// Defaults follow PyTorch: not affine, no running statistics. In training mode
/// (``isTraining``, the default) it normalises each (n, c) instance with its own
/// statistics and, when it tracks running statistics, updates them; in inference
/// mode with tracked statistics it normalises with the running ones. Without
/// tracking it always uses the instance statistics. The math is that of
/// ``instanceNorm(_:weight:bias:runningStatistics:useInputStatistics:momentum:eps:into:waitingFor:)``.
public struct InstanceNorm: Sendable {
    /// C, the number of channels.
    public let numFeatures: Int
    /// Added to the variance inside the square root (default `1e-5`).
    public var eps: Float
    /// Weight of the new batch in the running update (default 0.1); nil for a
    /// cumulative average.
    public var momentum: Float?
    /// γ, initially 1; nil when the layer is not affine (the default).
    public var weight: Tensor?
    /// β, initially 0; nil when the layer is not affine (the default).
    public var bias: Tensor?
    /// The running statistics; nil when the layer does not track them (the default).
    public var runningStatistics: RunningStatistics?
    /// Training (instance statistics) or inference (running statistics, when tracked) mode.
    public var isTraining: Bool = true

    /// A layer with PyTorch's defaults on `backend`.
    ///
    /// - Throws: ``NormError/invalidArgument(argument:reason:)`` for `numFeatures ≤ 0`,
    ///   non-finite or negative `eps`, or momentum outside [0, 1].
    ///   Too many features for the backend: ``NormError/invalidShape(argument:reason:)``
    ///   naming `numFeatures` (a size that overflows, or beyond the reference backend's limit)
    ///   or ``OpenCLError`` from the device's allocator, before anything is filled (see
    ///   ``Tensor/init(repeating:shape:layout:elementType:on:)``).
    public init(
        numFeatures: Int, eps: Float = 1e-5, momentum: Float? = 0.1, affine: Bool = false,
        trackRunningStats: Bool = false, on backend: Backend
    ) throws {
        (weight, bias, runningStatistics) = try LayerParameters.channelLayer(
            numFeatures: numFeatures, eps: eps, momentum: momentum, affine: affine, tracking: trackRunningStats,
            on: backend)
        self.numFeatures = numFeatures
        self.eps = eps
        self.momentum = momentum
    }

    /// Normalises `input` and, in training mode with tracking, updates the running statistics.
    public mutating func callAsFunction(_ input: Tensor) throws -> Tensor {
        try forward(input).output
    }

    /// Like ``callAsFunction(_:)``, also returning the saved statistics and kernel events.
    ///
    /// - Throws: ``NormError/shapeMismatch(argument:expected:actual:)`` when the input's
    ///   channels differ from ``numFeatures``, and what the functional form throws.
    public mutating func forward(_ input: Tensor) throws -> InstanceNormOutput {
        try LayerParameters.checkChannels(of: input, numFeatures)
        // As torch.nn.InstanceNorm: without running statistics, inference uses instance statistics.
        return try instanceNorm(
            input, runningStatistics: &runningStatistics, weight: weight, bias: bias,
            useInputStats: isTraining || runningStatistics == nil, momentum: momentum, eps: eps)
    }
}
