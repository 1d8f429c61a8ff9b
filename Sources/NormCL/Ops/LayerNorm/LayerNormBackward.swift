/// The backward pass of ``layerNorm(_:normalizedShape:weight:bias:eps:residual:inputBias:returnsResidualSum:weightOffset:activation:into:waitingFor:)``, as PyTorch's
/// `native_layer_norm_backward(grad_out, input, normalized_shape, mean, rstd, weight,
/// bias, output_mask)`, from what the forward returned: its input, γ, β,
/// `normalizedShape` and saved statistics come from `forward`, so nothing can disagree.
///
/// For each row of the `(rows, D)` view, with the forward's saved statistics,
/// `x̂ = (x − mean)·invstd` and `g = dy·γ`:
///
///     dx = invstd/D · (D·g − Σ_row g − x̂·Σ_row g·x̂)
///     dγ = Σ_rows dy·x̂        dβ = Σ_rows dy
///
/// dx is the full derivative, through the row statistics (which are functions of x).
/// On OpenCL, Σg and Σg·x̂ are accumulated in float32 (also for half storage) in one
/// pass with the dx pass reading the row again from cache; dγ and dβ are column sums
/// over rows taken in two deterministic stages (partials per block of rows, then a
/// fixed-order sum per column), fused with the dx pass so x and dy are read once.
/// Results are bit-identical from run to run (no atomics).
///
/// A forward that fused a residual, γ's offset or an activation is differentiated
/// through them: dy is first taken through the activation at its input, recomputed
/// from h = x + residual and the saved statistics; γ is `weight + weightOffset`; dx is
/// then the gradient of both x and the residual, with `gradResidualSum` (dL/dh from the
/// next block's residual stream) added.
///
/// - Parameters:
///   - gradOutput: dy, with the input's shape, layout, element type and backend.
///   - forward: what ``layerNorm(_:normalizedShape:weight:bias:eps:residual:inputBias:returnsResidualSum:weightOffset:activation:into:waitingFor:)`` returned.
///   - gradResidualSum: the gradient of h = x + residual from elsewhere (the forward's
///     ``LayerNormOutput/residualSum`` feeds the next block), added to dx; the residual's
///     shape, layout and element type. nil: none.
///   - outputMask: which gradients to compute; the others come back nil and their
///     work is skipped. dγ (dβ) is returned only when the forward had a weight (bias).
///   - destinations: tensors to write dx, dγ and dβ into (OpenCL; see
///     ``BackwardDestinations``); new tensors where nil.
///   - waitList: events the first kernel waits for (the caller's write of dy, say); the
///     op returns without waiting.
/// - Returns: dx (the input's shape, layout and element type), dγ and dβ (float32 of
///   shape `normalizedShape`), and the kernel events.
/// - Throws: ``NormError`` for a `gradOutput` that does not match the input (shape,
///   layout, element type, backend); ``OpenCLError`` or ``KernelBuildError`` when the
///   device fails.
public func layerNormBackward(
    _ gradOutput: Tensor, forward: LayerNormOutput, gradResidualSum: Tensor? = nil,
    outputMask: NormGradientMask = .all,
    into destinations: BackwardDestinations = BackwardDestinations(), waitingFor waitList: [OpenCLEvent] = []
) throws -> NormGradients {
    guard let saved = forward.saved else { throw NormError.nothingSaved("layerNorm") }
    return try layerNormBackward(
        gradOutput, input: saved.input, normalizedShape: forward.normalizedShape, weight: saved.weight,
        saveMean: forward.saveMean, saveInvstd: forward.saveInvstd, outputMask: outputMask.restricted(to: saved),
        fusing: RowNormBackwardFusionArguments(
            forward: saved.rowNormFusion, bias: saved.bias, gradResidualSum: gradResidualSum,
            residualSum: forward.residualSum),
        strategy: nil, fuseParameters: nil, tuning: nil, call: OpCall(waitList: waitList, backward: destinations))
}

/// The backward pass from explicit saved statistics, as PyTorch's
/// `native_layer_norm_backward`: for callers that keep the forward's input and
/// statistics themselves (tensors over their own buffers, the C API).
///
/// The math and the gradients are those of
/// ``layerNormBackward(_:forward:gradResidualSum:outputMask:into:waitingFor:)``; `saveMean` and
/// `saveInvstd` are the forward's (float32, shape = the input's leading dims), and a
/// requested dγ is computed also when `weight` is nil (the gradient at γ = 1).
///
/// - Parameters:
///   - gradOutput: dy, with the input's shape, layout, element type and backend.
///   - input: the forward's input x.
///   - normalizedShape: the forward's `normalizedShape`.
///   - weight: γ as in the forward (float32 of shape `normalizedShape`), or nil for γ = 1.
///   - saveMean: the forward's ``LayerNormOutput/saveMean``.
///   - saveInvstd: the forward's ``LayerNormOutput/saveInvstd``.
///   - outputMask: which gradients to compute; the others come back nil and their
///     work is skipped.
///   - destinations: tensors to write dx, dγ and dβ into (OpenCL; see
///     ``BackwardDestinations``); new tensors where nil.
///   - waitList: events the first kernel waits for (the caller's write of dy, say); the
///     op returns without waiting.
public func layerNormBackward(
    _ gradOutput: Tensor, input: Tensor, normalizedShape: [Int], weight: Tensor?, saveMean: Tensor,
    saveInvstd: Tensor, outputMask: NormGradientMask = .all,
    into destinations: BackwardDestinations = BackwardDestinations(), waitingFor waitList: [OpenCLEvent] = []
) throws -> NormGradients {
    try layerNormBackward(
        gradOutput, input: input, normalizedShape: normalizedShape, weight: weight, saveMean: saveMean,
        saveInvstd: saveInvstd, outputMask: outputMask, strategy: nil, fuseParameters: nil, tuning: nil,
        call: OpCall(waitList: waitList, backward: destinations))
}

/// `layerNormBackward(_:input:normalizedShape:weight:saveMean:saveInvstd:outputMask:)`
/// with the saved statistics taken from the forward's output (tests pass the rest).
func layerNormBackward(
    _ gradOutput: Tensor, input: Tensor, normalizedShape: [Int], weight: Tensor?, forward: LayerNormOutput,
    outputMask: NormGradientMask = .all
) throws -> NormGradients {
    try layerNormBackward(
        gradOutput, input: input, normalizedShape: normalizedShape, weight: weight, saveMean: forward.saveMean,
        saveInvstd: forward.saveInvstd, outputMask: outputMask)
}

/// The one implementation behind the public entry points; `strategy` forces a plan
/// strategy on OpenCL, `fuseParameters` forces the parameter reduction into (or out
/// of) the dx kernel, and `tuning` replaces the device's (tests use them to cover
/// every kernel).
func layerNormBackward(
    _ gradOutput: Tensor, input: Tensor, normalizedShape: [Int], weight: Tensor?, saveMean: Tensor, saveInvstd: Tensor,
    outputMask: NormGradientMask, fusing fused: RowNormBackwardFusionArguments = RowNormBackwardFusionArguments(),
    strategy: RowNormPlan.Strategy?, fuseParameters: Bool?, tuning: DeviceTuning?, call: OpCall = OpCall()
) throws -> NormGradients {
    try rowNormBackward(
        .layerNorm, gradOutput, input: input, normalizedShape: normalizedShape, weight: weight, saveMean: saveMean,
        saveScale: saveInvstd, outputMask: outputMask, fusing: fused, strategy: strategy,
        fuseParameters: fuseParameters, tuning: tuning, call: call)
}
