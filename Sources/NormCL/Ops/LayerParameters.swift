/// What the layer types share when they are made and called: the checks of their
/// hyper-parameters, their affine parameters γ = 1 and β = 0 per channel, and the check
/// that an input has their channel count.
enum LayerParameters {
    /// Throws ``NormError/invalidArgument(argument:reason:)`` naming `argument` unless
    /// `count` is positive.
    static func checkPositive(_ count: Int, _ argument: String) throws {
        guard count > 0 else { throw NormError.invalidArgument(argument: argument, reason: "must be positive, got \(count)") }
    }

    /// Throws unless a channel layer's hyper-parameters are valid: `numFeatures` positive,
    /// `eps` finite and non-negative, `momentum` nil or in [0, 1].
    static func checkChannelLayer(numFeatures: Int, eps: Float, momentum: Float?) throws {
        try checkPositive(numFeatures, "numFeatures")
        try NormError.checkEps(eps)
        try NormError.checkMomentum(momentum)
    }

    /// The state of a BatchNorm-style layer over `numFeatures` channels, after
    /// ``checkChannelLayer(numFeatures:eps:momentum:)``: γ = 1 and β = 0 when `affine`,
    /// running statistics (mean 0, variance 1) when `tracking`.
    static func channelLayer(
        numFeatures: Int, eps: Float, momentum: Float?, affine: Bool, tracking: Bool, on backend: Backend
    ) throws -> (weight: Tensor?, bias: Tensor?, running: RunningStatistics?) {
        try checkChannelLayer(numFeatures: numFeatures, eps: eps, momentum: momentum)
        let parameters = affine ? try Self.affine(channels: numFeatures, on: backend, argument: "numFeatures") : nil
        let running = tracking ? try RunningStatistics(channels: numFeatures, on: backend) : nil
        return (parameters?.0, parameters?.1, running)
    }

    /// γ filled with `weight` and β with 0, `channels` each, on `backend`; size errors name
    /// `argument` (see ``Tensor/init(repeating:shape:layout:elementType:on:)``).
    static func affine(channels: Int, weight: Float = 1, on backend: Backend, argument: String) throws -> (Tensor, Tensor) {
        (
            try Tensor(filling: weight, shape: [channels], on: backend, argument: argument),
            try Tensor(filling: 0, shape: [channels], on: backend, argument: argument)
        )
    }

    /// Throws ``NormError/shapeMismatch(argument:expected:actual:)`` (`input`) when an
    /// `(N, C, …)` input's C is not `channels` (a layer without parameters or running
    /// statistics would otherwise not notice).
    static func checkChannels(of input: Tensor, _ channels: Int) throws {
        if input.shape.count >= 2, input.shape[1] != channels {
            throw NormError.shapeMismatch(
                argument: "input", expected: [input.shape[0], channels] + input.shape.dropFirst(2), actual: input.shape)
        }
    }
}
