/// BatchNorm on the CPU, written for clarity: float64 accumulation, two passes over
/// the data, the formulas of docs/SEMANTICS.md taken literally.
///
/// The OpenCL kernels are tested against this, and it is what ``Backend/reference``
/// runs. Element (n, c, m) is at `(n·C + c)·M + m` in NCHW and at `(n·M + m)·C + c`
/// in channels-last memory.
enum ReferenceBatchNorm {
    /// Where element (n, c, m) of an `(N, C, M)` tensor lives in memory.
    struct Indexing {
        let batch: Int, channels: Int, spatial: Int
        let layout: TensorLayout

        /// The indexing of `shape`'s `(N, C, M)` in `layout`.
        init(_ shape: some ChannelShaped, layout: TensorLayout) {
            self.init(batch: shape.batch, channels: shape.channels, spatial: shape.spatial, layout: layout)
        }

        init(batch: Int, channels: Int, spatial: Int, layout: TensorLayout) {
            self.batch = batch
            self.channels = channels
            self.spatial = spatial
            self.layout = layout
        }

        func callAsFunction(_ n: Int, _ c: Int, _ m: Int) -> Int {
            switch layout {
            case .channelsFirst: (n * channels + c) * spatial + m
            case .channelsLast: (n * spatial + m) * channels + c
            }
        }
    }

    /// A forward pass's output, saved statistics (per channel; per (n, c) for
    /// InstanceNorm, which shares this type), updated running statistics and Batch
    /// Renorm's r and d.
    struct Result {
        var output: [Float]
        var saveMean: [Float]?
        var saveInvstd: [Float]?
        var runningMean: [Float]?
        var runningVar: [Float]?
        var renormR: [Float]? = nil
        var renormD: [Float]? = nil
    }

    /// Mean and biased variance per channel: `mean_c = Σx/n`, `var_c = Σ(x − mean_c)²/n`.
    static func channelStatistics(_ x: [Float], _ index: Indexing) -> (mean: [Double], variance: [Double]) {
        let n = Double(index.batch * index.spatial)
        var mean = [Double](repeating: 0, count: index.channels)
        var variance = [Double](repeating: 0, count: index.channels)
        for c in 0..<index.channels {
            var sum = 0.0
            for b in 0..<index.batch {
                for m in 0..<index.spatial { sum += Double(x[index(b, c, m)]) }
            }
            mean[c] = sum / n
            var squares = 0.0
            for b in 0..<index.batch {
                for m in 0..<index.spatial {
                    let d = Double(x[index(b, c, m)]) - mean[c]
                    squares += d * d
                }
            }
            variance[c] = squares / n
        }
        return (mean, variance)
    }

    /// `y = ((x − mean_c)·invstd_c·r_c + d_c)·γ_c + β_c` (r = 1, d = 0 unless Batch
    /// Renorm), computed in float64 and rounded once.
    static func normalize(
        _ x: [Float], _ index: Indexing, mean: [Double], invstd: [Double], weight: [Float]?, bias: [Float]?,
        r: [Double]? = nil, d: [Double]? = nil
    ) -> [Float] {
        var y = [Float](repeating: 0, count: x.count)
        for b in 0..<index.batch {
            for c in 0..<index.channels {
                let gamma = weight.map { Double($0[c]) } ?? 1
                let beta = bias.map { Double($0[c]) } ?? 0
                let rc = r?[c] ?? 1, dc = d?[c] ?? 0
                for m in 0..<index.spatial {
                    let i = index(b, c, m)
                    y[i] = Float(((Double(x[i]) - mean[c]) * invstd[c] * rc + dc) * gamma + beta)
                }
            }
        }
        return y
    }

