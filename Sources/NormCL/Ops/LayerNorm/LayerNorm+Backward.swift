extension LayerNorm {
    /// The backward pass of ``forward(_:)``: dx, and dγ and dβ for the layer's own
    /// parameters.
    ///
    /// The math is that of
    /// ``layerNormBackward(_:input:normalizedShape:weight:saveMean:saveInvstd:outputMask:)``,
    /// with the layer's γ. dγ (dβ) is only computed when the layer has a weight (bias)
    /// and the mask asks for it; the layer's parameters are not changed (an optimizer
    /// applies the gradients).
    ///
    /// - Parameters:
    ///   - gradOutput: dy, with the input's shape, layout, element type and backend.
    ///   - input: the input ``forward(_:)`` was called with.
    ///   - forward: what ``forward(_:)`` returned for `input`.
    ///   - outputMask: which gradients to compute (default all that exist).
    public func backward(
        _ gradOutput: Tensor, input: Tensor, forward: LayerNormOutput, outputMask: NormGradientMask = .all
    ) throws -> NormGradients {
        var mask = outputMask
        if weight == nil { mask.remove(.weight) }
        if bias == nil { mask.remove(.bias) }
        return try layerNormBackward(
            gradOutput, input: input, normalizedShape: normalizedShape, weight: weight, forward: forward, outputMask: mask)
    }
}
