import Testing
@testable import NormCL

/// The reference RMSNorm backward against central differences of a float64 forward:
/// `L = Σ y·w` with random `w` (= dy), differentiated with respect to x (through the
/// row's root mean square) and γ.
@Suite("RMSNorm backward gradient check")
struct RMSNormBackwardGradientCheckTests {
    /// A float64 RMSNorm forward: `y = x/sqrt(mean(x²) + eps)·γ` per row, and `rstd`.
    static func forward(_ x: [Double], rowLength d: Int, weight: [Double]?, eps: Double = 1e-5) -> (y: [Double], rstd: [Double]) {
        let rows = x.count / d
        var y = [Double](repeating: 0, count: x.count)
        var rstds = [Double]()
        for r in 0..<rows {
            let squares = x[(r * d)..<((r + 1) * d)].reduce(0) { $0 + $1 * $1 }
            let rstd = 1 / (squares / Double(d) + eps).squareRoot()
            for j in 0..<d { y[r * d + j] = x[r * d + j] * rstd * (weight?[j] ?? 1) }
            rstds.append(rstd)
        }
        return (y, rstds)
    }

    @Test("dx and dγ match central differences", arguments: [(3, 1), (1, 7), (4, 5), (2, 13), (5, 3), (3, 16), (1, 1)])
    func matchesNumerical(rows: Int, d: Int) throws {
        var rng = SeededGenerator(seed: UInt64(rows * 100 + d + 7))
        let x = rng.normals(rows * d, offset: 0.5, scale: 2).map(Double.init)
        let w = rng.normals(rows * d).map(Double.init)
        // With D = 1, y = x/sqrt(x² + eps)·γ is flat (dy/dx ~ eps/|x|³), too small for
        // central differences to resolve at eps = 1e-5: a large eps makes it O(1).
        let eps = d == 1 ? 0.5 : 1e-5
        for affine in [true, false] {
            let gamma = affine ? rng.normals(d, offset: 1, scale: 0.5).map(Double.init) : nil
            let rstd = Self.forward(x, rowLength: d, weight: gamma, eps: eps).rstd
            let analytic = ReferenceRMSNorm.backward(rows: rows, rowLength: d, x: x, gradOutput: w, weight: gamma, invRms: rstd)
            let label = "(\(rows), \(d)) affine=\(affine)"
            GradientCheck.expectGradient(analytic.input, of: { Self.forward($0, rowLength: d, weight: gamma, eps: eps).y }, weightedBy: w, at: x, "dx \(label)")
            GradientCheck.expectGradient(analytic.weight, of: { Self.forward(x, rowLength: d, weight: $0, eps: eps).y }, weightedBy: w, at: gamma ?? [Double](repeating: 1, count: d), "dγ \(label)")
        }
    }

    @Test("the reference path of rmsNormBackward equals the float64 core rounded once; no dβ")
    func entryPoint() throws {
        let harness = try RowNormBackwardHarness(.rmsNorm, shape: [2, 3, 4], normalizedShape: [3, 4], seed: 8)
        let result = try harness.run(on: .reference)
        let core = ReferenceRMSNorm.backward(
            rows: 2, rowLength: 12, x: harness.x, gradOutput: harness.dy, weight: harness.weight, invRms: harness.saveScale)
        #expect(try result.dx?.toArray() == core.input)
        #expect(try result.dWeight?.toArray() == core.weight)
        #expect(result.dBias == nil)
    }
}
