/// InstanceNorm on the CPU: GroupNorm's reference statistics with one group per
/// channel, plus PyTorch's running-statistics update and inference.
enum ReferenceInstanceNorm {
    /// BatchNorm's: the output, saved statistics per (n, c), updated running statistics.
    typealias Result = ReferenceBatchNorm.Result

    /// The whole forward pass of an InstanceNorm ``GroupNormProblem`` (`groups == channels`).
    ///
    /// - Parameter momentum: the effective update weight of the new batch (already
    ///   resolved from `nil` to `1 / numBatchesTracked`).
    static func forward(
        _ problem: GroupNormProblem, x: [Float], weight: [Float]?, bias: [Float]?,
        runningMean: [Float]?, runningVar: [Float]?, momentum: Double, eps: Double
    ) -> Result {
        let channels = problem.channels
        switch problem.statistics {
        case .running:
            let mean = (runningMean ?? [Float](repeating: 0, count: channels)).map(Double.init)
            let invstd = (runningVar ?? [Float](repeating: 1, count: channels)).map { 1 / (Double($0) + eps).squareRoot() }
            let y = ReferenceGroupNorm.normalize(x, problem, weight: weight, bias: bias) { _, c in (mean[c], invstd[c]) }
            return Result(output: y, saveMean: nil, saveInvstd: nil, runningMean: nil, runningVar: nil)
        case .input:
            let stats = ReferenceGroupNorm.forward(problem, x: x, weight: weight, bias: bias, eps: eps)
            var result = Result(
                output: stats.output, saveMean: stats.mean.map(Float.init), saveInvstd: stats.invstd.map(Float.init),
                runningMean: nil, runningVar: nil)
            if let runningMean, let runningVar {
                // Batch average over N of the per-instance mean and unbiased variance.
                let batch = Double(problem.batch)
                let m = Double(problem.spatial)
                result.runningMean = (0..<channels).map { c in
                    let mean = (0..<problem.batch).reduce(0.0) { $0 + stats.mean[$1 * channels + c] } / batch
                    return Float((1 - momentum) * Double(runningMean[c]) + momentum * mean)
                }
                result.runningVar = (0..<channels).map { c in
                    let variance = (0..<problem.batch).reduce(0.0) { $0 + stats.variance[$1 * channels + c] } / batch
                    return Float((1 - momentum) * Double(runningVar[c]) + momentum * variance * m / (m - 1))
                }
            }
            return result
        }
    }
}
