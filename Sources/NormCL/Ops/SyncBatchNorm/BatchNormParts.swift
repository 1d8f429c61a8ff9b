// BatchNorm over a batch split into parts (devices, processes): each part's moments,
// normalisation with the whole batch's, each part's gradient sums, and the backward
// pass with the whole batch's. These are the four steps synchronized BatchNorm is made
// of (as PyTorch's `batch_norm_stats`, `batch_norm_elemt`, `batch_norm_backward_reduce`
// and `batch_norm_backward_elemt`); `syncBatchNorm(_:weights:biases:runningStatistics:momentum:eps:activation:addends:)`
// and `syncBatchNorm(_:weight:bias:runningStatistics:momentum:eps:activation:addend:over:)` do the
// exchange between them. Each step takes the fused epilogue y = f(BN(x) + z) as
// BatchNorm does (the activation's input recomputed in the backward, dz returned).

/// The moments of one part of a batch: per channel its count, mean and M2 (see
/// ``BatchNormMoments``), the first step of synchronized BatchNorm.
///
/// On OpenCL the part's values are reduced on the device as BatchNorm training reduces
/// them (float32, relative to a per-channel pilot value, Chan's merge) into a few
/// partial moments per channel in a small device buffer; those are read back and merged
/// in float64 in a fixed order. This call waits for that read (the exchange needs the
/// numbers on the host).
///
/// - Parameters:
///   - input: `(N, C, *S)`, channels-first or channels-last, float32 or half storage.
///     N may be 0 (a part with no samples): its moments are empty.
///   - waitList: events the reduction waits for (the caller's write of the input, say).
/// - Throws: ``NormError`` for an input of fewer than two dims or too large;
///   ``OpenCLError`` or ``KernelBuildError`` when the device fails.
public func batchNormMoments(_ input: Tensor, waitingFor waitList: [OpenCLEvent] = []) throws -> BatchNormMoments {
    try NormError.checkChannelInput(input.shape, op: "BatchNorm", limits: BatchNormProblem.sizeLimits)
    let problem = BatchNormProblem(
        shape: input.shape, layout: input.layout, elementType: input.elementType,
        mode: .training(updatesRunningStatistics: false), renorm: false, hasWeight: false, hasBias: false)
    if input.isEmpty { return .empty(channels: problem.channels) }
    switch input.backend {
    case .reference:
        let (mean, variance) = ReferenceBatchNorm.channelStatistics(
            try input.toArray(), ReferenceBatchNorm.Indexing(problem, layout: problem.layout))
        let n = Double(problem.valuesPerChannel)
        return BatchNormMoments(unchecked: problem.valuesPerChannel, mean: mean, m2: variance.map { $0 * n })
    case .openCL(let runtime):
        let plan = BatchNormPlan(problem: problem, device: runtime.device, tuning: runtime.tuning)
        let program = try runtime.program(.batchNorm, options: plan.specialization(for: problem))
        var launches = KernelLaunches(program, on: runtime, waitingFor: waitList)
        let groups = plan.strategy.reductionGroups
        let (partials, pilots) = try BatchNormKernels.enqueuePartialMoments(
            problem, launch: plan.launch, x: input.openCLBuffer, groups: groups, columns: problem.isRowsByChannels,
            launches: &launches)
        return BatchNormMoments(
            devicePartials: try partials.download(as: Float.self), pilots: try pilots.download(as: Float.self),
            groups: groups, count: problem.valuesPerChannel)
    }
}

