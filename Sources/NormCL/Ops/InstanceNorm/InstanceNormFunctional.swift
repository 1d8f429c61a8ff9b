/// Instance normalisation, as `torch.nn.functional.instance_norm(x, running_mean,
/// running_var, weight, bias, use_input_stats, momentum, eps)`.
///
/// With the input's statistics (`useInputStatistics == true`), per sample `n` and channel
/// `c` over its M spatial values (GroupNorm with one group per channel):
///
///     mean_{n,c} = Σ x / M            var_{n,c} = Σ (x − mean_{n,c})² / M      (biased)
///     y = (x − mean_{n,c}) / sqrt(var_{n,c} + eps) · γ_c + β_c
///
/// and, when `runningStatistics` is given, it is replaced by the updated statistics
/// (new tensors; the old ones keep their values), with the batch average over N of
/// the per-instance statistics:
///
///     running_mean = (1 − m)·running_mean + m · Σ_n mean_{n,c} / N
///     running_var  = (1 − m)·running_var  + m · Σ_n var_{n,c}·M/(M − 1) / N   (unbiased)
///
/// with `m = momentum`, or `m = 1 / numBatchesTracked` (a cumulative average) when
/// `momentum` is nil; `numBatchesTracked` is incremented first. With
/// `useInputStatistics == false` (inference with tracked statistics) the running
/// statistics replace the instance statistics, per channel, and nothing is updated:
/// `y = (x − running_mean_c) / sqrt(running_var_c + eps) · γ_c + β_c`.
///
/// Statistics are computed in float32 in one pass relative to a per-instance pilot
/// value with Chan's merge of shifted block sums, accurate for data with a large mean.
///
/// - Parameters:
///   - input: `(N, C, *S)` with at least one spatial dim, channels-first or
///     channels-last, float32 or half storage; the output has the same layout and type.
///   - weight: γ, float32, shape `[C]`, or nil for γ = 1.
///   - bias: β, float32, shape `[C]`, or nil for β = 0.
///   - runningStatistics: running mean and unbiased variance (float32, shape `[C]`),
///     updated in training; ``instanceNorm(_:weight:bias:eps:into:waitingFor:)`` tracks none
///     (PyTorch's default).
///   - useInputStatistics: normalise with the input's statistics (training, and
///     inference without tracking) or with the running ones.
///   - momentum: weight of the new batch in the running update, in [0, 1] (default 0.1);
///     nil for a cumulative average.
///   - eps: added to the variance inside the square root (default `1e-5`); finite and ≥ 0.
///   - destinations: tensors to write the output, the saved statistics and the updated
///     running statistics into (OpenCL; see ``ForwardDestinations``); new tensors where
///     nil. Pass `runningStatistics.mean` and `.variance` as `runningMean` and `runningVar`
///     to update them in place.
///   - waitList: events the op's first kernel waits for (the caller's writes of the
///     input, say); the op returns without waiting for anything.
/// - Returns: the output and, with input statistics, the saved mean and inverse
///   standard deviation per (n, c), shape `(N, C)`, float32. An empty input gives an
///   empty output (statistics of no values: mean 0, invstd NaN) without a kernel
///   launch and leaves the running statistics unchanged, as PyTorch.
/// - Throws: ``NormError`` for invalid arguments (fewer than three dims,
///   a single spatial element with input statistics, PyTorch's "Expected more than 1
///   spatial element when training", as ``NormError/tooFewValuesPerChannel(valuesPerChannel:shape:)``;
///   no running statistics with `useInputStatistics == false`; parameter shape/backend/type
///   mismatches; a destination that does not fit its result, naming `destinations.output`,
///   …; non-finite or negative eps; momentum outside [0, 1]);
///   ``OpenCLError`` or ``KernelBuildError`` when the device fails.
public func instanceNorm(
    _ input: Tensor, weight: Tensor? = nil, bias: Tensor? = nil, runningStatistics: inout RunningStatistics,
    useInputStatistics: Bool = true, momentum: Float? = 0.1, eps: Float = 1e-5,
    into destinations: ForwardDestinations = ForwardDestinations(), waitingFor waitList: [OpenCLEvent] = []
) throws -> InstanceNormOutput {
    try runningStatistics.updated { running in
        try instanceNorm(
            input, runningStatistics: &running, weight: weight, bias: bias, useInputStats: useInputStatistics,
            momentum: momentum, eps: eps, strategy: nil, call: OpCall(waitList: waitList, forward: destinations))
    }
}

