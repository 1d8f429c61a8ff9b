extension RMSNorm {
    /// The backward pass of ``forward(_:)``: dx, and dγ for the layer's weight.
    ///
    /// The math is that of ``rmsNormBackward(_:input:normalizedShape:weight:saveInvRms:outputMask:)``,
    /// with the layer's γ. dγ is only computed when the layer has a weight and the
    /// mask asks for it; the layer's weight is not changed.
    ///
    /// - Parameters:
    ///   - gradOutput: dy, with the input's shape, layout, element type and backend.
    ///   - input: the input ``forward(_:)`` was called with.
    ///   - forward: what ``forward(_:)`` returned for `input`.
    ///   - outputMask: which gradients to compute (default all that exist).
    public func backward(
        _ gradOutput: Tensor, input: Tensor, forward: RMSNormOutput, outputMask: NormGradientMask = .all
    ) throws -> NormGradients {
        var mask = outputMask
        if weight == nil { mask.remove(.weight) }
        return try rmsNormBackward(
            gradOutput, input: input, normalizedShape: normalizedShape, weight: weight, forward: forward, outputMask: mask)
    }
}