/// BatchNorm training of one part of a batch with the whole batch's moments (merged
/// from every part's ``batchNormMoments(_:waitingFor:)``), updating the running
/// statistics with them: the normalising step of synchronized BatchNorm.
///
/// With `n = moments.count`, `mean_c = moments.mean[c]` and `var_c = moments.m2[c]/n`:
///
///     BN(x) = (x − mean_c) / sqrt(var_c + eps) · γ_c + β_c
///     y     = f(BN(x) + z)                          (f = activation, z = addend)
///     running_mean = (1 − m)·running_mean + m·mean_c
///     running_var  = (1 − m)·running_var  + m·var_c·n/(n − 1)     (unbiased, whole batch)
///
/// so every part gets the same saved statistics and running statistics, those of
/// BatchNorm on the whole batch, and its own slice of the fused epilogue's y (the
/// ResNet block's `relu(BN(x) + shortcut)`, Apex's SyncBatchNorm with `fuse_relu` and
/// an addend), computed in the same store as BN(x) as
/// ``batchNorm(_:weight:bias:runningStatistics:training:momentum:eps:activation:addend:into:waitingFor:)``
/// computes it. A part with no samples (N = 0) still writes the statistics (its y is
/// empty). The saved statistics are for
/// ``batchNormGradientSums(_:input:weight:bias:saveMean:saveInvstd:activation:addend:waitingFor:)``
/// and
/// ``batchNormBackward(_:input:weight:bias:saveMean:saveInvstd:gradientSums:activation:addend:outputMask:into:waitingFor:)``;
/// the output keeps its epilogue for ``syncBatchNormBackward(_:inputs:weights:forwards:outputMask:)``,
/// but saves nothing for ``batchNormBackward(_:forward:outputMask:into:waitingFor:)``,
/// whose gradients would be the part's alone (it throws).
///
/// - Parameters:
///   - input: this part, `(N, C, *S)`; N may be 0.
///   - moments: the whole batch's moments, `C` channels, counting at least this part's
///     values.
///   - weight: γ, `[C]`, or nil for γ = 1.
///   - bias: β, `[C]`, or nil for β = 0.
///   - runningStatistics: updated in place (new tensors, or into the destinations), as
///     ``batchNorm(_:weight:bias:runningStatistics:training:momentum:eps:activation:addend:into:waitingFor:)``
///     updates them in training; `numBatchesTracked` is incremented first.
///   - momentum: the new batch's weight, nil for a cumulative average.
///   - eps: added to the variance inside the square root.
///   - activation: `f`, applied after the norm (and the addend); ``Activation/none``
///     (the default) for plain BatchNorm.
///   - addend: z, this part's slice of the tensor added before the activation: the
///     input's shape, layout, element type and backend; nil (the default) for none.
///   - destinations: tensors for y, the saved statistics and the running statistics
///     (see ``ForwardDestinations``); none may overlap the addend.
///   - waitList: events the first kernel waits for.
/// - Returns: y, the saved mean and inverse standard deviation of the whole batch.
///   With `moments.count == 0` (every part empty) nothing is normalised and the running
///   statistics keep their values, as BatchNorm of an empty batch.
/// - Throws: ``NormError`` for the arguments BatchNorm training rejects (an addend of
///   another shape, layout, element type or backend than the input, naming `addend`,
///   among them), moments of another channel count or counting fewer values than this
///   part holds, and a whole batch of one value per channel.
public func batchNorm(
    _ input: Tensor, moments: BatchNormMoments, weight: Tensor? = nil, bias: Tensor? = nil,
    runningStatistics: inout RunningStatistics, momentum: Float? = 0.1, eps: Float = 1e-5,
    activation: Activation = .none, addend: Tensor? = nil,
    into destinations: ForwardDestinations = ForwardDestinations(), waitingFor waitList: [OpenCLEvent] = []
) throws -> BatchNormOutput {
    try runningStatistics.updated { running in
        try batchNormPart(
            input, moments: moments, weight: weight, bias: bias, runningStatistics: &running, momentum: momentum,
            eps: eps, epilogue: BatchNormEpilogue(bias: bias, activation: activation, addend: addend),
            call: OpCall(waitList: waitList, forward: destinations))
    }
}

