/// The backward pass of a BatchNorm forward — training, Batch Renorm or inference —
/// from what it returned: its input, γ, eps and statistics come from `forward`, so
/// nothing can disagree.
///
/// - Training (``batchNorm(_:weight:bias:eps:activation:addend:into:waitingFor:)`` or `training: true`): through the
///   batch statistics (`torch.ops.aten.native_batch_norm_backward` with `train=True`);
///   per channel `c` over its `n = N·M` values, with `x̂ = (x − saveMean_c)·saveInvstd_c`:
///
///       dβ_c = Σ dy        dγ_c = Σ dy·x̂
///       dx   = γ_c·invstd_c/n · (n·dy − dβ_c − x̂·dγ_c)
///
/// - Batch Renorm (``batchRenorm(_:weight:bias:runningStatistics:limits:momentum:eps:activation:addend:into:waitingFor:)``):
///   `r` and `d` held constant (Ioffe, 2017), `y = γ·(x̂·r + d) + β`:
///
///       dβ_c = Σ dy        dγ_c = Σ dy·(x̂·r_c + d_c)
///       dx   = γ_c·r_c·invstd_c/n · (n·dy − Σ dy − x̂·Σ dy·x̂)
///
/// - Inference (`training: false`): the running statistics it normalised with are
///   constants, `invstd_c = 1/sqrt(running_var_c + eps)`:
///
///       dx = dy·γ_c·invstd_c       dγ_c = Σ dy·(x − running_mean_c)·invstd_c       dβ_c = Σ dy
///
/// - A fused epilogue, `y = f(a)` with `a = BN(x) + z` (the forward's `activation` and
///   `addend`): every dy above is first taken through the activation,
///
///       g = dy·f′(a)        dz = g
///
///   with `a` recomputed from x, the statistics, γ and β (and z) — never read back from
///   a stored pre-activation — and g is what the formulas above sum and scale.
///
/// Statistics are never recomputed from x. On OpenCL the sums come from one pass over x
/// and dy, float32 with compensated partial sums merged in a fixed order (bit-identical
/// from run to run), then one pass writes dx (and dz); inference dx alone is one
/// elementwise pass.
///
/// - Parameters:
///   - gradOutput: dy, the input's shape, layout and element type.
///   - forward: what the forward returned.
///   - outputMask: which gradients to compute; the others come back nil and their
///     work is skipped. dγ (dβ) is returned only when the forward had a weight (bias),
///     dz (``NormGradients/addend``) only when it had an addend.
///   - destinations: tensors to write dx, dγ, dβ and dz into (OpenCL; see
///     ``BackwardDestinations``); new tensors where nil. None may overlap the addend.
///   - waitList: events the first kernel waits for (the caller's write of dy, say); the
///     op returns without waiting.
/// - Returns: dx (input's shape, layout and element type; half storage is rounded once),
///   dγ and dβ (`[C]`, float32), and with an addend dz (its shape, layout and element type).
/// - Throws: ``NormError`` for a `gradOutput` that does not match the input (shape,
///   layout, element type, backend); ``OpenCLError`` or ``KernelBuildError`` when the
///   device fails.
public func batchNormBackward(
    _ gradOutput: Tensor, forward: BatchNormOutput, outputMask: NormGradientMask = .all,
    into destinations: BackwardDestinations = BackwardDestinations(), waitingFor waitList: [OpenCLEvent] = []
) throws -> NormGradients {
    guard let saved = forward.saved else { throw NormError.nothingSaved("batchNorm") }
    let statistics: BatchNormBackwardProblem.Statistics
    if let mean = forward.saveMean, let invstd = forward.saveInvstd {
        if let r = forward.renormR, let d = forward.renormD {
            statistics = .renorm(mean: mean, invstd: invstd, r: r, d: d)
        } else {
            statistics = .batch(mean: mean, invstd: invstd)
        }
    } else if let running = forward.runningStatistics {
        statistics = .running(mean: running.mean, variance: running.variance, eps: saved.eps)
    } else {
        throw NormError.nothingSaved("batchNorm")
    }
    return try batchNormBackward(
        gradOutput, input: saved.input, weight: saved.weight, statistics: statistics,
        outputMask: outputMask.restricted(to: saved), strategy: nil, bias: saved.bias, activation: saved.activation,
        addend: saved.addend, call: OpCall(waitList: waitList, backward: destinations))
}

