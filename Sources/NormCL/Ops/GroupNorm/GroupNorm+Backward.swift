extension GroupNorm {
    /// The backward pass of ``forward(_:)``: the gradients with respect to the input
    /// and, for an affine layer, to ``weight`` and ``bias``; the math is that of
    /// ``groupNormBackward(_:forward:outputMask:into:waitingFor:)``.
    ///
    /// - Parameters:
    ///   - gradOutput: `dy`, with the input's shape, layout and element type.
    ///   - forward: what ``forward(_:)`` returned.
    ///   - outputMask: the gradients to compute (default all); dγ and dβ of a layer
    ///     without affine parameters are never computed (they come back nil).
    /// - Throws: ``NormError/forwardMismatch(argument:reason:)`` when the layer's weight
    ///   or bias is not the one the forward used, or the forward had another G or another
    ///   ``activation``; and what
    ///   ``groupNormBackward(_:forward:outputMask:into:waitingFor:)`` throws.
    public func backward(
        _ gradOutput: Tensor, forward: GroupNormOutput, outputMask: NormGradientMask = .all
    ) throws -> NormGradients {
        let saved = try forward.saved.checkedForLayer("groupNorm", weight: weight, bias: bias)
        guard forward.numGroups == numGroups else {
            throw NormError.forwardMismatch(argument: "forward", reason: "made with \(forward.numGroups) groups, the layer has \(numGroups)")
        }
        guard saved.activation == activation else {
            throw NormError.forwardMismatch(
                argument: "activation", reason: "the forward fused \(saved.activation), the layer has \(activation)")
        }
        return try groupNormBackward(gradOutput, forward: forward, outputMask: outputMask)
    }
}