/// BatchNorm training of one part of a batch with the whole batch's moments, tracking
/// no running statistics, with the same fused epilogue `y = f(BN(x) + z)`: see
/// ``batchNorm(_:moments:weight:bias:runningStatistics:momentum:eps:activation:addend:into:waitingFor:)``.
///
/// - Parameters:
///   - input: this part, `(N, C, *S)`; N may be 0.
///   - moments: the whole batch's moments.
///   - weight: γ, `[C]`, or nil for γ = 1.
///   - bias: β, `[C]`, or nil for β = 0.
///   - eps: added to the variance inside the square root.
///   - activation: `f`, applied after the norm (and the addend); ``Activation/none``
///     (the default) for none.
///   - addend: z, the input's shape, layout, element type and backend; nil for none.
///   - destinations: tensors for y and the saved statistics.
///   - waitList: events the first kernel waits for.
public func batchNorm(
    _ input: Tensor, moments: BatchNormMoments, weight: Tensor? = nil, bias: Tensor? = nil, eps: Float = 1e-5,
    activation: Activation = .none, addend: Tensor? = nil,
    into destinations: ForwardDestinations = ForwardDestinations(), waitingFor waitList: [OpenCLEvent] = []
) throws -> BatchNormOutput {
    var none: RunningStatistics? = nil
    return try batchNormPart(
        input, moments: moments, weight: weight, bias: bias, runningStatistics: &none, momentum: nil, eps: eps,
        epilogue: BatchNormEpilogue(bias: bias, activation: activation, addend: addend),
        call: OpCall(waitList: waitList, forward: destinations))
}

/// The fused epilogue of a BatchNorm forward, `y = f(BN(x) + z)`: what its backward
/// needs besides x, γ and the statistics to recompute the activation's input
/// `a = (x − mean)·invstd·γ + β + z` (β enters it only through the activation).
struct BatchNormEpilogue: Sendable {
    var bias: Tensor?
    var activation: Activation = .none
    var addend: Tensor?

    static let none = BatchNormEpilogue(bias: nil, addend: nil)
}

/// The normalising step of one part, with its epilogue recorded in the output
/// (``BatchNormOutput/partEpilogue``) for the synchronized backward.
func batchNormPart(
    _ input: Tensor, moments: BatchNormMoments, weight: Tensor?, bias: Tensor?,
    runningStatistics: inout RunningStatistics?, momentum: Float?, eps: Float, epilogue: BatchNormEpilogue,
    call: OpCall
) throws -> BatchNormOutput {
    let problem = try BatchNormProblem.validated(
        input: input, weight: weight, bias: bias, running: runningStatistics,
        mode: .training(updatesRunningStatistics: runningStatistics != nil), momentum: momentum, eps: eps,
        wholeBatchValuesPerChannel: moments.count, activation: epilogue.activation, addend: epilogue.addend)
    try checkWholeBatch(moments.channels, moments.count, of: problem, argument: "moments")

    var updated = runningStatistics
    let effectiveMomentum = updated?.countStep(momentum: momentum) ?? momentum ?? 0
    var output: BatchNormOutput
    if moments.count == 0 {
        output = try emptyBatchNorm(problem, like: input)
    } else {
        output = try normalisedPart(
            input, problem: problem, moments: moments, weight: weight, bias: bias, running: &updated,
            momentum: effectiveMomentum, eps: eps, addend: epilogue.addend, call: call)
    }
    runningStatistics = updated
    output.partEpilogue = epilogue
    return output
}

/// `problem`'s y with the whole batch's `moments`, on the input's backend; the updated
/// running statistics, if any, go into `running`.
private func normalisedPart(
    _ input: Tensor, problem: BatchNormProblem, moments: BatchNormMoments, weight: Tensor?, bias: Tensor?,
    running: inout RunningStatistics?, momentum: Float, eps: Float, addend: Tensor?, call: OpCall
) throws -> BatchNormOutput {
    switch input.backend {
    case .reference:
        var result = ReferenceBatchNorm.training(
            try input.toArray(), ReferenceBatchNorm.Indexing(problem, layout: problem.layout), mean: moments.mean,
            variance: moments.variance, count: moments.count, weight: try weight?.toArray(), bias: try bias?.toArray(),
            runningMean: try running?.mean.toArray(), runningVar: try running?.variance.toArray(),
            updatesRunning: running != nil, momentum: Double(momentum), eps: Double(eps))
        result.output = ReferenceBatchNorm.epilogue(
            result.output, elementType: problem.elementType, activation: problem.activation,
            addend: try addend?.toArray())
        return try BatchNormOutput(reference: result, problem: problem, running: &running)
    case .openCL(let runtime):
        let plan = BatchNormPlan(
            problem: problem.launchable, device: runtime.device, tuning: runtime.tuning)
        let given = try BatchNormKernels.GivenMoments(moments, on: runtime)
        let operands = ChannelOperands(weight: weight, bias: bias, running: running, momentum: momentum, eps: eps)
        // An empty part launches no apply step: any buffer stands in for its x and z.
        let result = try BatchNormKernels.run(
            problem, plan: plan, inputs: ChannelInputs(x: input.deviceBuffer ?? given.pilots, operands: operands),
            renorm: nil, running: running,
            call: call.reading(input, weight, bias, running?.mean, running?.variance, addend), on: runtime,
            addend: addend.map { $0.deviceBuffer ?? given.pilots }, given: given)
        if let mean = result.runningMean, let variance = result.runningVar {
            running?.mean = mean
            running?.variance = variance
        }
        return BatchNormOutput(
            output: result.output, saveMean: result.saveMean, saveInvstd: result.saveInvstd, events: result.events)
    }
}