/// The backward pass of BatchNorm training (`torch.ops.aten.native_batch_norm_backward`
/// with `train=True`): gradients through the batch statistics.
///
/// Per channel `c` over its `n = N·M` values, with `x̂ = (x − saveMean_c)·saveInvstd_c`:
///
///     dβ_c = Σ dy        dγ_c = Σ dy·x̂
///     dx   = γ_c·invstd_c/n · (n·dy − dβ_c − x̂·dγ_c)
///
/// from the statistics the forward saved (never recomputed from x). On OpenCL, `Σdy`
/// and `Σdy·x̂` come from one pass over x and dy, float32 with compensated partial sums
/// merged in a fixed order (bit-identical from run to run), then one pass writes dx.
///
/// For a forward with a fused epilogue `y = f(BN(x) + z)`, pass its `activation`, its
/// `addend` and its `bias` (β enters the activation's input): dy is first taken through
/// the activation, `g = dy·f′(a)` with `a = (x − saveMean_c)·saveInvstd_c·γ_c + β_c + z`
/// recomputed here, and g replaces dy above; dz = g.
///
/// - Parameters:
///   - gradOutput: dy, the input's shape, layout and element type.
///   - input: the forward's input x.
///   - weight: γ (`[C]`), or nil for γ = 1. With nil, a requested dγ is still the
///     gradient at γ = 1; pass `outputMask: .input` for a layer without affine parameters.
///   - bias: β (`[C]`) as in the forward, or nil for β = 0; read only with an activation.
///   - saveMean: the forward's ``BatchNormOutput/saveMean``.
///   - saveInvstd: the forward's ``BatchNormOutput/saveInvstd``.
///   - activation: the forward's fused activation (``Activation/none``: none).
///   - addend: the forward's addend z, or nil; with one, dz is returned.
///   - outputMask: which gradients to compute; the others come back nil and their
///     work is skipped.
///   - destinations: tensors to write dx, dγ, dβ and dz into (OpenCL; see
///     ``BackwardDestinations``); new tensors where nil.
///   - waitList: events the first kernel waits for (the caller's write of dy, say); the
///     op returns without waiting.
/// - Returns: dx (input's shape, layout and element type; half storage is rounded once),
///   dγ and dβ (`[C]`, float32), dz (the addend's shape, layout and element type).
/// - Throws: ``NormError`` for a `gradOutput` or `addend` that does not match the input, a
///   weight, bias or statistic that is not `[C]` float32 on the input's backend, an input
///   shape the forward rejects (fewer than two dims, too large, one value per channel);
///   ``OpenCLError`` or ``KernelBuildError`` when the device fails.
public func batchNormBackward(
    _ gradOutput: Tensor, input: Tensor, weight: Tensor?, bias: Tensor? = nil, saveMean: Tensor, saveInvstd: Tensor,
    activation: Activation = .none, addend: Tensor? = nil, outputMask: NormGradientMask = .all,
    into destinations: BackwardDestinations = BackwardDestinations(), waitingFor waitList: [OpenCLEvent] = []
) throws -> NormGradients {
    try batchNormBackward(
        gradOutput, input: input, weight: weight, statistics: .batch(mean: saveMean, invstd: saveInvstd),
        outputMask: outputMask, strategy: nil, bias: bias, activation: activation, addend: addend,
        call: OpCall(waitList: waitList, backward: destinations))
}

