/// GroupNorm on the CPU, written for clarity: float64 accumulation, two passes over
/// the data, the formulas of docs/SEMANTICS.md taken literally. InstanceNorm's statistics are
/// these with `groups == channels` (see ``ReferenceInstanceNorm``).
///
/// Element (n, c, m) is at `(n·C + c)·M + m` in NCHW and at `(n·M + m)·C + c` in
/// channels-last memory.
enum ReferenceGroupNorm {
    struct Result {
        var output: [Float]
        /// Per (n, g), `r = n·G + g`.
        var mean: [Double]
        /// Biased, per (n, g).
        var variance: [Double]
        var invstd: [Double]
    }

    /// Mean and biased variance per (n, g) over its `(C/G)·M` values.
    static func rowStatistics(_ x: [Float], _ problem: GroupNormProblem) -> (mean: [Double], variance: [Double]) {
        let index = indexing(problem)
        let perGroup = problem.channelsPerGroup
        let count = Double(problem.valuesPerRow)
        var mean = [Double](repeating: 0, count: problem.rows)
        var variance = [Double](repeating: 0, count: problem.rows)
        for n in 0..<problem.batch {
            for g in 0..<problem.groups {
                let channels = (g * perGroup)..<((g + 1) * perGroup)
                var sum = 0.0
                for c in channels {
                    for m in 0..<problem.spatial { sum += Double(x[index(n, c, m)]) }
                }
                let rowMean = sum / count
                var squares = 0.0
                for c in channels {
                    for m in 0..<problem.spatial {
                        let d = Double(x[index(n, c, m)]) - rowMean
                        squares += d * d
                    }
                }
                mean[n * problem.groups + g] = rowMean
                variance[n * problem.groups + g] = squares / count
            }
        }
        return (mean, variance)
    }

    /// `y = (x − mean_{n,g})·invstd_{n,g}·γ_c + β_c` with the input's own statistics, then
    /// the problem's fused activation as the separate op it stands for (``activate(_:_:)``).
    static func forward(_ problem: GroupNormProblem, x: [Float], weight: [Float]?, bias: [Float]?, eps: Double) -> Result {
        let (mean, variance) = rowStatistics(x, problem)
        let invstd = variance.map { 1 / ($0 + eps).squareRoot() }
        let perGroup = problem.channelsPerGroup
        let output = normalize(x, problem, weight: weight, bias: bias) { n, c in
            let r = n * problem.groups + c / perGroup
            return (mean[r], invstd[r])
        }
        return Result(output: activate(output, problem), mean: mean, variance: variance, invstd: invstd)
    }

    /// `f(y)` for the problem's activation f, literally the unfused sequence: GroupNorm's
    /// output `y` rounded to the storage type (what a separate op would have written),
    /// then f in float64, rounded to float32 (the caller's tensor rounds it to storage).
    /// `y` itself without an activation.
    static func activate(_ y: [Float], _ problem: GroupNormProblem) -> [Float] {
        let f = problem.activation, type = problem.elementType
        guard f != .none else { return y }
        return y.map { Float(f(Double(type.rounded($0)))) }
    }

    /// `y = (x − mean(n, c))·invstd(n, c)·γ_c + β_c`, computed in float64 and rounded once.
    static func normalize(
        _ x: [Float], _ problem: GroupNormProblem, weight: [Float]?, bias: [Float]?,
        statistics: (_ n: Int, _ c: Int) -> (mean: Double, invstd: Double)
    ) -> [Float] {
        let index = indexing(problem)
        var y = [Float](repeating: 0, count: x.count)
        for n in 0..<problem.batch {
            for c in 0..<problem.channels {
                let (mean, invstd) = statistics(n, c)
                let gamma = weight.map { Double($0[c]) } ?? 1
                let beta = bias.map { Double($0[c]) } ?? 0
                for m in 0..<problem.spatial {
                    let i = index(n, c, m)
                    y[i] = Float((Double(x[i]) - mean) * invstd * gamma + beta)
                }
            }
        }
        return y
    }

    static func indexing(_ problem: GroupNormProblem) -> ReferenceBatchNorm.Indexing {
        ReferenceBatchNorm.Indexing(
            batch: problem.batch, channels: problem.channels, spatial: problem.spatial, layout: problem.layout)
    }
}
