/// The fused parts of one LayerNorm or RMSNorm backward call: what the forward fused
/// (``RowNormFusionArguments``, whose `returnsResidualSum` plays no part), β (the
/// activation's input needs it; RMSNorm's dβ exists only with one) and the gradient
/// flowing into the sum h from elsewhere.
struct RowNormBackwardFusionArguments {
    var forward = RowNormFusionArguments()
    /// β as in the forward, or nil.
    var bias: Tensor? = nil
    /// dL/dh from the rest of the network (the next block's residual stream), added to dx.
    var gradResidualSum: Tensor? = nil
    /// The sum h = x + residual the forward stored, when it returned it: read as the
    /// backward's input instead of x and the residual (one tensor read instead of two)
    /// when it has x's element type.
    var residualSum: Tensor? = nil
}

/// LayerNorm's and RMSNorm's backward behind their entry points: validation, the empty
/// input, the reference path and the OpenCL plan. `saveMean` is LayerNorm's (nil for
/// RMSNorm), `saveScale` the saved invstd or rstd; `strategy`, `fuseParameters` and
/// `tuning` force the OpenCL plan's choices (tests use them to cover every kernel).
func rowNormBackward(
    _ kind: RowNormProblem.Kind, _ gradOutput: Tensor, input: Tensor, normalizedShape: [Int], weight: Tensor?,
    saveMean: Tensor?, saveScale: Tensor, outputMask: NormGradientMask,
    fusing fused: RowNormBackwardFusionArguments = RowNormBackwardFusionArguments(), strategy: RowNormPlan.Strategy?,
    fuseParameters: Bool?, tuning: DeviceTuning?, call: OpCall = OpCall()
) throws -> NormGradients {
    // With the stored h (of x's type, so that dy, dx and h share one storage type), read
    // h instead of x and the residual: the same values, one tensor read instead of two.
    var (input, fused) = (input, fused)
    if fused.forward.residual != nil, let sum = fused.residualSum, sum.elementType == input.elementType {
        try NormError.checkCompanion(input, "input", matches: sum)
        input = sum
        fused.forward.residual = nil
    }
    let inputIsSum = fused.residualSum != nil && fused.forward.residual == nil
    let residual = fused.forward.residual
    let problem = try RowNormBackwardProblem.validated(
        kind, gradOutput: gradOutput, input: input, normalizedShape: normalizedShape, weight: weight,
        saveMean: saveMean, saveScale: saveScale, outputMask: outputMask, bias: fused.bias, residual: residual,
        inputBias: fused.forward.inputBias, weightOffset: fused.forward.weightOffset,
        activation: fused.forward.activation, gradResidualSum: fused.gradResidualSum, inputIsSum: inputIsSum)
    let forward = problem.forward
    if input.isEmpty {
        return try NormGradients.empty(
            like: input, parameterShape: normalizedShape, mask: problem.mask, hasBias: problem.needsBias)
    }
    switch input.backend {
    case .reference:
        let result = try referenceRowNormBackward(
            problem, gradOutput, input: input, weight: weight, saveMean: saveMean, saveScale: saveScale, fusing: fused)
        var gradients = NormGradients(
            input: problem.needsInput
                ? Tensor(
                    referenceValues: result.input, shape: forward.shape, layout: forward.layout,
                    elementType: forward.elementType) : nil,
            weight: problem.needsWeight ? Tensor(referenceValues: result.weight, shape: normalizedShape) : nil,
            bias: problem.needsBias ? Tensor(referenceValues: result.bias, shape: normalizedShape) : nil,
            events: [])
        if problem.needsInputBias {
            gradients.inputBias = Tensor(referenceValues: result.inputBias, shape: normalizedShape)
        }
        return gradients
    case .openCL(let runtime):
        let x = input.openCLBuffer, dy = gradOutput.openCLBuffer, scale = saveScale.openCLBuffer
        let plan = RowNormBackwardPlan(
            problem: problem, device: runtime.device, tuning: tuning ?? runtime.tuning, strategy: strategy,
            fuseParameters: fuseParameters)
        return try RowNormBackwardKernels.run(
            problem, plan: plan, gradOutput: dy, x: x, residual: residual?.deviceBuffer,
            inputBias: inputIsSum ? nil : fused.forward.inputBias?.deviceBuffer,
            gradResidualSum: fused.gradResidualSum?.deviceBuffer, weight: weight?.deviceBuffer,
            bias: fused.bias?.deviceBuffer, statistics: .init(mean: saveMean?.deviceBuffer, scale: scale),
            call: call.reading(
                gradOutput, input, residual, fused.forward.inputBias, fused.gradResidualSum, weight, fused.bias, saveMean,
                saveScale),
            on: runtime)
    }
}

