/// The backward pass of ``rmsNorm(_:normalizedShape:weight:bias:eps:residual:inputBias:returnsResidualSum:weightOffset:activation:into:waitingFor:)``, as PyTorch's
/// `_fused_rms_norm_backward`, from what the forward returned.
///
/// For each row of the `(rows, D)` view, with the forward's saved `rstd` `r`,
/// `x̂ = x·r` and `g = dy·γ`:
///
///     dx = r · (g − x̂ · Σ_row(g·x̂)/D)        dγ = Σ_rows dy·x̂
///
/// dx is the full derivative, through `r` (a function of x). dβ (`Σ_rows dy`) is
/// returned only when the forward had a β (an offset); otherwise the result's
/// ``NormGradients/bias`` is nil and the mask's `.bias` is ignored.
///
/// A forward that fused a residual, γ's offset or an activation is differentiated
/// through them: dy is first taken through the activation at its input, recomputed
/// from h = x + residual and the saved `rstd`; γ is `weight + weightOffset`; dx is then
/// the gradient of both x and the residual, with `gradResidualSum` (dL/dh from the next
/// block's residual stream) added.
/// On OpenCL, Σg·x̂ is accumulated in float32 (also for half storage) in one pass and
/// dx written from the row while it is in cache; dγ is a column sum over rows in two
/// deterministic stages fused with the dx pass. Results are bit-identical from run
/// to run (no atomics).
///
/// - Parameters:
///   - gradOutput: dy, with the input's shape, layout, element type and backend.
///   - forward: what ``rmsNorm(_:normalizedShape:weight:bias:eps:residual:inputBias:returnsResidualSum:weightOffset:activation:into:waitingFor:)`` returned; its input, γ,
///     `normalizedShape` and saved `rstd` are used, so nothing can disagree.
///   - gradResidualSum: the gradient of h = x + residual from elsewhere (the forward's
///     ``RMSNormOutput/residualSum`` feeds the next block), added to dx; the residual's
///     shape, layout and element type. nil: none.
///   - outputMask: which gradients to compute; the others come back nil and their
///     work is skipped. dγ is returned only when the forward had a weight.
///   - destinations: tensors to write dx and dγ into (OpenCL; see ``BackwardDestinations``).
///   - waitList: events the first kernel waits for; the op returns without waiting.
/// - Returns: dx (the input's shape, layout and element type), dγ (float32 of shape
///   `normalizedShape`), and the kernel events.
/// - Throws: ``NormError`` for a `gradOutput` that does not match the input (shape,
///   layout, element type, backend); ``OpenCLError`` or ``KernelBuildError`` when the
///   device fails.
public func rmsNormBackward(
    _ gradOutput: Tensor, forward: RMSNormOutput, gradResidualSum: Tensor? = nil, outputMask: NormGradientMask = .all,
    into destinations: BackwardDestinations = BackwardDestinations(), waitingFor waitList: [OpenCLEvent] = []
) throws -> NormGradients {
    guard let saved = forward.saved else { throw NormError.nothingSaved("rmsNorm") }
    return try rmsNormBackward(
        gradOutput, input: saved.input, normalizedShape: forward.normalizedShape, weight: saved.weight,
        saveInvRms: forward.saveInvRms, outputMask: outputMask.restricted(to: saved),
        fusing: RowNormBackwardFusionArguments(
            forward: saved.rowNormFusion, bias: saved.bias, gradResidualSum: gradResidualSum,
            residualSum: forward.residualSum),
        strategy: nil, fuseParameters: nil, tuning: nil, call: OpCall(waitList: waitList, backward: destinations))
}

/// The backward pass from an explicit saved `rstd`, for callers that keep the forward's
/// input and statistics themselves (tensors over their own buffers, the C API).
///
/// The math and the gradients are those of
/// ``rmsNormBackward(_:forward:gradResidualSum:outputMask:into:waitingFor:)``; a requested dγ is computed
/// also when `weight` is nil (the gradient at γ = 1).
///
/// - Parameters:
///   - gradOutput: dy, with the input's shape, layout, element type and backend.
///   - input: the forward's input x.
///   - normalizedShape: the forward's trailing dims.
///   - weight: γ (float32, `normalizedShape`), or nil for γ = 1.
///   - saveInvRms: the forward's `rstd` (float32, shape = the input's leading dims).
///   - outputMask: which gradients to compute (`.bias` is ignored: RMSNorm has no β).
///   - destinations: tensors to write dx and dγ into (OpenCL; see ``BackwardDestinations``).
///   - waitList: events the first kernel waits for; the op returns without waiting.
/// - Returns: dx and dγ, and the kernel events.
/// - Throws: ``NormError`` for arguments that do not match the input; ``OpenCLError`` or
///   ``KernelBuildError`` when the device fails.
public func rmsNormBackward(
    _ gradOutput: Tensor, input: Tensor, normalizedShape: [Int], weight: Tensor?, saveInvRms: Tensor,
    outputMask: NormGradientMask = .all,
    into destinations: BackwardDestinations = BackwardDestinations(), waitingFor waitList: [OpenCLEvent] = []
) throws -> NormGradients {
    try rmsNormBackward(
        gradOutput, input: input, normalizedShape: normalizedShape, weight: weight, saveInvRms: saveInvRms,
        outputMask: outputMask, strategy: nil, fuseParameters: nil, tuning: nil,
        call: OpCall(waitList: waitList, backward: destinations))
}

/// The backward pass with the saved `rstd` taken from the forward's output (tests pass the rest).
func rmsNormBackward(
    _ gradOutput: Tensor, input: Tensor, normalizedShape: [Int], weight: Tensor?, forward: RMSNormOutput,
    outputMask: NormGradientMask = .all
) throws -> NormGradients {
    try rmsNormBackward(
        gradOutput, input: input, normalizedShape: normalizedShape, weight: weight, saveInvRms: forward.saveInvRms,
        outputMask: outputMask)
}

/// The one implementation behind the public entry points; `strategy` forces a plan
/// strategy on OpenCL, `fuseParameters` forces the dγ reduction into (or out of) the
/// dx kernel, and `tuning` replaces the device's (tests use them to cover every kernel).
func rmsNormBackward(
    _ gradOutput: Tensor, input: Tensor, normalizedShape: [Int], weight: Tensor?, saveInvRms: Tensor,
    outputMask: NormGradientMask, fusing fused: RowNormBackwardFusionArguments = RowNormBackwardFusionArguments(),
    strategy: RowNormPlan.Strategy?, fuseParameters: Bool?, tuning: DeviceTuning?, call: OpCall = OpCall()
) throws -> NormGradients {
    try rowNormBackward(
        .rmsNorm, gradOutput, input: input, normalizedShape: normalizedShape, weight: weight, saveMean: nil,
        saveScale: saveInvRms, outputMask: outputMask, fusing: fused, strategy: strategy,
        fuseParameters: fuseParameters, tuning: tuning, call: call)
}
