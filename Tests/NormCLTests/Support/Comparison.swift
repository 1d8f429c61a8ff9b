import Numerics
import Testing

/// The worst element of a comparison, for failure messages.
struct Mismatch: CustomStringConvertible {
    let index: Int
    let actual: Float
    let expected: Float
    let tolerance: Double
    var description: String { "element \(index): \(actual) vs reference \(expected) (tolerance \(tolerance))" }
}

/// Compares element by element with a per-element absolute tolerance; NaN must meet
/// NaN, and infinities must match exactly. Returns the first mismatch, if any.
func firstMismatch(_ actual: [Float], _ expected: [Float], tolerance: (Int) -> Double) -> Mismatch? {
    precondition(actual.count == expected.count, "length \(actual.count) vs \(expected.count)")
    for i in actual.indices {
        let a = actual[i], e = expected[i]
        if e.isNaN || a.isNaN {
            if e.isNaN && a.isNaN { continue }
            return Mismatch(index: i, actual: a, expected: e, tolerance: 0)
        }
        if e.isInfinite || a.isInfinite {
            if a == e { continue }
            return Mismatch(index: i, actual: a, expected: e, tolerance: 0)
        }
        let t = tolerance(i)
        if !Double(a).isApproximatelyEqual(to: Double(e), absoluteTolerance: t, relativeTolerance: 0) {
            return Mismatch(index: i, actual: a, expected: e, tolerance: t)
        }
    }
    return nil
}

/// Records an issue when `actual` and `expected` differ by more than the tolerance.
func expectClose(
    _ actual: [Float], _ expected: [Float], _ what: String,
    sourceLocation: SourceLocation = #_sourceLocation, tolerance: (Int) -> Double
) {
    guard actual.count == expected.count else {
        Issue.record("\(what): \(actual.count) values, reference has \(expected.count)", sourceLocation: sourceLocation)
        return
    }
    if let mismatch = firstMismatch(actual, expected, tolerance: tolerance) {
        Issue.record("\(what): \(mismatch)", sourceLocation: sourceLocation)
    }
}

/// Relative-plus-absolute closeness for small vectors of statistics.
func expectClose(
    _ actual: [Float], _ expected: [Float], _ what: String, relative: Double, absolute: Double = 0,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    expectClose(actual, expected, what, sourceLocation: sourceLocation) { i in
        absolute + relative * Swift.abs(Double(expected[i]))
    }
}
