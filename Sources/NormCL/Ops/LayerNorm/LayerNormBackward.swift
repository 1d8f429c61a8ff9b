/// The backward pass of ``layerNorm(_:normalizedShape:weight:bias:eps:)``, as PyTorch's
/// `native_layer_norm_backward(grad_out, input, normalized_shape, mean, rstd, weight,
/// bias, output_mask)`.
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
/// - Parameters:
///   - gradOutput: dy, with the input's shape, layout, element type and backend.
///   - input: the forward's input.
///   - normalizedShape: the forward's `normalizedShape`.
///   - weight: γ (float32 of shape `normalizedShape`), or nil for γ ≡ 1. Only its
///     value matters; β plays no part in any gradient.
///   - saveMean: the forward's ``LayerNormOutput/saveMean``.
///   - saveInvstd: the forward's ``LayerNormOutput/saveInvstd``.
///   - outputMask: which gradients to compute; the others come back nil and their
///     work is skipped. dγ and dβ are computed when asked for, with or without
///     `weight` (dβ is only meaningful for a layer with a bias).
/// - Returns: dx (the input's shape, layout and element type), dγ and dβ (float32 of
///   shape `normalizedShape`), and the kernel events.
/// - Throws: ``NormError`` for the forward's argument errors (input, normalizedShape,
///   weight), a `gradOutput` that does not match the input, saved statistics of
///   another shape (the input's leading dims), type or backend; ``OpenCLError`` or
///   ``KernelBuildError`` when the device fails.
public func layerNormBackward(
    _ gradOutput: Tensor, input: Tensor, normalizedShape: [Int], weight: Tensor?, saveMean: Tensor,
    saveInvstd: Tensor, outputMask: NormGradientMask = .all
) throws -> NormGradients {
    try layerNormBackward(
        gradOutput, input: input, normalizedShape: normalizedShape, weight: weight, saveMean: saveMean,
        saveInvstd: saveInvstd, outputMask: outputMask, strategy: nil, fuseParameters: nil, tuning: nil)
}

/// ``layerNormBackward(_:input:normalizedShape:weight:saveMean:saveInvstd:outputMask:)``
/// with the saved statistics taken from the forward's output.
public func layerNormBackward(
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
    outputMask: NormGradientMask, strategy: RowNormPlan.Strategy?, fuseParameters: Bool?, tuning: DeviceTuning?
) throws -> NormGradients {
    let problem = try RowNormBackwardProblem.validated(
        .layerNorm, gradOutput: gradOutput, input: input, normalizedShape: normalizedShape, weight: weight,
        saveMean: saveMean, saveScale: saveInvstd, outputMask: outputMask)
    let forward = problem.forward
    if input.isEmpty {
        return try NormGradients.empty(
            like: input, parameterShape: normalizedShape, mask: outputMask, hasBias: true)
    }
    switch input.backend {
    case .reference:
        let result = ReferenceLayerNorm.backward(
            rows: problem.rows, rowLength: problem.rowLength, x: try input.toArray(), gradOutput: try gradOutput.toArray(),
            weight: try weight?.toArray(), mean: try saveMean.toArray(), invstd: try saveInvstd.toArray())
        return NormGradients(
            input: problem.needsInput
                ? Tensor(
                    referenceValues: result.input, shape: forward.shape, layout: forward.layout,
                    elementType: forward.elementType) : nil,
            weight: problem.needsWeight ? Tensor(referenceValues: result.weight, shape: normalizedShape) : nil,
            bias: problem.needsBias ? Tensor(referenceValues: result.bias, shape: normalizedShape) : nil,
            events: [])
    case .openCL(let runtime):
        guard let x = input.deviceBuffer, let dy = gradOutput.deviceBuffer, let scale = saveInvstd.deviceBuffer else {
            preconditionFailure("an OpenCL tensor without a device buffer")
        }
        let plan = RowNormBackwardPlan(
            problem: problem, device: runtime.device, tuning: tuning ?? runtime.tuning, strategy: strategy,
            fuseParameters: fuseParameters)
        return try RowNormBackwardKernels.run(
            problem, plan: plan, gradOutput: dy, x: x, weight: weight?.deviceBuffer,
            statistics: .init(mean: saveMean.deviceBuffer, scale: scale), on: runtime)
    }
}
