/// The backward pass of ``switchableNorm(_:meanLogits:varianceLogits:weight:bias:runningStatistics:training:options:into:waitingFor:)``:
/// gradients with respect to the input, γ, β and both mixing-logit vectors, given `dy`.
///
/// Derivation (per instance `r = (n, c)` of `L` values, `s = invstd`, `g = γ_c`, `pμ`,
/// `pσ` the two softmaxes). The forward is `y = g·(x − μ)·s + β` with
/// `μ = Σ_k pμ_k μ_k`, `σ² = Σ_k pσ_k σ²_k`, `s = 1/sqrt(σ² + eps)`. With
/// `S1 = Σ_l dy`, `S2 = Σ_l dy·(x − μ)`:
///
///     ∂/∂μ[r]  = Aμ[r] = −g·s·S1              ∂/∂σ²[r] = Aσ[r] = −½·g·s³·S2
///     dγ_c = Σ_n s·S2                        dβ_c = Σ_n S1
///     ∂/∂μ_ln[n] = pμ_LN Σ_c Aμ,  ∂/∂σ²_ln[n] = pσ_LN Σ_c Aσ   (BN alike, summed over n)
///
/// Every set variance has the form `σ²_set = α·Σ M2_in + β·Σ (μ_in − μ_set)²` over its
/// `k` instances (`M2_in = Σ_l (x − μ_in)²`): with IN, `α = 1/(k·D_in)`, `β = 1/k`
/// (`D_in = L − 1` unbiased, `L` biased); without IN, `α = 1/(k·L − u)`, `β = L·α`
/// (`u = 1` unbiased). `∂σ²_set/∂μ_in = 2β(μ_in − μ_set)` (the `μ_set` term sums to
/// zero), `∂M2_in/∂x = 2(x − μ_in)`, `∂μ_in/∂x = 1/L`, so
///
///     ∂/∂M2_in[r] = pσ_IN·Aσ[r]/D_in + α_LN·∂σ²_ln[n] + α_BN·∂σ²_bn[c]
///     ∂/∂μ_in[r]  = pμ_IN·Aμ[r] + ∂μ_ln[n]/C + 2β_LN·∂σ²_ln[n]·(μ_in − μ_ln)
///                               + ∂μ_bn[c]/N + 2β_BN·∂σ²_bn[c]·(μ_in − μ_bn)
///     dx = g·s·dy + ∂μ_in[r]/L + 2·∂M2_in[r]·(x − μ_in)
///
/// (BN terms only in training: in inference the running statistics are constants.)
/// Without IN, `β/L = α` makes `μ_in` cancel, which is why ``SwitchableNormOutput`` need
/// not carry it: `dx = g·s·dy + (∂μ_ln/C + ∂μ_bn/N)/L + 2α_LN·∂σ²_ln·(x − μ_ln)
/// + 2α_BN·∂σ²_bn·(x − μ_bn)`, the chain rule through the directly computed LN and BN
/// statistics. The kernels and the reference evaluate both forms product by product,
/// `dx = a·dy + b·(x − μ_in) + c` per instance (without IN: `b·(x − μ_ln) + b₂·(x − μ_bn)`),
/// centred on means of the data so 1e4-offset data keeps its precision, and with an Inf
/// in `dy` giving the same ±Inf and NaN (a regrouped form can meet ∞ − ∞).
///
/// Logits, through the softmax Jacobian, with the mixed statistic subtracted inside the
/// sum (no cancellation on large-mean data):
///
///     dwμ_k = pμ_k·Σ_r Aμ[r]·(μ_k(r) − Σ_j pμ_j μ_j(r))
///     dwσ_k = pσ_k·Σ_r Aσ[r]·(σ²_k(r) − Σ_j pσ_j σ²_j(r))
///
/// (the forward's clamp of a rounding-negative σ² at 0 is treated as the identity),
/// evaluated as `μ_k − Σ_j pμ_j μ_j = Σ_{j≠k} pμ_j·(μ_k − μ_j)` (Σ_j pμ_j = 1): differences of
/// statistics, zero only where two are equal, in float32 and float64 alike.
/// The logit gradients are always computed: they reuse the per-instance sums `dx` needs.
///
/// All sums run in a fixed order on the device: repeated calls give bit-identical results.
///
/// - Parameters:
///   - gradOutput: `dy`, the input's shape, layout and element type.
///   - forward: the forward's output. Its input, logits, γ, mode, options, saved
///     statistics and (inference with a BN branch) the running statistics it mixed in
///     are used, so nothing can disagree with the forward.
///   - outputMask: which of dx, dγ, dβ to compute; dγ (dβ) is returned only when the
///     forward had a weight (bias).
///   - destinations: tensors to write dx, dγ and dβ into (OpenCL; see
///     ``BackwardDestinations``); new tensors where nil. The logit gradients are always
///     new tensors.
///   - waitList: events the first kernel waits for (the caller's write of dy, say); the
///     op returns without waiting.
/// - Returns: ``SwitchableNormGradients``.
/// - Throws: ``NormError`` for a `gradOutput` that does not match the input (shape,
///   layout, element type, backend), or a destination that does not fit its gradient
///   (naming `destinations.gradInput`, …); ``OpenCLError`` or ``KernelBuildError``.
public func switchableNormBackward(
    _ gradOutput: Tensor, forward: SwitchableNormOutput, outputMask: NormGradientMask = .all,
    into destinations: BackwardDestinations = BackwardDestinations(), waitingFor waitList: [OpenCLEvent] = []
) throws -> SwitchableNormGradients {
    guard let saved = forward.saved, let meanLogits = forward.meanLogits, let varianceLogits = forward.varianceLogits
    else { throw NormError.nothingSaved("switchableNorm") }
    return try switchableNormBackward(
        gradOutput, input: saved.input, meanLogits: meanLogits, varianceLogits: varianceLogits, weight: saved.weight,
        forward: forward, runningStatistics: forward.runningStatistics, training: forward.training,
        options: forward.options, outputMask: outputMask.restricted(to: saved), strategy: nil,
        call: OpCall(waitList: waitList, backward: destinations))
}

