import Testing
@testable import NormCL

/// The float64 reference backward of GroupNorm and InstanceNorm against central
/// differences of a float64 forward pass: `L = Σ y·w`, so `w` is `dy`; the statistics
/// are recomputed from the perturbed x in every evaluation, so the check
/// differentiates through them.
@Suite("GroupNorm backward gradient check")
struct GroupNormBackwardGradientTests {
    typealias Case = GroupNormCase

    static let cases: [Case] = [
        Case(shape: [2, 6, 5], groups: 3),  // 2 channels per group
        Case(shape: [2, 5, 7], groups: 5),  // primes, C/G = 1 (InstanceNorm)
        Case(shape: [3, 6], groups: 2),  // M = 1: groups of C/G values
        Case(shape: [2, 4, 3, 2], groups: 1),  // one group per sample
        Case(shape: [1, 6, 1], groups: 6),  // groups of one value: y = β, dx = 0
        Case(shape: [2, 3, 2, 3, 2], groups: 3),  // 3-d spatial
    ]

    /// A float64 GroupNorm forward of `x` in `problem`'s memory order: the output and
    /// the per-(n, g) mean and invstd.
    static func forward(
        _ problem: GroupNormProblem, x: [Double], weight: [Double]?, bias: [Double]?, eps: Double
    ) -> (y: [Double], mean: [Double], invstd: [Double]) {
        let index = ReferenceGroupNorm.indexing(problem)
        let perGroup = problem.channelsPerGroup
        let count = Double(problem.valuesPerRow)
        var y = [Double](repeating: 0, count: x.count)
        var means: [Double] = []
        var invstds: [Double] = []
        for n in 0..<problem.batch {
            for g in 0..<problem.groups {
                let elements = ((g * perGroup)..<((g + 1) * perGroup)).flatMap { c in
                    (0..<problem.spatial).map { m in (c, index(n, c, m)) }
                }
                let mean = elements.reduce(0.0) { $0 + x[$1.1] } / count
                let variance = elements.reduce(0.0) { $0 + (x[$1.1] - mean) * (x[$1.1] - mean) } / count
                let invstd = 1 / (variance + eps).squareRoot()
                for (c, i) in elements {
                    y[i] = (x[i] - mean) * invstd * (weight?[c] ?? 1) + (bias?[c] ?? 0)
                }
                means.append(mean)
                invstds.append(invstd)
            }
        }
        return (y, means, invstds)
    }

    static func problem(_ shape: [Int], groups: Int, layout: TensorLayout, running: Bool = false) throws -> GroupNormProblem {
        let input = try Tensor(repeating: 0, shape: shape, layout: layout, on: .reference)
        return try GroupNormProblem.validated(
            input: input, groups: groups, weight: nil, bias: nil,
            statistics: running ? .running : .input(savesVariance: false), eps: 1e-5, op: "test")
    }

    @Test("dx, dγ, dβ match central differences through the group statistics", arguments: cases)
    func groupStatistics(testCase: Case) throws {
        for layout in TensorLayout.allCases {
            for affine in [true, false] {
                let problem = try Self.problem(testCase.shape, groups: testCase.groups, layout: layout)
                var rng = SeededGenerator(seed: UInt64(problem.count) &+ (affine ? 7 : 8))
                let x = (0..<problem.count).map { _ in 1.5 + 2 * rng.normal() }
                let w = (0..<problem.count).map { _ in rng.normal() }
                let gamma = affine ? (0..<problem.channels).map { _ in 1 + 0.5 * rng.normal() } : nil
                let beta = affine ? (0..<problem.channels).map { _ in 0.5 * rng.normal() } : nil
                let eps = 1e-5
                let stats = Self.forward(problem, x: x, weight: gamma, bias: beta, eps: eps)
                let analytic = ReferenceGroupNorm.backward(
                    problem, gradOutput: w, input: x, weight: gamma, mean: stats.mean, invstd: stats.invstd, mask: .all)
                let label = "\(testCase) \(layout) affine=\(affine)"

                GradientCheck.expectGradient(analytic.input ?? [], of: { Self.forward(problem, x: $0, weight: gamma, bias: beta, eps: eps).y }, weightedBy: w, at: x, "dx \(label)")
                let ones = [Double](repeating: 1, count: problem.channels)
                let zeros = [Double](repeating: 0, count: problem.channels)
                GradientCheck.expectGradient(analytic.weight ?? [], of: { Self.forward(problem, x: x, weight: $0, bias: beta, eps: eps).y }, weightedBy: w, at: gamma ?? ones, "dγ \(label)")
                GradientCheck.expectGradient(analytic.bias ?? [], of: { Self.forward(problem, x: x, weight: gamma, bias: $0, eps: eps).y }, weightedBy: w, at: beta ?? zeros, "dβ \(label)")
            }
        }
    }

