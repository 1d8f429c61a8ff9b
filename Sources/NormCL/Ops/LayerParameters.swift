/// What the layer types share when they are made and called: the checks of their
/// hyper-parameters, their affine parameters γ = 1 and β = 0 per channel, and the check
/// that an input has their channel count.
enum LayerParameters {
    /// Throws ``NormError/invalidArgument(argument:reason:)`` naming `argument` unless
    /// `count` is positive.
    static func checkPositive(_ count: Int, _ argument: String) throws {
        guard count > 0 else { throw NormError.invalidArgument(argument: argument, reason: "must be positive, got \(count)") }
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
