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
    typealias SavedStatistics = SwitchableNormStatistics<[Double]>

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

        // Instance means: saved with IN, else from x (only the IN terms below read them).
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

        // Back to x. With IN, through the instance moments (the forward derives μ_ln, σ²_ln,
        // μ_bn, σ²_bn from them). Without IN the forward computes the LN and BN statistics
        // directly over their C·L and N·L values, and the chain rule through
        // μ_ln = Σx/(C·L), σ²_ln = Σ(x − μ_ln)²/(C·L − u) gives ∂σ²_ln/∂x = 2·α_LN·(x − μ_ln)
        // (the path through μ_ln is −2·α_LN·Σ(x − μ_ln)·∂μ_ln/∂x = 0 exactly): PyTorch's
        // var_backward, what float64 autograd of that forward computes. Writing it through
        // instance means instead (σ²_set = α·ΣM2_in + β·Σ(μ_in − μ_set)², β/L = α) is equal in
        // exact arithmetic, as μ_in cancels between ∂μ_in and ∂M2_in, but not when an Inf in
        // dy makes the set adjoints infinite: ∞·(μ_in − μ_ln) + ∞·(x − μ_in) can be ∞ − ∞ =
        // NaN where ∞·(x − μ_ln) is ±∞. So without IN dx is formed directly:
        //     dx = g·s·dy + (∂μ_ln/C + ∂μ_bn/N)/L + 2·α_LN·∂σ²_ln·(x − μ_ln) + 2·α_BN·∂σ²_bn·(x − μ_bn)
        // (BN terms only in training), and the kernel evaluates the same products.
        var dx = [Double](repeating: 0, count: x.count)
        for r in 0..<R {
            let n = r / channels, c = r % channels
            let batchMean = batchFromX ? s.batchMean : nil
            if !branches.hasInstance {
                var dMu = dLayerMean[n] / C
                if batchMean != nil { dMu += dBatchMean[c] / N }
                for m in 0..<spatial {
                    let i = index(n, c, m)
                    var value = gamma(c) * s.invstd[r] * dy[i] + dMu / L + 2 * alphaLayer * dLayerVar[n] * (x[i] - s.layerMean[n])
                    if let batchMean { value += 2 * alphaBatch * dBatchVar[c] * (x[i] - batchMean[c]) }
                    dx[i] = value
                }
                continue
            }
            let mu = instanceMean[r]
            var dM2 = alphaLayer * dLayerVar[n] + pv[0] * adjVar[r] / instanceDivisor
            var dMu = dLayerMean[n] / C + 2 * betaLayer * dLayerVar[n] * (mu - s.layerMean[n]) + pm[0] * adjMean[r]
            if let batchMean {
                dM2 += alphaBatch * dBatchVar[c]
                dMu += dBatchMean[c] / N + 2 * betaBatch * dBatchVar[c] * (mu - batchMean[c])
            }
            for m in 0..<spatial {
                let i = index(n, c, m)
                dx[i] = gamma(c) * s.invstd[r] * dy[i] + dMu / L + 2 * dM2 * (x[i] - mu)
            }
        }

        // Logits through the softmax Jacobian: dw_k = p_k·Σ_r adj_r·(stat_k(r) − Σ_j p_j stat_j(r)),
        // with stat_k − Σ_j p_j stat_j written as Σ_{j≠k} p_j·(stat_k − stat_j): equal, since
        // Σ_j p_j = 1 (the softmax's own normalisation; the k-th term is p_k·0). The second
        // form is 0 only where the statistics are equal (or a weight underflows), in any
        // precision; the first also rounds to exactly 0 when one weight all but dominates
        // (logits (30, −30): p = 1 − 9e-27 is 1.0 in float64, so stat_k − Σ_j p_j stat_j = 0
        // though its true value is p_j·(stat_k − stat_j) ≠ 0). With an infinite adjoint (an
        // Inf in dy) that rounding decides between 0·∞ = NaN and the derivative's ±∞, and a
        // float32 kernel cannot round as float64 does. Differences of statistics also keep
        // large-mean data from cancelling (Sterbenz), as the kernel needs.
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
            for k in 0..<branches.count {
                var meanDeviation = 0.0, varianceDeviation = 0.0  // stat_k − Σ_j p_j stat_j
                for j in 0..<branches.count where j != k {
                    meanDeviation += pm[j] * (means[k] - means[j])
                    varianceDeviation += pv[j] * (variances[k] - variances[j])
                }
                dMeanLogits[k] += pm[k] * adjMean[r] * meanDeviation
                dVarLogits[k] += pv[k] * adjVar[r] * varianceDeviation
            }
        }
        return BackwardResult(
            input: dx, weight: dWeight, bias: dBias, meanLogits: dMeanLogits, varianceLogits: dVarLogits)
    }
}
