extension SwitchableNorm {
    /// The gradients of the loss with respect to `input`, γ, β and both mixing-logit
    /// vectors, for the forward pass ``forward(_:)`` made on `input` in the current mode.
    ///
    /// Runs ``switchableNormBackward(_:input:meanLogits:varianceLogits:weight:forward:runningStatistics:training:options:outputMask:)``
    /// with this layer's parameters, options and mode; in inference it reads the running
    /// statistics (unchanged by an inference forward). Call it before changing the
    /// parameters, options or mode: the saved statistics belong to them.
    public func backward(
        _ gradOutput: Tensor, input: Tensor, forward: SwitchableNormOutput, outputMask: NormGradientMask = .all
    ) throws -> SwitchableNormGradients {
        try switchableNormBackward(
            gradOutput, input: input, meanLogits: meanLogits, varianceLogits: varianceLogits, weight: weight,
            forward: forward, runningStatistics: runningStatistics, training: isTraining, options: options,
            outputMask: outputMask)
    }
}
