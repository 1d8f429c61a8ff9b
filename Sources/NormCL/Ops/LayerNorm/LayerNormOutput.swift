/// What a LayerNorm forward pass returns.
public struct LayerNormOutput: Sendable {
    /// The normalised tensor: the input's shape, layout and element type.
    public let output: Tensor
    /// The mean of each row, for the backward pass: float32, shape = the input's
    /// leading dims (`[]`, one value, for input of rank `normalizedShape.count`).
    public let saveMean: Tensor
    /// `1 / sqrt(var + eps)` of each row (biased variance): float32, shape as ``saveMean``.
    public let saveInvstd: Tensor
    /// The OpenCL kernels the op enqueued, in order (empty on the reference path);
    /// their profiling intervals give the op's device time.
    public let events: [KernelEvent]

    /// The input, parameters and eps, for ``layerNormBackward(_:forward:gradResidualSum:outputMask:into:waitingFor:)``.
    var saved: SavedForward? = nil
    /// The forward's `normalizedShape`.
    var normalizedShape: [Int] = []
    /// h = x + residual, when the call added a residual and was asked to return it (the
    /// next block's residual stream): the input's shape and layout, the residual's
    /// element type. nil otherwise. When it has the input's element type, the backward
    /// from this output reads it in place of x and the residual (one tensor instead of
    /// two), as autograd reads a saved tensor: leave it unchanged until then.
    public internal(set) var residualSum: Tensor? = nil
}
