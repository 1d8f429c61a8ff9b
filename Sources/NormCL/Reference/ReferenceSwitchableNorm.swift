/// Switchable Normalization on the CPU, written for clarity: float64 accumulation, the
/// formulas of docs/SEMANTICS.md taken literally (two passes for every directly computed statistic).
///
/// The OpenCL kernels are tested against this, and it is what ``Backend/reference`` runs.
enum ReferenceSwitchableNorm {
    /// A forward pass's output, statistics (read as members: `result.mean`) and updated
    /// running statistics.
    @dynamicMemberLookup
    struct Result {
        var output: [Float]
        var statistics: SwitchableNormStatistics<[Float]>
        var runningMean: [Float]?
        var runningVar: [Float]?

        subscript<T>(dynamicMember statistic: WritableKeyPath<SwitchableNormStatistics<[Float]>, T>) -> T {
            get { statistics[keyPath: statistic] }
            set { statistics[keyPath: statistic] = newValue }
        }
    }

    /// `softmax(logits)` in float64.
    static func softmax(_ logits: [Float]) -> [Double] {
        let top = Double(logits.max() ?? 0)
        let e = logits.map { exponential(Double($0) - top) }
        let sum = e.reduce(0, +)
        return e.map { $0 / sum }
    }

    /// `e^x` for `x ≤ 0` (softmax arguments), without Foundation: `x = k·ln 2 + r` with
    /// `|r| ≤ ln 2 / 2`, a Taylor series for `e^r` (error below 1e-16 relative), times `2^k`.
    static func exponential(_ x: Double) -> Double {
        if x.isNaN { return x }
        if x < -745 { return 0 }
        let ln2 = 0.693_147_180_559_945_309_417_232_121_458
        let k = (x / ln2).rounded()
        let r = x - k * ln2
        var term = 1.0, sum = 1.0
        for i in 1...20 {
            term *= r / Double(i)
            sum += term
        }
        return sum * Double(sign: .plus, exponent: Int(k), significand: 1)
    }

