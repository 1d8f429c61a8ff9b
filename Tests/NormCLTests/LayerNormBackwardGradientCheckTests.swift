import Testing
@testable import NormCL

/// The reference LayerNorm backward against central differences of a float64 forward:
/// `L = Σ y·w` with random `w` (= dy), differentiated with respect to x (through the
/// row mean and variance), γ and β.
@Suite("LayerNorm backward gradient check")
struct LayerNormBackwardGradientCheckTests {
    /// A float64 LayerNorm forward: `y = (x − mean)/sqrt(var + eps)·γ + β` per row, and
    /// the row statistics.
    static func forward(
        _ x: [Double], rowLength d: Int, weight: [Double]?, bias: [Double]?, eps: Double = 1e-5
    ) -> (y: [Double], mean: [Double], invstd: [Double]) {
        let rows = x.count / d
        var y = [Double](repeating: 0, count: x.count)
        var means = [Double](), invstds = [Double]()
        for r in 0..<rows {
            let row = x[(r * d)..<((r + 1) * d)]
            let mean = row.reduce(0, +) / Double(d)
            let variance = row.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(d)
            let invstd = 1 / (variance + eps).squareRoot()
            for j in 0..<d {
                y[r * d + j] = (x[r * d + j] - mean) * invstd * (weight?[j] ?? 1) + (bias?[j] ?? 0)
            }
            means.append(mean)
            invstds.append(invstd)
        }
        return (y, means, invstds)
    }

    /// (rows, D): 1-element rows, a single row, primes, D not a multiple of 4.
    @Test("dx, dγ, dβ match central differences", arguments: [(3, 1), (1, 7), (4, 5), (2, 13), (5, 3), (3, 16), (1, 1)])
    func matchesNumerical(rows: Int, d: Int) throws {
        var rng = SeededGenerator(seed: UInt64(rows * 100 + d))
        let x = rng.normals(rows * d, offset: 0.5, scale: 2).map(Double.init)
        let w = rng.normals(rows * d).map(Double.init)
        for affine in [true, false] {
            let gamma = affine ? rng.normals(d, offset: 1, scale: 0.5).map(Double.init) : nil
            let beta = affine ? rng.normals(d, scale: 0.5).map(Double.init) : nil
            let statistics = Self.forward(x, rowLength: d, weight: gamma, bias: beta)
            let analytic = ReferenceLayerNorm.backward(
                rows: rows, rowLength: d, x: x, gradOutput: w, weight: gamma, mean: statistics.mean,
                invstd: statistics.invstd)
            let label = "(\(rows), \(d)) affine=\(affine)"
            GradientCheck.expectGradient(analytic.input, of: { Self.forward($0, rowLength: d, weight: gamma, bias: beta).y }, weightedBy: w, at: x, "dx \(label)")
            GradientCheck.expectGradient(analytic.weight, of: { Self.forward(x, rowLength: d, weight: $0, bias: beta).y }, weightedBy: w, at: gamma ?? [Double](repeating: 1, count: d), "dγ \(label)")
            GradientCheck.expectGradient(analytic.bias, of: { Self.forward(x, rowLength: d, weight: gamma, bias: $0).y }, weightedBy: w, at: beta ?? [Double](repeating: 0, count: d), "dβ \(label)")
        }
    }

    @Test("large-mean rows (1e4 + N(0,1)) still match")
    func largeMean() throws {
        var rng = SeededGenerator(seed: 77)
        let (rows, d) = (3, 11)
        let x = rng.normals(rows * d, offset: 1e4).map(Double.init)
        let w = rng.normals(rows * d).map(Double.init)
        let gamma = rng.normals(d, offset: 1, scale: 0.5).map(Double.init)
        let statistics = Self.forward(x, rowLength: d, weight: gamma, bias: nil)
        let analytic = ReferenceLayerNorm.backward(
            rows: rows, rowLength: d, x: x, gradOutput: w, weight: gamma, mean: statistics.mean, invstd: statistics.invstd)
        let dx = GradientCheck.numericalGradient(
            of: { GradientCheck.dot(Self.forward($0, rowLength: d, weight: gamma, bias: nil).y, w) }, at: x)
        // h = 1e-6·|x| = 1e-2 here: truncation error O(h²) of a function curved on the
        // scale of the spread (1) — looser than at O(1) data.
        GradientCheck.expectMatches(analytic: analytic.input, numerical: dx, "dx large mean", relative: 1e-3)
    }

    @Test("the reference path of layerNormBackward equals the float64 core rounded once")
    func entryPoint() throws {
        let harness = try RowNormBackwardHarness(.layerNorm, shape: [2, 3, 4], normalizedShape: [3, 4], seed: 8)
        let result = try harness.run(on: .reference)
        let core = ReferenceLayerNorm.backward(
            rows: 2, rowLength: 12, x: harness.x, gradOutput: harness.dy, weight: harness.weight, mean: harness.saveMean,
            invstd: harness.saveScale)
        #expect(try result.dx?.toArray() == core.input)
        #expect(result.dx?.shape == [2, 3, 4])
        #expect(try result.dWeight?.toArray() == core.weight)
        #expect(try result.dBias?.toArray() == core.bias)
        #expect(result.dWeight?.shape == [3, 4] && result.dBias?.shape == [3, 4])
    }
}
