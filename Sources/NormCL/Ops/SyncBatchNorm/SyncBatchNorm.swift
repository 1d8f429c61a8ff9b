/// Synchronized BatchNorm in one process: one batch split over several devices (or
/// runtimes, or the CPU reference path, mixed), normalised with the statistics of the
/// whole batch, as `torch.nn.SyncBatchNorm` does across GPUs, with BatchNorm's fused
/// epilogue (Apex's SyncBatchNorm with `fuse_relu` and an addend z).
///
/// Each part's moments (``batchNormMoments(_:waitingFor:)``) are merged in part order
/// (``BatchNormMoments/merged(_:)``, Chan's formula in float64, counts that may differ
/// and may be zero), and every part is normalised with the result
/// (``batchNorm(_:moments:weight:bias:runningStatistics:momentum:eps:activation:addend:into:waitingFor:)``):
///
///     y_i = f(BN(x_i) + z_i)      BN(x) = (x − mean_c) / sqrt(var_c + eps) · γ_c + β_c
///
/// with the whole batch's mean and biased variance. Part `i`'s y equals the matching
/// slice of
/// ``batchNorm(_:weight:bias:runningStatistics:training:momentum:eps:activation:addend:into:waitingFor:)``'s
/// y on the whole batch (with the whole addend), and every part gets the whole batch's
/// saved and running statistics.
///
/// - Parameters:
///   - inputs: the parts, `(N_i, C, *S)` each with the same C; N_i may be 0. Each part's
///     tensors (its weight, bias, running statistics, addend) are on its own backend.
///   - weights: γ per part (a replica on each part's backend), or nil for γ = 1.
///   - biases: β per part, or nil for β = 0.
///   - runningStatistics: one per part, each updated as BatchNorm training updates them,
///     with the whole batch's mean and unbiased variance.
///   - momentum: the new batch's weight in the running update, nil for a cumulative
///     average.
///   - eps: added to the variance inside the square root.
///   - activation: `f`, the same for every part; ``Activation/none`` (the default) for
///     plain BatchNorm.
///   - addends: z per part, each its input's shape, layout, element type and backend;
///     nil (the default) for none.
/// - Returns: each part's output, with the whole batch's saved statistics, for
///   ``syncBatchNormBackward(_:inputs:weights:forwards:outputMask:)``.
/// - Throws: ``NormError`` for no parts, lists of other lengths than `inputs`, parts
///   with different channel counts, and what BatchNorm training rejects (a whole batch
///   of one value per channel, an addend that does not match its part, among it).
public func syncBatchNorm(
    _ inputs: [Tensor], weights: [Tensor]? = nil, biases: [Tensor]? = nil,
    runningStatistics: inout [RunningStatistics], momentum: Float? = 0.1, eps: Float = 1e-5,
    activation: Activation = .none, addends: [Tensor]? = nil
) throws -> [BatchNormOutput] {
    try checkParts(inputs, weights: weights, biases: biases, running: runningStatistics.count, addends: addends)
    let moments = try BatchNormMoments.merged(inputs.map { try batchNormMoments($0) })
    var updated = runningStatistics
    let outputs = try inputs.indices.map { i in
        try batchNorm(
            inputs[i], moments: moments, weight: weights?[i], bias: biases?[i], runningStatistics: &updated[i],
            momentum: momentum, eps: eps, activation: activation, addend: addends?[i])
    }
    runningStatistics = updated
    return outputs
}

/// Synchronized BatchNorm in one process without running statistics, with the same
/// fused epilogue: see ``syncBatchNorm(_:weights:biases:runningStatistics:momentum:eps:activation:addends:)``.
///
/// - Parameters:
///   - inputs: the parts, `(N_i, C, *S)` each with the same C; N_i may be 0.
///   - weights: γ per part, or nil for γ = 1.
///   - biases: β per part, or nil for β = 0.
///   - eps: added to the variance inside the square root.
///   - activation: `f`, the same for every part; ``Activation/none`` for none.
///   - addends: z per part, or nil for none.
public func syncBatchNorm(
    _ inputs: [Tensor], weights: [Tensor]? = nil, biases: [Tensor]? = nil, eps: Float = 1e-5,
    activation: Activation = .none, addends: [Tensor]? = nil
) throws -> [BatchNormOutput] {
    try checkParts(inputs, weights: weights, biases: biases, running: nil, addends: addends)
    let moments = try BatchNormMoments.merged(inputs.map { try batchNormMoments($0) })
    return try inputs.indices.map { i in
        try batchNorm(
            inputs[i], moments: moments, weight: weights?[i], bias: biases?[i], eps: eps, activation: activation,
            addend: addends?[i])
    }
}

