/// Group normalisation, as `torch.nn.functional.group_norm(x, numGroups, weight, bias, eps)`.
///
/// The C channels are split into `G = numGroups` groups of `C/G` adjacent channels.
/// Per sample `n` and group `g`, over the group's `(C/G)·M` values:
///
///     mean_{n,g} = Σ x / ((C/G)·M)      var_{n,g} = Σ (x − mean_{n,g})² / ((C/G)·M)   (biased)
///     y = (x − mean_{n,g}) / sqrt(var_{n,g} + eps) · γ_c + β_c
///
/// with γ and β per channel, then, with an `activation` f other than ``Activation/none``,
///
///     y = f((x − mean_{n,g}) / sqrt(var_{n,g} + eps) · γ_c + β_c)
///
/// fused into the same kernels (the diffusion U-Net's `silu(group_norm(x))`): f is
/// applied in registers before each store, so the fused op reads and writes exactly
/// what GroupNorm alone does. There are no running statistics: training and inference
/// compute the same thing. `numGroups == 1` normalises each sample over all of C and
/// the spatial dims; `numGroups == C` is InstanceNorm without running statistics. A
/// group of one value (`C/G·M == 1`) has variance 0 and outputs β, as in PyTorch.
///
/// Statistics are computed in float32 in one pass relative to a per-group pilot
/// value with Chan's merge of shifted block sums, accurate for data with a large mean
/// (`1e4 + N(0,1)`); outputs are formed as `((x − pilot) − (mean − pilot))·scale + β`.
///
/// - Parameters:
///   - input: `(N, C, *S)` with any number of spatial dims (`(N, C)` too),
///     channels-first or channels-last, float32 or half storage; the output has the
///     same layout and element type.
///   - numGroups: G, positive and dividing C.
///   - weight: γ, float32, shape `[C]`, or nil for γ = 1.
///   - bias: β, float32, shape `[C]`, or nil for β = 0.
///   - eps: added to the variance inside the square root (default `1e-5`); finite and ≥ 0.
///   - activation: f applied to the normalised value (default ``Activation/none``): ReLU,
///     SiLU, GELU or GELU's tanh form, with PyTorch's formulas. The saved statistics are
///     GroupNorm's; ``groupNormBackward(_:forward:outputMask:into:waitingFor:)`` applies
///     f′ at the recomputed input of f.
///   - destinations: tensors to write the output and the saved statistics into (OpenCL;
///     see ``ForwardDestinations``; `runningMean` and `runningVar` are not used); new
///     tensors where nil.
///   - waitList: events the op's first kernel waits for (the caller's writes of the
///     input, say); the op returns without waiting for anything.
/// - Returns: the output, and the saved mean and inverse standard deviation per
///   (n, g), shape `(N, G)`, float32.
///   An empty input gives an empty output and `(N, G)` statistics of no values (mean 0,
///   invstd NaN) without a kernel launch, as PyTorch.
/// - Throws: ``NormError`` for invalid arguments (rank below 2, N·M or N·C of 2^32 or more,
///   `numGroups ≤ 0` or not dividing C, parameter shape/backend/type mismatches,
///   a destination that does not fit its result (naming `destinations.output`, …),
///   non-finite or negative eps); ``OpenCLError`` or ``KernelBuildError`` when the
///   device fails.
public func groupNorm(
    _ input: Tensor, numGroups: Int, weight: Tensor? = nil, bias: Tensor? = nil, eps: Float = 1e-5,
    activation: Activation = .none, into destinations: ForwardDestinations = ForwardDestinations(),
    waitingFor waitList: [OpenCLEvent] = []
) throws -> GroupNormOutput {
    try groupNorm(
        input, numGroups: numGroups, weight: weight, bias: bias, eps: eps, activation: activation, strategy: nil,
        call: OpCall(waitList: waitList, forward: destinations))
}

