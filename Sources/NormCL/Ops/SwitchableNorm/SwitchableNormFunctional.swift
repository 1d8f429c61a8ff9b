/// Switchable Normalization (Luo et al., 2018; official code
/// `switchablenorms/Switchable-Normalization`): a learned mix of instance, layer and
/// batch statistics.
///
/// With x viewed as `(N, C, L)`, `L = M` the product of the spatial dims:
///
///     μ_in[n,c] = mean_l x                 σ²_in[n,c] = Σ_l (x − μ_in)² / (L − 1)   (unbiased, default)
///                                                     or  / L                     (biased)
///     μ_ln[n] = mean_c μ_in                σ²_ln[n] = mean_c σ²_in + mean_c (μ_in − μ_ln)²
///     μ_bn[c] = mean_n μ_in                σ²_bn[c] = mean_n σ²_in + mean_n (μ_in − μ_bn)²
///     μ  = Σ_k softmax(meanLogits)_k μ_k          σ² = Σ_k softmax(varianceLogits)_k σ²_k
///     y  = γ_c (x − μ) / sqrt(σ² + eps) + β_c
///
/// LN and BN statistics are derived from the instance moments (one read of x) with the
/// law of total variance, which is the official `mean(σ²_in + μ_in²) − μ²` without its
/// catastrophic cancellation on large-mean data. What the derived variances are:
/// with the biased estimator, exactly the biased variances of the sample's `C·L` and the
/// channel's `N·L` values (as LayerNorm and BatchNorm compute them); with the unbiased
/// one, `Σ M2_in / (k·(L − 1)) + Σ (μ_in − μ_set)² / k` over the `k = C` (LN) or `k = N`
/// (BN) instances — larger than the biased set variance by `mean σ²_in / L`, and not the
/// unbiased set variance either; this is what the official code computes.
///
/// Branches (``SwitchableNormOptions/branches``), and the order of the logits:
/// `.instanceLayerBatch` (IN, LN, BN), `.instanceLayer` (IN, LN; no BN, no running
/// statistics), `.layerBatch` (LN, BN; the only form for `(N, C)` input, the official
/// `SwitchNorm1d`). Without IN, the estimator applies to the LN and BN variances
/// themselves: `Σ (x − μ)² / (C·L − 1)` and `/ (N·L − 1)` when unbiased (the official
/// `SwitchNorm1d`'s `x.var(1)`, `x.var(0)`), `/ C·L` and `/ N·L` when biased.
///
/// In training the BN branch uses this batch's statistics, and when `runningStatistics`
/// is given it is replaced by updated statistics, as BatchNorm updates them:
///
///     running_mean = (1 − m)·running_mean + m·μ_bn
///     running_var  = (1 − m)·running_var  + m·Σ_{n,l} (x − μ_bn)² / (N·L − 1)   (unbiased)
///
/// with `m = momentum` (PyTorch's meaning; the official TF-style decay 0.997 is
/// `momentum = 0.003`, its PyTorch code's 0.9 is 0.1) or `1 / numBatchesTracked` when
/// nil (the official code's running variance is the derived `σ²_bn` instead). In
/// inference (`training == false`) `μ_bn`, `σ²_bn` are the running statistics, which are
/// then required; IN and LN statistics are still computed per sample.
///
/// Statistics are float32, accumulated relative to per-instance pilot values with Chan's
/// merge, accurate for data with a large mean (`1e4 + N(0,1)`).
///
/// - Parameters:
///   - input: `(N, C, *S)`, channels-first or channels-last, float32 or half storage;
///     `(N, C)` takes branches `.layerBatch`.
///   - meanLogits: float32, shape `[branches.count]` (the official code initialises the
///     logits to 1).
///   - varianceLogits: float32, shape `[branches.count]`.
///   - weight: γ, float32 `[C]`, or nil for γ = 1.
///   - bias: β, float32 `[C]`, or nil for 0.
///   - runningStatistics: float32 `[C]` mean and variance; only with a BN branch.
///   - training: batch statistics for the BN branch (and running updates) or running ones.
///   - options: branches, variance estimator, eps, momentum.
///   - destinations: tensors to write the output, the mixed mean and invstd
///     (``ForwardDestinations/saveMean``, ``ForwardDestinations/saveInvstd``) and the
///     updated running statistics into (OpenCL; see ``ForwardDestinations``); new tensors
///     where nil. Pass `runningStatistics.mean` and `.variance` as `runningMean` and
///     `runningVar` to update them in place. The IN, LN and BN statistics are always new
///     tensors.
///   - waitList: events the op's first kernel waits for (the caller's writes of the
///     input, say); the op returns without waiting for anything.
/// - Returns: the output, the mixed mean and invstd per (n, c), and the IN, LN and batch
///   BN statistics (see ``SwitchableNormOutput``).
/// - Throws: ``NormError``: `invalidShape` (rank < 2, `(N, C)` input with an IN branch,
///   the unbiased estimator dividing by zero: `L == 1` with IN, `C·L == 1` without),
///   N·L or N·C of 2^32 or more, `shapeMismatch` (logits of the wrong length, parameters not `[C]`),
///   `unsupported` (half parameters, logits or statistics), `backendMismatch`,
///   `invalidArgument` (eps, momentum, running statistics without a BN branch or missing
///   in inference), `tooFewValuesPerChannel` (`N·L == 1` with a BN branch in training),
///   a destination that does not fit its result (naming `destinations.output`, …);
///   ``OpenCLError`` or ``KernelBuildError`` when the device fails.
public func switchableNorm(
    _ input: Tensor, meanLogits: Tensor, varianceLogits: Tensor, weight: Tensor? = nil, bias: Tensor? = nil,
    runningStatistics: inout RunningStatistics, training: Bool, options: SwitchableNormOptions = SwitchableNormOptions(),
    into destinations: ForwardDestinations = ForwardDestinations(), waitingFor waitList: [OpenCLEvent] = []
) throws -> SwitchableNormOutput {
    try runningStatistics.updated { running in
        try switchableNorm(
            input, meanLogits: meanLogits, varianceLogits: varianceLogits, weight: weight, bias: bias,
            runningStatistics: &running, training: training, options: options, strategy: nil,
            call: OpCall(waitList: waitList, forward: destinations))
    }
}

