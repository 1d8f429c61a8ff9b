/// A synchronized BatchNorm layer over several devices in one process, as
/// `torch.nn.SyncBatchNorm`: one ``BatchNorm`` replica per device (its γ, β and
/// running statistics on that device's backend), and a forward that takes one slice of
/// the batch per device.
///
/// In training mode every slice is normalised with the whole batch's statistics and
/// every replica's running statistics get the same update
/// (``syncBatchNorm(_:weights:biases:runningStatistics:momentum:eps:)``); the backward
/// gives every replica the whole batch's dγ and dβ, so replicas that start equal and
/// take the same optimizer step stay equal. In inference mode each replica normalises
/// its slice with its (identical) running statistics, with no exchange.
public struct SyncBatchNorm: Sendable {
    /// One layer per part, in part order; ``forward(_:)`` takes the parts in this order.
    public var replicas: [BatchNorm]

    /// Training (whole-batch statistics) or inference (running statistics) mode, for
    /// every replica.
    public var isTraining: Bool {
        get { replicas.first?.isTraining ?? true }
        set { for i in replicas.indices { replicas[i].isTraining = newValue } }
    }

    /// A layer with PyTorch's defaults and one replica on each backend.
    ///
    /// - Throws: what ``BatchNorm/init(numFeatures:eps:momentum:affine:trackRunningStats:on:)``
    ///   throws, and ``NormError/invalidArgument(argument:reason:)`` for no backends.
    public init(
        numFeatures: Int, eps: Float = 1e-5, momentum: Float? = 0.1, affine: Bool = true,
        trackRunningStats: Bool = true, on backends: [Backend]
    ) throws {
        guard !backends.isEmpty else {
            throw NormError.invalidArgument(argument: "backends", reason: "a synchronized layer needs at least one part")
        }
        replicas = try backends.map {
            try BatchNorm(
                numFeatures: numFeatures, eps: eps, momentum: momentum, affine: affine,
                trackRunningStats: trackRunningStats, on: $0)
        }
    }

    /// Normalises each part (one per replica, on its backend) and, in training mode,
    /// updates every replica's running statistics with the whole batch's.
    ///
    /// - Throws: ``NormError`` for a number of parts other than the replicas', a part
    ///   whose C is not the layer's, and what
    ///   ``syncBatchNorm(_:weights:biases:runningStatistics:momentum:eps:)`` throws.
    public mutating func forward(_ inputs: [Tensor]) throws -> [BatchNormOutput] {
        guard inputs.count == replicas.count else {
            throw NormError.invalidArgument(
                argument: "inputs", reason: "has \(inputs.count) parts for \(replicas.count) replicas: one per replica")
        }
        for (input, replica) in zip(inputs, replicas) { try LayerParameters.checkChannels(of: input, replica.numFeatures) }
        let first = replicas[0]
        let tracks = first.runningStatistics != nil
        guard isTraining || !tracks else {
            return try inputs.indices.map { try replicas[$0].forward(inputs[$0]) }
        }
        guard replicas.allSatisfy({ $0.activation == .none }) else {
            throw NormError.unsupported(
                argument: "activation", reason: "a fused activation is not synchronized across replicas")
        }
        let weights = first.weight == nil ? nil : replicas.map { $0.weight! }
        let biases = first.bias == nil ? nil : replicas.map { $0.bias! }
        guard tracks else { return try syncBatchNorm(inputs, weights: weights, biases: biases, eps: first.eps) }
        var running = replicas.map { $0.runningStatistics! }
        let outputs = try syncBatchNorm(
            inputs, weights: weights, biases: biases, runningStatistics: &running, momentum: first.momentum,
            eps: first.eps)
        for i in replicas.indices { replicas[i].runningStatistics = running[i] }
        return outputs
    }

