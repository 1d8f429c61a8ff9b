import RealModule
import Testing

/// The gradient checker itself must be able to fail, or every check built on it proves
/// nothing.
@Suite struct GradientCheckTests {
    @Test func matchesAKnownGradient() {
        // L = Σ sin(p_i)·p_{i+1}: ∂L/∂p_i = cos(p_i)·p_{i+1} + sin(p_{i−1}).
        let p: [Double] = [0.3, -1.2, 2.5, 0.7]
        func loss(_ p: [Double]) -> Double { (0..<(p.count - 1)).reduce(0) { $0 + Double.sin(p[$1]) * p[$1 + 1] } }
        let exact = p.indices.map { i in
            (i + 1 < p.count ? Double.cos(p[i]) * p[i + 1] : 0) + (i > 0 ? Double.sin(p[i - 1]) : 0)
        }
        let numerical = GradientCheck.numericalGradient(of: loss, at: p)
        for i in p.indices { #expect(abs(numerical[i] - exact[i]) < 1e-8) }
    }

    @Test func rejectsAWrongGradient() {
        let numerical: [Double] = [1, 2, 3]
        let wrong: [Double] = [1, 2, 3.001]
        withKnownIssue { GradientCheck.expectMatches(analytic: wrong, numerical: numerical, "wrong") }
        GradientCheck.expectMatches(analytic: numerical, numerical: numerical, "same")
    }
}
