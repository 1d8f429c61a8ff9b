/// A GroupNorm layer that owns its affine parameters, as `torch.nn.GroupNorm`, optionally
/// followed by a fused activation (`nn.Sequential(nn.GroupNorm(…), nn.SiLU())` of a
/// diffusion U-Net as one layer):
///
///     y = f((x − mean_{n,g}) / sqrt(var_{n,g} + eps) · γ_c + β_c)
///
/// with f = ``activation`` (the identity for ``Activation/none``). GroupNorm has no
/// running statistics, so training and inference compute the same thing; the math is
/// that of ``groupNorm(_:numGroups:weight:bias:eps:activation:into:waitingFor:)``.
public struct GroupNorm: Sendable {
    /// G, the number of groups; divides ``numChannels``.
    public let numGroups: Int
    /// C, the number of channels.
    public let numChannels: Int
    /// Added to the variance inside the square root (default `1e-5`).
    public var eps: Float
    /// γ per channel, initially 1; nil when the layer is not affine.
    public var weight: Tensor?
    /// β per channel, initially 0; nil when the layer is not affine.
    public var bias: Tensor?
    /// The activation f fused after the norm, `y = f(GN(x))` (``Activation/none``: plain
    /// GroupNorm). ``backward(_:forward:outputMask:)`` applies f′ at the input of f,
    /// recomputed from x, the saved statistics, γ and β.
    public var activation: Activation

    /// A layer with PyTorch's defaults on `backend` (`affine` true: γ = 1, β = 0).
    ///
    /// - Parameters:
    ///   - numGroups: G, positive and dividing `numChannels`.
    ///   - numChannels: C, positive.
    ///   - eps: added to the variance inside the square root (default `1e-5`); finite and ≥ 0.
    ///   - affine: whether the layer has γ and β (default true).
    ///   - activation: f fused after the norm (default ``Activation/none``).
    ///   - backend: where the parameters live and the layer runs.
    /// - Throws: ``NormError/invalidArgument(argument:reason:)`` for `numGroups ≤ 0`,
    ///   `numChannels ≤ 0`, C not divisible by G, or non-finite or negative `eps`.
    ///   Too many channels for the backend: ``NormError/invalidShape(argument:reason:)``
    ///   naming `numChannels` (a size that overflows, or beyond the reference backend's limit)
    ///   or ``OpenCLError`` from the device's allocator, before anything is filled (see
    ///   ``Tensor/init(repeating:shape:layout:elementType:on:)``).
    public init(
        numGroups: Int, numChannels: Int, eps: Float = 1e-5, affine: Bool = true, activation: Activation = .none,
        on backend: Backend
    ) throws {
        try LayerParameters.checkPositive(numChannels, "numChannels")
        try LayerParameters.checkPositive(numGroups, "numGroups")
        guard numChannels % numGroups == 0 else {
            throw NormError.invalidArgument(
                argument: "numGroups", reason: "the \(numChannels) channels must divide into \(numGroups) groups evenly")
        }
        try NormError.checkEps(eps)
        self.numGroups = numGroups
        self.numChannels = numChannels
        self.eps = eps
        self.activation = activation
        if affine {
            (weight, bias) = try LayerParameters.affine(channels: numChannels, on: backend, argument: "numChannels")
        }
    }

    /// Normalises `input` (`(N, C, *S)` with C == ``numChannels``).
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try forward(input).output
    }

    /// Like ``callAsFunction(_:)``, also returning the saved statistics and kernel events.
    ///
    /// - Throws: ``NormError/shapeMismatch(argument:expected:actual:)`` when the input's
    ///   channels differ from ``numChannels``, and what ``groupNorm(_:numGroups:weight:bias:eps:activation:into:waitingFor:)`` throws.
    public func forward(_ input: Tensor) throws -> GroupNormOutput {
        try LayerParameters.checkChannels(of: input, numChannels)
        return try groupNorm(input, numGroups: numGroups, weight: weight, bias: bias, eps: eps, activation: activation)
    }
}