/// The sums one part of a batch contributes to BatchNorm's training backward, per
/// channel `Σ g` and `Σ g·(x − mean)` with the whole batch's saved mean (see
/// ``BatchNormGradientSums``): the reducing step of synchronized BatchNorm's backward.
///
/// `g` is the gradient at the norm's output: dy itself, or for a forward with a fused
/// epilogue `y = f(a)`, `a = BN(x) + z`, dy taken through the activation,
///
///     a = (x − mean_c)·invstd_c·γ_c + β_c + z        g = dy·f′(a)
///
/// with `a` recomputed from x, the saved statistics, γ, β and z (never read back from a
/// stored pre-activation). Pass the forward's `activation`, and with one its `weight`,
/// `bias`, `addend` and `saveInvstd`: they are read only with an activation (an addend
/// alone does not change g).
///
/// On OpenCL the sums are computed on the device as BatchNorm's backward computes them
/// (float32, compensated, a few partials per channel in a small device buffer), read
/// back and added in float64 in a fixed order. This call waits for that read.
///
/// - Parameters:
///   - gradOutput: dy, the input's shape, layout and element type.
///   - input: this part's x; N may be 0.
///   - weight: γ, `[C]`, as in the forward, or nil for γ = 1.
///   - bias: β, `[C]`, as in the forward, or nil for β = 0.
///   - saveMean: the whole batch's mean, `[C]` (the synchronized forward's
///     ``BatchNormOutput/saveMean``).
///   - saveInvstd: the synchronized forward's ``BatchNormOutput/saveInvstd``; required
///     with an activation, nil (the default) otherwise.
///   - activation: the forward's fused activation (``Activation/none``: none).
///   - addend: the forward's addend z for this part, or nil.
///   - waitList: events the reduction waits for.
/// - Throws: ``NormError`` for a `gradOutput` or `addend` that does not match the input,
///   a weight, bias or statistic that is not `[C]` float32 on the input's backend, and
///   ``NormError/invalidArgument(argument:reason:)`` naming `saveInvstd` for an
///   activation without it.
public func batchNormGradientSums(
    _ gradOutput: Tensor, input: Tensor, weight: Tensor? = nil, bias: Tensor? = nil, saveMean: Tensor,
    saveInvstd: Tensor? = nil, activation: Activation = .none, addend: Tensor? = nil,
    waitingFor waitList: [OpenCLEvent] = []
) throws -> BatchNormGradientSums {
    guard activation == .none || saveInvstd != nil else {
        throw NormError.invalidArgument(
            argument: "saveInvstd",
            reason: "the activation's input a = (x − mean)·invstd·γ + β + z needs the saved invstd")
    }
    let invstd = saveInvstd ?? saveMean
    let problem = try BatchNormBackwardProblem.validated(
        gradOutput: gradOutput, input: input, weight: weight, statistics: .batch(mean: saveMean, invstd: invstd),
        outputMask: [.weight, .bias], wholeBatchValuesPerChannel: 0, bias: bias, activation: activation,
        addend: addend)
    // β enters only the activation's input: not read (nor passed) without an activation.
    let bias = activation == .none ? nil : bias
    let channels = problem.channels
    if input.isEmpty {
        let zeros = [Double](repeating: 0, count: channels)
        return try BatchNormGradientSums(count: 0, sumGradOutput: zeros, sumGradOutputCentered: zeros)
    }
    switch input.backend {
    case .reference:
        let sums = ReferenceBatchNorm.channelSums(
            problem, dy: try gradOutput.toArray(), x: try input.toArray(), weight: try weight?.toArray(),
            bias: try bias?.toArray(), mean: try saveMean.toArray(), invstd: try invstd.toArray(),
            addend: try addend?.toArray())
        return try BatchNormGradientSums(
            count: problem.valuesPerChannel, sumGradOutput: sums.sumDy, sumGradOutputCentered: sums.sumDyCentered)
    case .openCL(let runtime):
        let plan = BatchNormPlan(problem: problem, device: runtime.device, tuning: runtime.tuning)
        let program = try runtime.program(.batchNormBackward, options: plan.specialization(for: problem))
        var launches = KernelLaunches(program, on: runtime, waitingFor: waitList)
        let groups = plan.strategy.reductionGroups
        let inputs = BatchNormBackwardKernels.Inputs(
            x: input.openCLBuffer, dy: gradOutput.openCLBuffer, weight: weight?.deviceBuffer,
            mean: saveMean.openCLBuffer, second: invstd.openCLBuffer, renormR: nil, renormD: nil, eps: 0,
            bias: bias?.deviceBuffer, addend: addend?.openCLBuffer)
        let partials = try BatchNormBackwardKernels.enqueuePartialSums(
            problem, launch: plan.launch, inputs: inputs, groups: groups, columns: problem.isRowsByChannels,
            launches: &launches)
        let sums = try partials.download(as: Float.self)
        // Channel c's partials are pairs (Σg, Σg·(x − mean)) at 2·(c·groups + g).
        var sumDy = [Double](repeating: 0, count: channels), sumDyCentered = sumDy
        for c in 0..<channels {
            for g in 0..<groups {
                sumDy[c] += Double(sums[2 * (c * groups + g)])
                sumDyCentered[c] += Double(sums[2 * (c * groups + g) + 1])
            }
        }
        return try BatchNormGradientSums(
            count: problem.valuesPerChannel, sumGradOutput: sumDy, sumGradOutputCentered: sumDyCentered)
    }
}

