extension GroupNormProblem {
    /// Checks the arguments of a GroupNorm or InstanceNorm backward pass with saved
    /// statistics and describes the call: the input's problem, without β (its gradient
    /// needs none) and with the statistics of the input, as the forward pass saved them.
    ///
    /// - Parameter op: the op's name for messages ("GroupNorm", "InstanceNorm").
    /// - Throws: ``NormError`` naming the first argument that is wrong: what the
    ///   forward pass would throw for `input`, `groups` and `weight`; `gradOutput`
    ///   not matching `input`; saved statistics not float32 `(N, G)` on the input's backend.
    static func validatedBackward(
        gradOutput: Tensor, input: Tensor, groups: Int, weight: Tensor?, saveMean: Tensor, saveInvstd: Tensor, op: String
    ) throws(NormError) -> GroupNormProblem {
        try checkInput(input, groups: groups, weight: weight, op: op)
        try NormError.checkGradOutput(gradOutput, matches: input)
        let rowShape = [input.shape[0], groups]
        try NormError.checkParameter(saveMean, "saveMean", shape: rowShape, backend: input.backend)
        try NormError.checkParameter(saveInvstd, "saveInvstd", shape: rowShape, backend: input.backend)
        return GroupNormProblem(
            shape: input.shape, layout: input.layout, elementType: input.elementType, groups: groups,
            statistics: .input(savesVariance: false), hasWeight: weight != nil, hasBias: false)
    }
}
