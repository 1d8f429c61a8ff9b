/// What a GroupNorm or InstanceNorm forward pass returns.
public struct GroupNormOutput: Sendable {
    /// The normalised tensor: same shape, layout and element type as the input.
    public let output: Tensor
    /// The mean per (n, g), shape `(N, G)` (`(N, C)` for InstanceNorm), float32, for
    /// the backward pass; nil when InstanceNorm normalised with running statistics.
    public let saveMean: Tensor?
    /// `1 / sqrt(var + eps)` per (n, g) (biased variance), shape as ``saveMean``.
    public let saveInvstd: Tensor?
    /// The OpenCL kernels the op enqueued, in order (empty on the reference path);
    /// their profiling intervals give the op's device time.
    public let events: [KernelEvent]
}

/// What an InstanceNorm forward pass returns (the GroupNorm output with `G = C`).
public typealias InstanceNormOutput = GroupNormOutput