/// The reference backward: the unfused sequence in float64. h = (x + inputBias) + residual
/// as the forward stored it, the activation's gradient at a = x̂·(γ + offset) + β, the
/// plain norm's backward of that gradient, then dL/dh from elsewhere added to dx; the
/// input bias's gradient is Σ over rows of that dx (dL/dh).
private func referenceRowNormBackward(
    _ problem: RowNormBackwardProblem, _ gradOutput: Tensor, input: Tensor, weight: Tensor?, saveMean: Tensor?,
    saveScale: Tensor, fusing fused: RowNormBackwardFusionArguments
) throws -> (input: [Float], weight: [Float], bias: [Float], inputBias: [Float]) {
    let (rows, rowLength) = (problem.rows, problem.rowLength)
    var h = try input.toArray()
    if let residual = fused.forward.residual {
        h = ReferenceEpilogue.sum(
            h, try residual.toArray(), bias: try fused.forward.inputBias?.toArray(), as: residual.elementType)
    }
    let x = h.map(Double.init)
    let gamma = try weight?.toArray().map { Double($0 + fused.forward.weightOffset) }
    let beta = try fused.bias?.toArray().map(Double.init)
    let mean = try saveMean?.toArray().map(Double.init) ?? [Double](repeating: 0, count: rows)
    let scale = try saveScale.toArray().map(Double.init)
    var dy = try gradOutput.toArray().map(Double.init)
    if fused.forward.activation != .none {
        // a = x̂·γ + β, recomputed from the saved statistics as the kernels do.
        var a = [Double](repeating: 0, count: x.count)
        for r in 0..<rows {
            for j in 0..<rowLength {
                let i = r * rowLength + j
                a[i] = (x[i] - mean[r]) * scale[r] * (gamma?[j] ?? 1) + (beta?[j] ?? 0)
            }
        }
        dy = ReferenceEpilogue.gradient(dy, at: a, fused.forward.activation)
    }
    var result: (input: [Double], weight: [Double], bias: [Double])
    switch problem.kind {
    case .layerNorm:
        let r = ReferenceLayerNorm.backward(
            rows: rows, rowLength: rowLength, x: x, gradOutput: dy, weight: gamma, mean: mean, invstd: scale)
        result = (r.input, r.weight, r.bias)
    case .rmsNorm:
        let r = ReferenceRMSNorm.backward(rows: rows, rowLength: rowLength, x: x, gradOutput: dy, weight: gamma, invRms: scale)
        // dβ = Σ_rows of the gradient at the norm's output (RMSNorm with an offset β).
        var dBias = [Double](repeating: 0, count: rowLength)
        for r in 0..<rows { for j in 0..<rowLength { dBias[j] += dy[r * rowLength + j] } }
        result = (r.input, r.weight, dBias)
    }
    if let gradSum = try fused.gradResidualSum?.toArray() {
        for i in result.input.indices { result.input[i] += Double(gradSum[i]) }
    }
    var dInputBias = [Double](repeating: 0, count: rowLength)
    for r in 0..<rows { for j in 0..<rowLength { dInputBias[j] += result.input[r * rowLength + j] } }
    return (
        result.input.map(Float.init), result.weight.map(Float.init), result.bias.map(Float.init),
        dInputBias.map(Float.init)
    )
}
