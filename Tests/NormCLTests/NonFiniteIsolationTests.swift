import Testing
@testable import NormCL

/// NaN and +Inf in one element propagate exactly as in the reference and never leak out
/// of their isolation unit (``NonFiniteIsolationCase`` defines the unit per op), for
/// every op, forward and backward, with the value in x and (backward) in dy, both
/// layouts, both element types, on OpenCL (when present) and the reference.
///
/// The ops' own suites already check a NaN and an Inf in x for the BatchNorm, LayerNorm,
/// RMSNorm, GroupNorm and Switchable Norm forward passes against the reference, and a
/// NaN in dy for BatchNorm and LayerNorm backward; this suite adds InstanceNorm, every
/// backward pass, the inference modes, poison in dy, running statistics, half storage,
/// and the stronger check that everything outside the unit is bit-identical to a clean run.
@Suite("NaN and Inf isolation")
struct NonFiniteIsolationTests {
    @Test("forward: NaN/Inf in one element of x", arguments: NonFiniteIsolationCase.Op.allCases, [Float.nan, .infinity])
    func forward(op: NonFiniteIsolationCase.Op, value: Float) throws {
        try run(op: op, value: value, backward: false, targets: [.x])
    }

    @Test("backward: NaN/Inf in one element of x or of dy", arguments: NonFiniteIsolationCase.Op.allCases, [Float.nan, .infinity])
    func backward(op: NonFiniteIsolationCase.Op, value: Float) throws {
        try run(op: op, value: value, backward: true, targets: [.x, .dy])
    }

    /// Half storage on channels-first only: each (op, layout, type) is a kernel build.
    func run(op: NonFiniteIsolationCase.Op, value: Float, backward: Bool, targets: [NonFiniteIsolationCase.Target]) throws {
        let layouts: [TensorLayout] = op.isRowNorm ? [.channelsFirst] : TensorLayout.allCases
        for target in targets {
            for layout in layouts {
                for elementType in layout == .channelsFirst ? ElementType.allCases : [.float32] {
                    let c = NonFiniteIsolationCase(
                        op: op, value: value, target: target, backward: backward, layout: layout, elementType: elementType)
                    for backend in allBackends { try c.check(on: backend, exactNonFinite: value.isNaN) }
                }
            }
        }
    }

    /// Inf stays ±Inf exactly where the reference's does (not NaN), for the cases that
    /// once diverged: the LayerNorm/RMSNorm dγ, dβ column sums (a compensated sum whose
    /// carry became ∞ − ∞) and the reference's BatchNorm dγ (0·Inf).
    @Test(
        "+Inf in dy stays ±Inf inside the unit, as in the reference",
        .enabled(if: hasOpenCL),
        arguments: [NonFiniteIsolationCase.Op.batchNormTraining, .batchNormInference, .layerNorm, .rmsNorm])
    func infinityStaysInfiniteInBackward(op: NonFiniteIsolationCase.Op) throws {
        let runtime = try #require(sharedRuntime)
        let c = NonFiniteIsolationCase(
            op: op, value: .infinity, target: .dy, backward: true, layout: .channelsFirst, elementType: .float32)
        try c.check(on: .openCL(runtime), exactNonFinite: true)
    }

    /// Known issue: with +Inf, OpenCL and the reference agree on which outputs are
    /// non-finite (checked above) but not always on Inf versus NaN inside the unit. Held
    /// exactly (channels-first float32, where every case listed diverges today):
    /// - forward, x: the running mean of the poisoned channel (BatchNorm, Batch Renorm,
    ///   InstanceNorm) is NaN on OpenCL, +Inf in the reference: the pilot-relative,
    ///   compensated mean meets Inf − Inf (the op's own suites accept a NaN saved mean
    ///   for the same reason; the running mean inherits it);
    /// - backward, dy: Switchable Norm dx is NaN on OpenCL where the reference has −Inf:
    ///   the coefficient step combines several infinite sums (Σdy and Σdy·(x − μ) of the
    ///   instance, sample and channel) in another order than the reference, and ∞ − ∞
    ///   appears in one order and not the other (the non-finite positions agree).
    /// Fixed (and checked by the isolation tests above): LayerNorm/RMSNorm dγ, dβ (the
    /// column sums now use common.cl's Inf-safe `KAHAN_ADD`) and the reference's
    /// BatchNorm dγ (0·Inf from Batch Renorm's d term when d = 0).
    /// When one is fixed its case stops recording the issue and this test fails: move
    /// the case out of the list.
    @Test(
        "known issue: +Inf stays ±Inf (not NaN) inside the unit where the reference's does",
        .enabled(if: hasOpenCL),
        arguments: [
            (NonFiniteIsolationCase.Op.batchNormTraining, false), (.batchRenorm, false), (.instanceNorm, false),
            (.switchableAll, true), (.switchableAllInference, true), (.switchableInstanceLayer, true),
            (.switchableLayerBatch, true), (.switchableInstanceDominant, true),
        ])
    func infinityStaysInfinite(op: NonFiniteIsolationCase.Op, backward: Bool) throws {
        let runtime = try #require(sharedRuntime)
        let c = NonFiniteIsolationCase(
            op: op, value: .infinity, target: backward ? .dy : .x, backward: backward, layout: .channelsFirst,
            elementType: .float32)
        withKnownIssue("Inf versus NaN inside the isolation unit differs from the reference") {
            try c.check(on: .openCL(runtime), exactNonFinite: true)
        }
    }
}
