/// An RMSNorm layer that owns its parameter, as `torch.nn.RMSNorm`.
///
/// Scales each sample over its trailing ``normalizedShape`` dims by its own root
/// mean square. The math is that of ``rmsNorm(_:normalizedShape:weight:eps:into:waitingFor:)``.
public struct RMSNorm: Sendable {
    /// The trailing dims normalised over.
    public let normalizedShape: [Int]
    /// Added to the mean square inside the square root; nil (the default) means the
    /// machine epsilon of the input's element type, as PyTorch's `eps=None`.
    public var eps: Float?
    /// γ of shape ``normalizedShape``, initially 1; nil without elementwise affine.
    public var weight: Tensor?

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
        try rmsNorm(input, normalizedShape: normalizedShape, weight: weight, eps: eps)
    }
}
