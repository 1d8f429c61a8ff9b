/// Where an InstanceNorm backward pass takes the statistics the forward pass used.
enum InstanceNormBackwardStatistics {
    /// The input's, as saved per (n, c).
    case saved(mean: Tensor, invstd: Tensor)
    /// The running statistics, per channel.
    case running(RunningStatistics, eps: Float)
}
