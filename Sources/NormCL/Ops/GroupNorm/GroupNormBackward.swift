/// The backward pass of ``groupNorm(_:numGroups:weight:bias:eps:activation:into:waitingFor:)``, from what the
/// forward returned, as PyTorch's `native_group_norm_backward`: the gradients of a loss with respect to the input,
/// γ and β, given `dy`, its gradient with respect to the output.
///
/// Per sample `n` and group `g`, over the group's `K = (C/G)·M` values, with the
/// saved statistics, `x̂ = (x − mean_{n,g})·invstd_{n,g}` and `g = dy·γ_c`:
///
///     dx   = invstd_{n,g}/K · (K·g − Σ g − x̂·Σ g·x̂)     (sums over the group)
///     dγ_c = Σ_{n,m} dy·x̂        dβ_c = Σ_{n,m} dy
///
/// The statistics are functions of x, and dx includes their gradient (the two sums).
/// When the forward fused an activation f, `y = f(a)` with `a = x̂·γ_c + β_c`, every `dy`
/// above is `dy·f′(a)` (the gradient at GroupNorm's output), with `a` recomputed from x,
/// the saved statistics, γ and β inside the kernels (no stored copy of `a` is read).
/// On OpenCL, one pass over `x` and `dy` reduces `Σdy` and `Σdy·(x − mean)` per (n, c)
/// (centred on the saved mean, so large-mean data does not cancel), a merge forms
/// per-(n, c) coefficients and `dx = a·dy + b·(x − mean) + c` is written in one more
/// pass (or from cache, when a group fits one work-group). Every sum merges in a
/// fixed order: the same inputs give bit-identical gradients.
///
/// - Parameters:
///   - gradOutput: `dy`, with the input's shape, layout and element type.
///   - forward: what ``groupNorm(_:numGroups:weight:bias:eps:activation:into:waitingFor:)`` returned; its input, G,
///     γ and saved statistics are used, so nothing can disagree.
///   - outputMask: the gradients to compute; the others come back nil and their work
///     is skipped. dγ (dβ) is returned only when the forward had a weight (bias).
///   - destinations: tensors to write dx, dγ and dβ into (OpenCL; see
///     ``BackwardDestinations``); new tensors where nil.
///   - waitList: events the first kernel waits for (the caller's write of dy, say); the
///     op returns without waiting.
/// - Returns: dx (the input's shape, layout and element type), dγ and dβ (float32 `[C]`).
/// - Throws: ``NormError`` for a `gradOutput` differing from the input in shape,
///   layout, element type or backend, or a destination that does not fit its gradient
///   (naming `destinations.gradInput`, …); ``OpenCLError`` or ``KernelBuildError`` when
///   the device fails.
public func groupNormBackward(
    _ gradOutput: Tensor, forward: GroupNormOutput, outputMask: NormGradientMask = .all,
    into destinations: BackwardDestinations = BackwardDestinations(), waitingFor waitList: [OpenCLEvent] = []
) throws -> NormGradients {
    guard let saved = forward.saved, let saveMean = forward.saveMean, let saveInvstd = forward.saveInvstd else {
        throw NormError.nothingSaved("groupNorm")
    }
    return try groupNormBackward(
        gradOutput, input: saved.input, numGroups: forward.numGroups, weight: saved.weight, bias: saved.bias,
        saveMean: saveMean, saveInvstd: saveInvstd, activation: saved.activation,
        outputMask: outputMask.restricted(to: saved), strategy: nil, tuning: nil,
        call: OpCall(waitList: waitList, backward: destinations))
}