/// The training backward of one part of a batch from the whole batch's gradient sums
/// (every part's ``batchNormGradientSums(_:input:weight:bias:saveMean:saveInvstd:activation:addend:waitingFor:)``,
/// merged): the finishing step of synchronized BatchNorm's backward. With
/// `n = gradientSums.count`, `S₁ = Σ g` and `S₂ = Σ g·(x − mean)` over the whole batch:
///
///     dβ_c = S₁        dγ_c = invstd_c·S₂
///     dx   = γ_c·invstd_c·(g − S₁/n − (x − mean_c)·invstd_c²·S₂/n)
///     dz   = g
///
/// where `g = dy` without a fused epilogue, and for a forward `y = f(a)`,
/// `a = (x − mean_c)·invstd_c·γ_c + β_c + z`, `g = dy·f′(a)` with `a` recomputed here
/// from x, the saved statistics, γ, β and z. dz (``NormGradients/addend``) is returned
/// only with an addend. dγ and dβ are the whole batch's, the same on every part
/// (PyTorch's SyncBatchNorm returns each process's own share and leaves the sum to its
/// data-parallel wrapper).
///
/// - Parameters:
///   - gradOutput: dy, the input's shape, layout and element type.
///   - input: this part's x; N may be 0 (dx and dz are empty, dγ and dβ are still
///     written).
///   - weight: γ, `[C]`, or nil for γ = 1.
///   - bias: β, `[C]`, as in the forward, or nil for β = 0; read only with an activation.
///   - saveMean: the synchronized forward's saved mean (the whole batch's).
///   - saveInvstd: the synchronized forward's saved inverse standard deviation.
///   - gradientSums: the whole batch's sums, `C` channels, counting at least this
///     part's values (taken through the same epilogue).
///   - activation: the forward's fused activation (``Activation/none``: none).
///   - addend: the forward's addend z for this part, or nil; with one, dz is returned.
///   - outputMask: which gradients to compute.
///   - destinations: tensors for dx, dγ, dβ and dz (see ``BackwardDestinations``); none
///     may overlap the addend.
///   - waitList: events the first kernel waits for.
/// - Throws: ``NormError`` for the arguments BatchNorm's backward rejects (an addend
///   that does not match the input among them), sums of another channel count or
///   counting fewer values than this part holds, and a whole batch of one value per
///   channel.
public func batchNormBackward(
    _ gradOutput: Tensor, input: Tensor, weight: Tensor?, bias: Tensor? = nil, saveMean: Tensor, saveInvstd: Tensor,
    gradientSums: BatchNormGradientSums, activation: Activation = .none, addend: Tensor? = nil,
    outputMask: NormGradientMask = .all,
    into destinations: BackwardDestinations = BackwardDestinations(), waitingFor waitList: [OpenCLEvent] = []
) throws -> NormGradients {
    let problem = try BatchNormBackwardProblem.validated(
        gradOutput: gradOutput, input: input, weight: weight, statistics: .batch(mean: saveMean, invstd: saveInvstd),
        outputMask: outputMask, wholeBatchValuesPerChannel: gradientSums.count, bias: bias, activation: activation,
        addend: addend)
    try checkWholeBatch(gradientSums.channels, gradientSums.count, of: problem, argument: "gradientSums")
    let bias = activation == .none ? nil : bias
    let mask = problem.outputMask
    if mask.isEmpty { return NormGradients(input: nil, weight: nil, bias: nil, events: []) }
    if gradientSums.count == 0 {
        var gradients = try NormGradients.empty(like: input, parameterShape: [problem.channels], mask: mask)
        if mask.contains(.addend) { gradients.addend = try Tensor(zerosLike: input) }
        return gradients
    }
    switch input.backend {
    case .reference:
        let result = ReferenceBatchNorm.backward(
            problem, dy: try gradOutput.toArray(), x: try input.toArray(), weight: try weight?.toArray(),
            bias: try bias?.toArray(), mean: try saveMean.toArray(), second: try saveInvstd.toArray(), renormR: nil,
            renormD: nil, eps: 0, addend: try addend?.toArray(), given: gradientSums)
        return try NormGradients(reference: result, problem: problem)
    case .openCL(let runtime):
        let plan = BatchNormPlan(problem: problem.launchable, device: runtime.device, tuning: runtime.tuning)
        let partials = try DeviceBuffer(
            uploading: (0..<problem.channels).flatMap {
                [Float(gradientSums.sumGradOutput[$0]), Float(gradientSums.sumGradOutputCentered[$0])]
            }, on: runtime)
        // An empty part launches no dx step: any buffer stands in for its x, dy and z.
        let inputs = BatchNormBackwardKernels.Inputs(
            x: input.deviceBuffer ?? partials, dy: gradOutput.deviceBuffer ?? partials, weight: weight?.deviceBuffer,
            mean: saveMean.openCLBuffer, second: saveInvstd.openCLBuffer, renormR: nil, renormD: nil, eps: 0,
            bias: bias?.deviceBuffer, addend: addend.map { $0.deviceBuffer ?? partials })
        return try BatchNormBackwardKernels.run(
            problem, plan: plan, inputs: inputs,
            call: OpCall(waitList: waitList, backward: destinations).reading(
                gradOutput, input, weight, saveMean, saveInvstd, bias, addend),
            on: runtime, given: .init(partials: partials, count: gradientSums.count))
    }
}

