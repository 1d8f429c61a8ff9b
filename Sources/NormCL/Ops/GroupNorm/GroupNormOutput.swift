/// What a GroupNorm forward pass returns.
public struct GroupNormOutput: Sendable {
    /// The normalised tensor: same shape, layout and element type as the input.
    public let output: Tensor
    /// The mean per (n, g), shape `(N, G)`, float32, for the backward pass.
    public let saveMean: Tensor?
    /// `1 / sqrt(var + eps)` per (n, g) (biased variance), shape as ``saveMean``.
    public let saveInvstd: Tensor?
    /// The OpenCL kernels the op enqueued, in order (empty on the reference path);
    /// their profiling intervals give the op's device time.
    public let events: [KernelEvent]

    /// The input, parameters and eps, for ``groupNormBackward(_:forward:outputMask:into:waitingFor:)``.
    var saved: SavedForward? = nil
    /// The forward's G.
    var numGroups: Int = 0
}

/// What an InstanceNorm forward pass returns.
public struct InstanceNormOutput: Sendable {
    /// The normalised tensor: same shape, layout and element type as the input.
    public let output: Tensor
    /// The mean per (n, c), shape `(N, C)`, float32, for the backward pass; nil when
    /// the forward normalised with running statistics (`useInputStatistics: false`).
    public let saveMean: Tensor?
    /// `1 / sqrt(var + eps)` per (n, c) (biased variance), shape as ``saveMean``.
    public let saveInvstd: Tensor?
    /// The OpenCL kernels the op enqueued, in order (empty on the reference path);
    /// their profiling intervals give the op's device time.
    public let events: [KernelEvent]

    /// The input, parameters and eps, for ``instanceNormBackward(_:forward:outputMask:into:waitingFor:)``.
    var saved: SavedForward? = nil
    /// The running statistics an inference forward normalised with (constants for
    /// its backward pass); nil when it used the input's statistics.
    var runningStatistics: RunningStatistics? = nil
}

extension GroupNormOutput {
    /// InstanceNorm's output seen as GroupNorm's with `G = C` (tests compare the two paths).
    init(_ instance: InstanceNormOutput) {
        self.init(
            output: instance.output, saveMean: instance.saveMean, saveInvstd: instance.saveInvstd, events: instance.events,
            saved: instance.saved, numGroups: instance.output.shape.count > 1 ? instance.output.shape[1] : 0)
    }
}
