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
    @Test("BatchNorm and Batch Renorm forward")
    func batchNormForward() async {
        await Self.check(PropertyGenerators.batchNorm(backward: false))
    }

    @Test("BatchNorm and Batch Renorm backward")
    func batchNormBackward() async {
        await Self.check(PropertyGenerators.batchNorm(backward: true))
    }

    @Test("LayerNorm and RMSNorm forward")
    func rowNormForward() async {
        await Self.check(PropertyGenerators.rowNorm(backward: false))
    }

    @Test("LayerNorm and RMSNorm backward")
    func rowNormBackward() async {
        await Self.check(PropertyGenerators.rowNorm(backward: true))
    }

    @Test("GroupNorm and InstanceNorm forward")
    func groupNormForward() async {
        await Self.check(PropertyGenerators.groupNorm(backward: false))
    }

    @Test("GroupNorm and InstanceNorm backward")
    func groupNormBackward() async {
        await Self.check(PropertyGenerators.groupNorm(backward: true))
    }

    @Test("Switchable Norm forward")
    func switchableNormForward() async {
        await Self.check(PropertyGenerators.switchableNorm(backward: false))
    }

    @Test("Switchable Norm backward")
    func switchableNormBackward() async {
        await Self.check(PropertyGenerators.switchableNorm(backward: true))
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