/// Checks that whole-batch statistics fit a part: the same channels, and at least the
/// part's values per channel.
private func checkWholeBatch(
    _ channels: Int, _ count: Int, of part: some ChannelShaped, argument: String
) throws(NormError) {
    guard channels == part.channels else {
        throw .shapeMismatch(argument: argument, expected: [part.channels], actual: [channels])
    }
    guard count >= part.batchSpatial else {
        throw .invalidArgument(
            argument: argument,
            reason: "counts \(count) values per channel, fewer than this part's \(part.batchSpatial): they are not the whole batch's")
    }
}

extension BatchNormPlan.Strategy {
    /// The partials per channel a reduction of this strategy writes: its slices, or one
    /// for a one-pass strategy (whose kernels the split path's first step stands in for).
    var reductionGroups: Int {
        switch self {
        case .splitReduction(let groups), .splitColumns(rowGroups: let groups): groups
        case .fusedPerChannel, .channelItems, .columns, .elementwise: 1
        }
    }
}

extension BatchNormMoments {
    /// The moments from a device reduction's partials: per channel `groups` triples
    /// (count, mean − pilot, M2) at `3·(c·groups + g)`, merged in order in float64 and
    /// shifted back by the channel's pilot.
    init(devicePartials partials: [Float], pilots: [Float], groups: Int, count: Int) {
        var mean = [Double](repeating: 0, count: pilots.count), m2 = mean
        for c in 0..<pilots.count {
            var parts: [BatchNormMoments] = []
            for g in 0..<groups {
                let at = 3 * (c * groups + g)
                parts.append(
                    BatchNormMoments(
                        unchecked: Int(partials[at]), mean: [Double(partials[at + 1])], m2: [Double(partials[at + 2])]))
            }
            // The parts' counts are floats, exact to 2^24 values per work-item; the
            // channel's count is known exactly.
            let merged = (try? BatchNormMoments.merged(parts)) ?? .empty(channels: 1)
            mean[c] = Double(pilots[c]) + merged.mean[0]
            m2[c] = merged.m2[0]
        }
        self.init(unchecked: count, mean: mean, m2: m2)
    }
}