    /// Mean and `Σ(x − mean)² / divisor` of `values`, two passes.
    static func moments(_ values: [Double], divisor: Double) -> (mean: Double, variance: Double) {
        let mean = values.reduce(0, +) / Double(values.count)
        let squares = values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) }
        return (mean, squares / divisor)
    }

    /// The mean and variance of equal-sized sets pooled from theirs (the law of total
    /// variance): the mean of the means, plus the spread of the means about it.
    static func pooled(means: [Double], variances: [Double]) -> (mean: Double, variance: Double) {
        let k = Double(means.count)
        let mean = means.reduce(0, +) / k
        return (mean, variances.reduce(0, +) / k + means.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / k)
    }

    /// The whole forward pass of ``SwitchableNormProblem``.
    ///
    /// - Parameter momentum: the effective update weight of the new batch.
    static func forward(
        _ problem: SwitchableNormProblem, x: [Float], meanLogits: [Float], varianceLogits: [Float],
        weight: [Float]?, bias: [Float]?, runningMean: [Float]?, runningVar: [Float]?, momentum: Double, eps: Double
    ) -> Result {
        let batch = problem.batch, channels = problem.channels, spatial = problem.spatial
        let index = ReferenceBatchNorm.Indexing(batch: batch, channels: channels, spatial: spatial, layout: problem.layout)
        let u: Double = problem.unbiased ? 1 : 0
        let L = Double(spatial)
        func values(n: Int, c: Int) -> [Double] { (0..<spatial).map { Double(x[index(n, c, $0)]) } }
        func sample(_ n: Int) -> [Double] { (0..<channels).flatMap { values(n: n, c: $0) } }
        func channel(_ c: Int) -> [Double] { (0..<batch).flatMap { values(n: $0, c: c) } }

        // Instance statistics per (n, c), with the chosen estimator.
        var instanceMean = [Double](repeating: 0, count: batch * channels)
        var instanceVariance = instanceMean
        for n in 0..<batch {
            for c in 0..<channels {
                (instanceMean[n * channels + c], instanceVariance[n * channels + c]) =
                    moments(values(n: n, c: c), divisor: problem.branches.hasInstance ? L - u : L)
            }
        }
        // LN per sample and BN per channel: with IN, derived from the instance statistics
        // by the law of total variance; without, directly over their C·L and N·L values.
        var layerMean = [Double](repeating: 0, count: batch), layerVariance = layerMean
        for n in 0..<batch {
            if problem.branches.hasInstance {
                (layerMean[n], layerVariance[n]) = pooled(
                    means: (0..<channels).map { instanceMean[n * channels + $0] },
                    variances: (0..<channels).map { instanceVariance[n * channels + $0] })
            } else {
                (layerMean[n], layerVariance[n]) = moments(sample(n), divisor: Double(channels) * L - u)
            }
        }
        var result = Result(
            output: [],
            statistics: SwitchableNormStatistics(
                mean: [], invstd: [], layerMean: layerMean.map(Float.init), layerVariance: layerVariance.map(Float.init)))
        var batchMean = [Double](repeating: 0, count: channels), batchVariance = batchMean
        if problem.branches.hasBatch {
            for c in 0..<channels {
                if !problem.training {
                    batchMean[c] = Double(runningMean?[c] ?? 0)
                    batchVariance[c] = Double(runningVar?[c] ?? 1)
                } else if problem.branches.hasInstance {
                    (batchMean[c], batchVariance[c]) = pooled(
                        means: (0..<batch).map { instanceMean[$0 * channels + c] },
                        variances: (0..<batch).map { instanceVariance[$0 * channels + c] })
                } else {
                    (batchMean[c], batchVariance[c]) = moments(channel(c), divisor: Double(batch) * L - u)
                }
            }
            if problem.training {
                result.batchMean = batchMean.map(Float.init)
                result.batchVariance = batchVariance.map(Float.init)
            }
            if problem.updatesRunningStatistics, let runningMean, let runningVar {
                // As BatchNorm: the unbiased variance of the channel's N·L values.
                result.runningMean = (0..<channels).map { c in
                    Float((1 - momentum) * Double(runningMean[c]) + momentum * batchMean[c])
                }
                result.runningVar = (0..<channels).map { c in
                    let unbiased = moments(channel(c), divisor: Double(batch) * L - 1).variance
                    return Float((1 - momentum) * Double(runningVar[c]) + momentum * unbiased)
                }
            }
        }
        if problem.branches.hasInstance {
            result.instanceMean = instanceMean.map(Float.init)
            result.instanceVariance = instanceVariance.map(Float.init)
        }

        // Mixing: logits in branch order IN, LN, BN (those present).
        let wm = softmax(meanLogits), wv = softmax(varianceLogits)
        var mean = [Double](repeating: 0, count: batch * channels), invstd = mean
        var y = [Float](repeating: 0, count: x.count)
        for n in 0..<batch {
            for c in 0..<channels {
                let r = n * channels + c
                var means: [Double] = [], variances: [Double] = []
                if problem.branches.hasInstance {
                    means.append(instanceMean[r])
                    variances.append(instanceVariance[r])
                }
                means.append(layerMean[n])
                variances.append(layerVariance[n])
                if problem.branches.hasBatch {
                    means.append(batchMean[c])
                    variances.append(batchVariance[c])
                }
                mean[r] = zip(wm, means).reduce(0) { $0 + $1.0 * $1.1 }
                let variance = zip(wv, variances).reduce(0) { $0 + $1.0 * $1.1 }
                invstd[r] = 1 / (Swift.max(variance, 0) + eps).squareRoot()
                let gamma = weight.map { Double($0[c]) } ?? 1, beta = bias.map { Double($0[c]) } ?? 0
                for m in 0..<spatial {
                    let i = index(n, c, m)
                    y[i] = Float((Double(x[i]) - mean[r]) * invstd[r] * gamma + beta)
                }
            }
        }
        result.output = y
        result.mean = mean.map(Float.init)
        result.invstd = invstd.map(Float.init)
        return result
    }
}
