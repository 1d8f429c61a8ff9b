/// The forward statistics a Switchable Norm backward pass reads, checked against the
/// problem: per instance the mixed mean and invstd (and, with IN, `μ_in`, `σ²_in`), per
/// sample the LN statistics, per channel the BN statistics that were mixed in — the
/// batch's from the forward output in training, the running ones in inference.
struct SwitchableNormSavedStatistics {
    let mean: Tensor
    let invstd: Tensor
    let instanceMean: Tensor?
    let instanceVariance: Tensor?
    let layerMean: Tensor
    let layerVariance: Tensor
    let batchMean: Tensor?
    let batchVariance: Tensor?

    /// - Throws: ``NormError/invalidArgument(argument:reason:)`` for a statistic the
    ///   branches need that `forward` lacks; `shapeMismatch`, `backendMismatch` or
    ///   `unsupported` (not float32) from ``NormError/checkParameter(_:_:shape:backend:)``.
    init(
        _ forward: SwitchableNormOutput, problem: SwitchableNormProblem, running: RunningStatistics?, backend: Backend
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
        } else {
            instanceMean = nil
            instanceVariance = nil
        }
        if !problem.branches.hasBatch {
            batchMean = nil
            batchVariance = nil
        } else if problem.training {
            batchMean = try required(forward.batchMean, "forward.batchMean", shape: [problem.channels])
            batchVariance = try required(forward.batchVariance, "forward.batchVariance", shape: [problem.channels])
        } else {
            // Validated by SwitchableNormProblem: present, [C], float32, on the backend.
            batchMean = try required(running?.mean, "runningStatistics", shape: [problem.channels])
            batchVariance = try required(running?.variance, "runningStatistics", shape: [problem.channels])
        }
    }
}