/// One-shot group normalisation of host float32 values in channels-first order:
/// uploads, normalises, downloads. See
/// ``groupNorm(_:numGroups:weight:bias:eps:activation:into:waitingFor:)``.
///
/// - Parameters:
///   - values: the input, `shape`'s element count.
///   - shape: `(N, C, *S)`.
///   - numGroups: G, positive and dividing C.
///   - weight: γ, `C` values, or nil for γ = 1.
///   - bias: β, `C` values, or nil for β = 0.
///   - eps: added to the variance inside the square root; finite and ≥ 0.
///   - activation: f applied to the normalised value, `y = f(GN(x))` (default
///     ``Activation/none``).
///   - backend: where to run; ``Backend/default`` when nil.
public func groupNorm(
    _ values: [Float], shape: [Int], numGroups: Int, weight: [Float]? = nil, bias: [Float]? = nil,
    eps: Float = 1e-5, activation: Activation = .none, on backend: Backend? = nil
) throws -> [Float] {
    try oneShot(values, shape: shape, weight: weight, bias: bias, on: backend) {
        try groupNorm($0, numGroups: numGroups, weight: $1, bias: $2, eps: eps, activation: activation).output
    }
}

/// The one implementation behind the public entry points; `strategy` forces a plan
/// strategy on OpenCL (tests use it to cover each one).
func groupNorm(
    _ input: Tensor, numGroups: Int, weight: Tensor?, bias: Tensor?, eps: Float, activation: Activation = .none,
    strategy: GroupNormPlan.Strategy?, call: OpCall = OpCall()
) throws -> GroupNormOutput {
    let problem = try GroupNormProblem.validated(
        input: input, groups: numGroups, weight: weight, bias: bias, statistics: .input(savesVariance: false), eps: eps,
        op: "GroupNorm", activation: activation)
    var output = try groupNormOutput(
        input, problem, weight: weight, bias: bias, eps: eps, strategy: strategy, call: call)
    output.saved = SavedForward(input: input, weight: weight, bias: bias, eps: eps, activation: activation)
    output.numGroups = numGroups
    return output
}

private func groupNormOutput(
    _ input: Tensor, _ problem: GroupNormProblem, weight: Tensor?, bias: Tensor?, eps: Float,
    strategy: GroupNormPlan.Strategy?, call: OpCall
) throws -> GroupNormOutput {
    if input.isEmpty {
        // As PyTorch: an empty output and `(N, G)` saved statistics, no kernel launch.
        let rowShape = [problem.batch, problem.groups]
        return GroupNormOutput(
            output: try Tensor(zerosLike: input),
            saveMean: try Tensor(repeating: 0, shape: rowShape, on: input.backend),
            saveInvstd: try Tensor(repeating: .nan, shape: rowShape, on: input.backend), events: [])
    }
    switch input.backend {
    case .reference:
        let result = ReferenceGroupNorm.forward(
            problem, x: try input.toArray(), weight: try weight?.toArray(), bias: try bias?.toArray(), eps: Double(eps))
        let rowShape = [problem.batch, problem.groups]
        return GroupNormOutput(
            output: Tensor(
                referenceValues: result.output, shape: problem.shape, layout: problem.layout, elementType: problem.elementType),
            saveMean: try Tensor(result.mean.map(Float.init), shape: rowShape, on: .reference),
            saveInvstd: try Tensor(result.invstd.map(Float.init), shape: rowShape, on: .reference),
            events: [])
    case .openCL(let runtime):
        let x = input.openCLBuffer
        let plan = GroupNormPlan(problem: problem, device: runtime.device, tuning: runtime.tuning, strategy: strategy)
        let inputs = ChannelInputs(
            x: x, operands: ChannelOperands(weight: weight, bias: bias, running: nil, momentum: 0, eps: eps))
        let result = try GroupNormKernels.run(
            problem, plan: plan, inputs: inputs, running: nil, call: call.reading(input, weight, bias), on: runtime)
        return GroupNormOutput(
            output: result.output, saveMean: result.saveMean, saveInvstd: result.saveInvstd, events: result.events)
    }
}