/// The backward pass with every argument of the forward passed again (tests).
func switchableNormBackward(
    _ gradOutput: Tensor, input: Tensor, meanLogits: Tensor, varianceLogits: Tensor, weight: Tensor?,
    forward: SwitchableNormOutput, runningStatistics: RunningStatistics? = nil, training: Bool,
    options: SwitchableNormOptions = SwitchableNormOptions(), outputMask: NormGradientMask = .all
) throws -> SwitchableNormGradients {
    try switchableNormBackward(
        gradOutput, input: input, meanLogits: meanLogits, varianceLogits: varianceLogits, weight: weight,
        forward: forward, runningStatistics: runningStatistics, training: training, options: options,
        outputMask: outputMask, strategy: nil)
}

/// The one implementation behind the public entry point; `strategy` and `tuning` force a
/// plan on OpenCL (tests cover every strategy and the GPU code paths on a CPU device).
func switchableNormBackward(
    _ gradOutput: Tensor, input: Tensor, meanLogits: Tensor, varianceLogits: Tensor, weight: Tensor?,
    forward: SwitchableNormOutput, runningStatistics: RunningStatistics?, training: Bool,
    options: SwitchableNormOptions, outputMask: NormGradientMask, strategy: SwitchableNormPlan.Strategy?,
    tuning: DeviceTuning? = nil, call: OpCall = OpCall()
) throws -> SwitchableNormGradients {
    let inference = !training && options.branches.hasBatch
    let problem = try SwitchableNormProblem.validated(
        input: input, meanLogits: meanLogits, varianceLogits: varianceLogits, weight: weight, bias: nil,
        running: inference ? runningStatistics : nil, training: training, options: options)
    try NormError.checkGradOutput(gradOutput, matches: input)
    let statistics = try SwitchableNormStatistics<Tensor>(
        saved: forward, problem: problem, running: inference ? runningStatistics : nil, backend: input.backend)
    if input.isEmpty {
        // No value contributes to any sum: zero parameter and logit gradients.
        let gradients = try NormGradients.empty(like: input, parameterShape: [problem.channels], mask: outputMask)
        let logits = [problem.branches.count]
        return SwitchableNormGradients(
            input: gradients.input, weight: gradients.weight, bias: gradients.bias,
            meanLogits: try Tensor(repeating: 0, shape: logits, on: input.backend),
            varianceLogits: try Tensor(repeating: 0, shape: logits, on: input.backend), events: [])
    }

    switch input.backend {
    case .reference:
        func doubles(_ tensor: Tensor?) throws -> [Double]? { try tensor?.toArray().map(Double.init) }
        let saved = try statistics.map { try doubles($0)! }
        let r = ReferenceSwitchableNorm.backward(
            problem, gradOutput: try doubles(gradOutput)!, x: try doubles(input)!, meanLogits: try doubles(meanLogits)!,
            varianceLogits: try doubles(varianceLogits)!, weight: try doubles(weight), statistics: saved)
        func floats(_ values: [Double]) -> [Float] { values.map(Float.init) }
        return SwitchableNormGradients(
            input: outputMask.contains(.input)
                ? Tensor(
                    referenceValues: floats(r.input), shape: problem.shape, layout: problem.layout,
                    elementType: problem.elementType) : nil,
            weight: outputMask.contains(.weight) ? Tensor(referenceValues: floats(r.weight), shape: [problem.channels]) : nil,
            bias: outputMask.contains(.bias) ? Tensor(referenceValues: floats(r.bias), shape: [problem.channels]) : nil,
            meanLogits: Tensor(referenceValues: floats(r.meanLogits), shape: [problem.branches.count]),
            varianceLogits: Tensor(referenceValues: floats(r.varianceLogits), shape: [problem.branches.count]),
            events: [])
    case .openCL(let runtime):
        let plan = SwitchableNormBackwardPlan(
            problem: problem, device: runtime.device, tuning: tuning ?? runtime.tuning, strategy: strategy)
        let inputs = SwitchableNormBackwardKernels.Inputs(
            gradOutput: gradOutput.openCLBuffer, x: input.openCLBuffer, meanLogits: meanLogits.openCLBuffer,
            varianceLogits: varianceLogits.openCLBuffer, weight: weight?.openCLBuffer,
            statistics: statistics.map(\.openCLBuffer))
        return try SwitchableNormBackwardKernels.run(
            problem, plan: plan, inputs: inputs, mask: outputMask,
            call: call.reading([gradOutput, input, meanLogits, varianceLogits, weight] + statistics.all.map(Optional.some)),
            on: runtime)
    }
}