/// The argument order of the tests written before the public API settled (running
/// statistics first, optional).
func instanceNorm(
    _ input: Tensor, runningStatistics: inout RunningStatistics?, weight: Tensor? = nil, bias: Tensor? = nil,
    useInputStats: Bool = true, momentum: Float? = 0.1, eps: Float = 1e-5
) throws -> InstanceNormOutput {
    try instanceNorm(
        input, runningStatistics: &runningStatistics, weight: weight, bias: bias, useInputStats: useInputStats,
        momentum: momentum, eps: eps, strategy: nil)
}

/// Instance normalisation with the input's statistics and no running statistics:
/// `torch.nn.functional.instance_norm(x, weight=weight, bias=bias, eps=eps)`.
///
/// See ``instanceNorm(_:weight:bias:runningStatistics:useInputStatistics:momentum:eps:into:waitingFor:)``
/// for the math.
///
/// - Parameters:
///   - input: `(N, C, *S)` with at least one spatial dim, channels-first or
///     channels-last, float32 or half storage; the output has the same layout and type.
///   - weight: γ, float32, shape `[C]`, or nil for γ = 1.
///   - bias: β, float32, shape `[C]`, or nil for β = 0.
///   - eps: added to the variance inside the square root (default `1e-5`); finite and ≥ 0.
///   - destinations: tensors to write the output and the saved statistics into (OpenCL;
///     see ``ForwardDestinations``; `runningMean` and `runningVar` are not used); new
///     tensors where nil.
///   - waitList: events the op's first kernel waits for; the op returns without waiting.
public func instanceNorm(
    _ input: Tensor, weight: Tensor? = nil, bias: Tensor? = nil, eps: Float = 1e-5,
    into destinations: ForwardDestinations = ForwardDestinations(), waitingFor waitList: [OpenCLEvent] = []
) throws -> InstanceNormOutput {
    var none: RunningStatistics? = nil
    return try instanceNorm(
        input, runningStatistics: &none, weight: weight, bias: bias, useInputStats: true, momentum: 0.1, eps: eps,
        strategy: nil, call: OpCall(waitList: waitList, forward: destinations))
}

/// The one implementation behind the public entry points; `strategy` forces a plan
/// strategy on OpenCL (tests use it to cover each one).
func instanceNorm(
    _ input: Tensor, runningStatistics: inout RunningStatistics?, weight: Tensor?, bias: Tensor?,
    useInputStats: Bool, momentum: Float?, eps: Float, strategy: GroupNormPlan.Strategy?, call: OpCall = OpCall()
) throws -> InstanceNormOutput {
    let normalisedWith = runningStatistics
    var output = try instanceNormOutput(
        input, runningStatistics: &runningStatistics, weight: weight, bias: bias, useInputStats: useInputStats,
        momentum: momentum, eps: eps, strategy: strategy, call: call)
    output.saved = SavedForward(input: input, weight: weight, bias: bias, eps: eps)
    if !useInputStats { output.runningStatistics = normalisedWith }
    return output
}

