extension RMSNorm {
    /// The backward pass of ``forward(_:)``: dx, and dγ for the layer's weight.
    ///
    /// The math is that of ``rmsNormBackward(_:forward:gradResidualSum:outputMask:into:waitingFor:)``. dγ is only
    /// computed when the layer has a weight and the mask asks for it; the layer's weight
    /// is not changed.
    ///
    /// - Parameters:
    ///   - gradOutput: dy, with the input's shape, layout, element type and backend.
    ///   - forward: what ``forward(_:)`` returned.
    ///   - outputMask: which gradients to compute (default all that exist).
    /// - Throws: ``NormError/forwardMismatch(argument:reason:)`` when the layer's weight
    ///   is not the one the forward used, and the errors of
    ///   ``rmsNormBackward(_:forward:gradResidualSum:outputMask:into:waitingFor:)``.
    public func backward(
        _ gradOutput: Tensor, forward: RMSNormOutput, outputMask: NormGradientMask = .all
    ) throws -> NormGradients {
        try backward(gradOutput, forward: forward, gradResidualSum: nil, outputMask: outputMask)
    }

    /// The backward pass of ``forward(_:residual:returnsResidualSum:)``: dx (the gradient
    /// of the input and of the residual alike) with `gradResidualSum`, the gradient of
    /// h from the rest of the network, added; dγ (and dβ) for the layer's parameters.
    ///
    /// - Parameters:
    ///   - gradOutput: dy, with the input's shape, layout, element type and backend.
    ///   - forward: what ``forward(_:residual:returnsResidualSum:)`` returned.
    ///   - gradResidualSum: dL/dh from elsewhere, or nil.
    ///   - outputMask: which gradients to compute (default all that exist).
    /// - Throws: as ``backward(_:forward:outputMask:)``.
    public func backward(
        _ gradOutput: Tensor, forward: RMSNormOutput, gradResidualSum: Tensor?, outputMask: NormGradientMask = .all
    ) throws -> NormGradients {
        try forward.saved.checkedForLayer("rmsNorm", weight: weight, bias: bias)
        guard forward.normalizedShape == normalizedShape else {
            throw NormError.forwardMismatch(argument: "forward", reason: "made with normalizedShape \(forward.normalizedShape)")
        }
        return try rmsNormBackward(gradOutput, forward: forward, gradResidualSum: gradResidualSum, outputMask: outputMask)
    }
}
