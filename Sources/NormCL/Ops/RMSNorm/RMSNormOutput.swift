/// What an RMSNorm forward pass returns.
public struct RMSNormOutput: Sendable {
    /// The normalised tensor: the input's shape, layout and element type.
    public let output: Tensor
    /// `1 / sqrt(mean(x²) + eps)` of each row ("rstd"), for the backward pass:
    /// float32, shape = the input's leading dims (`[]` for input of rank
    /// `normalizedShape.count`).
    public let saveInvRms: Tensor
    /// The OpenCL kernels the op enqueued, in order (empty on the reference path).
    public let events: [KernelEvent]

    /// The input, weight and eps, for ``rmsNormBackward(_:forward:gradResidualSum:outputMask:into:waitingFor:)``.
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