private func instanceNormOutput(
    _ input: Tensor, runningStatistics: inout RunningStatistics?, weight: Tensor?, bias: Tensor?,
    useInputStats: Bool, momentum: Float?, eps: Float, strategy: GroupNormPlan.Strategy?, call: OpCall
) throws -> InstanceNormOutput {
    let shape = input.shape
    guard shape.count >= 3 else {
        throw NormError.invalidShape(
            argument: "input", reason: "InstanceNorm needs (N, C, *spatial) with at least one spatial dim, got \(shape)")
    }
    let statistics: GroupNormProblem.Statistics =
        useInputStats ? .input(savesVariance: runningStatistics != nil) : .running
    let problem = try GroupNormProblem.validated(
        input: input, groups: shape[1], weight: weight, bias: bias, statistics: statistics, eps: eps, op: "InstanceNorm")
    let channels = problem.channels
    try NormError.checkRunningStatistics(runningStatistics, channels: channels, momentum: momentum, backend: input.backend)
    if useInputStats && problem.spatial == 1 {
        // PyTorch: "Expected more than 1 spatial element when training".
        throw NormError.tooFewValuesPerChannel(valuesPerChannel: problem.spatial, shape: shape)
    }
    if !useInputStats && runningStatistics == nil {
        // PyTorch: "Expected running_mean and running_var to be defined when use_input_stats is false".
        throw NormError.invalidArgument(
            argument: "runningStatistics", reason: "useInputStatistics == false needs running statistics")
    }

    // Updated on a copy, assigned back only when the op succeeded.
    var updated = runningStatistics
    let effectiveMomentum = (useInputStats ? updated?.countStep(momentum: momentum) : nil) ?? momentum ?? 0

    if input.isEmpty {
        // As PyTorch: an empty output, running statistics unchanged, no kernel launch.
        runningStatistics = updated
        let rowShape = [problem.batch, channels]
        return InstanceNormOutput(
            output: try Tensor(zerosLike: input),
            saveMean: useInputStats ? try Tensor(repeating: 0, shape: rowShape, on: input.backend) : nil,
            saveInvstd: useInputStats ? try Tensor(repeating: .nan, shape: rowShape, on: input.backend) : nil,
            events: [])
    }

    switch input.backend {
    case .reference:
        let result = ReferenceInstanceNorm.forward(
            problem, x: try input.toArray(), weight: try weight?.toArray(), bias: try bias?.toArray(),
            runningMean: try runningStatistics?.mean.toArray(), runningVar: try runningStatistics?.variance.toArray(),
            momentum: Double(effectiveMomentum), eps: Double(eps))
        if let mean = result.runningMean, let variance = result.runningVar {
            updated?.mean = try Tensor(mean, on: .reference)
            updated?.variance = try Tensor(variance, on: .reference)
        }
        let rowShape = [problem.batch, channels]
        let output = InstanceNormOutput(
            output: Tensor(
                referenceValues: result.output, shape: problem.shape, layout: problem.layout, elementType: problem.elementType),
            saveMean: try result.saveMean.map { try Tensor($0, shape: rowShape, on: .reference) },
            saveInvstd: try result.saveInvstd.map { try Tensor($0, shape: rowShape, on: .reference) },
            events: [])
        runningStatistics = updated
        return output
    case .openCL(let runtime):
        let x = input.openCLBuffer
        let plan = GroupNormPlan(problem: problem, device: runtime.device, tuning: runtime.tuning, strategy: strategy)
        let inputs = ChannelInputs(
            x: x,
            operands: ChannelOperands(
                weight: weight, bias: bias, running: runningStatistics, momentum: effectiveMomentum, eps: eps))
        let result = try GroupNormKernels.run(
            problem, plan: plan, inputs: inputs, running: runningStatistics,
            call: call.reading(input, weight, bias, runningStatistics?.mean, runningStatistics?.variance), on: runtime)
        if let mean = result.runningMean, let variance = result.runningVar {
            updated?.mean = mean
            updated?.variance = variance
        }
        runningStatistics = updated
        return InstanceNormOutput(
            output: result.output, saveMean: result.saveMean, saveInvstd: result.saveInvstd, events: result.events)
    }
}
