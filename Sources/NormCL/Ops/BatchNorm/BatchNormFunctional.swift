/// Batch normalisation, as `torch.nn.functional.batch_norm`.
///
/// With batch statistics (`training == true`, or no running statistics given), per
/// channel `c` over all of N and the spatial dims (`n = N·M` values):
///
///     mean_c = Σ x / n            var_c = Σ (x − mean_c)² / n      (biased)
///     y = (x − mean_c) / sqrt(var_c + eps) · γ_c + β_c
///
/// and, when `runningStatistics` is given in training, it is replaced by the updated
/// statistics (new tensors; the old ones keep their values):
///
///     running_mean = (1 − m)·running_mean + m·mean_c
///     running_var  = (1 − m)·running_var  + m·var_c·n/(n − 1)  (unbiased)
///
/// with `m = momentum`, or `m = 1 / numBatchesTracked` (a cumulative average) when
/// `momentum` is nil; `numBatchesTracked` is incremented first. In inference
/// (`training == false`) the running statistics replace the batch statistics and
/// nothing is updated; they are required then, as in PyTorch.
///
/// Statistics are computed in one pass over the data in float32 with Chan's merge of
/// shifted block sums, which stays accurate for data with a large mean (`1e4 + N(0,1)`).
///
/// A fused epilogue applies an activation `f` to the normalised value, after adding
/// an `addend` z when one is given (the ResNet block's `relu(BN(x) + shortcut)`):
///
///     y = f(BN(x) + z)        BN(x) = (x − mean_c) / sqrt(var_c + eps) · γ_c + β_c
///
/// in the same store that writes y: no other tensor is read or written besides z. On
/// the reference backend it runs as the unfused ops would: BN(x) rounded to the
/// element type, then z added and `f` applied in float64, rounded again. The backward
/// pass (``batchNormBackward(_:forward:outputMask:into:waitingFor:)``) recomputes
/// `a = BN(x) + z` from x and the statistics and applies `f′(a)`; it also gives dz.
///
/// - Parameters:
///   - input: `(N, C, *S)`, any number of spatial dims (`(N, C)` too), channels-first
///     or channels-last; the output has the same layout.
///   - weight: γ, shape `[C]`, or nil for γ = 1.
///   - bias: β, shape `[C]`, or nil for β = 0.
///   - runningStatistics: running mean and variance (shape `[C]`), updated in training
///     and used in inference; ``batchNorm(_:weight:bias:eps:activation:addend:into:waitingFor:)`` normalises with batch
///     statistics and tracks none.
///   - training: whether to normalise with batch statistics (and update the running ones).
///   - momentum: weight of the new batch in the running update, in [0, 1]; nil for a
///     cumulative average. PyTorch's default 0.1 (TF/Keras' 0.9 is 0.1 here).
///   - eps: added to the variance inside the square root; finite and ≥ 0.
///   - activation: `f`, applied after the norm (and the addend); ``Activation/none``
///     (the default) for plain BatchNorm.
///   - addend: z, added to the norm's output before the activation: x's shape, layout,
///     element type and backend; nil (the default) for none.
///   - destinations: tensors to write the output, the saved statistics (training) and
///     the updated running statistics into (OpenCL; see ``ForwardDestinations``); new
///     tensors where nil. Pass `runningStatistics.mean` and `.variance` as `runningMean`
///     and `runningVar` to update them in place, as PyTorch does. None may overlap the
///     addend.
///   - waitList: events the op's first kernel waits for (the caller's writes of the
///     input, say); the op returns without waiting for anything.
/// - Returns: the output, and in training the saved mean and inverse standard
///   deviation for the backward pass. An empty input (N = 0, a zero spatial dim, or
///   C = 0) gives an empty output without a kernel launch and leaves the running
///   statistics unchanged (the step still counts in `numBatchesTracked`), as PyTorch;
///   its saved statistics are those of no values (mean 0, invstd NaN).
/// - Throws: ``NormError`` for invalid arguments (shape or length mismatches, N·M or C
///   of 2^32 or more, non-finite or negative eps, momentum outside [0, 1], a single value per
///   channel in training, no running statistics in inference, tensors on different
///   backends, a destination that does not fit its result, naming
///   `destinations.output`, an addend of another shape, layout, element type or backend
///   than the input, naming `addend`, …); ``OpenCLError`` or
///   ``KernelBuildError`` when the device fails.
public func batchNorm(
    _ input: Tensor, weight: Tensor? = nil, bias: Tensor? = nil,
    runningStatistics: inout RunningStatistics, training: Bool,
    momentum: Float? = 0.1, eps: Float = 1e-5, activation: Activation = .none, addend: Tensor? = nil,
    into destinations: ForwardDestinations = ForwardDestinations(), waitingFor waitList: [OpenCLEvent] = []
) throws -> BatchNormOutput {
    try runningStatistics.updated { running in
        try batchNorm(
            input, weight: weight, bias: bias, runningStatistics: &running, training: training, momentum: momentum,
            eps: eps, strategy: nil, activation: activation, addend: addend,
            call: OpCall(waitList: waitList, forward: destinations))
    }
}

