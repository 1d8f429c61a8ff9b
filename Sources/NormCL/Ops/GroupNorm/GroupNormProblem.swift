/// A GroupNorm or InstanceNorm forward call, described by what decides how to run it.
///
/// InstanceNorm is GroupNorm with `groups == channels`, plus running statistics: both
/// share this problem, the plan and the kernels of `Kernels/group_norm.cl`. Built by
/// ``validated(input:groups:weight:bias:statistics:eps:op:)``, where the checks
/// common to both ops live (InstanceNorm's own checks are in `InstanceNormFunctional`).
struct GroupNormProblem: ChannelShaped, Hashable, Sendable {
    /// Where the normalisation statistics come from.
    enum Statistics: Hashable, Sendable {
        /// One mean and biased variance per (n, g) from the input;
        /// `savesVariance` when InstanceNorm also needs the variances to update
        /// running statistics.
        case input(savesVariance: Bool)
        /// InstanceNorm inference: the running statistics per channel.
        case running
    }

    /// The input shape `(N, C, *S)`.
    let shape: [Int]
    let layout: TensorLayout
    let elementType: ElementType
    /// G; C for InstanceNorm.
    let groups: Int
    let statistics: Statistics
    let hasWeight: Bool
    let hasBias: Bool
    /// The activation fused after the norm, `y = f(GN(x))` (GroupNorm only: InstanceNorm
    /// has none). Its forward applies f before each store; its backward takes dy through
    /// f′ at the input recomputed from x, the saved statistics, γ and β.
    var activation: Activation = .none

    /// C / G.
    var channelsPerGroup: Int { groups == 0 ? 0 : channels / groups }
    /// The (n, g) pairs, one mean and variance each: N·G.
    var rows: Int { batch * groups }
    /// The values each (n, g) pair's statistics run over: (C/G)·M.
    var valuesPerRow: Int { channelsPerGroup * spatial }
    /// Whether each (n, g) pair is one contiguous run in memory: channels-first input,
    /// or `(N, C)` input of either layout.
    var hasContiguousRows: Bool { layout == .channelsFirst || spatial == 1 }

    /// Checks the arguments both ops share and describes the call.
    ///
    /// - Parameters:
    ///   - op: the op's name for messages ("GroupNorm", "InstanceNorm").
    ///   - activation: the activation fused after the norm (GroupNorm only).
    /// - Throws: ``NormError`` naming the first argument that is wrong.
    static func validated(
        input: Tensor, groups: Int, weight: Tensor?, bias: Tensor?, statistics: Statistics, eps: Float, op: String,
        activation: Activation = .none
    ) throws(NormError) -> GroupNormProblem {
        try checkInput(input, groups: groups, weight: weight, op: op)
        try NormError.checkParameter(bias, "bias", shape: [input.shape[1]], backend: input.backend)
        try NormError.checkEps(eps)
        return GroupNormProblem(
            shape: input.shape, layout: input.layout, elementType: input.elementType, groups: groups,
            statistics: statistics, hasWeight: weight != nil, hasBias: bias != nil, activation: activation)
    }

    /// The sizes the kernels take as 32-bit values, stored .
    static let sizeLimits: [(ChannelShape.Size, String)] = [(.batchSpatial, "N·M"), (.planes, "N·C")]

    /// The checks of the input, its groups and γ, which forward and backward share.
    static func checkInput(_ input: Tensor, groups: Int, weight: Tensor?, op: String) throws(NormError) {
        let shape = input.shape
        // Kernels take N·M, N·C, N·G and C as 32-bit values (N·G and C are at most N·C when
        // N > 0; an empty input launches nothing).
        try NormError.checkChannelInput(shape, op: op, limits: sizeLimits)
        let channels = shape[1]
        // InstanceNorm's groups are its channels: none for C = 0 (an empty input).
        guard groups > 0 || (op == "InstanceNorm" && channels == 0) else {
            throw .invalidArgument(argument: "numGroups", reason: "must be positive, got \(groups)")
        }
        // PyTorch: "Expected number of channels in input to be divisible by num_groups"
        // (C = 0 divides into any number of groups).
        guard groups == 0 || channels % groups == 0 else {
            throw .invalidArgument(
                argument: "numGroups", reason: "the \(channels) channels must divide into \(groups) groups evenly")
        }
        try NormError.checkParameter(weight, "weight", shape: [channels], backend: input.backend)
    }
}