/// The backward pass of synchronized BatchNorm in one process: each part's
/// `Σ g` and `Σ g·(x − mean)`
/// (``batchNormGradientSums(_:input:weight:bias:saveMean:saveInvstd:activation:addend:waitingFor:)``),
/// added in part order, then every part's dx, dγ, dβ and dz from the whole batch's sums
/// (``batchNormBackward(_:input:weight:bias:saveMean:saveInvstd:gradientSums:activation:addend:outputMask:into:waitingFor:)``).
/// `g = dy`, or `dy·f′(a)` with `a = (x − mean)·invstd·γ + β + z` recomputed for a
/// forward with a fused epilogue, which each forward carries (its β, activation and
/// addend). Part `i`'s dx and dz equal the matching slices of BatchNorm's on the whole
/// batch; dγ and dβ are the whole batch's on every part.
///
/// - Parameters:
///   - gradOutputs: dy per part, each its input's shape, layout and element type.
///   - inputs: the forward's parts.
///   - weights: γ per part as in the forward, or nil.
///   - forwards: what ``syncBatchNorm(_:weights:biases:runningStatistics:momentum:eps:activation:addends:)``
///     returned, one per part.
///   - outputMask: which gradients to compute; dz (``NormGradients/addend``) only for a
///     forward with addends.
/// - Throws: ``NormError`` for lists of other lengths, a forward without saved
///   statistics, and what BatchNorm's backward rejects.
public func syncBatchNormBackward(
    _ gradOutputs: [Tensor], inputs: [Tensor], weights: [Tensor]? = nil, forwards: [BatchNormOutput],
    outputMask: NormGradientMask = .all
) throws -> [NormGradients] {
    try checkParts(inputs, weights: weights, biases: nil, running: nil, addends: nil)
    try checkCount(gradOutputs.count, "gradOutputs", parts: inputs.count)
    try checkCount(forwards.count, "forwards", parts: inputs.count)
    let saved = try forwards.indices.map { try forwards[$0].savedStatistics(argument: "forwards[\($0)]") }
    let sums = try BatchNormGradientSums.merged(
        inputs.indices.map { i in
            try saved[i].gradientSums(gradOutputs[i], input: inputs[i], weight: weights?[i])
        })
    return try inputs.indices.map { i in
        try saved[i].backward(
            gradOutputs[i], input: inputs[i], weight: weights?[i], gradientSums: sums, outputMask: outputMask)
    }
}

private func checkParts(
    _ inputs: [Tensor], weights: [Tensor]?, biases: [Tensor]?, running: Int?, addends: [Tensor]?
) throws(NormError) {
    guard !inputs.isEmpty else {
        throw .invalidArgument(argument: "inputs", reason: "synchronized BatchNorm needs at least one part")
    }
    if let weights { try checkCount(weights.count, "weights", parts: inputs.count) }
    if let biases { try checkCount(biases.count, "biases", parts: inputs.count) }
    if let running { try checkCount(running, "runningStatistics", parts: inputs.count) }
    if let addends { try checkCount(addends.count, "addends", parts: inputs.count) }
}

private func checkCount(_ count: Int, _ argument: String, parts: Int) throws(NormError) {
    guard count == parts else {
        throw .invalidArgument(argument: argument, reason: "has \(count) entries for \(parts) parts: one per part")
    }
}

/// What a synchronized forward saved for its backward: the whole batch's statistics and
/// the part's fused epilogue.
struct SyncSavedForward {
    let mean: Tensor
    let invstd: Tensor
    let epilogue: BatchNormEpilogue

    /// The part's ``batchNormGradientSums(_:input:weight:bias:saveMean:saveInvstd:activation:addend:waitingFor:)``
    /// through this forward's epilogue.
    func gradientSums(_ gradOutput: Tensor, input: Tensor, weight: Tensor?) throws -> BatchNormGradientSums {
        try batchNormGradientSums(
            gradOutput, input: input, weight: weight, bias: epilogue.bias, saveMean: mean, saveInvstd: invstd,
            activation: epilogue.activation, addend: epilogue.addend)
    }

    /// The part's finishing backward from the whole batch's sums, through this forward's
    /// epilogue (dz with an addend).
    func backward(
        _ gradOutput: Tensor, input: Tensor, weight: Tensor?, gradientSums: BatchNormGradientSums,
        outputMask: NormGradientMask
    ) throws -> NormGradients {
        try batchNormBackward(
            gradOutput, input: input, weight: weight, bias: epilogue.bias, saveMean: mean, saveInvstd: invstd,
            gradientSums: gradientSums, activation: epilogue.activation, addend: epilogue.addend,
            outputMask: outputMask)
    }
}

extension BatchNormOutput {
    /// The saved mean and inverse standard deviation of a training forward, and its fused
    /// epilogue: a synchronized part's (``partEpilogue``), or a BatchNorm forward's own
    /// (its saved β, activation and addend).
    ///
    /// - Throws: ``NormError/invalidArgument(argument:reason:)`` naming `argument` for an
    ///   output that saved none (an inference forward).
    func savedStatistics(argument: String) throws(NormError) -> SyncSavedForward {
        guard let saveMean, let saveInvstd else {
            throw .invalidArgument(argument: argument, reason: "saves no statistics (not a training forward)")
        }
        let epilogue =
            partEpilogue
            ?? saved.map { BatchNormEpilogue(bias: $0.bias, activation: $0.activation, addend: $0.addend) } ?? .none
        return SyncSavedForward(mean: saveMean, invstd: saveInvstd, epilogue: epilogue)
    }
}
