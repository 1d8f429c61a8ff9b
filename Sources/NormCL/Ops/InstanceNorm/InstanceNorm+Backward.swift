extension InstanceNorm {
    /// The backward pass of ``forward(_:)``: the gradients with respect to the input and,
    /// for an affine layer, to ``weight`` and ``bias``. A training forward (or one without
    /// tracked statistics) backpropagates through its instance statistics; an inference
    /// forward with tracked statistics through the running statistics it normalised
    /// with, as constants. The math is that of ``instanceNormBackward(_:forward:outputMask:into:waitingFor:)``.
    ///
    /// - Parameters:
    ///   - gradOutput: `dy`, with the input's shape, layout and element type.
    ///   - forward: what ``forward(_:)`` returned.
    ///   - outputMask: the gradients to compute (default all); dγ and dβ of a layer
    ///     without affine parameters are never computed (they come back nil).
    /// - Throws: ``NormError/forwardMismatch(argument:reason:)`` when the layer's weight
    ///   or bias is not the one the forward used; what
    ///   ``instanceNormBackward(_:forward:outputMask:into:waitingFor:)`` throws.
    public func backward(
        _ gradOutput: Tensor, forward: InstanceNormOutput, outputMask: NormGradientMask = .all
    ) throws -> NormGradients {
        try forward.saved.checkedForLayer("instanceNorm", weight: weight, bias: bias)
        return try instanceNormBackward(gradOutput, forward: forward, outputMask: outputMask)
    }
}
