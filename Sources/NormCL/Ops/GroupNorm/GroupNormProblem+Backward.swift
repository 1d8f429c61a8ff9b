extension GroupNormProblem {
    /// Checks the arguments of a GroupNorm or InstanceNorm backward pass with saved
    /// statistics and describes the call (the forward problem of the same input).
    ///
    /// - Parameter op: the op's name for messages ("GroupNorm", "InstanceNorm").
    /// - Throws: ``NormError`` naming the first argument that is wrong: what the
    ///   forward pass would throw for `input`, `groups` and `weight`; `gradOutput`
    ///   not matching `input`; saved statistics not float32 `(N, G)` on the input's backend.
    static func validatedBackward(
        gradOutput: Tensor, input: Tensor, groups: Int, weight: Tensor?, saveMean: Tensor, saveInvstd: Tensor, op: String
    ) throws(NormError) -> GroupNormProblem {
        let problem = try validated(
            input: input, groups: groups, weight: weight, bias: nil, statistics: .input(savesVariance: false), eps: 0,
            op: op)
        try NormError.checkGradOutput(gradOutput, matches: input)
        let rowShape = [problem.batch, problem.groups]
        try NormError.checkParameter(saveMean, "saveMean", shape: rowShape, backend: input.backend)
        try NormError.checkParameter(saveInvstd, "saveInvstd", shape: rowShape, backend: input.backend)
        return problem
    }
}
