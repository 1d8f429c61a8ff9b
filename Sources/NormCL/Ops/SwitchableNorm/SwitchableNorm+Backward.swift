extension SwitchableNorm {
    /// The backward pass of ``forward(_:)``: dx, dγ and dβ for the layer's own
    /// parameters, and the gradients of its two logit vectors. The math is that of
    /// ``switchableNormBackward(_:forward:outputMask:into:waitingFor:)``; the mode, options and running
    /// statistics are those the forward used.
    ///
    /// - Parameters:
    ///   - gradOutput: dy, with the input's shape, layout, element type and backend.
    ///   - forward: what ``forward(_:)`` returned.
    ///   - outputMask: which of dx, dγ, dβ to compute (default all that exist).
    /// - Throws: ``NormError/forwardMismatch(argument:reason:)`` when the layer's
    ///   weight, bias or logits are not those the forward used; what
    ///   ``switchableNormBackward(_:forward:outputMask:into:waitingFor:)`` throws.
    public func backward(
        _ gradOutput: Tensor, forward: SwitchableNormOutput, outputMask: NormGradientMask = .all
    ) throws -> SwitchableNormGradients {
        try forward.saved.checkedForLayer("switchableNorm", weight: weight, bias: bias)
        try NormError.checkUnchanged(meanLogits, since: forward.meanLogits, argument: "meanLogits")
        try NormError.checkUnchanged(varianceLogits, since: forward.varianceLogits, argument: "varianceLogits")
        return try switchableNormBackward(gradOutput, forward: forward, outputMask: outputMask)
    }
}
