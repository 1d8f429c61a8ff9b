/// The backward pass of ``instanceNorm(_:weight:bias:runningStatistics:useInputStatistics:momentum:eps:into:waitingFor:)``
/// (or ``instanceNorm(_:weight:bias:eps:into:waitingFor:)``) from what the forward returned, as PyTorch's.
///
/// With the input's statistics (training, or inference without tracked statistics),
/// GroupNorm's backward with one group per channel: per sample `n` and channel `c`,
/// over its M spatial values, with the saved statistics, `x̂ = (x − mean_{n,c})·invstd_{n,c}`:
///
///     dx   = γ_c·invstd_{n,c}/M · (M·dy − Σ_m dy − x̂·Σ_m dy·x̂)
///     dγ_c = Σ_{n,m} dy·x̂        dβ_c = Σ_{n,m} dy
///
/// With running statistics (`useInputStatistics: false`) they are constants, so with
/// `invstd_c = 1/sqrt(running_var_c + eps)`:
///
///     dx = dy·γ_c·invstd_c      dγ_c = Σ_{n,m} dy·(x − running_mean_c)·invstd_c      dβ_c = Σ_{n,m} dy
///
/// (The running-statistics update of the forward pass has no gradient, as in PyTorch.)
/// Bit-for-bit deterministic on OpenCL.
///
/// - Parameters:
///   - gradOutput: `dy`, with the input's shape, layout and element type.
///   - forward: what the forward returned; its input, γ, eps and statistics are used.
///   - outputMask: the gradients to compute; the others come back nil. dγ (dβ) is
///     returned only when the forward had a weight (bias).
///   - destinations: tensors to write dx, dγ and dβ into (OpenCL; see
///     ``BackwardDestinations``); new tensors where nil.
///   - waitList: events the first kernel waits for (the caller's write of dy, say); the
///     op returns without waiting.
/// - Returns: dx (the input's shape, layout and element type), dγ and dβ (float32 `[C]`).
/// - Throws: ``NormError`` for a `gradOutput` differing from the input in shape,
///   layout, element type or backend, or a destination that does not fit its gradient
///   (naming `destinations.gradInput`, …); ``OpenCLError`` or ``KernelBuildError`` when
///   the device fails.
public func instanceNormBackward(
    _ gradOutput: Tensor, forward: InstanceNormOutput, outputMask: NormGradientMask = .all,
    into destinations: BackwardDestinations = BackwardDestinations(), waitingFor waitList: [OpenCLEvent] = []
) throws -> NormGradients {
    guard let saved = forward.saved else { throw NormError.nothingSaved("instanceNorm") }
    let statistics: InstanceNormBackwardStatistics
    if let mean = forward.saveMean, let invstd = forward.saveInvstd {
        statistics = .saved(mean: mean, invstd: invstd)
    } else if let running = forward.runningStatistics {
        statistics = .running(running, eps: saved.eps)
    } else {
        throw NormError.nothingSaved("instanceNorm")
    }
    return try instanceNormBackward(
        gradOutput, input: saved.input, weight: saved.weight, statistics: statistics,
        outputMask: outputMask.restricted(to: saved), strategy: nil, tuning: nil,
        call: OpCall(waitList: waitList, backward: destinations))
}

