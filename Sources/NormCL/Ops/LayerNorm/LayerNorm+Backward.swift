extension LayerNorm {
    /// The backward pass of ``forward(_:)`` or ``forward(_:residual:returnsResidualSum:)``:
    /// dx (after a residual, the gradient of the input and of the residual alike), with
    /// `gradResidualSum`, the gradient of h from the rest of the network, added; and
    /// dγ and dβ for the layer's own parameters.
    ///
    /// The math is that of ``layerNormBackward(_:forward:gradResidualSum:outputMask:into:waitingFor:)``. A
    /// parameter's gradient is only computed when the layer has it and the mask asks for it;
    /// the layer's parameters are not changed (an optimizer applies the gradients).
    ///
    /// - Parameters:
    ///   - gradOutput: dy, with the input's shape, layout, element type and backend.
    ///   - forward: what the forward returned.
    ///   - gradResidualSum: dL/dh from elsewhere, or nil (the default; always nil without
    ///     a residual).
    ///   - outputMask: which gradients to compute (default all that exist).
    /// - Throws: ``NormError/forwardMismatch(argument:reason:)`` when the layer's weight
    ///   or bias is not the one the forward used (replaced, added or removed since), and
    ///   the errors of ``layerNormBackward(_:forward:gradResidualSum:outputMask:into:waitingFor:)``.
    public func backward(
        _ gradOutput: Tensor, forward: LayerNormOutput, gradResidualSum: Tensor? = nil, outputMask: NormGradientMask = .all
    ) throws -> NormGradients {
        let saved = try forward.saved.checkedForLayer("layerNorm", weight: weight, bias: bias)
        guard forward.normalizedShape == normalizedShape, saved.eps == eps else {
            throw NormError.forwardMismatch(
                argument: "forward", reason: "made with normalizedShape \(forward.normalizedShape), eps \(saved.eps)")
        }
        return try layerNormBackward(gradOutput, forward: forward, gradResidualSum: gradResidualSum, outputMask: outputMask)
    }
}
