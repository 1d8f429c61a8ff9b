/// What a Switchable Normalization forward pass returns: the output and every statistic
/// the backward pass needs.
public struct SwitchableNormOutput: Sendable {
    /// The normalised tensor, same shape, layout and element type as the input.
    public let output: Tensor
    /// The mixed mean `μ = Σ_k softmax(wμ)_k μ_k` per (n, c), shape `[N, C]`, float32.
    public let saveMean: Tensor
    /// `1 / sqrt(σ² + eps)` of the mixed variance per (n, c), shape `[N, C]`, float32.
    public let saveInvstd: Tensor
    /// `μ_in` per (n, c), shape `[N, C]`; nil without the IN branch.
    public let instanceMean: Tensor?
    /// `σ²_in` per (n, c) with the chosen estimator, shape `[N, C]`; nil without the IN branch.
    public let instanceVariance: Tensor?
    /// `μ_ln` per sample, shape `[N]`.
    public let layerMean: Tensor
    /// `σ²_ln` per sample, shape `[N]` (see ``switchableNorm(_:meanLogits:varianceLogits:weight:bias:runningStatistics:training:options:into:waitingFor:)``
    /// for exactly which variance).
    public let layerVariance: Tensor
    /// `μ_bn` per channel, shape `[C]`: batch statistics, only in training with a BN branch.
    public let batchMean: Tensor?
    /// `σ²_bn` per channel, shape `[C]`, the variance mixed in; only in training with a BN branch.
    public let batchVariance: Tensor?
    /// The OpenCL kernels the op enqueued, in order (empty on the reference path).
    public let events: [KernelEvent]

    /// The input, parameters and eps, for ``switchableNormBackward(_:forward:outputMask:into:waitingFor:)``.
    var saved: SavedForward? = nil
    /// The forward's mixing logits, mode and options.
    var meanLogits: Tensor? = nil
    var varianceLogits: Tensor? = nil
    var training = false
    var options = SwitchableNormOptions()
    /// The running statistics an inference forward with a BN branch normalised with.
    var runningStatistics: RunningStatistics? = nil
}
