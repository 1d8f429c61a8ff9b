/// The statistics of one Switchable Norm forward pass, as whatever holds them: tensors
/// (a forward's outputs, a backward's checked inputs), device buffers (kernel
/// arguments), or arrays (the reference, in float32 or float64). One definition of the
/// set, so each place that moves it between representations maps it whole.
///
/// Per instance `r = n·C + c`: the mixed ``mean`` and ``invstd`` (and, with an IN branch,
/// `μ_in`, `σ²_in`); per sample the LN statistics; per channel the BN statistics that
/// were mixed in (nil without a BN branch, and where the holder leaves them out).
struct SwitchableNormStatistics<Values> {
    /// `μ = Σ_k softmax(wμ)_k μ_k` per instance.
    var mean: Values
    /// `1 / sqrt(σ² + eps)` of the mixed variance per instance.
    var invstd: Values
    var instanceMean: Values?
    var instanceVariance: Values?
    var layerMean: Values
    var layerVariance: Values
    var batchMean: Values?
    var batchVariance: Values?

    /// Which statistic a value is: its set (instance, sample or channel) and whether it
    /// is a mean (else a variance or invstd).
    struct Field {
        enum Set { case instance, sample, channel }
        let set: Set
        let isMean: Bool

        /// `[N, C]`, `[N]` or `[C]`.
        func shape(_ problem: SwitchableNormProblem) -> [Int] {
            switch set {
            case .instance: [problem.batch, problem.channels]
            case .sample: [problem.batch]
            case .channel: [problem.channels]
            }
        }
    }

    /// The same statistics, each transformed with the field it is.
    func map<T, E: Error>(_ transform: (Values, Field) throws(E) -> T) throws(E) -> SwitchableNormStatistics<T> {
        func optional(_ value: Values?, _ field: Field) throws(E) -> T? {
            guard let value else { return nil }
            return try transform(value, field)
        }
        return SwitchableNormStatistics<T>(
            mean: try transform(mean, Field(set: .instance, isMean: true)),
            invstd: try transform(invstd, Field(set: .instance, isMean: false)),
            instanceMean: try optional(instanceMean, Field(set: .instance, isMean: true)),
            instanceVariance: try optional(instanceVariance, Field(set: .instance, isMean: false)),
            layerMean: try transform(layerMean, Field(set: .sample, isMean: true)),
            layerVariance: try transform(layerVariance, Field(set: .sample, isMean: false)),
            batchMean: try optional(batchMean, Field(set: .channel, isMean: true)),
            batchVariance: try optional(batchVariance, Field(set: .channel, isMean: false)))
    }

    /// The same statistics, each transformed.
    func map<T, E: Error>(_ transform: (Values) throws(E) -> T) throws(E) -> SwitchableNormStatistics<T> {
        try map { (value, _) throws(E) -> T in try transform(value) }
    }

    /// Every statistic present, in declaration order.
    var all: [Values] {
        [mean, invstd, instanceMean, instanceVariance, layerMean, layerVariance, batchMean, batchVariance].compactMap { $0 }
    }
}

extension SwitchableNormStatistics<Void> {
    /// The fields a forward pass of `problem` writes: IN statistics with an IN branch,
    /// BN statistics when it computes them from the batch.
    static func forwardFields(of problem: SwitchableNormProblem) -> SwitchableNormStatistics<Void> {
        SwitchableNormStatistics(
            mean: (), invstd: (), instanceMean: problem.branches.hasInstance ? () : nil,
            instanceVariance: problem.branches.hasInstance ? () : nil, layerMean: (), layerVariance: (),
            batchMean: problem.usesBatchStatistics ? () : nil, batchVariance: problem.usesBatchStatistics ? () : nil)
    }
}

