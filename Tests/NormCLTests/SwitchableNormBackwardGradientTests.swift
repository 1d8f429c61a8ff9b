import Testing
@testable import NormCL

/// The float64 reference backward of Switchable Norm against central differences of an
/// independent float64 forward (written here, not the library's): x, γ, β and both logit
/// vectors, every branch set and estimator, training and inference, both layouts.
@Suite("SwitchableNorm backward gradient check")
struct SwitchableNormBackwardGradientTests {
    /// L = 2, N = 1, primes, 3-d input, 1×1 spatial and (N, C) input (direct forms).
    static let shapes: [[Int]] = [[2, 3, 2], [1, 2, 5], [3, 2, 3, 2], [2, 5, 7], [2, 2, 2, 1, 3], [3, 4, 1, 1], [4, 3]]

    @Test("x, γ, β and both logit vectors match central differences", arguments: shapes)
    func gradients(shape: [Int]) throws {
        let branchSets: [SwitchableNormOptions.Branches] =
            shape.count == 2 ? [.layerBatch] : SwitchableNormOptions.Branches.allCases
        let spatial = shape.dropFirst(2).reduce(1, *)
        for layout in [TensorLayout.channelsFirst, .channelsLast] {
            for branches in branchSets {
                for estimator in [SwitchableNormOptions.VarianceEstimator.biased, .unbiased] {
                    if branches.hasInstance && estimator == .unbiased && spatial == 1 { continue }
                    for training in [true, false] {
                        if training && branches.hasBatch && shape[0] * spatial == 1 { continue }
                        let problem = SwitchableNormProblem(
                            shape: shape, layout: layout, elementType: .float32, branches: branches,
                            unbiased: estimator == .unbiased, training: training, updatesRunningStatistics: false,
                            hasWeight: true, hasBias: true)
                        check(problem, seed: UInt64(shape.reduce(1, *) * 7 + branchSets.firstIndex(of: branches)!))
                    }
                }
            }
        }
    }

    @Test("without γ (γ ≡ 1): dx and the logits still match")
    func withoutWeight() {
        let problem = SwitchableNormProblem(
            shape: [2, 3, 4], layout: .channelsFirst, elementType: .float32, branches: .instanceLayerBatch, unbiased: true,
            training: true, updatesRunningStatistics: false, hasWeight: false, hasBias: false)
        check(problem, seed: 3)
    }

    /// Gradient-checks the reference backward for `problem` on random data.
    func check(_ problem: SwitchableNormProblem, seed: UInt64) {
        var rng = SeededGenerator(seed: seed)
        let count = problem.count, channels = problem.channels, k = problem.branches.count
        // Per-instance shifts so IN, LN and BN statistics differ.
        let shifts = (0..<problem.instances).map { _ in 0.7 * rng.normal() }
        let index = ReferenceBatchNorm.Indexing(
            batch: problem.batch, channels: channels, spatial: problem.spatial, layout: problem.layout)
        var x = [Double](repeating: 0, count: count)
        for r in 0..<problem.instances {
            for m in 0..<problem.spatial { x[index(r / channels, r % channels, m)] = shifts[r] + rng.normal() }
        }
        let dy = (0..<count).map { _ in rng.normal() }
        let gamma = problem.hasWeight ? (0..<channels).map { _ in 1 + 0.5 * rng.normal() } : nil
        let beta = (0..<channels).map { _ in 0.5 * rng.normal() }
        let wm = (0..<k).map { _ in 1 + 0.7 * rng.normal() }, wv = (0..<k).map { _ in 1 + 0.7 * rng.normal() }
        let forward = SwitchableNormDoubleForward(
            problem: problem, runningMean: (0..<channels).map { _ in rng.normal() },
            runningVar: (0..<channels).map { _ in Double.random(in: 0.5...2, using: &rng) })

        let saved = forward.run(x: x, meanLogits: wm, varianceLogits: wv, gamma: gamma, beta: beta).statistics
        let analytic = ReferenceSwitchableNorm.backward(
            problem, gradOutput: dy, x: x, meanLogits: wm, varianceLogits: wv, weight: gamma, statistics: saved)
        func loss(x: [Double] = x, wm: [Double] = wm, wv: [Double] = wv, gamma: [Double]? = gamma, beta: [Double] = beta)
            -> Double
        {
            GradientCheck.dot(forward.run(x: x, meanLogits: wm, varianceLogits: wv, gamma: gamma, beta: beta).y, dy)
        }
        let label = "\(problem.shape) \(problem.layout) \(problem.branches) unbiased=\(problem.unbiased) training=\(problem.training)"
        GradientCheck.expectGradient(analytic.input, of: { loss(x: $0) }, at: x, "dx \(label)")
        if let gamma {
            GradientCheck.expectGradient(analytic.weight, of: { loss(gamma: $0) }, at: gamma, "dγ \(label)")
        }
        GradientCheck.expectGradient(analytic.bias, of: { loss(beta: $0) }, at: beta, "dβ \(label)")
        GradientCheck.expectGradient(analytic.meanLogits, of: { loss(wm: $0) }, at: wm, "dwμ \(label)")
        GradientCheck.expectGradient(analytic.varianceLogits, of: { loss(wv: $0) }, at: wv, "dwσ \(label)")
    }
}