/// The backward pass of InstanceNorm with the input's statistics (training, or
/// inference without tracked statistics) from explicit saved statistics, as PyTorch's:
/// GroupNorm's backward with one group per channel (`native_group_norm_backward` with
/// `group = C`), for callers that keep the forward's input and statistics themselves
/// (tensors over their own buffers, the C API).
///
/// Per sample `n` and channel `c`, over its M spatial values, with the saved
/// statistics, `x̂ = (x − mean_{n,c})·invstd_{n,c}`:
///
///     dx   = γ_c·invstd_{n,c}/M · (M·dy − Σ_m dy − x̂·Σ_m dy·x̂)
///     dγ_c = Σ_{n,m} dy·x̂        dβ_c = Σ_{n,m} dy
///
/// (The running-statistics update of the forward pass has no gradient, as in PyTorch.)
/// Runs the kernels of ``groupNormBackward(_:input:numGroups:weight:saveMean:saveInvstd:bias:activation:outputMask:into:waitingFor:)``;
/// bit-for-bit deterministic on OpenCL.
///
/// - Parameters:
///   - gradOutput: `dy`, with the input's shape, layout and element type.
///   - input: the forward pass's input, `(N, C, *S)` with at least one spatial dim.
///   - weight: γ as in the forward pass, or nil for γ = 1. With nil, a requested dγ is
///     still the gradient at γ = 1.
///   - saveMean: the forward pass's saved mean, float32 `(N, C)`.
///   - saveInvstd: the forward pass's saved `1/sqrt(var + eps)`, float32 `(N, C)`.
///   - outputMask: the gradients to compute; the others come back nil.
///   - destinations: tensors to write dx, dγ and dβ into (OpenCL; see
///     ``BackwardDestinations``); new tensors where nil.
///   - waitList: events the first kernel waits for; the op returns without waiting.
/// - Returns: dx (the input's shape, layout and element type), dγ and dβ (float32 `[C]`).
/// - Throws: ``NormError`` for invalid arguments (what the forward pass throws with
///   input statistics, incl. a single spatial element; `gradOutput` differing from
///   `input`; saved statistics not float32 `(N, C)` on the input's backend; a
///   destination that does not fit its gradient); ``OpenCLError`` or
///   ``KernelBuildError`` when the device fails.
public func instanceNormBackward(
    _ gradOutput: Tensor, input: Tensor, weight: Tensor?, saveMean: Tensor, saveInvstd: Tensor,
    outputMask: NormGradientMask = .all,
    into destinations: BackwardDestinations = BackwardDestinations(), waitingFor waitList: [OpenCLEvent] = []
) throws -> NormGradients {
    try instanceNormBackward(
        gradOutput, input: input, weight: weight, statistics: .saved(mean: saveMean, invstd: saveInvstd),
        outputMask: outputMask, strategy: nil, tuning: nil, call: OpCall(waitList: waitList, backward: destinations))
}

/// `instanceNormBackward(_:input:weight:saveMean:saveInvstd:outputMask:into:waitingFor:)`
/// with the statistics the forward pass returned (tests).
///
/// - Throws: ``NormError/invalidArgument(argument:reason:)`` (`forward`) when the
///   forward pass used running statistics (it saved none: use
///   `instanceNormBackward(_:input:weight:runningStatistics:eps:outputMask:into:waitingFor:)`),
///   and what the other form throws.
func instanceNormBackward(
    _ gradOutput: Tensor, input: Tensor, weight: Tensor?, forward: InstanceNormOutput,
    outputMask: NormGradientMask = .all
) throws -> NormGradients {
    guard let saveMean = forward.saveMean, let saveInvstd = forward.saveInvstd else {
        throw NormError.invalidArgument(
            argument: "forward", reason: "holds no saved statistics (it normalised with running statistics)")
    }
    return try instanceNormBackward(
        gradOutput, input: input, weight: weight, saveMean: saveMean, saveInvstd: saveInvstd, outputMask: outputMask)
}

/// The backward pass of InstanceNorm in inference mode (`useInputStatistics: false`),
/// which normalised with the running statistics, from those statistics (for callers
/// that keep the forward's input and statistics themselves). They are constants, so, with
/// `invstd_c = 1/sqrt(running_var_c + eps)`:
///
///     dx = dy·γ_c·invstd_c      dγ_c = Σ_{n,m} dy·(x − running_mean_c)·invstd_c      dβ_c = Σ_{n,m} dy
///
/// - Parameters:
///   - gradOutput: `dy`, with the input's shape, layout and element type.
///   - input: the forward pass's input, `(N, C, *S)` with at least one spatial dim.
///   - weight: γ as in the forward pass, or nil for γ = 1.
///   - runningStatistics: the running statistics the forward pass normalised with
///     (float32 `[C]`; `numBatchesTracked` is not used).
///   - eps: as in the forward pass (default `1e-5`); finite and ≥ 0.
///   - outputMask: the gradients to compute; the others come back nil.
///   - destinations: tensors to write dx, dγ and dβ into (OpenCL; see
///     ``BackwardDestinations``); new tensors where nil.
///   - waitList: events the first kernel waits for; the op returns without waiting.
/// - Returns: dx (the input's shape, layout and element type), dγ and dβ (float32 `[C]`).
/// - Throws: ``NormError`` for invalid arguments (input rank, `gradOutput`
///   differing from `input`, weight or running statistics not float32 `[C]` on the
///   input's backend, bad eps, a destination that does not fit its gradient);
///   ``OpenCLError`` or ``KernelBuildError`` when the device fails.
public func instanceNormBackward(
    _ gradOutput: Tensor, input: Tensor, weight: Tensor?, runningStatistics: RunningStatistics, eps: Float = 1e-5,
    outputMask: NormGradientMask = .all,
    into destinations: BackwardDestinations = BackwardDestinations(), waitingFor waitList: [OpenCLEvent] = []
) throws -> NormGradients {
    try instanceNormBackward(
        gradOutput, input: input, weight: weight, statistics: .running(runningStatistics, eps: eps),
        outputMask: outputMask, strategy: nil, tuning: nil, call: OpCall(waitList: waitList, backward: destinations))
}

