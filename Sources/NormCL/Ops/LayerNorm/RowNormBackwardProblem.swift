/// A LayerNorm or RMSNorm backward call, described by what decides how to run it:
/// the forward problem (shape, element type, whether γ is given) and which gradients
/// the ``NormGradientMask`` asks for.
///
/// Built by ``validated(_:gradOutput:input:normalizedShape:weight:saveMean:saveScale:outputMask:)``,
/// where every argument check lives.
struct RowNormBackwardProblem: Hashable, Sendable {
    /// The forward call this is the backward pass of, with its fusion (residual, γ's
    /// offset, activation). Its `hasBias` says whether β was given to the backward: the
    /// activation's input needs its value, and RMSNorm returns dβ only with one.
    let forward: RowNormProblem
    /// dx is wanted.
    let needsInput: Bool
    /// dγ is wanted.
    let needsWeight: Bool
    /// dβ is wanted (LayerNorm always when asked; RMSNorm only when it had a β).
    let needsBias: Bool
    /// The input bias's gradient is wanted (the forward added one): Σ over rows of dh,
    /// formed from dx where dx is written, so dx is formed for it too.
    var needsInputBias = false
    /// The forward added an input bias (whether or not its gradient is wanted): the
    /// kernels carry the code of its partials (one program for every gradient mask).
    var hadInputBias = false

    var kind: RowNormProblem.Kind { forward.kind }
    var rows: Int { forward.rows }
    var rowLength: Int { forward.rowLength }
    /// dγ, dβ or the input bias's gradient: the column reduction over rows runs.
    var needsParameters: Bool { needsWeight || needsBias || needsInputBias }
    /// dx is formed: wanted, or summed for the input bias's gradient.
    var formsInput: Bool { needsInput || needsInputBias }
    /// Whose column partials the kernels form: their `parameters` argument
    /// (PARTIALS_DGAMMA 1, PARTIALS_DBETA 2, PARTIALS_DINPUT_BIAS 4).
    var partialSets: UInt32 { (needsWeight ? 1 : 0) | (needsBias ? 2 : 0) | (needsInputBias ? 4 : 0) }
    /// The float32 partial arrays of ``partialSets``' layout: 3 with the input bias's, else 2.
    var partialArrays: Int { needsInputBias ? 3 : 2 }
    /// The gradients wanted.
    var mask: NormGradientMask {
        NormGradientMask().union(needsInput ? .input : []).union(needsWeight ? .weight : []).union(needsBias ? .bias : [])
            .union(needsInputBias ? .inputBias : [])
    }

    /// Checks every argument and describes the call.
    ///
    /// - Parameters:
    ///   - saveMean: LayerNorm's saved per-row mean (nil for RMSNorm).
    ///   - saveScale: the saved per-row `invstd` (LayerNorm) or `rstd` (RMSNorm).
    /// - Throws: ``NormError`` naming the first argument that is wrong: the input's and
    ///   weight's checks of the forward op, then `gradOutput` (shape, backend, layout,
    ///   element type), then the saved statistics (shape = the input's leading dims,
    ///   float32, same backend).
    static func validated(
        _ kind: RowNormProblem.Kind, gradOutput: Tensor, input: Tensor, normalizedShape: [Int], weight: Tensor?,
        saveMean: Tensor?, saveScale: Tensor, outputMask: NormGradientMask, bias: Tensor? = nil,
        residual: Tensor? = nil, inputBias: Tensor? = nil, weightOffset: Float = 0, activation: Activation = .none,
        gradResidualSum: Tensor? = nil, inputIsSum: Bool = false
    ) throws(NormError) -> RowNormBackwardProblem {
        // Reading the stored h, the input bias is already in it: only its gradient is formed.
        // eps is not used by the backward pass; any valid value passes the forward checks.
        var forward = try RowNormProblem.validated(
            kind, input: input, normalizedShape: normalizedShape, weight: weight, bias: bias, eps: 0,
            residual: residual, inputBias: inputIsSum ? nil : inputBias, weightOffset: weightOffset,
            activation: activation)
        forward.fusion.inputIsSum = inputIsSum
        try NormError.checkGradOutput(gradOutput, matches: input)
        if let gradResidualSum {
            // The gradient of h has h's element type: the residual's, or the input's when it is h.
            guard let sum = inputIsSum ? input : residual else {
                throw .invalidArgument(argument: "gradResidualSum", reason: "the forward added no residual")
            }
            try NormError.checkCompanion(gradResidualSum, "gradResidualSum", matches: sum)
        }
        let statisticsShape = forward.statisticsShape
        let scaleName = kind == .layerNorm ? "saveInvstd" : "saveInvRms"
        if kind == .layerNorm {
            guard let saveMean else { preconditionFailure("LayerNorm backward needs the saved mean") }
            try NormError.checkParameter(saveMean, "saveMean", shape: statisticsShape, backend: input.backend)
        }
        try NormError.checkParameter(saveScale, scaleName, shape: statisticsShape, backend: input.backend)
        return RowNormBackwardProblem(
            forward: forward, needsInput: outputMask.contains(.input), needsWeight: outputMask.contains(.weight),
            needsBias: (kind == .layerNorm || bias != nil) && outputMask.contains(.bias),
            needsInputBias: inputBias != nil && outputMask.contains(.inputBias), hadInputBias: inputBias != nil)
    }
}
