import PropertyBased
import Testing
@testable import NormCL

/// Property-based tests: every op, forward and backward, training and inference, on
/// random shapes (dims from 1, 2, 3, 5, 7, 8, 17), layouts, element types and
/// parameters (affine or not, eps, momentum, a divisor of C as GroupNorm's G, 1–3
/// normalized trailing dims, every Switchable Norm branch set, gradient masks).
///
/// Each case checks the reference path's invariants (``PropertyCase/checkInvariants()``)
/// and, with an OpenCL device, OpenCL against the reference through the op's harness.
/// A failing case is shrunk towards the simplest shape and parameters that still fail
/// and printed with its seed (`.fixedSeed("…")` on the test replays it).
/// `NORMCL_PROPERTY_ITERATIONS` sets the cases per property (default 5; each new shape
/// is a kernel build, so more cases take longer).
@Suite("Properties", .shrinking)
struct PropertyTests {
    /// The op families, each with its generator of cases.
    enum Family: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case batchNorm = "BatchNorm and Batch Renorm"
        case rowNorm = "LayerNorm and RMSNorm"
        case groupNorm = "GroupNorm and InstanceNorm"
        case switchableNorm = "Switchable Norm"

        var testDescription: String { rawValue }
    }

    @Test("each op family, forward and backward", arguments: Family.allCases, [false, true])
    func property(family: Family, backward: Bool) async {
        switch family {
        case .batchNorm: await Self.check(PropertyGenerators.batchNorm(backward: backward))
        case .rowNorm: await Self.check(PropertyGenerators.rowNorm(backward: backward))
        case .groupNorm: await Self.check(PropertyGenerators.groupNorm(backward: backward))
        case .switchableNorm: await Self.check(PropertyGenerators.switchableNorm(backward: backward))
        }
    }

    /// `PropertyGenerators.iterations` cases from `generator`, each checked (and shrunk
    /// on failure) by ``PropertyCase/check()``.
    static func check(
        _ generator: Generator<PropertyCase, some SendableSequenceType>, sourceLocation: SourceLocation = #_sourceLocation
    ) async {
        await propertyCheck(
            count: PropertyGenerators.iterations, input: generator, perform: { $0.check() }, sourceLocation: sourceLocation)
    }
}