/// The backward pass of a BatchNorm forward, from its ``BatchNormOutput``, with the
/// forward's epilogue (bias, activation, addend) when it saved one.
///
/// A training output backpropagates through its saved batch statistics, as
/// ``batchNormBackward(_:input:weight:bias:saveMean:saveInvstd:activation:addend:outputMask:into:waitingFor:)``; a Batch
/// Renorm output (one with ``BatchNormOutput/renormR``) as
/// ``batchRenormBackward(_:input:weight:bias:saveMean:saveInvstd:renormR:renormD:activation:addend:outputMask:into:waitingFor:)``.
///
/// - Throws: as those, and ``NormError/invalidArgument(argument:reason:)`` for an
///   inference output, which saves no statistics: use
///   ``batchNormBackward(_:input:weight:bias:runningStatistics:eps:activation:addend:outputMask:into:waitingFor:)``.
func batchNormBackward(
    _ gradOutput: Tensor, input: Tensor, weight: Tensor?, forward: BatchNormOutput, outputMask: NormGradientMask = .all
) throws -> NormGradients {
    guard let mean = forward.saveMean, let invstd = forward.saveInvstd else {
        throw NormError.invalidArgument(
            argument: "forward",
            reason: "an inference output saves no statistics: pass the running statistics (runningStatistics:eps:)")
    }
    let statistics: BatchNormBackwardProblem.Statistics
    if let r = forward.renormR, let d = forward.renormD {
        statistics = .renorm(mean: mean, invstd: invstd, r: r, d: d)
    } else {
        statistics = .batch(mean: mean, invstd: invstd)
    }
    return try batchNormBackward(
        gradOutput, input: input, weight: weight, statistics: statistics, outputMask: outputMask, strategy: nil,
        bias: forward.saved?.bias, activation: forward.saved?.activation ?? .none, addend: forward.saved?.addend)
}

/// The backward pass of BatchNorm inference (`training: false`): the running
/// statistics are constants, so per channel
///
///     dx = dy·γ_c·invstd_c       dγ_c = Σ dy·(x − running_mean_c)·invstd_c       dβ_c = Σ dy
///
/// with `invstd_c = 1/sqrt(running_var_c + eps)`. dx alone is one elementwise pass
/// (the speed of a copy); dγ or dβ add the per-channel sums. With a fused epilogue
/// `y = f(BN(x) + z)`, dy is first taken through the activation, `g = dy·f′(a)` with
/// `a = (x − running_mean_c)·invstd_c·γ_c + β_c + z`, and dz = g.
///
/// - Parameters:
///   - gradOutput: dy, the input's shape, layout and element type.
///   - input: the forward's input x.
///   - weight: γ (`[C]`) as in the forward, or nil for γ = 1.
///   - bias: β (`[C]`) as in the forward, or nil for β = 0; read only with an activation.
///   - runningStatistics: the statistics the forward normalised with.
///   - eps: the forward's eps.
///   - activation: the forward's fused activation (``Activation/none``: none).
///   - addend: the forward's addend z, or nil; with one, dz is returned.
///   - outputMask: which gradients to compute; the others come back nil and their
///     work is skipped.
///   - destinations: tensors to write dx, dγ, dβ and dz into (OpenCL; see
///     ``BackwardDestinations``); new tensors where nil.
///   - waitList: events the first kernel waits for (the caller's write of dy, say); the
///     op returns without waiting.
/// - Throws: as ``batchNormBackward(_:input:weight:bias:saveMean:saveInvstd:activation:addend:outputMask:into:waitingFor:)``
///   (with `runningMean`/`runningVar` named), and for a negative or non-finite eps.
public func batchNormBackward(
    _ gradOutput: Tensor, input: Tensor, weight: Tensor?, bias: Tensor? = nil, runningStatistics: RunningStatistics,
    eps: Float = 1e-5, activation: Activation = .none, addend: Tensor? = nil, outputMask: NormGradientMask = .all,
    into destinations: BackwardDestinations = BackwardDestinations(), waitingFor waitList: [OpenCLEvent] = []
) throws -> NormGradients {
    try batchNormBackward(
        gradOutput, input: input, weight: weight,
        statistics: .running(mean: runningStatistics.mean, variance: runningStatistics.variance, eps: eps),
        outputMask: outputMask, strategy: nil, bias: bias, activation: activation, addend: addend,
        call: OpCall(waitList: waitList, backward: destinations))
}

