import Numerics
import Testing

/// Central finite differences in float64: the gradient check every backward pass's
/// reference is verified with.
///
/// For a scalar loss `L(p)`, `∂L/∂p_i ≈ (L(p + h·e_i) − L(p − h·e_i)) / 2h`, with
/// truncation error O(h²·L''') and rounding error O(ε·|L|/h); `h = 1e-6·max(1, |p_i|)`
/// balances the two to ~1e-9 relative in float64. The loss is usually `Σ y·w` with
/// fixed random weights `w`, so that `w` is the `dy` fed to the analytic backward.
enum GradientCheck {
    /// The numerical gradient of `loss` at `point`, one central difference per coordinate.
    static func numericalGradient(of loss: ([Double]) -> Double, at point: [Double]) -> [Double] {
        var probe = point
        return point.indices.map { i in
            let h = 1e-6 * Swift.max(1, Swift.abs(point[i]))
            probe[i] = point[i] + h
            let up = loss(probe)
            probe[i] = point[i] - h
            let down = loss(probe)
            probe[i] = point[i]
            return (up - down) / (2 * h)
        }
    }

    /// `Σ_i y_i·w_i`: the loss whose gradient with respect to `y` is `w`.
    static func dot(_ y: [Double], _ w: [Double]) -> Double {
        zip(y, w).reduce(0) { $0 + $1.0 * $1.1 }
    }

    /// Records an issue unless the analytic gradient matches the numerical one to
    /// `relative` of the gradient's largest magnitude (plus a tiny absolute floor), so
    /// a near-zero component is not held to a relative bound it cannot meet.
    static func expectMatches(
        analytic: [Double], numerical: [Double], _ what: String, relative: Double = 1e-6,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        guard analytic.count == numerical.count else {
            Issue.record("\(what): \(analytic.count) analytic components, \(numerical.count) numerical", sourceLocation: sourceLocation)
            return
        }
        let scale = Swift.max(numerical.map { Swift.abs($0) }.max() ?? 0, 1e-12)
        for i in analytic.indices
        where !analytic[i].isApproximatelyEqual(to: numerical[i], absoluteTolerance: relative * scale, relativeTolerance: 0) {
            Issue.record(
                "\(what)[\(i)]: analytic \(analytic[i]) vs numerical \(numerical[i]) (tolerance \(relative * scale))",
                sourceLocation: sourceLocation)
            return
        }
    }

    /// Checks `analytic` against the numerical gradient of `loss` at `point`
    /// (``expectMatches(analytic:numerical:_:relative:sourceLocation:)``).
    static func expectGradient(
        _ analytic: [Double], of loss: ([Double]) -> Double, at point: [Double], _ what: String, relative: Double = 1e-6,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        expectMatches(
            analytic: analytic, numerical: numericalGradient(of: loss, at: point), what, relative: relative,
            sourceLocation: sourceLocation)
    }

    /// Checks `analytic` against the numerical gradient of the loss `Σ forward(p)·w` at
    /// `point` (so `w` is the `dy` the analytic backward was fed).
    static func expectGradient(
        _ analytic: [Double], of forward: ([Double]) -> [Double], weightedBy w: [Double], at point: [Double], _ what: String,
        relative: Double = 1e-6, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        expectGradient(analytic, of: { dot(forward($0), w) }, at: point, what, relative: relative, sourceLocation: sourceLocation)
    }
}