/// The backward pass of GroupNorm from explicit saved statistics, as PyTorch's
/// `native_group_norm_backward(grad_out, input, mean, rstd, weight, N, C, HxW, group,
/// output_mask)`: for callers that keep the forward's input and statistics themselves
/// (tensors over their own buffers, the C API).
///
/// Per sample `n` and group `g`, over the group's `K = (C/G)·M` values, with
/// `x̂ = (x − saveMean_{n,g})·saveInvstd_{n,g}` and `g = dy·γ_c`:
///
///     dx   = invstd_{n,g}/K · (K·g − Σ g − x̂·Σ g·x̂)     (sums over the group)
///     dγ_c = Σ_{n,m} dy·x̂        dβ_c = Σ_{n,m} dy
///
/// With a fused `activation` f (the forward's `y = f(x̂·γ_c + β_c)`), every `dy` above is
/// `dy·f′(a)`, `a = x̂·γ_c + β_c` recomputed from x, the saved statistics, γ and β.
///
/// The statistics are never recomputed from x; the kernels and their determinism are
/// those of ``groupNormBackward(_:forward:outputMask:into:waitingFor:)``.
///
/// - Parameters:
///   - gradOutput: `dy`, with the input's shape, layout and element type.
///   - input: the forward pass's input x, `(N, C, *S)`.
///   - numGroups: the forward pass's G.
///   - weight: γ as in the forward pass (float32 `[C]`), or nil for γ = 1. With nil, a
///     requested dγ is still the gradient at γ = 1.
///   - saveMean: the forward pass's saved mean, float32 `(N, G)`.
///   - saveInvstd: the forward pass's saved `1/sqrt(var + eps)`, float32 `(N, G)`.
///   - bias: β as in the forward pass (float32 `[C]`), or nil for β = 0; read only with an
///     activation, whose input it shifts (default nil).
///   - activation: the activation the forward pass fused after the norm (default
///     ``Activation/none``).
///   - outputMask: the gradients to compute; the others come back nil and their work
///     is skipped.
///   - destinations: tensors to write dx, dγ and dβ into (OpenCL; see
///     ``BackwardDestinations``); new tensors where nil.
///   - waitList: events the first kernel waits for; the op returns without waiting.
/// - Returns: dx (the input's shape, layout and element type), dγ and dβ (float32 `[C]`).
/// - Throws: ``NormError`` for invalid arguments (what the forward pass throws for the
///   input, G, weight and bias; `gradOutput` differing from `input`; saved statistics not
///   float32 `(N, G)` on the input's backend; a destination that does not fit its
///   gradient); ``OpenCLError`` or ``KernelBuildError`` when the device fails.
public func groupNormBackward(
    _ gradOutput: Tensor, input: Tensor, numGroups: Int, weight: Tensor?, saveMean: Tensor, saveInvstd: Tensor,
    bias: Tensor? = nil, activation: Activation = .none, outputMask: NormGradientMask = .all,
    into destinations: BackwardDestinations = BackwardDestinations(), waitingFor waitList: [OpenCLEvent] = []
) throws -> NormGradients {
    try groupNormBackward(
        gradOutput, input: input, numGroups: numGroups, weight: weight, bias: bias, saveMean: saveMean,
        saveInvstd: saveInvstd, activation: activation, outputMask: outputMask, strategy: nil, tuning: nil,
        call: OpCall(waitList: waitList, backward: destinations))
}

/// The backward pass with the statistics the forward pass returned (tests pass the rest).
func groupNormBackward(
    _ gradOutput: Tensor, input: Tensor, numGroups: Int, weight: Tensor?, forward: GroupNormOutput,
    outputMask: NormGradientMask = .all
) throws -> NormGradients {
    guard let saveMean = forward.saveMean, let saveInvstd = forward.saveInvstd else {
        throw NormError.invalidArgument(argument: "forward", reason: "holds no saved statistics")
    }
    return try groupNormBackward(
        gradOutput, input: input, numGroups: numGroups, weight: weight, saveMean: saveMean, saveInvstd: saveInvstd,
        outputMask: outputMask)
}

/// The one implementation behind the public entry points; `strategy` forces a plan
/// strategy on OpenCL and `tuning` replaces the device's (tests use them to cover
/// each kernel path and GPU-style access on a CPU device).
func groupNormBackward(
    _ gradOutput: Tensor, input: Tensor, numGroups: Int, weight: Tensor?, bias: Tensor? = nil, saveMean: Tensor,
    saveInvstd: Tensor, activation: Activation = .none, outputMask: NormGradientMask,
    strategy: GroupNormBackwardPlan.Strategy?, tuning: DeviceTuning?, call: OpCall = OpCall()
) throws -> NormGradients {
    let problem = try GroupNormProblem.validatedBackward(
        gradOutput: gradOutput, input: input, groups: numGroups, weight: weight, bias: bias, saveMean: saveMean,
        saveInvstd: saveInvstd, op: "GroupNorm", activation: activation)
    if input.isEmpty { return try NormGradients.empty(like: input, parameterShape: [problem.channels], mask: outputMask) }
    switch input.backend {
    case .reference:
        let gradients = ReferenceGroupNorm.backward(
            problem, gradOutput: try gradOutput.toArray().map(Double.init), input: try input.toArray().map(Double.init),
            weight: try weight?.toArray().map(Double.init), bias: try bias?.toArray().map(Double.init),
            mean: try saveMean.toArray().map(Double.init),
            invstd: try saveInvstd.toArray().map(Double.init), mask: outputMask)
        return try gradients.tensors(for: problem)
    case .openCL(let runtime):
        let dy = gradOutput.openCLBuffer, x = input.openCLBuffer
        let mean = saveMean.openCLBuffer, invstd = saveInvstd.openCLBuffer
        let plan = GroupNormBackwardPlan(
            problem: problem, mask: outputMask, device: runtime.device, tuning: tuning ?? runtime.tuning,
            strategy: strategy)
        // β is read only by an activation (the input of f).
        let beta = activation == .none ? nil : bias
        let inputs = GroupNormBackwardKernels.Inputs(
            gradOutput: dy, x: x, weight: weight?.deviceBuffer, statistics: .saved(mean: mean, invstd: invstd),
            bias: beta?.deviceBuffer)
        return try GroupNormBackwardKernels.run(
            problem, plan: plan, inputs: inputs,
            call: call.reading(gradOutput, input, weight, beta, saveMean, saveInvstd), on: runtime)
    }
}
