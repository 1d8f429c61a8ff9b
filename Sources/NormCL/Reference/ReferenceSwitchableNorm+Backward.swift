/// Switchable Normalization backward on the CPU: float64 throughout, the chain rule
/// through every statistic written out literally (see ``switchableNormBackward(_:input:meanLogits:varianceLogits:weight:forward:runningStatistics:training:options:outputMask:)``
/// for the derivation). The core works on `[Double]` so the tests can gradient-check it
/// against central differences of a float64 forward.
extension ReferenceSwitchableNorm {
    /// The forward statistics the backward pass reads, in float64. Per instance
    /// `r = n·C + c`: ``mean``, ``invstd`` (and ``instanceMean``, ``instanceVariance``
    /// with an IN branch); per sample the LN statistics; per channel the BN statistics
    /// that were mixed in (this batch's in training, the running ones in inference; nil
    /// without a BN branch).
    struct SavedStatistics {
        var mean: [Double]
        var invstd: [Double]
        var instanceMean: [Double]?
        var instanceVariance: [Double]?
        var layerMean: [Double]
        var layerVariance: [Double]
        var batchMean: [Double]?
        var batchVariance: [Double]?
    }

    struct BackwardResult {
        var input: [Double]
        var weight: [Double]
        var bias: [Double]
        var meanLogits: [Double]
        var varianceLogits: [Double]
    }

    /// `softmax(logits)` in float64, for float64 logits (the gradient check perturbs them).
    static func softmax(_ logits: [Double]) -> [Double] {
        let top = logits.max() ?? 0
        let e = logits.map { exponential($0 - top) }
        let sum = e.reduce(0, +)
        return e.map { $0 / sum }
    }

    /// Every gradient of a Switchable Norm forward, given `dy` (memory order of the
    /// problem's layout) and the saved statistics.
    static func backward(
        _ problem: SwitchableNormProblem, gradOutput dy: [Double], x: [Double], meanLogits: [Double],
        varianceLogits: [Double], weight: [Double]?, statistics s: SavedStatistics
    ) -> BackwardResult {
        let batch = problem.batch, channels = problem.channels, spatial = problem.spatial
        let index = ReferenceBatchNorm.Indexing(batch: batch, channels: channels, spatial: spatial, layout: problem.layout)
        let branches = problem.branches
        let N = Double(batch), C = Double(channels), L = Double(spatial), u: Double = problem.unbiased ? 1 : 0
        let batchFromX = problem.training && branches.hasBatch
        let pm = softmax(meanLogits), pv = softmax(varianceLogits)
        let kLayer = branches.hasInstance ? 1 : 0, kBatch = kLayer + 1

        // σ²_set = α·Σ M2_in + β·Σ (μ_in − μ_set)² over the set's k instances.
        let instanceDivisor = branches.hasInstance ? L - u : L
        let (alphaLayer, betaLayer, alphaBatch, betaBatch): (Double, Double, Double, Double) =
            branches.hasInstance
            ? (1 / (C * instanceDivisor), 1 / C, 1 / (N * instanceDivisor), 1 / N)
            : (1 / (C * L - u), L / (C * L - u), 1 / (N * L - u), L / (N * L - u))

        // Instance means: saved with IN, else from x (they are intermediates of μ_ln, μ_bn).
        let instanceMean =
            s.instanceMean
            ?? (0..<batch * channels).map { r in
                (0..<spatial).reduce(0) { $0 + x[index(r / channels, r % channels, $1)] } / L
            }

        // Per instance: Σ dy, Σ dy·(x − μ), and the adjoints of the mixed μ and σ².
        let R = batch * channels
        var sumDy = [Double](repeating: 0, count: R), sumDyXmu = sumDy, adjMean = sumDy, adjVar = sumDy
        func gamma(_ c: Int) -> Double { weight?[c] ?? 1 }
        for r in 0..<R {
            let n = r / channels, c = r % channels
            for m in 0..<spatial {
                let i = index(n, c, m)
                sumDy[r] += dy[i]
                sumDyXmu[r] += dy[i] * (x[i] - s.mean[r])
            }
            let inv = s.invstd[r]
            adjMean[r] = -gamma(c) * inv * sumDy[r]
            adjVar[r] = -0.5 * gamma(c) * inv * inv * inv * sumDyXmu[r]
        }
        var dWeight = [Double](repeating: 0, count: channels), dBias = dWeight
        var dBatchMean = dWeight, dBatchVar = dWeight
        var dLayerMean = [Double](repeating: 0, count: batch), dLayerVar = dLayerMean
        for r in 0..<R {
            let n = r / channels, c = r % channels
            dWeight[c] += sumDyXmu[r] * s.invstd[r]
            dBias[c] += sumDy[r]
            dLayerMean[n] += pm[kLayer] * adjMean[r]
            dLayerVar[n] += pv[kLayer] * adjVar[r]
            if branches.hasBatch {
                dBatchMean[c] += pm[kBatch] * adjMean[r]
                dBatchVar[c] += pv[kBatch] * adjVar[r]
            }
        }

        // Back to the instance moments, then to x.
        var dx = [Double](repeating: 0, count: x.count)
        for r in 0..<R {
            let n = r / channels, c = r % channels
            let mu = instanceMean[r]
            var dM2 = alphaLayer * dLayerVar[n]
            var dMu = dLayerMean[n] / C + 2 * betaLayer * dLayerVar[n] * (mu - s.layerMean[n])
            if branches.hasInstance {
                dM2 += pv[0] * adjVar[r] / instanceDivisor
                dMu += pm[0] * adjMean[r]
            }
            if batchFromX, let batchMean = s.batchMean {
                dM2 += alphaBatch * dBatchVar[c]
                dMu += dBatchMean[c] / N + 2 * betaBatch * dBatchVar[c] * (mu - batchMean[c])
            }
            for m in 0..<spatial {
                let i = index(n, c, m)
                dx[i] = gamma(c) * s.invstd[r] * dy[i] + dMu / L + 2 * dM2 * (x[i] - mu)
            }
        }

        // Logits through the softmax Jacobian: dw_k = p_k·Σ_r adj_r·(stat_k(r) − Σ_j p_j stat_j(r)).
        var dMeanLogits = [Double](repeating: 0, count: branches.count), dVarLogits = dMeanLogits
        for r in 0..<R {
            let n = r / channels, c = r % channels
            var means: [Double] = [], variances: [Double] = []
            if branches.hasInstance {
                means.append(instanceMean[r])
                variances.append(s.instanceVariance?[r] ?? 0)
            }
            means.append(s.layerMean[n])
            variances.append(s.layerVariance[n])
            if branches.hasBatch {
                means.append(s.batchMean?[c] ?? 0)
                variances.append(s.batchVariance?[c] ?? 0)
            }
            let mixedMean = zip(pm, means).reduce(0) { $0 + $1.0 * $1.1 }
            let mixedVar = zip(pv, variances).reduce(0) { $0 + $1.0 * $1.1 }
            for k in 0..<branches.count {
                dMeanLogits[k] += pm[k] * adjMean[r] * (means[k] - mixedMean)
                dVarLogits[k] += pv[k] * adjVar[r] * (variances[k] - mixedVar)
            }
        }
        return BackwardResult(
            input: dx, weight: dWeight, bias: dBias, meanLogits: dMeanLogits, varianceLogits: dVarLogits)
    }
}