extension SwitchableNormStatistics<Tensor> {
    /// The tensors a forward pass of `problem` writes: the mixed `mean` and `invstd` as
    /// given (the call's destinations, or new), the branch statistics (which have no
    /// destination) new tensors from `allocate`.
    init(
        forwardOf problem: SwitchableNormProblem, mean: Tensor, invstd: Tensor, allocate: ([Int]) throws -> Tensor
    ) throws {
        let fields = SwitchableNormStatistics<Void>.forwardFields(of: problem)
        func branch(_ field: Void?, _ shape: [Int]) throws -> Tensor? { try field.map { try allocate(shape) } }
        let instances = [problem.batch, problem.channels]
        self.init(
            mean: mean, invstd: invstd, instanceMean: try branch(fields.instanceMean, instances),
            instanceVariance: try branch(fields.instanceVariance, instances), layerMean: try allocate([problem.batch]),
            layerVariance: try allocate([problem.batch]), batchMean: try branch(fields.batchMean, [problem.channels]),
            batchVariance: try branch(fields.batchVariance, [problem.channels]))
    }

    /// The statistics a backward pass reads, checked against `problem`: the forward's,
    /// with the running statistics as the BN set of an inference forward.
    ///
    /// - Throws: ``NormError/invalidArgument(argument:reason:)`` for a statistic the
    ///   branches need that `forward` lacks; `shapeMismatch`, `backendMismatch` or
    ///   `unsupported` (not float32) from ``NormError/checkParameter(_:_:shape:backend:)``.
    init(
        saved forward: SwitchableNormOutput, problem: SwitchableNormProblem, running: RunningStatistics?, backend: Backend
    ) throws(NormError) {
        func required(_ tensor: Tensor?, _ name: String, shape: [Int]) throws(NormError) -> Tensor {
            guard let tensor else {
                throw .invalidArgument(
                    argument: name,
                    reason: "missing: branches \(problem.branches), training \(problem.training) need it (was the forward run with other options?)")
            }
            try NormError.checkParameter(tensor, name, shape: shape, backend: backend)
            return tensor
        }
        let instanceShape = [problem.batch, problem.channels]
        mean = try required(forward.saveMean, "forward.saveMean", shape: instanceShape)
        invstd = try required(forward.saveInvstd, "forward.saveInvstd", shape: instanceShape)
        layerMean = try required(forward.layerMean, "forward.layerMean", shape: [problem.batch])
        layerVariance = try required(forward.layerVariance, "forward.layerVariance", shape: [problem.batch])
        if problem.branches.hasInstance {
            instanceMean = try required(forward.instanceMean, "forward.instanceMean", shape: instanceShape)
            instanceVariance = try required(forward.instanceVariance, "forward.instanceVariance", shape: instanceShape)
        }
        if problem.branches.hasBatch && problem.training {
            batchMean = try required(forward.batchMean, "forward.batchMean", shape: [problem.channels])
            batchVariance = try required(forward.batchVariance, "forward.batchVariance", shape: [problem.channels])
        } else if problem.branches.hasBatch {
            // Validated by SwitchableNormProblem: present, [C], float32, on the backend.
            batchMean = try required(running?.mean, "runningStatistics", shape: [problem.channels])
            batchVariance = try required(running?.variance, "runningStatistics", shape: [problem.channels])
        }
    }
}

extension SwitchableNormOutput {
    /// The output of a forward pass that wrote `statistics`.
    init(output: Tensor, statistics s: SwitchableNormStatistics<Tensor>, events: [KernelEvent]) {
        self.init(
            output: output, saveMean: s.mean, saveInvstd: s.invstd, instanceMean: s.instanceMean,
            instanceVariance: s.instanceVariance, layerMean: s.layerMean, layerVariance: s.layerVariance,
            batchMean: s.batchMean, batchVariance: s.batchVariance, events: events)
    }

    /// The statistics this forward pass wrote.
    var statistics: SwitchableNormStatistics<Tensor> {
        SwitchableNormStatistics(
            mean: saveMean, invstd: saveInvstd, instanceMean: instanceMean, instanceVariance: instanceVariance,
            layerMean: layerMean, layerVariance: layerVariance, batchMean: batchMean, batchVariance: batchVariance)
    }
}