/// The backward pass of Batch Renormalization's training forward, with `r` and `d`
/// held constant (Ioffe, 2017): `y = γ·(x̂_B·r + d) + β` gives, per channel,
///
///     dβ_c = Σ dy        dγ_c = Σ dy·(x̂_B·r_c + d_c)
///     dx   = γ_c·r_c·invstd_c/n · (n·dy − Σ dy − x̂_B·Σ dy·x̂_B)
///
/// with `x̂_B = (x − saveMean_c)·saveInvstd_c`. With `r = 1`, `d = 0` (limits
/// ``BatchRenormLimits/batchNorm``) this is BatchNorm's backward. With a fused epilogue
/// `y = f(a)`, dy is first taken through the activation, `g = dy·f′(a)` with
/// `a = (x − saveMean_c)·saveInvstd_c·r_c·γ_c + d_c·γ_c + β_c + z`, and dz = g.
///
/// - Parameters:
///   - gradOutput: dy, the input's shape, layout and element type.
///   - input: the forward's input x.
///   - weight: γ (`[C]`) as in the forward, or nil for γ = 1.
///   - bias: β (`[C]`) as in the forward, or nil for β = 0; read only with an activation.
///   - saveMean: the forward's ``BatchNormOutput/saveMean``.
///   - saveInvstd: the forward's ``BatchNormOutput/saveInvstd``.
///   - renormR: the forward's ``BatchNormOutput/renormR``.
///   - renormD: the forward's ``BatchNormOutput/renormD``.
///   - activation: the forward's fused activation (``Activation/none``: none).
///   - addend: the forward's addend z, or nil; with one, dz is returned.
///   - outputMask: which gradients to compute; the others come back nil and their
///     work is skipped.
///   - destinations: tensors to write dx, dγ, dβ and dz into (OpenCL; see
///     ``BackwardDestinations``); new tensors where nil.
///   - waitList: events the first kernel waits for (the caller's write of dy, say); the
///     op returns without waiting.
/// - Throws: as ``batchNormBackward(_:input:weight:bias:saveMean:saveInvstd:activation:addend:outputMask:into:waitingFor:)``,
///   also for `renormR`/`renormD`.
public func batchRenormBackward(
    _ gradOutput: Tensor, input: Tensor, weight: Tensor?, bias: Tensor? = nil, saveMean: Tensor, saveInvstd: Tensor,
    renormR: Tensor, renormD: Tensor, activation: Activation = .none, addend: Tensor? = nil,
    outputMask: NormGradientMask = .all,
    into destinations: BackwardDestinations = BackwardDestinations(), waitingFor waitList: [OpenCLEvent] = []
) throws -> NormGradients {
    try batchNormBackward(
        gradOutput, input: input, weight: weight,
        statistics: .renorm(mean: saveMean, invstd: saveInvstd, r: renormR, d: renormD), outputMask: outputMask,
        strategy: nil, bias: bias, activation: activation, addend: addend,
        call: OpCall(waitList: waitList, backward: destinations))
}

/// The backward pass of a ``batchRenorm(_:weight:bias:runningStatistics:limits:momentum:eps:activation:addend:into:waitingFor:)``
/// forward, from its output.
///
/// - Throws: as ``batchRenormBackward(_:input:weight:bias:saveMean:saveInvstd:renormR:renormD:activation:addend:outputMask:into:waitingFor:)``,
///   and ``NormError/invalidArgument(argument:reason:)`` for an output that is not Batch
///   Renorm's (no `r` and `d`).
func batchRenormBackward(
    _ gradOutput: Tensor, input: Tensor, weight: Tensor?, forward: BatchNormOutput, outputMask: NormGradientMask = .all
) throws -> NormGradients {
    guard let mean = forward.saveMean, let invstd = forward.saveInvstd, let r = forward.renormR, let d = forward.renormD
    else {
        throw NormError.invalidArgument(argument: "forward", reason: "not a Batch Renorm training output (no r and d)")
    }
    return try batchNormBackward(
        gradOutput, input: input, weight: weight, statistics: .renorm(mean: mean, invstd: invstd, r: r, d: d),
        outputMask: outputMask, strategy: nil, bias: forward.saved?.bias, activation: forward.saved?.activation ?? .none,
        addend: forward.saved?.addend)
}

