/// How the participants of synchronized BatchNorm — processes, or anything else that
/// holds one part of a batch — share their statistics: each gives a list of numbers and
/// gets everyone's, in rank order.
///
/// NormCL calls ``allGather(_:)`` twice per synchronized forward or backward pass: first
/// a short header (whether the participant's own step succeeded, its channel count and
/// which pass it is in), so that a failure or a mismatch on one participant becomes a
/// ``SyncBatchNormError`` on every one instead of a hang; then the packed statistics
/// (`1 + 2·C` numbers). Both headers of a pass have the same length in the forward and
/// the backward, so participants that got out of step meet in an exchange of equal
/// counts (which MPI requires) and fail with a typed error. The `NormCLMPI` package
/// (`Integrations/MPI`) implements it over `MPI_Iallgather`, polled with a timeout.
public protocol StatisticsExchange {
    /// This participant's index, `0..<participants`.
    var rank: Int { get }
    /// How many participants take part in every exchange.
    var participants: Int { get }
    /// Every participant's `values`, indexed by rank (this participant's own at
    /// ``rank``). Every participant passes the same number of values.
    ///
    /// - Throws: when the exchange itself fails (a transport error, a timeout).
    func allGather(_ values: [Double]) throws -> [[Double]]
}

/// Why a synchronized BatchNorm pass failed on this participant when the cause lies
/// with another one, or with the exchange.
public enum SyncBatchNormError: Error, Equatable, Sendable, CustomStringConvertible {
    /// These participants failed their own step (bad input, a device error); each of
    /// them throws its own error, the others this one.
    case participantsFailed(ranks: [Int])
    /// The participants disagree: different channel counts, or one is in another pass.
    case mismatchedParticipants(reason: String)
    /// The exchange returned something that is not what every participant sent.
    case malformedExchange(reason: String)

    public var description: String {
        switch self {
        case .participantsFailed(let ranks):
            "synchronized BatchNorm: participant(s) \(ranks.map(String.init).joined(separator: ", ")) failed their step"
        case .mismatchedParticipants(let reason): "synchronized BatchNorm: participants disagree: \(reason)"
        case .malformedExchange(let reason): "synchronized BatchNorm: malformed exchange: \(reason)"
        }
    }
}

/// Synchronized BatchNorm of this participant's part of a batch: its moments are
/// exchanged with every other participant's (``StatisticsExchange``), merged in rank
/// order, and the part is normalised with the whole batch's statistics, as
/// ``syncBatchNorm(_:weights:biases:runningStatistics:momentum:eps:activation:addends:)``
/// does in one process, with the same fused epilogue:
///
///     y = f(BN(x) + z)      BN(x) = (x − mean_c) / sqrt(var_c + eps) · γ_c + β_c
///
/// with the whole batch's mean and biased variance. Every participant must call it with
/// the same C, momentum and eps (checked) and the same γ, β and activation (not
/// checked); a part may be empty (N = 0).
///
/// - Parameters:
///   - input: this participant's part, `(N, C, *S)`.
///   - weight: γ, `[C]`, or nil for γ = 1.
///   - bias: β, `[C]`, or nil for β = 0.
///   - runningStatistics: updated with the whole batch's statistics, the same on every
///     participant.
///   - momentum: the new batch's weight, nil for a cumulative average.
///   - eps: added to the variance inside the square root.
///   - activation: `f`; ``Activation/none`` (the default) for plain BatchNorm.
///   - addend: z, this part's slice of the tensor added before the activation: the
///     input's shape, layout, element type and backend; nil (the default) for none.
///   - exchange: the participants.
/// - Returns: this part's output, with the whole batch's saved statistics; it carries
///   its epilogue to ``syncBatchNormBackward(_:input:weight:forward:outputMask:over:)``.
/// - Throws: this participant's own error (``NormError``, ``OpenCLError``) when its step
///   fails — after telling the others —, ``SyncBatchNormError`` when another participant
///   failed or disagrees, and whatever the exchange throws.
public func syncBatchNorm(
    _ input: Tensor, weight: Tensor? = nil, bias: Tensor? = nil, runningStatistics: inout RunningStatistics,
    momentum: Float? = 0.1, eps: Float = 1e-5, activation: Activation = .none, addend: Tensor? = nil,
    over exchange: some StatisticsExchange
) throws -> BatchNormOutput {
    var running: RunningStatistics? = runningStatistics
    let output = try syncBatchNormPart(
        input, weight: weight, bias: bias, runningStatistics: &running, momentum: momentum, eps: eps,
        epilogue: BatchNormEpilogue(bias: bias, activation: activation, addend: addend), over: exchange)
    if let running { runningStatistics = running }
    return output
}