    /// The whole forward pass of ``BatchNormProblem``, with its fused epilogue
    /// (``epilogue(_:elementType:activation:addend:)``) when it has one.
    ///
    /// - Parameters:
    ///   - momentum: the effective update weight of the new batch (already resolved from
    ///     `nil` to `1 / numBatchesTracked`).
    ///   - addend: z of `y = f(BN(x) + z)`, in x's memory order (the problem says whether
    ///     there is one).
    static func forward(
        _ problem: BatchNormProblem, x: [Float], weight: [Float]?, bias: [Float]?,
        runningMean: [Float]?, runningVar: [Float]?, momentum: Double, eps: Double,
        renorm: BatchRenormLimits? = nil, addend: [Float]? = nil
    ) -> Result {
        let channels = problem.channels
        let index = Indexing(batch: problem.batch, channels: channels, spatial: problem.spatial, layout: problem.layout)
        var result: Result
        switch problem.mode {
        case .inference:
            let mean = (runningMean ?? [Float](repeating: 0, count: channels)).map(Double.init)
            let invstd = (runningVar ?? [Float](repeating: 1, count: channels)).map { 1 / (Double($0) + eps).squareRoot() }
            let y = normalize(x, index, mean: mean, invstd: invstd, weight: weight, bias: bias)
            result = Result(output: y)
        case .training(let updatesRunning):
            let (mean, variance) = channelStatistics(x, index)
            result = training(
                x, index, mean: mean, variance: variance, count: problem.valuesPerChannel, weight: weight, bias: bias,
                runningMean: runningMean, runningVar: runningVar, updatesRunning: updatesRunning, momentum: momentum,
                eps: eps, renorm: renorm)
        }
        result.output = epilogue(
            result.output, elementType: problem.elementType, activation: problem.activation, addend: addend)
        return result
    }

    /// The fused epilogue `y = f(BN(x) + z)` literally as the unfused ops would run it:
    /// the norm's output `bn` stored (rounded to `elementType`), the addend `z` added and
    /// the activation applied in float64, rounded once more (the caller's tensor rounds
    /// to `elementType` again). `bn` unchanged without an addend and activation.
    static func epilogue(_ bn: [Float], elementType: ElementType, activation: Activation, addend: [Float]?) -> [Float] {
        guard activation != .none || addend != nil else { return bn }
        return bn.indices.map { i in
            Float(activation(Double(elementType.rounded(bn[i])) + (addend.map { Double($0[i]) } ?? 0)))
        }
    }

    /// Training with batch statistics `mean` and biased `variance` over `count` values per
    /// channel: the batch's own, or those of a whole batch of which `x` is a part
    /// (synchronized BatchNorm). y, the saved statistics, Batch Renorm's r and d, and the
    /// running update (unbiased with `count`) when `updatesRunning`.
    static func training(
        _ x: [Float], _ index: Indexing, mean: [Double], variance: [Double], count: Int, weight: [Float]?,
        bias: [Float]?, runningMean: [Float]?, runningVar: [Float]?, updatesRunning: Bool, momentum: Double,
        eps: Double, renorm: BatchRenormLimits? = nil
    ) -> Result {
        let channels = index.channels
        let invstd = variance.map { 1 / ($0 + eps).squareRoot() }
        var r: [Double]? = nil, d: [Double]? = nil
        if let renorm, let runningMean, let runningVar {
            // docs/SEMANTICS.md: r = clip(σ_B/σ, 1/rmax, rmax), d = clip((μ_B − μ)/σ, −dmax, dmax).
            let rmax = Double(renorm.rmax), dmax = Double(renorm.dmax)
            let sigma = runningVar.map { (Double($0) + eps).squareRoot() }
            r = (0..<channels).map { c in min(max((variance[c] + eps).squareRoot() / sigma[c], 1 / rmax), rmax) }
            d = (0..<channels).map { c in min(max((mean[c] - Double(runningMean[c])) / sigma[c], -dmax), dmax) }
        }
        let y = normalize(x, index, mean: mean, invstd: invstd, weight: weight, bias: bias, r: r, d: d)
        var result = Result(output: y, saveMean: mean.map(Float.init), saveInvstd: invstd.map(Float.init))
        result.renormR = r?.map(Float.init)
        result.renormD = d?.map(Float.init)
        if updatesRunning, let runningMean, let runningVar {
            let n = Double(count)
            result.runningMean = (0..<channels).map { c in
                Float((1 - momentum) * Double(runningMean[c]) + momentum * mean[c])
            }
            result.runningVar = (0..<channels).map { c in
                Float((1 - momentum) * Double(runningVar[c]) + momentum * variance[c] * n / (n - 1))
            }
        }
        return result
    }
}

extension ReferenceBatchNorm.Result {
    init(output: [Float]) {
        self.init(output: output, saveMean: nil, saveInvstd: nil, runningMean: nil, runningVar: nil)
    }
}
