import Numerics
import Testing
@testable import NormCL

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

/// Compares a normalised output `y` with the reference's: `base·(1 + |y|)`, and when
/// the output is stored as half (`half`), one rounding to half on top, `2^-10·|y| +
/// halfFloor` (the reference may round the other way at a tie; `halfFloor` is the
/// smallest step the op's half outputs can take near 0).
func expectOutputClose(
    _ actual: [Float], _ expected: [Float], _ what: String, base: Double, half: Bool, halfFloor: Double,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    expectClose(actual, expected, what, sourceLocation: sourceLocation) { i in
        let y = Swift.abs(Double(expected[i]))
        return base * (1 + y) + (half ? 0x1p-10 * y + halfFloor : 0)
    }
}

/// Records an issue for each of dx, dγ and dβ that differs bit for bit between two
/// backward passes (a missing gradient equals only a missing one).
func expectIdentical(_ a: NormGradients, _ b: NormGradients, sourceLocation: SourceLocation = #_sourceLocation) throws {
    #expect(try a.input?.toArray() == b.input?.toArray(), "dx", sourceLocation: sourceLocation)
    #expect(try a.weight?.toArray() == b.weight?.toArray(), "dγ", sourceLocation: sourceLocation)
    #expect(try a.bias?.toArray() == b.bias?.toArray(), "dβ", sourceLocation: sourceLocation)
}

extension DeviceTuning {
    /// A CPU-like tuning (16-wide work-groups, chunked access, 16-column tiles), for
    /// the tests of the plans' choices.
    static var cpuLike: DeviceTuning {
        DeviceTuning(
            reductionWorkGroupSize: 16, elementwiseWorkGroupSize: 16, workGroupsPerComputeUnit: 4,
            minimumVectorsPerWorkGroup: 4096, chunkedAccess: true, columnTile: 16)
    }

    /// GPU-style launches on any device: interleaved access, column tile 1, 64-wide
    /// work-groups.
    static var gpuStyle64: DeviceTuning {
        DeviceTuning(
            reductionWorkGroupSize: 64, elementwiseWorkGroupSize: 64, workGroupsPerComputeUnit: 8,
            minimumVectorsPerWorkGroup: 256, chunkedAccess: false, columnTile: 1)
    }
}

/// Error cases as edits of a valid call: `build` calls `add(name, expected) { $0.x = … }`
/// once a case, each edit applied to a fresh copy of `base`; (name, call, expected).
func editedCases<Call>(
    of base: Call, _ build: (_ add: (String, String, (inout Call) -> Void) -> Void) -> Void
) -> [(String, Call, String)] {
    var list: [(String, Call, String)] = []
    build { name, expected, change in
        var call = base
        change(&call)
        list.append((name, call, expected))
    }
    return list
}

/// `case(argument)` of the ``NormError`` `body` throws ("other: …" for another error),
/// nil when it throws nothing.
func thrown(_ body: () throws -> Any) -> String? {
    do { _ = try body() } catch let error as NormError { return BatchNormErrorTests.caseAndArgument(error) } catch {
        return "other: \(error)"
    }
    return nil
}
