/// A synchronized BatchNorm layer over several devices in one process, as
/// `torch.nn.SyncBatchNorm`: one ``BatchNorm`` replica per device (its γ, β and
/// running statistics on that device's backend), and a forward that takes one slice of
/// the batch per device.
///
/// In training mode every slice is normalised with the whole batch's statistics and
/// every replica's running statistics get the same update
/// (``syncBatchNorm(_:weights:biases:runningStatistics:momentum:eps:activation:addends:)``);
/// the backward gives every replica the whole batch's dγ and dβ, so replicas that start
/// equal and take the same optimizer step stay equal. In inference mode each replica
/// normalises its slice with its (identical) running statistics, with no exchange. The
/// replicas' ``activation`` is fused after the norm in both modes, `y = f(BN(x))`, or
/// `f(BN(x) + z)` with ``forward(_:addends:)``.
public struct SyncBatchNorm: Sendable {
    /// One layer per part, in part order; ``forward(_:)`` takes the parts in this order.
    public var replicas: [BatchNorm]

    /// Training (whole-batch statistics) or inference (running statistics) mode, for
    /// every replica.
    public var isTraining: Bool {
        get { replicas.first?.isTraining ?? true }
        set { for i in replicas.indices { replicas[i].isTraining = newValue } }
    }