/// Synchronized BatchNorm of this participant's part without running statistics, with
/// the same fused epilogue: see
/// ``syncBatchNorm(_:weight:bias:runningStatistics:momentum:eps:activation:addend:over:)``.
///
/// - Parameters:
///   - input: this participant's part, `(N, C, *S)`.
///   - weight: γ, `[C]`, or nil for γ = 1.
///   - bias: β, `[C]`, or nil for β = 0.
///   - eps: added to the variance inside the square root.
///   - activation: `f`; ``Activation/none`` for none.
///   - addend: z, the input's shape, layout, element type and backend; nil for none.
///   - exchange: the participants.
public func syncBatchNorm(
    _ input: Tensor, weight: Tensor? = nil, bias: Tensor? = nil, eps: Float = 1e-5, activation: Activation = .none,
    addend: Tensor? = nil, over exchange: some StatisticsExchange
) throws -> BatchNormOutput {
    var none: RunningStatistics? = nil
    return try syncBatchNormPart(
        input, weight: weight, bias: bias, runningStatistics: &none, momentum: nil, eps: eps,
        epilogue: BatchNormEpilogue(bias: bias, activation: activation, addend: addend), over: exchange)
}

private func syncBatchNormPart(
    _ input: Tensor, weight: Tensor?, bias: Tensor?, runningStatistics: inout RunningStatistics?,
    momentum: Float?, eps: Float, epilogue: BatchNormEpilogue, over exchange: some StatisticsExchange
) throws -> BatchNormOutput {
    let local = Result { () throws -> BatchNormMoments in
        // Everything the normalising step checks, before the exchange.
        _ = try BatchNormProblem.validated(
            input: input, weight: weight, bias: bias, running: runningStatistics,
            mode: .training(updatesRunningStatistics: runningStatistics != nil), momentum: momentum, eps: eps,
            wholeBatchValuesPerChannel: 0, activation: epilogue.activation, addend: epilogue.addend)
        return try batchNormMoments(input)
    }
    let channels = input.shape.count >= 2 ? input.shape[1] : -1
    let parts = try exchangeParts(
        local.map(\.packed), channels: channels, pass: .forward, settings: [Double(momentum ?? -1), Double(eps)],
        over: exchange)
    let moments = try BatchNormMoments.merged(parts.map { try BatchNormMoments(packed: $0, channels: channels) })
    return try batchNormPart(
        input, moments: moments, weight: weight, bias: bias, runningStatistics: &runningStatistics, momentum: momentum,
        eps: eps, epilogue: epilogue, call: OpCall())
}

/// The backward pass of ``syncBatchNorm(_:weight:bias:runningStatistics:momentum:eps:activation:addend:over:)``
/// for this participant's part: its `Σ g` and `Σ g·(x − mean)` are exchanged, added in
/// rank order, and dx, dγ, dβ and dz come from the whole batch's sums (dγ and dβ the
/// same on every participant: the whole batch's, not this part's share). `g = dy`
/// without an activation, else `dy·f′(a)` with `a = (x − mean)·invstd·γ + β + z`
/// recomputed from x and the statistics (see
/// ``batchNormBackward(_:input:weight:bias:saveMean:saveInvstd:gradientSums:activation:addend:outputMask:into:waitingFor:)``).
///
/// - Parameters:
///   - gradOutput: dy, the input's shape, layout and element type.
///   - input: this participant's part.
///   - weight: γ as in the forward, or nil.
///   - bias: β as in the forward, or nil; read only with an activation.
///   - saveMean: the synchronized forward's ``BatchNormOutput/saveMean``.
///   - saveInvstd: the synchronized forward's ``BatchNormOutput/saveInvstd``.
///   - activation: the forward's fused activation (``Activation/none``: none).
///   - addend: the forward's addend z for this part, or nil; with one, dz is returned.
///   - outputMask: which gradients to compute.
///   - exchange: the participants.
/// - Throws: as the forward.
public func syncBatchNormBackward(
    _ gradOutput: Tensor, input: Tensor, weight: Tensor?, bias: Tensor? = nil, saveMean: Tensor, saveInvstd: Tensor,
    activation: Activation = .none, addend: Tensor? = nil, outputMask: NormGradientMask = .all,
    over exchange: some StatisticsExchange
) throws -> NormGradients {
    let saved = SyncSavedForward(
        mean: saveMean, invstd: saveInvstd,
        epilogue: BatchNormEpilogue(bias: bias, activation: activation, addend: addend))
    let local = Result { () throws -> BatchNormGradientSums in
        _ = try BatchNormBackwardProblem.validated(
            gradOutput: gradOutput, input: input, weight: weight, statistics: .batch(mean: saveMean, invstd: saveInvstd),
            outputMask: outputMask, wholeBatchValuesPerChannel: 0, bias: bias, activation: activation, addend: addend)
        return try saved.gradientSums(gradOutput, input: input, weight: weight)
    }
    let channels = input.shape.count >= 2 ? input.shape[1] : -1
    // The forward's settings are not the backward's: zeros keep the header's length.
    let parts = try exchangeParts(
        local.map(\.packed), channels: channels, pass: .backward, settings: [0, 0], over: exchange)
    let sums = try BatchNormGradientSums.merged(parts.map { try BatchNormGradientSums(packed: $0, channels: channels) })
    return try saved.backward(gradOutput, input: input, weight: weight, gradientSums: sums, outputMask: outputMask)
}