/// The one implementation behind the public entry points; `strategy` forces a plan
/// strategy and `tuning` replaces the runtime's on OpenCL (tests cover each strategy,
/// and GPU-style launches on a CPU device, with them). `bias`, `activation` and `addend`
/// are the forward's fused epilogue (β only enters the activation's input).
func batchNormBackward(
    _ gradOutput: Tensor, input: Tensor, weight: Tensor?, statistics: BatchNormBackwardProblem.Statistics,
    outputMask: NormGradientMask, strategy: BatchNormPlan.Strategy?, tuning: DeviceTuning? = nil,
    bias: Tensor? = nil, activation: Activation = .none, addend: Tensor? = nil, call: OpCall = OpCall()
) throws -> NormGradients {
    let problem = try BatchNormBackwardProblem.validated(
        gradOutput: gradOutput, input: input, weight: weight, statistics: statistics, outputMask: outputMask,
        bias: bias, activation: activation, addend: addend)
    let mask = problem.outputMask
    if mask.isEmpty { return NormGradients(input: nil, weight: nil, bias: nil, events: []) }
    if input.isEmpty {
        var gradients = try NormGradients.empty(like: input, parameterShape: [problem.channels], mask: mask)
        if mask.contains(.addend) { gradients.addend = try Tensor(zerosLike: input) }
        return gradients
    }
    let renorm = statistics.renorm
    // β enters only the activation's input: not read (nor passed) without an activation.
    let bias = activation == .none ? nil : bias
    switch input.backend {
    case .reference:
        let result = ReferenceBatchNorm.backward(
            problem, dy: try gradOutput.toArray(), x: try input.toArray(), weight: try weight?.toArray(),
            bias: try bias?.toArray(), mean: try statistics.mean.toArray(), second: try statistics.second.toArray(),
            renormR: try renorm?.r.toArray(), renormD: try renorm?.d.toArray(), eps: statistics.eps,
            addend: try addend?.toArray())
        return try NormGradients(reference: result, problem: problem)
    case .openCL(let runtime):
        let x = input.openCLBuffer, dy = gradOutput.openCLBuffer
        let mean = statistics.mean.openCLBuffer, second = statistics.second.openCLBuffer
        let plan = BatchNormPlan(
            problem: problem, device: runtime.device, tuning: tuning ?? runtime.tuning, strategy: strategy)
        let inputs = BatchNormBackwardKernels.Inputs(
            x: x, dy: dy, weight: weight?.deviceBuffer, mean: mean, second: second,
            renormR: renorm?.r.deviceBuffer, renormD: renorm?.d.deviceBuffer, eps: statistics.eps,
            bias: bias?.deviceBuffer, addend: addend?.openCLBuffer)
        return try BatchNormBackwardKernels.run(
            problem, plan: plan, inputs: inputs,
            call: call.reading(
                gradOutput, input, weight, statistics.mean, statistics.second, renorm?.r, renorm?.d, bias, addend),
            on: runtime)
    }
}

extension NormGradients {
    /// A reference backward's gradients as host tensors: dx and dz of `problem`'s shape,
    /// layout and element type (rounded once), dγ and dβ `[C]` float32.
    init(
        reference result: (gradInput: [Float]?, gradWeight: [Float]?, gradBias: [Float]?, gradAddend: [Float]?),
        problem: BatchNormBackwardProblem
    ) throws {
        func like(_ values: [Float]) -> Tensor {
            Tensor(referenceValues: values, shape: problem.shape, layout: problem.layout, elementType: problem.elementType)
        }
        self.init(
            input: result.gradInput.map(like), weight: try result.gradWeight.map { try Tensor($0, on: .reference) },
            bias: try result.gradBias.map { try Tensor($0, on: .reference) }, events: [])
        addend = result.gradAddend.map(like)
    }
}
