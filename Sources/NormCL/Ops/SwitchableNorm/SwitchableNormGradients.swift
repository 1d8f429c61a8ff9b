/// What ``switchableNormBackward(_:forward:outputMask:into:waitingFor:)``
/// returns: ``NormGradients``' three plus the gradients of the two mixing-logit vectors.
///
/// ``input`` has the input's shape, layout and element type; ``weight`` and ``bias`` are
/// float32 `[C]`, each nil when the ``NormGradientMask`` left it out. The logit
/// gradients are float32 `[branches.count]` (IN, LN, BN order, those present) and
/// always computed: they come out of the same per-instance sums as `dx` for a few
/// hundred flops, and the logits are always learned.
public struct SwitchableNormGradients: Sendable {
    /// `dx`.
    public let input: Tensor?
    /// `dγ`.
    public let weight: Tensor?
    /// `dβ`.
    public let bias: Tensor?
    /// `∂loss/∂meanLogits`.
    public let meanLogits: Tensor
    /// `∂loss/∂varianceLogits`.
    public let varianceLogits: Tensor
    /// The OpenCL kernels the backward pass enqueued, in order (empty on the reference path).
    public let events: [KernelEvent]
}
