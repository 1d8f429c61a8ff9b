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

    /// Known issue: with +Inf, OpenCL and the reference agree on which outputs are
    /// non-finite (checked above) but not always on Inf versus NaN inside the unit. Held
    /// exactly (channels-first float32, where every case listed diverges today):
    /// - forward, x: the running mean of the poisoned channel (BatchNorm, Batch Renorm,
    ///   InstanceNorm) is NaN on OpenCL, +Inf in the reference: the pilot-relative,
    ///   compensated mean meets Inf − Inf (the op's own suites accept a NaN saved mean
    ///   for the same reason; the running mean inherits it);
    /// - backward, dy: LayerNorm/RMSNorm dγ[j₀], dβ[j₀] are NaN on OpenCL, ±Inf in the
    ///   reference: `rownorm_backward_parameters` (Kernels/layer_norm_backward.cl) sums
    ///   the column partials with its own compensated loop, whose carry
    ///   `(sum − total) − step` is Inf − Inf = NaN once the sum is infinite, and the next
    ///   block's step becomes NaN (common.cl's `KAHAN_ADD` zeroes the carry of an
    ///   infinite sum for this reason);
    ///   Switchable Norm dx is NaN on OpenCL where the reference has −Inf (likely the
    ///   same cause: `kahan_add` and the column walk's carries in
    ///   Kernels/switchable_norm_backward.cl are not guarded against an infinite sum);
    /// - backward, dy: BatchNorm (training and inference) dγ[c₀] is ±Inf on OpenCL but
    ///   NaN in the reference: `ReferenceBatchNorm.backward` forms
    ///   `dγ = r·Σdy·x̂ + d·Σdy` with d = 0 outside Batch Renorm, and 0·Inf = NaN.
    /// When one is fixed its case stops recording the issue and this test fails: move
    /// the case out of the list.
    @Test(
        "known issue: +Inf stays ±Inf (not NaN) inside the unit where the reference's does",
        .enabled(if: hasOpenCL),
        arguments: [
            (NonFiniteIsolationCase.Op.batchNormTraining, false), (.batchRenorm, false), (.instanceNorm, false),
            (.batchNormTraining, true), (.batchNormInference, true), (.layerNorm, true), (.rmsNorm, true),
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
