/// A LayerNorm layer that owns its parameters, as `torch.nn.LayerNorm`.
///
/// Normalises each sample over its trailing ``normalizedShape`` dims with that
/// sample's own statistics (no running statistics, the same in training and
/// inference). The math is that of ``layerNorm(_:normalizedShape:weight:bias:eps:residual:inputBias:returnsResidualSum:weightOffset:activation:into:waitingFor:)``.
public struct LayerNorm: Sendable {
    /// The trailing dims normalised over.
    public let normalizedShape: [Int]
    /// Added to the variance inside the square root (default `1e-5`).
    public var eps: Float
    /// γ of shape ``normalizedShape``, initially 1; nil without elementwise affine.
    public var weight: Tensor?
    /// β of shape ``normalizedShape``, initially 0; nil without elementwise affine or bias.
    public var bias: Tensor?
    /// Added to γ before it scales (1 for zero-centred γ, whose weight starts at 0).
    /// Default 0.
    public var weightOffset: Float = 0
    /// The activation applied to the output (default ``Activation/none``).
    public var activation: Activation = .none

    /// A layer with PyTorch's defaults on `backend`.
    ///
    /// - Parameters:
    ///   - normalizedShape: the trailing dims to normalise over (at least one, all positive).
    ///   - eps: added to the variance inside the square root; finite and ≥ 0.
    ///   - elementwiseAffine: whether the layer has γ (and β, when `bias` is true).
    ///   - bias: whether the affine layer has β (PyTorch's `bias=True`).
    ///   - backend: where the parameters live and the layer runs.
    /// - Throws: ``NormError/invalidShape(argument:reason:)`` for an empty or
    ///   non-positive `normalizedShape`, ``NormError/invalidArgument(argument:reason:)``
    ///   for non-finite or negative `eps`.
    ///   Too many elements in `normalizedShape` for the backend: ``NormError/invalidShape(argument:reason:)``
    ///   naming `normalizedShape` (a size that overflows, or beyond the reference backend's limit)
    ///   or ``OpenCLError`` from the device's allocator, before anything is filled (see
    ///   ``Tensor/init(repeating:shape:layout:elementType:on:)``).
    public init(normalizedShape: [Int], eps: Float = 1e-5, elementwiseAffine: Bool = true, bias: Bool = true, on backend: Backend) throws {
        guard !normalizedShape.isEmpty, normalizedShape.allSatisfy({ $0 > 0 }) else {
            throw NormError.invalidShape(argument: "normalizedShape", reason: "needs at least one positive dim, got \(normalizedShape)")
        }
        try NormError.checkEps(eps)
        self.normalizedShape = normalizedShape
        self.eps = eps
        if elementwiseAffine {
            weight = try Tensor(filling: 1, shape: normalizedShape, on: backend, argument: "normalizedShape")
            if bias { self.bias = try Tensor(filling: 0, shape: normalizedShape, on: backend, argument: "normalizedShape") }
        }
    }

    /// Normalises `input`.
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try forward(input).output
    }

    /// Like ``callAsFunction(_:)``, also returning the saved statistics and kernel events.
    public func forward(_ input: Tensor) throws -> LayerNormOutput {
        try layerNorm(
            input, normalizedShape: normalizedShape, weight: weight, bias: bias, eps: eps, weightOffset: weightOffset,
            activation: activation)
    }

    /// Normalises `input + residual` in one pass (a pre-norm transformer block's
    /// `h = x + residual; y = norm(h)`), returning h as ``LayerNormOutput/residualSum``
    /// when `returnsResidualSum` (the next block's residual).
    ///
    /// - Parameters:
    ///   - input: x.
    ///   - residual: the residual stream: x's shape and layout, its element type or float32.
    ///   - returnsResidualSum: whether to write h.
    public func forward(_ input: Tensor, residual: Tensor, returnsResidualSum: Bool = true) throws -> LayerNormOutput {
        try layerNorm(
            input, normalizedShape: normalizedShape, weight: weight, bias: bias, eps: eps, residual: residual,
            returnsResidualSum: returnsResidualSum, weightOffset: weightOffset, activation: activation)
    }
}
