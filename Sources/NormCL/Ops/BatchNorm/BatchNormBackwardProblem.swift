/// A BatchNorm (or Batch Renorm) backward call, described by what decides how to run it.
///
/// Built by ``validated(gradOutput:input:weight:statistics:outputMask:)``, where every
/// argument check lives; plans and backends take a problem known to be valid.
struct BatchNormBackwardProblem: ChannelShaped, Hashable, Sendable {
    enum Mode: Hashable, Sendable {
        /// Gradients through the batch statistics (saved mean and invstd).
        case training
        /// Batch Renorm training: as ``training``, with `r` and `d` held constant.
        case renorm
        /// Running statistics, constants: dx is elementwise.
        case inference
    }

    /// The per-channel tensors the backward pass reads besides x, dy and γ (all `[C]`,
    /// float32, on the input's backend).
    enum Statistics {
        /// The forward's ``BatchNormOutput/saveMean`` and ``BatchNormOutput/saveInvstd``.
        case batch(mean: Tensor, invstd: Tensor)
        /// As ``batch``, plus Batch Renorm's ``BatchNormOutput/renormR`` and ``BatchNormOutput/renormD``.
        case renorm(mean: Tensor, invstd: Tensor, r: Tensor, d: Tensor)
        /// Running mean and variance with the forward's eps: `invstd = 1/sqrt(var + eps)`.
        case running(mean: Tensor, variance: Tensor, eps: Float)

        var mode: Mode {
            switch self {
            case .batch: .training
            case .renorm: .renorm
            case .running: .inference
            }
        }
        /// The mean x̂ is centred on (saved or running).
        var mean: Tensor {
            switch self {
            case .batch(let mean, _), .renorm(let mean, _, _, _), .running(let mean, _, _): mean
            }
        }
        /// The saved invstd (training) or the running variance (inference).
        var second: Tensor {
            switch self {
            case .batch(_, let invstd), .renorm(_, let invstd, _, _): invstd
            case .running(_, let variance, _): variance
            }
        }
        var renorm: (r: Tensor, d: Tensor)? {
            if case .renorm(_, _, let r, let d) = self { (r, d) } else { nil }
        }
        /// eps of inference; unused in training (the saved invstd already holds it).
        var eps: Float {
            if case .running(_, _, let eps) = self { eps } else { 0 }
        }
    }

    /// The input shape `(N, C, *S)`.
    let shape: [Int]
    let layout: TensorLayout
    let elementType: ElementType
    let mode: Mode
    let hasWeight: Bool
    /// The gradients to compute; ``NormGradientMask/addend`` only with an addend.
    let outputMask: NormGradientMask
    /// The activation the forward fused after the norm: its gradient is applied to dy,
    /// at the activation's input recomputed from x, the statistics, γ and β (and z).
    var activation: Activation = .none
    /// Whether the forward added an addend z before the activation (dz can be written).
    var hasAddend = false

    /// n = N·M, the values each channel's sums run over.
    var valuesPerChannel: Int { batchSpatial }
    /// Whether memory holds a row-major `(N·M, C)` matrix (channels-last, or `(N, C)`).
    var isRowsByChannels: Bool { layout == .channelsLast || spatial == 1 }
    /// Whether Σdy and Σdy·x̂ are needed: for dγ or dβ, and for dx in training. (dz alone
    /// needs none, but in training it takes the reducing kernels' path, which alone has
    /// the per-channel map to the activation's input: rare enough not to need a kernel.)
    var needsSums: Bool {
        outputMask.contains(.weight) || outputMask.contains(.bias)
            || (mode != .inference && !outputMask.isDisjoint(with: [.input, .addend]))
    }

    /// Checks every argument and describes the call.
    ///
    /// - Throws: ``NormError`` naming the first argument that is wrong: the input's
    ///   shape (fewer than two dims, too large; one value per channel in
    ///   training, as the forward rejects), `gradOutput` not matching the input,
    ///   `weight` or a statistic not `[C]` float32 on the input's backend, a bad eps.
    /// - Parameters:
    ///   - wholeBatchValuesPerChannel: when the input is one part of a batch
    ///     (synchronized BatchNorm), the whole batch's values per channel: the one-value
    ///     check applies to it, not to the part.
    ///   - bias: β of a forward with an activation (it enters the activation's input);
    ///     checked as `weight` is.
    ///   - activation: the forward's fused activation.
    ///   - addend: the forward's addend z; `outputMask` loses ``NormGradientMask/addend``
    ///     without one.
    static func validated(
        gradOutput: Tensor, input: Tensor, weight: Tensor?, statistics: Statistics, outputMask: NormGradientMask,
        wholeBatchValuesPerChannel: Int? = nil, bias: Tensor? = nil, activation: Activation = .none,
        addend: Tensor? = nil
    ) throws(NormError) -> BatchNormBackwardProblem {
        let shape = input.shape
        try NormError.checkChannelInput(shape, op: "BatchNorm", limits: BatchNormProblem.sizeLimits)
        try NormError.checkGradOutput(gradOutput, matches: input)
        let channels = [shape[1]]
        let backend = input.backend
        try NormError.checkParameter(weight, "weight", shape: channels, backend: backend)
        try NormError.checkParameter(bias, "bias", shape: channels, backend: backend)
        try NormError.checkCompanion(addend, "addend", matches: input)
        let names =
            statistics.mode == .inference ? ("runningMean", "runningVar") : ("saveMean", "saveInvstd")
        try NormError.checkParameter(statistics.mean, names.0, shape: channels, backend: backend)
        try NormError.checkParameter(statistics.second, names.1, shape: channels, backend: backend)
        if let renorm = statistics.renorm {
            try NormError.checkParameter(renorm.r, "renormR", shape: channels, backend: backend)
            try NormError.checkParameter(renorm.d, "renormD", shape: channels, backend: backend)
        }
        if statistics.mode == .inference { try NormError.checkEps(statistics.eps) }
        let problem = BatchNormBackwardProblem(
            shape: shape, layout: input.layout, elementType: input.elementType, mode: statistics.mode,
            hasWeight: weight != nil, outputMask: addend == nil ? outputMask.subtracting(.addend) : outputMask,
            activation: activation, hasAddend: addend != nil)
        if problem.mode != .inference && (wholeBatchValuesPerChannel ?? problem.valuesPerChannel) == 1 {
            throw .tooFewValuesPerChannel(valuesPerChannel: 1, shape: shape)
        }
        return problem
    }
}
