/// What a BatchNorm forward pass returns.
public struct BatchNormOutput: Sendable {
    /// The normalised tensor, same shape, layout and element type as the input.
    public let output: Tensor
    /// Training only: the batch mean per channel (float32), for the backward pass.
    public let saveMean: Tensor?
    /// Training only: `1 / sqrt(var + eps)` per channel (biased batch variance, float32).
    public let saveInvstd: Tensor?
    /// Batch Renorm only: the correction factors `r` and `d` per channel (see
    /// ``BatchRenormLimits``), constants in the backward pass.
    public let renormR: Tensor?
    public let renormD: Tensor?
    /// The OpenCL kernels the op enqueued, in order (empty on the reference path);
    /// their profiling intervals give the op's device time.
    public let events: [KernelEvent]

    /// The input, parameters and eps, for ``batchNormBackward(_:forward:outputMask:into:waitingFor:)``.
    var saved: SavedForward? = nil
    /// The running statistics an inference forward normalised with (constants for its
    /// backward pass); nil for a training forward.
    var runningStatistics: RunningStatistics? = nil
    /// The fused epilogue of one part of a synchronized batch (set by
    /// ``batchNorm(_:moments:weight:bias:runningStatistics:momentum:eps:activation:addend:into:waitingFor:)``),
    /// for the synchronized backward. Such an output keeps ``saved`` nil, so that
    /// ``batchNormBackward(_:forward:outputMask:into:waitingFor:)``, whose gradients would
    /// be the part's alone, refuses it.
    var partEpilogue: BatchNormEpilogue? = nil

    init(
        output: Tensor, saveMean: Tensor?, saveInvstd: Tensor?, renormR: Tensor? = nil, renormD: Tensor? = nil,
        events: [KernelEvent]
    ) {
        (self.output, self.saveMean, self.saveInvstd) = (output, saveMean, saveInvstd)
        (self.renormR, self.renormD, self.events) = (renormR, renormD, events)
    }
}