/// A float64 Switchable Norm forward written for the gradient check, independently of
/// ``ReferenceSwitchableNorm``: directly computed statistics over each set's values where
/// the branch definitions allow, the law of total variance only where it is the definition.
struct SwitchableNormDoubleForward {
    let problem: SwitchableNormProblem
    /// The constants inference mixes in for BN.
    let runningMean: [Double]
    let runningVar: [Double]
    let eps = 1e-5

    func run(x: [Double], meanLogits: [Double], varianceLogits: [Double], gamma: [Double]?, beta: [Double]?)
        -> (y: [Double], statistics: ReferenceSwitchableNorm.SavedStatistics)
    {
        let N = problem.batch, C = problem.channels, L = problem.spatial
        let index = ReferenceBatchNorm.Indexing(batch: N, channels: C, spatial: L, layout: problem.layout)
        let u: Double = problem.unbiased ? 1 : 0
        let branches = problem.branches
        func values(_ n: Int, _ c: Int) -> [Double] { (0..<L).map { x[index(n, c, $0)] } }
        func mean(_ v: [Double]) -> Double { v.reduce(0, +) / Double(v.count) }
        func squares(_ v: [Double]) -> Double {
            let m = mean(v)
            return v.reduce(0) { $0 + ($1 - m) * ($1 - m) }
        }
        let inMean = (0..<N * C).map { mean(values($0 / C, $0 % C)) }
        let inVar = (0..<N * C).map { squares(values($0 / C, $0 % C)) / (Double(L) - u) }
        var lnMean = [Double](), lnVar = [Double]()
        for n in 0..<N {
            let sample = (0..<C).flatMap { values(n, $0) }
            lnMean.append(mean(sample))
            if branches.hasInstance {
                let means = (0..<C).map { inMean[n * C + $0] }
                lnVar.append((0..<C).map { inVar[n * C + $0] }.reduce(0, +) / Double(C) + squares(means) / Double(C))
            } else {
                lnVar.append(squares(sample) / (Double(C * L) - u))
            }
        }
        var bnMean = runningMean, bnVar = runningVar
        if problem.training {
            for c in 0..<C {
                let channel = (0..<N).flatMap { values($0, c) }
                bnMean[c] = mean(channel)
                if branches.hasInstance {
                    let means = (0..<N).map { inMean[$0 * C + c] }
                    bnVar[c] = (0..<N).map { inVar[$0 * C + c] }.reduce(0, +) / Double(N) + squares(means) / Double(N)
                } else {
                    bnVar[c] = squares(channel) / (Double(N * L) - u)
                }
            }
        }
        let pm = ReferenceSwitchableNorm.softmax(meanLogits), pv = ReferenceSwitchableNorm.softmax(varianceLogits)
        var y = [Double](repeating: 0, count: x.count), mixedMean = [Double](), invstd = [Double]()
        for r in 0..<N * C {
            let n = r / C, c = r % C
            var means = [lnMean[n]], variances = [lnVar[n]]
            if branches.hasInstance {
                means.insert(inMean[r], at: 0)
                variances.insert(inVar[r], at: 0)
            }
            if branches.hasBatch {
                means.append(bnMean[c])
                variances.append(bnVar[c])
            }
            let mu = zip(pm, means).reduce(0) { $0 + $1.0 * $1.1 }
            let s = 1 / (zip(pv, variances).reduce(0) { $0 + $1.0 * $1.1 } + eps).squareRoot()
            mixedMean.append(mu)
            invstd.append(s)
            for m in 0..<L {
                let i = index(n, c, m)
                y[i] = (gamma?[c] ?? 1) * (x[i] - mu) * s + (beta?[c] ?? 0)
            }
        }
        let statistics = ReferenceSwitchableNorm.SavedStatistics(
            mean: mixedMean, invstd: invstd, instanceMean: branches.hasInstance ? inMean : nil,
            instanceVariance: branches.hasInstance ? inVar : nil, layerMean: lnMean, layerVariance: lnVar,
            batchMean: branches.hasBatch ? bnMean : nil, batchVariance: branches.hasBatch ? bnVar : nil)
        return (y, statistics)
    }
}