/// The one implementation behind the public entry points; `strategy` forces a plan
/// strategy on OpenCL and `tuning` replaces the device's (tests use them to cover
/// each kernel path and GPU-style access on a CPU device).
func instanceNormBackward(
    _ gradOutput: Tensor, input: Tensor, weight: Tensor?, statistics: InstanceNormBackwardStatistics,
    outputMask: NormGradientMask, strategy: GroupNormBackwardPlan.Strategy?, tuning: DeviceTuning?,
    call: OpCall = OpCall()
) throws -> NormGradients {
    let shape = input.shape
    guard shape.count >= 3 else {
        throw NormError.invalidShape(
            argument: "input", reason: "InstanceNorm needs (N, C, *spatial) with at least one spatial dim, got \(shape)")
    }
    let problem: GroupNormProblem
    switch statistics {
    case .saved(let mean, let invstd):
        problem = try GroupNormProblem.validatedBackward(
            gradOutput: gradOutput, input: input, groups: shape[1], weight: weight, saveMean: mean, saveInvstd: invstd,
            op: "InstanceNorm")
        if problem.spatial == 1 {
            // As the forward pass: "Expected more than 1 spatial element when training".
            throw NormError.tooFewValuesPerChannel(valuesPerChannel: problem.spatial, shape: shape)
        }
    case .running(let running, let eps):
        problem = try GroupNormProblem.validated(
            input: input, groups: shape[1], weight: weight, bias: nil, statistics: .running, eps: eps, op: "InstanceNorm")
        try NormError.checkGradOutput(gradOutput, matches: input)
        try NormError.checkParameter(running.mean, "runningMean", shape: [problem.channels], backend: input.backend)
        try NormError.checkParameter(running.variance, "runningVar", shape: [problem.channels], backend: input.backend)
    }
    if input.isEmpty { return try NormGradients.empty(like: input, parameterShape: [problem.channels], mask: outputMask) }

    switch input.backend {
    case .reference:
        let dy = try gradOutput.toArray().map(Double.init)
        let x = try input.toArray().map(Double.init)
        let gamma = try weight?.toArray().map(Double.init)
        let gradients: ReferenceGroupNorm.Gradients
        switch statistics {
        case .saved(let mean, let invstd):
            gradients = ReferenceGroupNorm.backward(
                problem, gradOutput: dy, input: x, weight: gamma, mean: try mean.toArray().map(Double.init),
                invstd: try invstd.toArray().map(Double.init), mask: outputMask)
        case .running(let running, let eps):
            gradients = ReferenceGroupNorm.backwardWithConstantStatistics(
                problem, gradOutput: dy, input: x, weight: gamma, mean: try running.mean.toArray().map(Double.init),
                invstd: try running.variance.toArray().map { 1 / (Double($0) + Double(eps)).squareRoot() },
                mask: outputMask)
        }
        return try gradients.tensors(for: problem)
    case .openCL(let runtime):
        let statisticsTensors: [Tensor?] =
            switch statistics {
            case .saved(let mean, let invstd): [mean, invstd]
            case .running(let running, _): [running.mean, running.variance]
            }
        let deviceStatistics: GroupNormBackwardKernels.Statistics =
            switch statistics {
            case .saved(let mean, let invstd): .saved(mean: mean.openCLBuffer, invstd: invstd.openCLBuffer)
            case .running(let running, let eps):
                .running(mean: running.mean.openCLBuffer, variance: running.variance.openCLBuffer, eps: eps)
            }
        let plan = GroupNormBackwardPlan(
            problem: problem, mask: outputMask, device: runtime.device, tuning: tuning ?? runtime.tuning,
            strategy: strategy)
        let inputs = GroupNormBackwardKernels.Inputs(
            gradOutput: gradOutput.openCLBuffer, x: input.openCLBuffer, weight: weight?.deviceBuffer, statistics: deviceStatistics)
        return try GroupNormBackwardKernels.run(
            problem, plan: plan, inputs: inputs, call: call.reading([gradOutput, input, weight] + statisticsTensors),
            on: runtime)
    }
}
