extension GroupNormProblem {
    /// Checks the arguments of a GroupNorm or InstanceNorm backward pass with saved
    /// statistics and describes the call: the input's problem with the statistics of the
    /// input, as the forward pass saved them. β matters only to a fused activation (whose
    /// input the backward recomputes); without one the gradient needs none.
    ///
    /// - Parameters:
    ///   - bias: β as in the forward pass, or nil (β = 0).
    ///   - op: the op's name for messages ("GroupNorm", "InstanceNorm").
    ///   - activation: the activation the forward pass fused after the norm.
    /// - Throws: ``NormError`` naming the first argument that is wrong: what the
    ///   forward pass would throw for `input`, `groups`, `weight` and `bias`; `gradOutput`
    ///   not matching `input`; saved statistics not float32 `(N, G)` on the input's backend.
    static func validatedBackward(
        gradOutput: Tensor, input: Tensor, groups: Int, weight: Tensor?, bias: Tensor? = nil, saveMean: Tensor,
        saveInvstd: Tensor, op: String, activation: Activation = .none
    ) throws(NormError) -> GroupNormProblem {
        try checkInput(input, groups: groups, weight: weight, op: op)
        try NormError.checkParameter(bias, "bias", shape: [input.shape[1]], backend: input.backend)
        try NormError.checkGradOutput(gradOutput, matches: input)
        let rowShape = [input.shape[0], groups]
        try NormError.checkParameter(saveMean, "saveMean", shape: rowShape, backend: input.backend)
        try NormError.checkParameter(saveInvstd, "saveInvstd", shape: rowShape, backend: input.backend)
        return GroupNormProblem(
            shape: input.shape, layout: input.layout, elementType: input.elementType, groups: groups,
            statistics: .input(savesVariance: false), hasWeight: weight != nil, hasBias: bias != nil,
            activation: activation)
    }
}
