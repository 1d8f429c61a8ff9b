/// Layer normalisation, as `torch.nn.functional.layer_norm(x, normalized_shape,
/// weight, bias, eps)`.
///
/// The trailing dims of `input` must equal `normalizedShape`; each row of the
/// `(rows, D)` view (`D = prod(normalizedShape)`, `rows` = the product of the
/// leading dims) is normalised on its own:
///
///     mean_r = Σ x / D            var_r = Σ (x − mean_r)² / D      (biased)
///     y = (x − mean_r) / sqrt(var_r + eps) · γ + β
///
/// with γ and β elementwise over `normalizedShape`. Statistics are accumulated in
/// float32 (also for half storage) in one pass, relative to a per-row pilot value
/// with Chan's merge of shifted block sums, so data with a large mean
/// (`1e4 + N(0,1)`) keeps full precision.
///
/// Fused around the norm, in the same pass (see <doc:FusedEpilogues>):
///
///     h = (x + inputBias) + residual (a transformer block's residual stream)
///     y = f((h − mean_r) / sqrt(var_r + eps) · (γ + weightOffset) + β)
///
/// with f the `activation`; h (returned when `returnsResidualSum`) is formed in
/// float32 and stored in the residual's element type.
///
/// - Parameters:
///   - input: any rank ≥ `normalizedShape.count`, row-major (channels-first; a
///     channels-last tensor of rank ≥ 3 is not supported, at rank 2 both layouts are
///     the same memory), float32 or half storage; the output has the same shape,
///     layout and element type.
///   - normalizedShape: the trailing dims to normalise over (at least one, all positive).
///   - weight: γ, float32 of shape `normalizedShape`, or nil for γ = 1.
///   - bias: β, float32 of shape `normalizedShape`, or nil for β = 0.
///   - eps: added to the variance inside the square root; finite and ≥ 0 (default `1e-5`).
///   - residual: added to the input before the norm, or nil: the input's shape and
///     layout, its element type or float32 (the residual stream kept in float32 under
///     half storage).
///   - inputBias: the preceding linear layer's bias, added to the input with the
///     residual (h = (x + inputBias) + residual, Megatron's bias-dropout-add without
///     dropout), or nil: float32 of shape `normalizedShape`; needs a residual. Its
///     gradient is ``NormGradients/inputBias``.
///   - returnsResidualSum: whether to write h (``LayerNormOutput/residualSum``).
///   - weightOffset: added to γ before it scales (1 for zero-centred γ); needs a weight.
///   - activation: applied to the normalized output (``Activation``).
///   - destinations: tensors to write the output and statistics into (OpenCL; see
///     ``ForwardDestinations``); new tensors where nil.
///   - waitList: events the op's first kernel waits for (the caller's writes of the
///     input, say); the op returns without waiting for anything.
/// - Returns: the output, and the per-row mean and inverse standard deviation (float32,
///   shape = leading dims) of h for the backward pass (PyTorch's `native_layer_norm`),
///   and h when asked for.
///   An empty input (a zero dim, rows = 0 or D = 0) gives an empty output and the statistics of
///   no values (mean 0, invstd NaN) per row, without a kernel launch, as PyTorch.
/// - Throws: ``NormError`` for invalid arguments: an empty or negative
///   `normalizedShape` (`invalidShape`), trailing dims that differ from it
///   (`shapeMismatch` of `input`), weight or bias of another shape, type or backend,
///   a destination that does not fit its result (naming `destinations.output`, …),
///   non-finite or negative eps, rows or D of 2^32 or more,
///   channels-last input of rank ≥ 3 (`unsupported`); ``OpenCLError`` or
///   ``KernelBuildError`` when the device fails.
public func layerNorm(
    _ input: Tensor, normalizedShape: [Int], weight: Tensor? = nil, bias: Tensor? = nil, eps: Float = 1e-5,
    residual: Tensor? = nil, inputBias: Tensor? = nil, returnsResidualSum: Bool = false, weightOffset: Float = 0,
    activation: Activation = .none,
    into destinations: ForwardDestinations = ForwardDestinations(), waitingFor waitList: [OpenCLEvent] = []
) throws -> LayerNormOutput {
    try layerNorm(
        input, normalizedShape: normalizedShape, weight: weight, bias: bias, eps: eps,
        fusing: RowNormFusionArguments(
            residual: residual, inputBias: inputBias, returnsResidualSum: returnsResidualSum, weightOffset: weightOffset,
            activation: activation),
        strategy: nil, tuning: nil, call: OpCall(waitList: waitList, forward: destinations))
}

/// One-shot layer normalisation of host values: uploads, normalises, downloads.
///
/// See ``layerNorm(_:normalizedShape:weight:bias:eps:residual:inputBias:returnsResidualSum:weightOffset:activation:into:waitingFor:)`` for the math.
/// - Parameters:
///   - values: the input, row-major, `shape`'s element count.
///   - shape: the input's shape; its trailing dims are `normalizedShape`.
///   - normalizedShape: the trailing dims to normalise over (at least one, all positive).
///   - weight: γ, `normalizedShape`'s element count, or nil for γ = 1.
///   - bias: β, `normalizedShape`'s element count, or nil for β = 0.
///   - eps: added to the variance inside the square root; finite and ≥ 0.
///   - backend: where to run; ``Backend/default`` when nil.
public func layerNorm(
    _ values: [Float], shape: [Int], normalizedShape: [Int], weight: [Float]? = nil, bias: [Float]? = nil,
    eps: Float = 1e-5, on backend: Backend? = nil
) throws -> [Float] {
    try oneShot(values, shape: shape, weight: weight, bias: bias, parameterShape: normalizedShape, on: backend) {
        try layerNorm($0, normalizedShape: normalizedShape, weight: $1, bias: $2, eps: eps).output
    }
}

/// The one implementation behind the public entry points; `strategy` forces a plan
/// strategy on OpenCL and `tuning` replaces the device's (tests use them to cover
/// each strategy, and the GPU-style interleaved kernels on a CPU device).
func layerNorm(
    _ input: Tensor, normalizedShape: [Int], weight: Tensor?, bias: Tensor?, eps: Float,
    fusing fused: RowNormFusionArguments = RowNormFusionArguments(), strategy: RowNormPlan.Strategy?,
    tuning: DeviceTuning?, call: OpCall = OpCall()
) throws -> LayerNormOutput {
    let r = try rowNormForward(
        .layerNorm, input, normalizedShape: normalizedShape, weight: weight, bias: bias, eps: eps, fusing: fused,
        strategy: strategy, tuning: tuning, call: call)
    guard let saveMean = r.saveMean else { preconditionFailure("LayerNorm's forward returns the mean") }
    var output = LayerNormOutput(output: r.output, saveMean: saveMean, saveInvstd: r.saveScale, events: r.events)
    output.saved = SavedForward(fused, input: input, weight: weight, bias: bias, eps: eps)
    output.normalizedShape = normalizedShape
    output.residualSum = r.residualSum
    return output
}