/// The optional form the tests were written against (nil: no running statistics).
func batchNorm(
    _ input: Tensor, weight: Tensor? = nil, bias: Tensor? = nil,
    runningStatistics: inout RunningStatistics?, training: Bool,
    momentum: Float? = 0.1, eps: Float = 1e-5
) throws -> BatchNormOutput {
    try batchNorm(
        input, weight: weight, bias: bias, runningStatistics: &runningStatistics, training: training,
        momentum: momentum, eps: eps, strategy: nil)
}

/// Batch normalisation with batch statistics and no running statistics: the training
/// forward of `torch.nn.functional.batch_norm(x, None, None, weight, bias, True, …)`.
///
/// See ``batchNorm(_:weight:bias:runningStatistics:training:momentum:eps:activation:addend:into:waitingFor:)``
/// for the math, with the fused epilogue `y = f(BN(x) + z)`.
///
/// - Parameters:
///   - input: `(N, C, *S)`, any number of spatial dims (`(N, C)` too), channels-first
///     or channels-last; the output has the same layout.
///   - weight: γ, shape `[C]`, or nil for γ = 1.
///   - bias: β, shape `[C]`, or nil for β = 0.
///   - eps: added to the variance inside the square root; finite and ≥ 0.
///   - activation: `f`, applied after the norm (and the addend); ``Activation/none``
///     (the default) for plain BatchNorm.
///   - addend: z, added to the norm's output before the activation: x's shape, layout,
///     element type and backend; nil (the default) for none.
///   - destinations: tensors to write the output and the saved statistics into (OpenCL;
///     see ``ForwardDestinations``; `runningMean` and `runningVar` are not used); new
///     tensors where nil.
///   - waitList: events the op's first kernel waits for (the caller's writes of the
///     input, say); the op returns without waiting for anything.
public func batchNorm(
    _ input: Tensor, weight: Tensor? = nil, bias: Tensor? = nil, eps: Float = 1e-5,
    activation: Activation = .none, addend: Tensor? = nil,
    into destinations: ForwardDestinations = ForwardDestinations(), waitingFor waitList: [OpenCLEvent] = []
) throws -> BatchNormOutput {
    var none: RunningStatistics? = nil
    return try batchNorm(
        input, weight: weight, bias: bias, runningStatistics: &none, training: true, momentum: nil, eps: eps,
        strategy: nil, activation: activation, addend: addend, call: OpCall(waitList: waitList, forward: destinations))
}

/// One-shot batch normalisation of host values with batch statistics: uploads,
/// normalises, downloads.
///
/// - Parameters:
///   - values: the input, float32, channels-first, `shape`'s element count.
///   - shape: `(N, C, *S)`.
///   - weight: γ, `C` values, or nil for γ = 1.
///   - bias: β, `C` values, or nil for β = 0.
///   - eps: added to the variance inside the square root; finite and ≥ 0.
///   - backend: where to run; ``Backend/default`` when nil.
public func batchNorm(
    _ values: [Float], shape: [Int], weight: [Float]? = nil, bias: [Float]? = nil,
    eps: Float = 1e-5, on backend: Backend? = nil
) throws -> [Float] {
    try oneShot(values, shape: shape, weight: weight, bias: bias, on: backend) {
        try batchNorm($0, weight: $1, bias: $2, eps: eps).output
    }
}