/// Switchable Normalization without running statistics: a training forward that
/// tracks none, or any forward whose branches have no BN (IN and LN statistics come
/// from the input in inference too). The math is that of
/// ``switchableNorm(_:meanLogits:varianceLogits:weight:bias:runningStatistics:training:options:into:waitingFor:)``.
///
/// - Parameters:
///   - input: `(N, C, *S)`, channels-first or channels-last, float32 or half storage;
///     `(N, C)` takes branches `.layerBatch`.
///   - meanLogits: float32, shape `[branches.count]`.
///   - varianceLogits: float32, shape `[branches.count]`.
///   - weight: γ, float32 `[C]`, or nil for γ = 1.
///   - bias: β, float32 `[C]`, or nil for 0.
///   - training: batch statistics for the BN branch, or (without a BN branch) the same
///     computation in inference.
///   - options: branches, variance estimator, eps, momentum.
///   - destinations: tensors to write the output and the mixed mean and invstd into
///     (OpenCL; see ``ForwardDestinations``; `runningMean` and `runningVar` are not used);
///     new tensors where nil.
///   - waitList: events the op's first kernel waits for; the op returns without waiting.
/// - Throws: as that form, and ``NormError/invalidArgument(argument:reason:)`` for an
///   inference forward with a BN branch (it needs running statistics).
public func switchableNorm(
    _ input: Tensor, meanLogits: Tensor, varianceLogits: Tensor, weight: Tensor? = nil, bias: Tensor? = nil,
    training: Bool, options: SwitchableNormOptions = SwitchableNormOptions(),
    into destinations: ForwardDestinations = ForwardDestinations(), waitingFor waitList: [OpenCLEvent] = []
) throws -> SwitchableNormOutput {
    var none: RunningStatistics? = nil
    return try switchableNorm(
        input, meanLogits: meanLogits, varianceLogits: varianceLogits, weight: weight, bias: bias,
        runningStatistics: &none, training: training, options: options, strategy: nil,
        call: OpCall(waitList: waitList, forward: destinations))
}

/// The optional form the tests were written against.
func switchableNorm(
    _ input: Tensor, meanLogits: Tensor, varianceLogits: Tensor, weight: Tensor? = nil, bias: Tensor? = nil,
    runningStatistics: inout RunningStatistics?, training: Bool, options: SwitchableNormOptions = SwitchableNormOptions()
) throws -> SwitchableNormOutput {
    try switchableNorm(
        input, meanLogits: meanLogits, varianceLogits: varianceLogits, weight: weight, bias: bias,
        runningStatistics: &runningStatistics, training: training, options: options, strategy: nil)
}

