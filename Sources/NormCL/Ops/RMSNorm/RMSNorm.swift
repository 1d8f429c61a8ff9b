/// An RMSNorm layer that owns its parameter, as `torch.nn.RMSNorm`.
///
/// Scales each sample over its trailing ``normalizedShape`` dims by its own root
/// mean square. The math is that of ``rmsNorm(_:normalizedShape:weight:bias:eps:residual:inputBias:returnsResidualSum:weightOffset:activation:into:waitingFor:)``.
public struct RMSNorm: Sendable {
    /// The trailing dims normalised over.
    public let normalizedShape: [Int]
    /// Added to the mean square inside the square root; nil (the default) means the
    /// machine epsilon of the input's element type, as PyTorch's `eps=None`.
    public var eps: Float?
    /// γ of shape ``normalizedShape``, initially 1; nil without elementwise affine.
    public var weight: Tensor?
    /// β, an offset added after the scaling (float32 of shape ``normalizedShape``); nil
    /// (the default, as `torch.nn.RMSNorm`) for none.
    public var bias: Tensor? = nil
    /// Added to γ before it scales: 1 for Gemma's `x · rstd · (1 + w)`, whose weight
    /// starts at 0 (set ``weight`` to zeros with it). Default 0.
    public var weightOffset: Float = 0
    /// The activation applied to the output (default ``Activation/none``).
    public var activation: Activation = .none

    /// A layer with PyTorch's defaults on `backend`.
    ///
    /// - Throws: ``NormError/invalidShape(argument:reason:)`` for an empty or
    ///   non-positive `normalizedShape`, ``NormError/invalidArgument(argument:reason:)``
    ///   for non-finite or negative `eps`.
    ///   Too many elements in `normalizedShape` for the backend: ``NormError/invalidShape(argument:reason:)``
    ///   naming `normalizedShape` (a size that overflows, or beyond the reference backend's limit)
    ///   or ``OpenCLError`` from the device's allocator, before anything is filled (see
    ///   ``Tensor/init(repeating:shape:layout:elementType:on:)``).
    public init(normalizedShape: [Int], eps: Float? = nil, elementwiseAffine: Bool = true, on backend: Backend) throws {
        guard !normalizedShape.isEmpty, normalizedShape.allSatisfy({ $0 > 0 }) else {
            throw NormError.invalidShape(argument: "normalizedShape", reason: "needs at least one positive dim, got \(normalizedShape)")
        }
        if let eps { try NormError.checkEps(eps) }
        self.normalizedShape = normalizedShape
        self.eps = eps
        if elementwiseAffine {
            weight = try Tensor(filling: 1, shape: normalizedShape, on: backend, argument: "normalizedShape")
        }
    }

    /// Normalises `input`.
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try forward(input).output
    }

    /// Like ``callAsFunction(_:)``, also returning the saved `rstd` and kernel events.
    public func forward(_ input: Tensor) throws -> RMSNormOutput {
        try rmsNorm(
            input, normalizedShape: normalizedShape, weight: weight, bias: bias, eps: eps, weightOffset: weightOffset,
            activation: activation)
    }

    /// Normalises `input + residual` in one pass (a pre-norm transformer block's
    /// `h = x + residual; y = norm(h)`), returning h as ``RMSNormOutput/residualSum``
    /// when `returnsResidualSum` (the next block's residual).
    ///
    /// - Parameters:
    ///   - input: x.
    ///   - residual: the residual stream: x's shape and layout, its element type or float32.
    ///   - returnsResidualSum: whether to write h.
    public func forward(_ input: Tensor, residual: Tensor, returnsResidualSum: Bool = true) throws -> RMSNormOutput {
        try rmsNorm(
            input, normalizedShape: normalizedShape, weight: weight, bias: bias, eps: eps, residual: residual,
            returnsResidualSum: returnsResidualSum, weightOffset: weightOffset, activation: activation)
    }
}
