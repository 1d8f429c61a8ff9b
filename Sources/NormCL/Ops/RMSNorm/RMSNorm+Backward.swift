extension RMSNorm {
    /// The backward pass of ``forward(_:)``: dx, and dγ for the layer's weight.
    ///
    /// The math is that of ``rmsNormBackward(_:forward:outputMask:into:waitingFor:)``. dγ is only
    /// computed when the layer has a weight and the mask asks for it; the layer's weight
    /// is not changed.
    ///
    /// - Parameters:
    ///   - gradOutput: dy, with the input's shape, layout, element type and backend.
    ///   - forward: what ``forward(_:)`` returned.
    ///   - outputMask: which gradients to compute (default all that exist).
    /// - Throws: ``NormError/forwardMismatch(argument:reason:)`` when the layer's weight
    ///   is not the one the forward used, and the errors of
    ///   ``rmsNormBackward(_:forward:outputMask:into:waitingFor:)``.
    public func backward(
        _ gradOutput: Tensor, forward: RMSNormOutput, outputMask: NormGradientMask = .all
    ) throws -> NormGradients {
        try forward.saved.checkedForLayer("rmsNorm", weight: weight, bias: nil)
        guard forward.normalizedShape == normalizedShape else {
            throw NormError.forwardMismatch(argument: "forward", reason: "made with normalizedShape \(forward.normalizedShape)")
        }
        return try rmsNormBackward(gradOutput, forward: forward, outputMask: outputMask)
    }
}