extension BatchNormKernels.GivenMoments {
    /// `moments` uploaded for `bn_finish_moments`: pilot = the mean rounded to float32,
    /// and the mean's remainder beside it, so a large mean keeps its float64 digits
    /// (the apply step subtracts the pilot first, then the remainder).
    init(_ moments: BatchNormMoments, on runtime: OpenCLRuntime) throws {
        let channels = moments.channels
        var pilots = [Float](repeating: 0, count: channels)
        var partials = [Float](repeating: 0, count: 3 * channels)
        for c in 0..<channels {
            let mean = moments.mean[c]
            let pilot = mean.isFinite ? Float(mean) : 0
            pilots[c] = pilot.isFinite ? pilot : 0
            partials[3 * c] = Float(moments.count)
            partials[3 * c + 1] = Float(mean - Double(pilots[c]))
            partials[3 * c + 2] = Float(moments.m2[c])
        }
        self.init(
            pilots: try DeviceBuffer(uploading: pilots, on: runtime),
            partials: try DeviceBuffer(uploading: partials, on: runtime), count: moments.count)
    }
}

extension DeviceBuffer {
    /// A new buffer holding `values`.
    convenience init(uploading values: [Float], on runtime: OpenCLRuntime) throws {
        try self.init(byteCount: max(values.count, 1) * 4, on: runtime)
        if !values.isEmpty { try upload(values) }
    }
}

extension ChannelShaped {
    /// A shape whose launch geometry is valid: this one, or `(1, C)` for a part with no
    /// samples, which still runs its per-channel steps.
    var launchableShape: [Int] { batchSpatial > 0 ? shape : [1, channels] }
}

extension BatchNormProblem {
    /// This problem, or for a part with no samples the same one of shape `(1, C)`: only
    /// its launch geometry is used.
    var launchable: BatchNormProblem {
        BatchNormProblem(
            shape: launchableShape, layout: layout, elementType: elementType, mode: mode, renorm: renorm,
            hasWeight: hasWeight, hasBias: hasBias, activation: activation, hasAddend: hasAddend)
    }
}

extension BatchNormBackwardProblem {
    /// This problem, or for a part with no samples the same one of shape `(1, C)`.
    var launchable: BatchNormBackwardProblem {
        BatchNormBackwardProblem(
            shape: launchableShape, layout: layout, elementType: elementType, mode: mode, hasWeight: hasWeight,
            outputMask: outputMask, activation: activation, hasAddend: hasAddend)
    }
}
