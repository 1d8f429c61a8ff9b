extension GroupNorm {
    /// The backward pass of ``forward(_:)``: the gradients with respect to the input
    /// and, for an affine layer, to ``weight`` and ``bias``; the math is that of
    /// ``groupNormBackward(_:input:numGroups:weight:saveMean:saveInvstd:outputMask:)``.
    ///
    /// - Parameters:
    ///   - gradOutput: `dy`, with the input's shape, layout and element type.
    ///   - input: the input ``forward(_:)`` was called with.
    ///   - forward: what ``forward(_:)`` returned for it.
    ///   - outputMask: the gradients to compute (default all); dγ and dβ of a layer
    ///     without affine parameters are never computed (they come back nil).
    /// - Throws: ``NormError/shapeMismatch(argument:expected:actual:)`` when the input's
    ///   channels differ from ``numChannels``, and what the functional form throws.
    public func backward(
        _ gradOutput: Tensor, input: Tensor, forward: GroupNormOutput, outputMask: NormGradientMask = .all
    ) throws -> NormGradients {
        if input.shape.count >= 2, input.shape[1] != numChannels {
            throw NormError.shapeMismatch(
                argument: "input", expected: [input.shape[0], numChannels] + input.shape.dropFirst(2), actual: input.shape)
        }
        let parameters: NormGradientMask = [weight == nil ? [] : .weight, bias == nil ? [] : .bias]
        return try groupNormBackward(
            gradOutput, input: input, numGroups: numGroups, weight: weight, forward: forward,
            outputMask: outputMask.intersection(parameters.union(.input)))
    }
}
