/// Root-mean-square normalisation, as `torch.nn.functional.rms_norm(x,
/// normalized_shape, weight, eps)`.
///
/// The trailing dims of `input` must equal `normalizedShape`; each row of the
/// `(rows, D)` view (`D = prod(normalizedShape)`) is scaled on its own, with no mean
/// subtraction and no bias:
///
///     rstd_r = 1 / sqrt(Σ x² / D + eps)        y = x · rstd_r · γ
///
/// with γ elementwise over `normalizedShape`. The sum of squares is accumulated in
/// float32 (also for half storage) in blocks added with Kahan compensation, so it
/// stays accurate for rows of millions of values.
///
/// Fused around the norm, in the same pass (see <doc:FusedEpilogues>):
///
///     h = (x + inputBias) + residual
///     y = f(h · rstd_r(h) · (γ + weightOffset) + β)
///
/// with f the `activation`; h (returned when `returnsResidualSum`) is formed in
/// float32 and stored in the residual's element type.
///
/// - Parameters:
///   - input: any rank ≥ `normalizedShape.count`, row-major (channels-first; a
///     channels-last tensor of rank ≥ 3 is not supported), float32 or half storage;
///     the output has the same shape, layout and element type.
///   - normalizedShape: the trailing dims to normalise over (at least one, all positive).
///   - weight: γ, float32 of shape `normalizedShape`, or nil for γ = 1.
///   - bias: β, an offset added after the scaling (float32 of shape `normalizedShape`),
///     or nil for none (plain RMSNorm).
///   - eps: added to the mean square inside the square root; finite and ≥ 0. nil
///     (the default) means the machine epsilon of the input's element type
///     (``ElementType/epsilon``: 2^-23 for float32, 2^-10 for half), as PyTorch's
///     `eps=None`. LLMs usually pass 1e-5 or 1e-6 explicitly.
///   - residual: added to the input before the norm, or nil: the input's shape and
///     layout, its element type or float32 (the residual stream kept in float32 under
///     half storage), as vLLM's `fused_add_rms_norm`.
///   - inputBias: the preceding linear layer's bias, added to the input with the
///     residual (h = (x + inputBias) + residual, Megatron's bias-dropout-add without
///     dropout), or nil: float32 of shape `normalizedShape`; needs a residual. Its
///     gradient is ``NormGradients/inputBias``.
///   - returnsResidualSum: whether to write h (``RMSNormOutput/residualSum``).
///   - weightOffset: added to γ before it scales: 1 for Gemma's `x · rstd · (1 + w)`
///     (zero-centred γ); needs a weight.
///   - activation: applied to the normalized output (``Activation``).
///   - destinations: tensors to write the output and the per-row `rstd` (as
///     ``ForwardDestinations/saveInvstd``) into (OpenCL; see ``ForwardDestinations``);
///     new tensors where nil.
///   - waitList: events the op's first kernel waits for (the caller's writes of the
///     input, say); the op returns without waiting for anything.
/// - Returns: the output and the per-row `rstd` (float32, shape = leading dims). An
///   empty input gives an empty output and `rstd` NaN (of no values) per row, without
///   a kernel launch, as PyTorch.
/// - Throws: ``NormError`` for invalid arguments: an empty or negative
///   `normalizedShape`, trailing dims that differ from it (`shapeMismatch` of
///   `input`), a weight of another shape, type or backend, a destination that does not
///   fit its result (naming `destinations.output`, …), non-finite or negative
///   eps, rows or D of 2^32 or more, channels-last input of rank ≥ 3
///   (`unsupported`); ``OpenCLError`` or ``KernelBuildError`` when the device fails.
public func rmsNorm(
    _ input: Tensor, normalizedShape: [Int], weight: Tensor? = nil, bias: Tensor? = nil, eps: Float? = nil,
    residual: Tensor? = nil, inputBias: Tensor? = nil, returnsResidualSum: Bool = false, weightOffset: Float = 0,
    activation: Activation = .none,
    into destinations: ForwardDestinations = ForwardDestinations(), waitingFor waitList: [OpenCLEvent] = []
) throws -> RMSNormOutput {
    try rmsNorm(
        input, normalizedShape: normalizedShape, weight: weight, bias: bias, eps: eps,
        fusing: RowNormFusionArguments(
            residual: residual, inputBias: inputBias, returnsResidualSum: returnsResidualSum, weightOffset: weightOffset,
            activation: activation),
        strategy: nil, tuning: nil, call: OpCall(waitList: waitList, forward: destinations))
}

/// One-shot RMS normalisation of host values (float32): uploads, normalises, downloads.
///
/// See ``rmsNorm(_:normalizedShape:weight:bias:eps:residual:inputBias:returnsResidualSum:weightOffset:activation:into:waitingFor:)`` for the math.
/// - Parameters:
///   - values: the input, row-major, `shape`'s element count.
///   - shape: the input's shape; its trailing dims are `normalizedShape`.
///   - normalizedShape: the trailing dims to normalise over (at least one, all positive).
///   - weight: γ, `normalizedShape`'s element count, or nil for γ = 1.
///   - eps: added to the mean square inside the square root; finite and ≥ 0, nil for
///     float32's machine epsilon.
///   - backend: where to run; ``Backend/default`` when nil.
public func rmsNorm(
    _ values: [Float], shape: [Int], normalizedShape: [Int], weight: [Float]? = nil, eps: Float? = nil,
    on backend: Backend? = nil
) throws -> [Float] {
    try oneShot(values, shape: shape, weight: weight, bias: nil, parameterShape: normalizedShape, on: backend) {
        input, weight, _ in try rmsNorm(input, normalizedShape: normalizedShape, weight: weight, eps: eps).output
    }
}

/// The one implementation behind the public entry points; `strategy` forces a plan
/// strategy on OpenCL and `tuning` replaces the device's (tests use them to cover
/// each strategy, and the GPU-style interleaved kernels on a CPU device).
func rmsNorm(
    _ input: Tensor, normalizedShape: [Int], weight: Tensor?, bias: Tensor? = nil, eps: Float?,
    fusing fused: RowNormFusionArguments = RowNormFusionArguments(), strategy: RowNormPlan.Strategy?,
    tuning: DeviceTuning?, call: OpCall = OpCall()
) throws -> RMSNormOutput {
    let eps = eps ?? input.elementType.epsilon
    let r = try rowNormForward(
        .rmsNorm, input, normalizedShape: normalizedShape, weight: weight, bias: bias, eps: eps, fusing: fused,
        strategy: strategy, tuning: tuning, call: call)
    var output = RMSNormOutput(output: r.output, saveInvRms: r.saveScale, events: r.events)
    output.saved = SavedForward(fused, input: input, weight: weight, bias: bias, eps: eps)
    output.normalizedShape = normalizedShape
    output.residualSum = r.residualSum
    return output
}