/// Batch Renormalization's training forward (Ioffe, 2017): BatchNorm with batch
/// statistics, corrected towards the running statistics by `r` and `d` (see
/// ``BatchRenormLimits`` for the math), with the running statistics updated as
/// ``batchNorm(_:weight:bias:runningStatistics:training:momentum:eps:activation:addend:into:waitingFor:)``
/// updates them, and the same fused epilogue:
///
///     y = f(((x − μ_B)/σ_B · r + d)·γ + β + z)
///
/// PyTorch has no Batch Renorm; this follows the paper and docs/SEMANTICS.md. Inference of a
/// Batch-Renorm-trained model is plain BatchNorm inference (`training: false`).
///
/// - Parameters:
///   - input: as BatchNorm's.
///   - weight: γ, shape `[C]`, or nil for γ = 1.
///   - bias: β, shape `[C]`, or nil for β = 0.
///   - runningStatistics: required: they define `μ` and `σ` and are updated.
///   - limits: `rmax ≥ 1`, `dmax ≥ 0`; ``BatchRenormLimits/batchNorm`` gives BatchNorm.
///   - momentum: as BatchNorm's: the new batch's weight in the running update, nil for a
///     cumulative average.
///   - eps: added to the variance inside the square root; finite and ≥ 0.
///   - activation: `f`, applied after the norm (and the addend); ``Activation/none``
///     (the default) for none.
///   - addend: z, added to the norm's output before the activation: x's shape, layout,
///     element type and backend; nil (the default) for none.
///   - destinations: tensors to write the output, the saved statistics and the updated
///     running statistics into (OpenCL; see ``ForwardDestinations``; `r` and `d` are
///     always new tensors); new tensors where nil. Pass `runningStatistics.mean` and
///     `.variance` as `runningMean` and `runningVar` to update them in place.
///   - waitList: events the op's first kernel waits for (the caller's writes of the
///     input, say); the op returns without waiting for anything.
/// - Returns: as BatchNorm training, plus ``BatchNormOutput/renormR`` and
///   ``BatchNormOutput/renormD``.
/// - Throws: as BatchNorm training, and ``NormError/invalidArgument(argument:reason:)``
///   for `rmax < 1` or `dmax < 0` (or NaN).
public func batchRenorm(
    _ input: Tensor, weight: Tensor? = nil, bias: Tensor? = nil,
    runningStatistics: inout RunningStatistics, limits: BatchRenormLimits,
    momentum: Float? = 0.1, eps: Float = 1e-5, activation: Activation = .none, addend: Tensor? = nil,
    into destinations: ForwardDestinations = ForwardDestinations(), waitingFor waitList: [OpenCLEvent] = []
) throws -> BatchNormOutput {
    try runningStatistics.updated { running in
        try batchNorm(
            input, weight: weight, bias: bias, runningStatistics: &running, training: true, momentum: momentum,
            eps: eps, strategy: nil, renorm: limits, activation: activation, addend: addend,
            call: OpCall(waitList: waitList, forward: destinations))
    }
}

/// The one implementation behind the public entry points; `strategy` forces a plan
/// strategy on OpenCL (tests use it to cover each one).
func batchNorm(
    _ input: Tensor, weight: Tensor?, bias: Tensor?,
    runningStatistics: inout RunningStatistics?, training: Bool,
    momentum: Float?, eps: Float, strategy: BatchNormPlan.Strategy?, renorm: BatchRenormLimits? = nil,
    activation: Activation = .none, addend: Tensor? = nil, tuning: DeviceTuning? = nil, call: OpCall = OpCall()
) throws -> BatchNormOutput {
    let normalisedWith = runningStatistics
    var output = try batchNormOutput(
        input, weight: weight, bias: bias, runningStatistics: &runningStatistics, training: training,
        momentum: momentum, eps: eps, strategy: strategy, renorm: renorm, activation: activation, addend: addend,
        tuning: tuning, call: call)
    output.saved = SavedForward(
        input: input, weight: weight, bias: bias, eps: eps, activation: activation, addend: addend)
    if !training { output.runningStatistics = normalisedWith }
    return output
}

