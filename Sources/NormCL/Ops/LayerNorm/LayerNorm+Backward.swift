extension LayerNorm {
    /// The backward pass of ``forward(_:)``: dx, and dγ and dβ for the layer's own
    /// parameters.
    ///
    /// The math is that of ``layerNormBackward(_:forward:gradResidualSum:outputMask:into:waitingFor:)``. dγ (dβ) is only
    /// computed when the layer has a weight (bias) and the mask asks for it; the layer's
    /// parameters are not changed (an optimizer applies the gradients).
    ///
    /// - Parameters:
    ///   - gradOutput: dy, with the input's shape, layout, element type and backend.
    ///   - forward: what ``forward(_:)`` returned.
    ///   - outputMask: which gradients to compute (default all that exist).
    /// - Throws: ``NormError/forwardMismatch(argument:reason:)`` when the layer's weight
    ///   or bias is not the one the forward used (replaced, added or removed since), and
    ///   the errors of ``layerNormBackward(_:forward:gradResidualSum:outputMask:into:waitingFor:)``.
    public func backward(
        _ gradOutput: Tensor, forward: LayerNormOutput, outputMask: NormGradientMask = .all
    ) throws -> NormGradients {
        try backward(gradOutput, forward: forward, gradResidualSum: nil, outputMask: outputMask)
    }

    /// The backward pass of ``forward(_:residual:returnsResidualSum:)``: dx (the gradient
    /// of the input and of the residual alike) with `gradResidualSum`, the gradient of
    /// h from the rest of the network, added; dγ and dβ for the layer's parameters.
    ///
    /// - Parameters:
    ///   - gradOutput: dy, with the input's shape, layout, element type and backend.
    ///   - forward: what ``forward(_:residual:returnsResidualSum:)`` returned.
    ///   - gradResidualSum: dL/dh from elsewhere, or nil.
    ///   - outputMask: which gradients to compute (default all that exist).
    /// - Throws: as ``backward(_:forward:outputMask:)``.
    public func backward(
        _ gradOutput: Tensor, forward: LayerNormOutput, gradResidualSum: Tensor?, outputMask: NormGradientMask = .all
    ) throws -> NormGradients {
        let saved = try forward.saved.checkedForLayer("layerNorm", weight: weight, bias: bias)
        guard forward.normalizedShape == normalizedShape, saved.eps == eps else {
            throw NormError.forwardMismatch(
                argument: "forward", reason: "made with normalizedShape \(forward.normalizedShape), eps \(saved.eps)")
        }
        return try layerNormBackward(gradOutput, forward: forward, gradResidualSum: gradResidualSum, outputMask: outputMask)
    }
}
