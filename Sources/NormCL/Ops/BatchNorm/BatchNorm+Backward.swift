extension BatchNorm {
    /// The backward pass of ``forward(_:)`` and ``forward(_:addend:)``: dx, and dγ and dβ
    /// for the layer's own parameters, and dz (``NormGradients/addend``) after a forward
    /// with an addend. A training step backpropagates through its batch statistics (with
    /// Batch Renorm's `r` and `d` as constants when ``renorm`` was set), an inference
    /// step through the running statistics it normalised with, as constants; the
    /// ``activation`` the forward applied is taken back first, at its input recomputed
    /// from x and the statistics. The math is that of
    /// ``batchNormBackward(_:forward:outputMask:into:waitingFor:)``.
    ///
    /// - Parameters:
    ///   - gradOutput: dy, with the input's shape, layout, element type and backend.
    ///   - forward: what ``forward(_:)`` returned.
    ///   - outputMask: which gradients to compute (default all that exist).
    /// - Throws: ``NormError/forwardMismatch(argument:reason:)`` when the layer's weight
    ///   or bias is not the one the forward used; what
    ///   ``batchNormBackward(_:forward:outputMask:into:waitingFor:)`` throws.
    public func backward(
        _ gradOutput: Tensor, forward: BatchNormOutput, outputMask: NormGradientMask = .all
    ) throws -> NormGradients {
        try forward.saved.checkedForLayer("batchNorm", weight: weight, bias: bias)
        return try batchNormBackward(gradOutput, forward: forward, outputMask: outputMask)
    }
}