private func batchNormOutput(
    _ input: Tensor, weight: Tensor?, bias: Tensor?,
    runningStatistics: inout RunningStatistics?, training: Bool,
    momentum: Float?, eps: Float, strategy: BatchNormPlan.Strategy?, renorm: BatchRenormLimits?,
    activation: Activation, addend: Tensor?, tuning: DeviceTuning?, call: OpCall
) throws -> BatchNormOutput {
    let mode: BatchNormProblem.Mode =
        training ? .training(updatesRunningStatistics: runningStatistics != nil) : .inference
    let problem = try BatchNormProblem.validated(
        input: input, weight: weight, bias: bias, running: runningStatistics, mode: mode, momentum: momentum, eps: eps,
        renorm: renorm, activation: activation, addend: addend)

    // Updated on a copy, assigned back only when the op succeeded.
    var updated = runningStatistics
    let updates = problem.mode == .training(updatesRunningStatistics: true)
    let effectiveMomentum = (updates ? updated?.countStep(momentum: momentum) : nil) ?? momentum ?? 0

    if input.isEmpty {
        runningStatistics = updated
        return try emptyBatchNorm(problem, like: input)
    }

    switch input.backend {
    case .reference:
        let result = ReferenceBatchNorm.forward(
            problem, x: try input.toArray(), weight: try weight?.toArray(), bias: try bias?.toArray(),
            runningMean: try runningStatistics?.mean.toArray(), runningVar: try runningStatistics?.variance.toArray(),
            momentum: Double(effectiveMomentum), eps: Double(eps), renorm: renorm, addend: try addend?.toArray())
        let output = try BatchNormOutput(reference: result, problem: problem, running: &updated)
        runningStatistics = updated
        return output
    case .openCL(let runtime):
        let x = input.openCLBuffer
        let plan = BatchNormPlan(
            problem: problem, device: runtime.device, tuning: tuning ?? runtime.tuning, strategy: strategy)
        let operands = ChannelOperands(
            weight: weight, bias: bias, running: runningStatistics, momentum: effectiveMomentum, eps: eps)
        let result = try BatchNormKernels.run(
            problem, plan: plan, inputs: ChannelInputs(x: x, operands: operands), renorm: renorm,
            running: runningStatistics,
            call: call.reading(input, weight, bias, runningStatistics?.mean, runningStatistics?.variance, addend),
            on: runtime, addend: addend?.openCLBuffer)
        if let mean = result.runningMean, let variance = result.runningVar {
            updated?.mean = mean
            updated?.variance = variance
        }
        runningStatistics = updated
        return BatchNormOutput(
            output: result.output, saveMean: result.saveMean, saveInvstd: result.saveInvstd,
            renormR: result.renormR, renormD: result.renormD, events: result.events)
    }
}

/// BatchNorm of an empty input, as PyTorch's: an empty output, no kernel launch,
/// running statistics unchanged (the caller still counts the step in
/// `numBatchesTracked`, as `torch.nn.BatchNorm` does). In training the saved
/// statistics are those of no values, mean 0 and invstd NaN (as PyTorch's group_norm
/// and layer_norm save them); Batch Renorm's `r` and `d` are 1 and 0. The backward
/// pass of an empty input returns zero dγ and dβ.
func emptyBatchNorm(_ problem: BatchNormProblem, like input: Tensor) throws -> BatchNormOutput {
    let backend = input.backend
    let channels = [problem.channels]
    func filled(_ value: Float) throws -> Tensor { try Tensor(repeating: value, shape: channels, on: backend) }
    return BatchNormOutput(
        output: try Tensor(zerosLike: input),
        saveMean: problem.isTraining ? try filled(0) : nil,
        saveInvstd: problem.isTraining ? try filled(.nan) : nil,
        renormR: problem.renorm ? try filled(1) : nil,
        renormD: problem.renorm ? try filled(0) : nil,
        events: [])
}

extension BatchNormOutput {
    /// A reference result as host tensors; its updated running statistics, if any, go
    /// into `running`.
    init(reference result: ReferenceBatchNorm.Result, problem: BatchNormProblem, running: inout RunningStatistics?)
        throws
    {
        if let mean = result.runningMean, let variance = result.runningVar {
            running?.mean = try Tensor(mean, on: .reference)
            running?.variance = try Tensor(variance, on: .reference)
        }
        self.init(
            output: Tensor(
                referenceValues: result.output, shape: problem.shape, layout: problem.layout,
                elementType: problem.elementType),
            saveMean: try result.saveMean.map { try Tensor($0, on: .reference) },
            saveInvstd: try result.saveInvstd.map { try Tensor($0, on: .reference) },
            renormR: try result.renormR.map { try Tensor($0, on: .reference) },
            renormD: try result.renormD.map { try Tensor($0, on: .reference) },
            events: [])
    }
}