    /// (2, 4, 3) in 2 groups, channels first, without γ, β: N(0, 1) x and w, and the
    /// statistics of x (eps 1e-5).
    static func smallCase(seed: UInt64) throws -> (
        problem: GroupNormProblem, x: [Double], w: [Double], stats: (y: [Double], mean: [Double], invstd: [Double])
    ) {
        let problem = try Self.problem([2, 4, 3], groups: 2, layout: .channelsFirst)
        var rng = SeededGenerator(seed: seed)
        let x = (0..<problem.count).map { _ in rng.normal() }
        let w = (0..<problem.count).map { _ in rng.normal() }
        return (problem, x, w, Self.forward(problem, x: x, weight: nil, bias: nil, eps: 1e-5))
    }

    @Test("a mask leaves gradients out; the others are unchanged")
    func mask() throws {
        let (problem, x, w, stats) = try Self.smallCase(seed: 3)
        let all = ReferenceGroupNorm.backward(
            problem, gradOutput: w, input: x, weight: nil, mean: stats.mean, invstd: stats.invstd, mask: .all)
        for mask: NormGradientMask in [.input, .weight, .bias, [.weight, .bias], []] {
            let some = ReferenceGroupNorm.backward(
                problem, gradOutput: w, input: x, weight: nil, mean: stats.mean, invstd: stats.invstd, mask: mask)
            #expect(some.input == (mask.contains(.input) ? all.input : nil))
            #expect(some.weight == (mask.contains(.weight) ? all.weight : nil))
            #expect(some.bias == (mask.contains(.bias) ? all.bias : nil))
        }
    }

    @Test("InstanceNorm with running statistics: constants in backward")
    func runningStatistics() throws {
        for layout in TensorLayout.allCases {
            for shape in [[2, 3, 5], [3, 2, 1, 1], [1, 4, 2, 3]] {
                let problem = try Self.problem(shape, groups: shape[1], layout: layout, running: true)
                let index = ReferenceGroupNorm.indexing(problem)
                var rng = SeededGenerator(seed: UInt64(problem.count))
                let x = (0..<problem.count).map { _ in 0.5 + rng.normal() }
                let w = (0..<problem.count).map { _ in rng.normal() }
                let runningMean = (0..<problem.channels).map { _ in rng.normal() }
                let runningVar = (0..<problem.channels).map { _ in Double.random(in: 0.5...2, using: &rng) }
                let eps = 1e-5
                let invstd = runningVar.map { 1 / ($0 + eps).squareRoot() }
                let gamma0 = (0..<problem.channels).map { _ in 1 + 0.5 * rng.normal() }
                let beta0 = (0..<problem.channels).map { _ in 0.5 * rng.normal() }
                func forward(_ x: [Double], _ gamma: [Double], _ beta: [Double]) -> [Double] {
                    var y = x
                    for n in 0..<problem.batch {
                        for c in 0..<problem.channels {
                            for m in 0..<problem.spatial {
                                let i = index(n, c, m)
                                y[i] = (x[i] - runningMean[c]) * invstd[c] * gamma[c] + beta[c]
                            }
                        }
                    }
                    return y
                }
                let analytic = ReferenceGroupNorm.backwardWithConstantStatistics(
                    problem, gradOutput: w, input: x, weight: gamma0, mean: runningMean, invstd: invstd, mask: .all)
                let label = "\(shape) \(layout)"
                GradientCheck.expectGradient(analytic.input ?? [], of: { forward($0, gamma0, beta0) }, weightedBy: w, at: x, "dx \(label)")
                GradientCheck.expectGradient(analytic.weight ?? [], of: { forward(x, $0, beta0) }, weightedBy: w, at: gamma0, "dγ \(label)")
                GradientCheck.expectGradient(analytic.bias ?? [], of: { forward(x, gamma0, $0) }, weightedBy: w, at: beta0, "dβ \(label)")
            }
        }
    }

    @Test("the check can fail: a dx without the statistics' terms is caught")
    func detectsMissingStatisticsTerms() throws {
        let (problem, x, w, stats) = try Self.smallCase(seed: 11)
        // Treating the group statistics as constants (dx = dy·invstd) is a real mistake.
        let constant = ReferenceGroupNorm.backwardWithConstantStatistics(
            problem, gradOutput: w, input: x, weight: nil, mean: [Double](repeating: 0, count: 4),
            invstd: (0..<4).map { stats.invstd[$0 / 2] }, mask: .input)
        let numerical = GradientCheck.numericalGradient(
            of: { GradientCheck.dot(Self.forward(problem, x: $0, weight: nil, bias: nil, eps: 1e-5).y, w) }, at: x)
        // Only the first sample's rows line up with the per-channel invstd above; compare those.
        let first = Array(numerical.prefix(12))
        let wrong = Array((constant.input ?? []).prefix(12))
        let scale = first.map { Swift.abs($0) }.max() ?? 1
        #expect(zip(first, wrong).contains { Swift.abs($0 - $1) > 1e-3 * scale })
    }
}
