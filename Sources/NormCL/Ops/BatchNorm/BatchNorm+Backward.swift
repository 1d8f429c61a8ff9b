extension BatchNorm {
    /// The gradients of a forward step this layer ran, given dy.
    ///
    /// A training step (its output holds saved statistics) backpropagates through the
    /// batch statistics (with Batch Renorm's `r` and `d` as constants when the step
    /// used them); an inference step uses the layer's running statistics, which must
    /// be the ones that step normalised with (an inference step leaves them unchanged).
    /// See ``batchNormBackward(_:input:weight:forward:outputMask:)`` and
    /// ``batchNormBackward(_:input:weight:runningStatistics:eps:outputMask:)`` for the math.
    ///
    /// - Parameters:
    ///   - input: the step's input.
    ///   - forward: what ``forward(_:)`` returned for it.
    ///   - outputMask: which gradients to compute (default all that exist: dγ and dβ
    ///     only for the parameters the layer has).
    /// - Throws: as the functional backward passes.
    public func backward(
        _ gradOutput: Tensor, input: Tensor, forward: BatchNormOutput, outputMask: NormGradientMask = .all
    ) throws -> NormGradients {
        var mask = outputMask
        if weight == nil { mask.remove(.weight) }
        if bias == nil { mask.remove(.bias) }
        if forward.saveMean != nil {
            return try batchNormBackward(gradOutput, input: input, weight: weight, forward: forward, outputMask: mask)
        }
        guard let runningStatistics else {
            throw NormError.invalidArgument(
                argument: "forward", reason: "an inference output of a layer without running statistics")
        }
        return try batchNormBackward(
            gradOutput, input: input, weight: weight, runningStatistics: runningStatistics, eps: eps, outputMask: mask)
    }
}