/// The one implementation behind the public entry point; `strategy` forces a plan
/// strategy on OpenCL and `tuning` replaces the runtime's (tests use them to cover each
/// strategy, and the GPU code paths on a CPU device).
func switchableNorm(
    _ input: Tensor, meanLogits: Tensor, varianceLogits: Tensor, weight: Tensor?, bias: Tensor?,
    runningStatistics: inout RunningStatistics?, training: Bool, options: SwitchableNormOptions,
    strategy: SwitchableNormPlan.Strategy?, tuning: DeviceTuning? = nil, call: OpCall = OpCall()
) throws -> SwitchableNormOutput {
    let normalisedWith = runningStatistics
    var output = try switchableNormOutput(
        input, meanLogits: meanLogits, varianceLogits: varianceLogits, weight: weight, bias: bias,
        runningStatistics: &runningStatistics, training: training, options: options, strategy: strategy, tuning: tuning,
        call: call)
    output.saved = SavedForward(input: input, weight: weight, bias: bias, eps: options.eps)
    output.meanLogits = meanLogits
    output.varianceLogits = varianceLogits
    output.training = training
    output.options = options
    if !training { output.runningStatistics = normalisedWith }
    return output
}

private func switchableNormOutput(
    _ input: Tensor, meanLogits: Tensor, varianceLogits: Tensor, weight: Tensor?, bias: Tensor?,
    runningStatistics: inout RunningStatistics?, training: Bool, options: SwitchableNormOptions,
    strategy: SwitchableNormPlan.Strategy?, tuning: DeviceTuning?, call: OpCall
) throws -> SwitchableNormOutput {
    let problem = try SwitchableNormProblem.validated(
        input: input, meanLogits: meanLogits, varianceLogits: varianceLogits, weight: weight, bias: bias,
        running: runningStatistics, training: training, options: options)

    // Updated on a copy, assigned back only when the op succeeded.
    var updated = runningStatistics
    let effectiveMomentum =
        (problem.updatesRunningStatistics ? updated?.countStep(momentum: options.momentum) : nil) ?? options.momentum ?? 0
    if input.isEmpty {
        runningStatistics = updated
        return try emptySwitchableNorm(problem, like: input)
    }

    switch input.backend {
    case .reference:
        let r = ReferenceSwitchableNorm.forward(
            problem, x: try input.toArray(), meanLogits: try meanLogits.toArray(),
            varianceLogits: try varianceLogits.toArray(), weight: try weight?.toArray(), bias: try bias?.toArray(),
            runningMean: try runningStatistics?.mean.toArray(), runningVar: try runningStatistics?.variance.toArray(),
            momentum: Double(effectiveMomentum), eps: Double(options.eps))
        if let mean = r.runningMean, let variance = r.runningVar {
            updated?.mean = try Tensor(mean, on: .reference)
            updated?.variance = try Tensor(variance, on: .reference)
        }
        runningStatistics = updated
        return SwitchableNormOutput(
            output: Tensor(
                referenceValues: r.output, shape: problem.shape, layout: problem.layout, elementType: problem.elementType),
            statistics: r.statistics.map { Tensor(referenceValues: $0, shape: $1.shape(problem)) }, events: [])
    case .openCL(let runtime):
        let plan = SwitchableNormPlan(
            problem: problem, device: runtime.device, tuning: tuning ?? runtime.tuning, strategy: strategy)
        let operands = ChannelOperands(
            weight: weight, bias: bias, running: runningStatistics, momentum: effectiveMomentum, eps: options.eps)
        let r = try SwitchableNormKernels.run(
            problem, plan: plan, inputs: ChannelInputs(x: input.openCLBuffer, operands: operands),
            logits: (meanLogits.openCLBuffer, varianceLogits.openCLBuffer), running: runningStatistics,
            call: call.reading(
                input, meanLogits, varianceLogits, weight, bias, runningStatistics?.mean, runningStatistics?.variance),
            on: runtime)
        if let mean = r.runningMean, let variance = r.runningVar {
            updated?.mean = mean
            updated?.variance = variance
        }
        runningStatistics = updated
        return SwitchableNormOutput(output: r.output, statistics: r.statistics, events: r.events)
    }
}

/// Switchable Norm of an empty input, as BatchNorm's: an empty output, running
/// statistics unchanged (the step still counts in `numBatchesTracked`), no kernel
/// launch; the saved statistics have their usual shapes and are those of no values
/// (means 0, variances and invstd NaN).
private func emptySwitchableNorm(_ problem: SwitchableNormProblem, like input: Tensor) throws -> SwitchableNormOutput {
    let backend = input.backend
    func filled(_ value: Float, _ shape: [Int]) throws -> Tensor { try Tensor(repeating: value, shape: shape, on: backend) }
    return SwitchableNormOutput(
        output: try Tensor(zerosLike: input),
        statistics: try SwitchableNormStatistics.forwardFields(of: problem).map {
            try filled($1.isMean ? 0 : .nan, $1.shape(problem))
        }, events: [])
}
