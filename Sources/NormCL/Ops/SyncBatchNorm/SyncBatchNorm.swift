/// Synchronized BatchNorm in one process: one batch split over several devices (or
/// runtimes, or the CPU reference path, mixed), normalised with the statistics of the
/// whole batch, as `torch.nn.SyncBatchNorm` does across GPUs.
///
/// Each part's moments (``batchNormMoments(_:waitingFor:)``) are merged in part order
/// (``BatchNormMoments/merged(_:)``, Chan's formula in float64, counts that may differ
/// and may be zero), and every part is normalised with the result
/// (``batchNorm(_:moments:weight:bias:runningStatistics:momentum:eps:into:waitingFor:)``).
/// Part `i`'s y equals the matching slice of BatchNorm's y on the whole batch, and every
/// part gets the whole batch's saved and running statistics.
///
/// - Parameters:
///   - inputs: the parts, `(N_i, C, *S)` each with the same C; N_i may be 0. Each part's
///     tensors (its weight, bias, running statistics) are on its own backend.
///   - weights: γ per part (a replica on each part's backend), or nil for γ = 1.
///   - biases: β per part, or nil for β = 0.
///   - runningStatistics: one per part, each updated as BatchNorm training updates them,
///     with the whole batch's mean and unbiased variance.
///   - momentum: the new batch's weight in the running update, nil for a cumulative
///     average.
///   - eps: added to the variance inside the square root.
/// - Returns: each part's output, with the whole batch's saved statistics.
/// - Throws: ``NormError`` for no parts, lists of other lengths than `inputs`, parts
///   with different channel counts, and what BatchNorm training rejects (a whole batch
///   of one value per channel among it).
public func syncBatchNorm(
    _ inputs: [Tensor], weights: [Tensor]? = nil, biases: [Tensor]? = nil,
    runningStatistics: inout [RunningStatistics], momentum: Float? = 0.1, eps: Float = 1e-5
) throws -> [BatchNormOutput] {
    try checkParts(inputs, weights: weights, biases: biases, running: runningStatistics.count)
    let moments = try BatchNormMoments.merged(inputs.map { try batchNormMoments($0) })
    var updated = runningStatistics
    let outputs = try inputs.indices.map { i in
        try batchNorm(
            inputs[i], moments: moments, weight: weights?[i], bias: biases?[i], runningStatistics: &updated[i],
            momentum: momentum, eps: eps)
    }
    runningStatistics = updated
    return outputs
}

/// Synchronized BatchNorm in one process without running statistics: see
/// ``syncBatchNorm(_:weights:biases:runningStatistics:momentum:eps:)``.
public func syncBatchNorm(
    _ inputs: [Tensor], weights: [Tensor]? = nil, biases: [Tensor]? = nil, eps: Float = 1e-5
) throws -> [BatchNormOutput] {
    try checkParts(inputs, weights: weights, biases: biases, running: nil)
    let moments = try BatchNormMoments.merged(inputs.map { try batchNormMoments($0) })
    return try inputs.indices.map { i in
        try batchNorm(inputs[i], moments: moments, weight: weights?[i], bias: biases?[i], eps: eps)
    }
}

/// The backward pass of synchronized BatchNorm in one process: each part's
/// `Σ dy` and `Σ dy·(x − mean)` (``batchNormGradientSums(_:input:saveMean:waitingFor:)``),
/// added in part order, then every part's dx, dγ and dβ from the whole batch's sums
/// (``batchNormBackward(_:input:weight:saveMean:saveInvstd:gradientSums:outputMask:into:waitingFor:)``).
/// Part `i`'s dx equals the matching slice of BatchNorm's dx on the whole batch; dγ and
/// dβ are the whole batch's on every part.
///
/// - Parameters:
///   - gradOutputs: dy per part, each its input's shape, layout and element type.
///   - inputs: the forward's parts.
///   - weights: γ per part as in the forward, or nil.
///   - forwards: what ``syncBatchNorm(_:weights:biases:runningStatistics:momentum:eps:)``
///     returned, one per part.
///   - outputMask: which gradients to compute.
/// - Throws: ``NormError`` for lists of other lengths, a forward without saved
///   statistics, and what BatchNorm's backward rejects.
public func syncBatchNormBackward(
    _ gradOutputs: [Tensor], inputs: [Tensor], weights: [Tensor]? = nil, forwards: [BatchNormOutput],
    outputMask: NormGradientMask = .all
) throws -> [NormGradients] {
    try checkParts(inputs, weights: weights, biases: nil, running: nil)
    try checkCount(gradOutputs.count, "gradOutputs", parts: inputs.count)
    try checkCount(forwards.count, "forwards", parts: inputs.count)
    let saved = try forwards.indices.map { try forwards[$0].savedStatistics(argument: "forwards[\($0)]") }
    let sums = try BatchNormGradientSums.merged(
        inputs.indices.map { try batchNormGradientSums(gradOutputs[$0], input: inputs[$0], saveMean: saved[$0].mean) })
    return try inputs.indices.map { i in
        try batchNormBackward(
            gradOutputs[i], input: inputs[i], weight: weights?[i], saveMean: saved[i].mean, saveInvstd: saved[i].invstd,
            gradientSums: sums, outputMask: outputMask)
    }
}

private func checkParts(_ inputs: [Tensor], weights: [Tensor]?, biases: [Tensor]?, running: Int?) throws(NormError) {
    guard !inputs.isEmpty else {
        throw .invalidArgument(argument: "inputs", reason: "synchronized BatchNorm needs at least one part")
    }
    if let weights { try checkCount(weights.count, "weights", parts: inputs.count) }
    if let biases { try checkCount(biases.count, "biases", parts: inputs.count) }
    if let running { try checkCount(running, "runningStatistics", parts: inputs.count) }
}

private func checkCount(_ count: Int, _ argument: String, parts: Int) throws(NormError) {
    guard count == parts else {
        throw .invalidArgument(argument: argument, reason: "has \(count) entries for \(parts) parts: one per part")
    }
}

extension BatchNormOutput {
    /// The saved mean and inverse standard deviation of a training forward.
    ///
    /// - Throws: ``NormError/invalidArgument(argument:reason:)`` naming `argument` for an
    ///   output that saved none (an inference forward); ``NormError/unsupported(argument:reason:)``
    ///   for a forward with a fused activation or addend, which synchronized BatchNorm's
    ///   backward does not apply.
    func savedStatistics(argument: String) throws(NormError) -> (mean: Tensor, invstd: Tensor) {
        guard let saveMean, let saveInvstd else {
            throw .invalidArgument(argument: argument, reason: "saves no statistics (not a training forward)")
        }
        if let saved, saved.activation != .none || saved.addend != nil {
            throw .unsupported(
                argument: argument, reason: "synchronized BatchNorm has no fused activation or addend (this forward had)")
        }
        return (saveMean, saveInvstd)
    }
}
