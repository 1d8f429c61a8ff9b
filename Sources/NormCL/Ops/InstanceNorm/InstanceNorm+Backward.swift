extension InstanceNorm {
    /// The backward pass of ``forward(_:)``: the gradients with respect to the input
    /// and, for an affine layer, to ``weight`` and ``bias``.
    ///
    /// When the forward pass normalised with the input's statistics (training, or no
    /// tracked statistics) the gradient runs through them, as
    /// ``instanceNormBackward(_:input:weight:saveMean:saveInvstd:outputMask:)``; when it
    /// normalised with the running statistics (inference mode), they are constants, as
    /// ``instanceNormBackward(_:input:weight:runningStatistics:eps:outputMask:)`` with
    /// this layer's ``runningStatistics`` and ``eps``.
    ///
    /// - Parameters:
    ///   - gradOutput: `dy`, with the input's shape, layout and element type.
    ///   - input: the input ``forward(_:)`` was called with.
    ///   - forward: what ``forward(_:)`` returned for it.
    ///   - outputMask: the gradients to compute (default all); dγ and dβ of a layer
    ///     without affine parameters are never computed (they come back nil).
    /// - Throws: ``NormError/shapeMismatch(argument:expected:actual:)`` when the input's
    ///   channels differ from ``numFeatures``;
    ///   ``NormError/invalidArgument(argument:reason:)`` (`runningStatistics`) when
    ///   `forward` saved no statistics and the layer has no running statistics; and
    ///   what the functional forms throw.
    public func backward(
        _ gradOutput: Tensor, input: Tensor, forward: InstanceNormOutput, outputMask: NormGradientMask = .all
    ) throws -> NormGradients {
        if input.shape.count >= 2, input.shape[1] != numFeatures {
            throw NormError.shapeMismatch(
                argument: "input", expected: [input.shape[0], numFeatures] + input.shape.dropFirst(2), actual: input.shape)
        }
        let parameters: NormGradientMask = [weight == nil ? [] : .weight, bias == nil ? [] : .bias]
        let mask = outputMask.intersection(parameters.union(.input))
        if let saveMean = forward.saveMean, let saveInvstd = forward.saveInvstd {
            return try instanceNormBackward(
                gradOutput, input: input, weight: weight, saveMean: saveMean, saveInvstd: saveInvstd, outputMask: mask)
        }
        guard let runningStatistics else {
            throw NormError.invalidArgument(
                argument: "runningStatistics", reason: "the forward pass saved no statistics and the layer tracks none")
        }
        return try instanceNormBackward(
            gradOutput, input: input, weight: weight, runningStatistics: runningStatistics, eps: eps, outputMask: mask)
    }
}
