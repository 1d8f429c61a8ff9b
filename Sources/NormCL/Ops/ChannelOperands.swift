/// The per-channel operands of a forward launch over an `(N, C, *spatial)` input
/// (BatchNorm, GroupNorm, InstanceNorm, Switchable Norm), as the kernels take them: γ and
/// β (NULL when absent), the running statistics (read in inference; the old values of the
/// update in training), the running update's effective momentum, and eps.
struct ChannelOperands {
    var weight: DeviceBuffer?
    var bias: DeviceBuffer?
    var runningMean: DeviceBuffer?
    var runningVar: DeviceBuffer?
    /// Effective weight of the new batch in the running update.
    var momentum: Float
    var eps: Float

    init(weight: Tensor?, bias: Tensor?, running: RunningStatistics?, momentum: Float, eps: Float) {
        self.weight = weight?.deviceBuffer
        self.bias = bias?.deviceBuffer
        runningMean = running?.mean.deviceBuffer
        runningVar = running?.variance.deviceBuffer
        self.momentum = momentum
        self.eps = eps
    }
}

/// A forward launch's inputs: x and its ``ChannelOperands``, each operand readable as a
/// member (`inputs.weight`, `inputs.eps`).
@dynamicMemberLookup
struct ChannelInputs {
    var x: DeviceBuffer
    var operands: ChannelOperands

    subscript<T>(dynamicMember path: KeyPath<ChannelOperands, T>) -> T { operands[keyPath: path] }
}

/// What the forward kernels of BatchNorm, GroupNorm and InstanceNorm return: the output,
/// the saved statistics (per channel, or per (n, g)), the running statistics they
/// updated, Batch Renorm's r and d, and the kernels' events; nil where the op or mode
/// writes none.
struct ChannelOutputs {
    var output: Tensor
    var saveMean: Tensor?
    var saveInvstd: Tensor?
    var runningMean: Tensor?
    var runningVar: Tensor?
    var renormR: Tensor?
    var renormD: Tensor?
    var events: [KernelEvent]
}