    /// The backward pass of ``forward(_:)``: per part dx, and dγ and dβ for each replica's
    /// parameters, the whole batch's (the same on every replica) in both modes.
    ///
    /// - Parameters:
    ///   - gradOutputs: dy per part.
    ///   - inputs: the parts ``forward(_:)`` normalised.
    ///   - forwards: what it returned.
    ///   - outputMask: which gradients to compute.
    /// - Throws: what ``syncBatchNormBackward(_:inputs:weights:forwards:outputMask:)`` or,
    ///   in inference mode, ``BatchNorm/backward(_:forward:outputMask:)`` throws.
    public func backward(
        _ gradOutputs: [Tensor], inputs: [Tensor], forwards: [BatchNormOutput], outputMask: NormGradientMask = .all
    ) throws -> [NormGradients] {
        guard gradOutputs.count == replicas.count, forwards.count == replicas.count else {
            throw NormError.invalidArgument(
                argument: "gradOutputs", reason: "needs one gradient and one forward per replica (\(replicas.count))")
        }
        // An inference forward kept what BatchNorm's own backward needs: dx per part, and
        // dγ and dβ summed over the parts (in part order), as training gives them.
        if forwards.allSatisfy({ $0.saveMean == nil }) {
            let parts = try replicas.indices.map {
                try replicas[$0].backward(gradOutputs[$0], forward: forwards[$0], outputMask: outputMask)
            }
            func summed(_ gradient: KeyPath<NormGradients, Tensor?>, on backend: Backend) throws -> Tensor? {
                guard parts[0][keyPath: gradient] != nil else { return nil }
                var sum = [Double](repeating: 0, count: replicas[0].numFeatures)
                for part in parts {
                    for (c, value) in try part[keyPath: gradient]!.toArray().enumerated() { sum[c] += Double(value) }
                }
                return try Tensor(sum.map(Float.init), on: backend)
            }
            return try parts.indices.map { i in
                let (part, backend) = (parts[i], gradOutputs[i].backend)
                return NormGradients(
                    input: part.input, weight: try summed(\.weight, on: backend), bias: try summed(\.bias, on: backend),
                    events: part.events)
            }
        }
        let affine = replicas[0].weight != nil
        var mask = outputMask
        if !affine { mask.subtract([.weight, .bias]) }
        return try syncBatchNormBackward(
            gradOutputs, inputs: inputs, weights: affine ? replicas.map { $0.weight! } : nil, forwards: forwards,
            outputMask: mask)
    }
}

extension BatchNorm {
    /// A training step of this layer synchronized with the other participants of
    /// `exchange` (one process each, say, over MPI): in training mode the input — this
    /// participant's part of the batch — is normalised with the whole batch's
    /// statistics and the running statistics get the whole batch's update
    /// (``syncBatchNorm(_:weight:bias:runningStatistics:momentum:eps:over:)``); in
    /// inference mode, or without running statistics outside training, this is
    /// ``forward(_:)`` and nothing is exchanged. Every participant must be in the same
    /// mode. Batch Renorm is not synchronized, nor a fused ``activation``: with either
    /// set, training throws.
    ///
    /// - Throws: ``NormError/unsupported(argument:reason:)`` with ``renorm`` or
    ///   ``activation`` set in training; what ``syncBatchNorm(_:weight:bias:runningStatistics:momentum:eps:over:)``
    ///   throws.
    public mutating func forward(_ input: Tensor, synchronizedOver exchange: some StatisticsExchange) throws
        -> BatchNormOutput
    {
        let training = isTraining || runningStatistics == nil
        guard training else { return try forward(input) }
        guard renorm == nil else {
            throw NormError.unsupported(argument: "renorm", reason: "Batch Renorm is not synchronized across participants")
        }
        guard activation == .none else {
            throw NormError.unsupported(
                argument: "activation", reason: "a fused activation is not synchronized across participants")
        }
        try LayerParameters.checkChannels(of: input, numFeatures)
        guard var running = runningStatistics else {
            return try syncBatchNorm(input, weight: weight, bias: bias, eps: eps, over: exchange)
        }
        let output = try syncBatchNorm(
            input, weight: weight, bias: bias, runningStatistics: &running, momentum: momentum, eps: eps, over: exchange)
        runningStatistics = running
        return output
    }

    /// The backward pass of ``forward(_:synchronizedOver:)``: dx for this participant's
    /// part, and the whole batch's dγ and dβ (the same on every participant) after a
    /// training step; ``backward(_:forward:outputMask:)`` after an inference step.
    ///
    /// - Parameters:
    ///   - gradOutput: dy for this participant's part.
    ///   - input: the part ``forward(_:synchronizedOver:)`` normalised.
    ///   - forward: what it returned.
    ///   - outputMask: which gradients to compute (dγ and dβ only for an affine layer).
    ///   - exchange: the participants, as in the forward.
    public func backward(
        _ gradOutput: Tensor, input: Tensor, forward: BatchNormOutput, outputMask: NormGradientMask = .all,
        synchronizedOver exchange: some StatisticsExchange
    ) throws -> NormGradients {
        guard forward.saveMean != nil else { return try backward(gradOutput, forward: forward, outputMask: outputMask) }
        var mask = outputMask
        if weight == nil { mask.subtract([.weight, .bias]) }
        return try syncBatchNormBackward(
            gradOutput, input: input, weight: weight, forward: forward, outputMask: mask, over: exchange)
    }
}
