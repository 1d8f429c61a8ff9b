/// What a BatchNorm forward pass returns.
public struct BatchNormOutput: Sendable {
    /// The normalised tensor, same shape and layout as the input.
    public let output: Tensor
    /// Training only: the batch mean per channel, for the backward pass.
    public let saveMean: Tensor?
    /// Training only: `1 / sqrt(var + eps)` per channel (biased batch variance).
    public let saveInvstd: Tensor?
    /// The OpenCL kernels the op enqueued, in order (empty on the reference path);
    /// their profiling intervals give the op's device time.
    public let events: [KernelEvent]
}