/// The backward pass of ``syncBatchNorm(_:weight:bias:runningStatistics:momentum:eps:activation:addend:over:)``
/// from what it returned: its saved statistics and its fused epilogue (β, activation,
/// addend; see
/// ``syncBatchNormBackward(_:input:weight:bias:saveMean:saveInvstd:activation:addend:outputMask:over:)``).
///
/// - Parameters:
///   - gradOutput: dy, the input's shape, layout and element type.
///   - input: this participant's part.
///   - weight: γ as in the forward, or nil.
///   - forward: what the synchronized forward returned.
///   - outputMask: which gradients to compute; dz only for a forward with an addend.
///   - exchange: the participants.
/// - Throws: as that, and ``NormError/invalidArgument(argument:reason:)`` for a forward
///   that saved no statistics.
public func syncBatchNormBackward(
    _ gradOutput: Tensor, input: Tensor, weight: Tensor?, forward: BatchNormOutput,
    outputMask: NormGradientMask = .all, over exchange: some StatisticsExchange
) throws -> NormGradients {
    let saved = try forward.savedStatistics(argument: "forward")
    return try syncBatchNormBackward(
        gradOutput, input: input, weight: weight, bias: saved.epilogue.bias, saveMean: saved.mean,
        saveInvstd: saved.invstd, activation: saved.epilogue.activation, addend: saved.epilogue.addend,
        outputMask: outputMask, over: exchange)
}

/// Which pass an exchange belongs to, sent in its header so that participants that
/// got out of step fail instead of merging a forward's moments with a backward's sums.
private enum SyncPass: Double {
    case forward = 1
    case backward = 2
}

/// The two exchanges of a synchronized pass: a header — success, channels, pass and the
/// `settings` every participant must share (momentum, eps) — then, when every header
/// agrees, the packed statistics. Returns every participant's packed statistics in rank
/// order; rethrows this participant's own failure after the header went out.
private func exchangeParts(
    _ local: Result<[Double], any Error>, channels: Int, pass: SyncPass, settings: [Double],
    over exchange: some StatisticsExchange
) throws -> [[Double]] {
    let succeeded = (try? local.get()) != nil
    let header = [succeeded ? 1 : 0, Double(channels), pass.rawValue] + settings
    let headers = try exchange.allGather(header)
    guard headers.count == exchange.participants, headers.allSatisfy({ $0.count == header.count }) else {
        throw SyncBatchNormError.malformedExchange(
            reason: "\(headers.count) headers for \(exchange.participants) participants, or of another length")
    }
    let failed = headers.indices.filter { headers[$0][0] != 1 }
    if !succeeded { _ = try local.get() }
    guard failed.isEmpty else { throw SyncBatchNormError.participantsFailed(ranks: failed) }
    for (rank, other) in headers.enumerated() where other != header {
        let reason =
            other[2] != header[2]
            ? "participant \(rank) is in another pass (forward or backward)"
            : other[1] != header[1]
                ? "participant \(rank) has \(Int(other[1])) channels, participant \(exchange.rank) \(channels)"
                : "participant \(rank) uses another momentum or eps"
        throw SyncBatchNormError.mismatchedParticipants(reason: reason)
    }
    let packed = try local.get()
    let parts = try exchange.allGather(packed)
    guard parts.count == exchange.participants, parts.allSatisfy({ $0.count == packed.count }) else {
        throw SyncBatchNormError.malformedExchange(
            reason: "\(parts.count) parts for \(exchange.participants) participants, or of another length")
    }
    return parts
}