    /// The activation fused after the norm, `y = f(BN(x) (+ z))`, for every replica (the
    /// first replica's when read; ``forward(_:addends:)`` requires them to agree).
    public var activation: Activation {
        get { replicas.first?.activation ?? .none }
        set { for i in replicas.indices { replicas[i].activation = newValue } }
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

    /// Normalises each part (one per replica, on its backend), applies the replicas'
    /// ``activation``, and in training mode updates every replica's running statistics
    /// with the whole batch's: ``forward(_:addends:)`` without an addend.
    ///
    /// - Throws: as ``forward(_:addends:)``.
    public mutating func forward(_ inputs: [Tensor]) throws -> [BatchNormOutput] {
        try forward(inputs, addends: nil)
    }

    /// Normalises each part (one per replica, on its backend) with the fused epilogue
    /// `y_i = f(BN(x_i) + z_i)` (f the replicas' ``activation``, `z_i` part i's addend —
    /// the ResNet block's `relu(BN(conv) + shortcut)` over several devices) and, in
    /// training mode, updates every replica's running statistics with the whole batch's.
    /// Its ``backward(_:inputs:forwards:outputMask:)`` also returns dz per part.
    ///
    /// - Parameters:
    ///   - inputs: one part per replica, `(N_i, C, *S)`.
    ///   - addends: z per part, each its input's shape, layout, element type and backend;
    ///     nil for none.
    /// - Throws: ``NormError`` for a number of parts or addends other than the replicas',
    ///   a part whose C is not the layer's, replicas with different activations
    ///   (``NormError/invalidArgument(argument:reason:)`` naming `activation`), Batch
    ///   Renorm set on a replica in training (``NormError/unsupported(argument:reason:)``:
    ///   it is not synchronized), and what
    ///   ``syncBatchNorm(_:weights:biases:runningStatistics:momentum:eps:activation:addends:)`` throws.
    public mutating func forward(_ inputs: [Tensor], addends: [Tensor]?) throws -> [BatchNormOutput] {
        guard inputs.count == replicas.count else {
            throw NormError.invalidArgument(
                argument: "inputs", reason: "has \(inputs.count) parts for \(replicas.count) replicas: one per replica")
        }
        if let addends, addends.count != replicas.count {
            throw NormError.invalidArgument(
                argument: "addends", reason: "has \(addends.count) parts for \(replicas.count) replicas: one per replica")
        }
        for (input, replica) in zip(inputs, replicas) { try LayerParameters.checkChannels(of: input, replica.numFeatures) }
        let first = replicas[0]
        let tracks = first.runningStatistics != nil
        guard isTraining || !tracks else {
            return try inputs.indices.map { try replicas[$0].forward(inputs[$0], addend: addends?[$0]) }
        }
        guard replicas.allSatisfy({ $0.activation == first.activation }) else {
            throw NormError.invalidArgument(
                argument: "activation",
                reason: "the replicas have different activations: one function normalises every part")
        }
        guard replicas.allSatisfy({ $0.renorm == nil }) else {
            throw NormError.unsupported(argument: "renorm", reason: "Batch Renorm is not synchronized across replicas")
        }
        let weights = first.weight == nil ? nil : replicas.map { $0.weight! }
        let biases = first.bias == nil ? nil : replicas.map { $0.bias! }
        guard tracks else {
            return try syncBatchNorm(
                inputs, weights: weights, biases: biases, eps: first.eps, activation: first.activation, addends: addends)
        }
        var running = replicas.map { $0.runningStatistics! }
        let outputs = try syncBatchNorm(
            inputs, weights: weights, biases: biases, runningStatistics: &running, momentum: first.momentum,
            eps: first.eps, activation: first.activation, addends: addends)
        for i in replicas.indices { replicas[i].runningStatistics = running[i] }
        return outputs
    }

    /// The backward pass of ``forward(_:)`` and ``forward(_:addends:)``: per part dx (and
    /// dz, ``NormGradients/addend``, after a forward with addends), and dγ and dβ for each
    /// replica's parameters, the whole batch's (the same on every replica) in both modes.
    /// With an activation, dy is taken through it first, `g = dy·f′(a)` at
    /// `a = BN(x) + z` recomputed from x and the statistics.
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
                var gradients = NormGradients(
                    input: part.input, weight: try summed(\.weight, on: backend), bias: try summed(\.bias, on: backend),
                    events: part.events)
                gradients.addend = part.addend
                return gradients
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
    /// (``syncBatchNorm(_:weight:bias:runningStatistics:momentum:eps:activation:addend:over:)``); in
    /// inference mode, or without running statistics outside training, this is
    /// ``forward(_:)`` and nothing is exchanged. Every participant must be in the same
    /// mode. The layer's ``activation`` is fused after the norm, `y = f(BN(x))`
    /// (``forward(_:addend:synchronizedOver:)`` adds z before it); Batch Renorm is not
    /// synchronized: with ``renorm`` set, training throws.
    ///
    /// - Throws: as ``forward(_:addend:synchronizedOver:)``.
    public mutating func forward(_ input: Tensor, synchronizedOver exchange: some StatisticsExchange) throws
        -> BatchNormOutput
    {
        try forward(input, addend: nil, synchronizedOver: exchange)
    }

    /// A training step of this layer synchronized with the other participants of
    /// `exchange`, with the fused epilogue `y = f(BN(x) + z)`: f the layer's
    /// ``activation``, z this participant's slice of the addend (the ResNet block's
    /// `relu(BN(conv) + shortcut)` across processes). In training mode the input is
    /// normalised with the whole batch's statistics
    /// (``syncBatchNorm(_:weight:bias:runningStatistics:momentum:eps:activation:addend:over:)``);
    /// in inference mode, or without running statistics outside training, this is
    /// ``forward(_:addend:)`` and nothing is exchanged. Its
    /// ``backward(_:input:forward:outputMask:synchronizedOver:)`` also returns dz.
    ///
    /// - Parameters:
    ///   - input: this participant's part of the batch, `(N, C, *S)`.
    ///   - addend: z, the input's shape, layout, element type and backend; nil for none.
    ///   - exchange: the participants.
    /// - Throws: ``NormError/unsupported(argument:reason:)`` with ``renorm`` set in
    ///   training; what ``syncBatchNorm(_:weight:bias:runningStatistics:momentum:eps:activation:addend:over:)``
    ///   throws.
    public mutating func forward(
        _ input: Tensor, addend: Tensor?, synchronizedOver exchange: some StatisticsExchange
    ) throws -> BatchNormOutput {
        let training = isTraining || runningStatistics == nil
        guard training else { return try forward(input, addend: addend) }
        guard renorm == nil else {
            throw NormError.unsupported(argument: "renorm", reason: "Batch Renorm is not synchronized across participants")
        }
        try LayerParameters.checkChannels(of: input, numFeatures)
        guard var running = runningStatistics else {
            return try syncBatchNorm(
                input, weight: weight, bias: bias, eps: eps, activation: activation, addend: addend, over: exchange)
        }
        let output = try syncBatchNorm(
            input, weight: weight, bias: bias, runningStatistics: &running, momentum: momentum, eps: eps,
            activation: activation, addend: addend, over: exchange)
        runningStatistics = running
        return output
    }

    /// The backward pass of ``forward(_:synchronizedOver:)`` and
    /// ``forward(_:addend:synchronizedOver:)``: dx (and dz with an addend) for this
    /// participant's part, and the whole batch's dγ and dβ (the same on every participant)
    /// after a training step, through the forward's activation; ``backward(_:forward:outputMask:)``
    /// after an inference step.
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
