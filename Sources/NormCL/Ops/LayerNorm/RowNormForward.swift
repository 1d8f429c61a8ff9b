/// The fused parts of one LayerNorm or RMSNorm call as the caller gave them (the
/// tensors and flags; ``RowNormFusion`` is what of them changes the kernels' code).
struct RowNormFusionArguments {
    /// Added to the input before the norm: h = x + residual.
    var residual: Tensor? = nil
    /// Added to the input with the residual: h = (x + inputBias) + residual.
    var inputBias: Tensor? = nil
    /// Whether h is returned (``LayerNormOutput/residualSum``).
    var returnsResidualSum = false
    /// Added to γ before it scales.
    var weightOffset: Float = 0
    /// Applied after the norm.
    var activation: Activation = .none
}

extension SavedForward {
    /// What a LayerNorm or RMSNorm forward keeps, its fused residual, γ offset and
    /// activation among it.
    init(_ fused: RowNormFusionArguments, input: Tensor, weight: Tensor?, bias: Tensor?, eps: Float) {
        self.init(input: input, weight: weight, bias: bias, eps: eps)
        activation = fused.activation
        residual = fused.residual
        inputBias = fused.inputBias
        weightOffset = fused.weightOffset
    }

    /// The fused arguments of the forward that saved this.
    var rowNormFusion: RowNormFusionArguments {
        RowNormFusionArguments(
            residual: residual, inputBias: inputBias, weightOffset: weightOffset, activation: activation)
    }
}

/// LayerNorm's and RMSNorm's forward behind their entry points: validation, the empty
/// input, the reference path and the OpenCL plan. The saved mean is LayerNorm's (nil for
/// RMSNorm), the saved scale LayerNorm's invstd or RMSNorm's 1/rms; `strategy` and
/// `tuning` force the OpenCL plan's choices (tests use them to cover every kernel).
func rowNormForward(
    _ kind: RowNormProblem.Kind, _ input: Tensor, normalizedShape: [Int], weight: Tensor?, bias: Tensor?, eps: Float,
    fusing fused: RowNormFusionArguments = RowNormFusionArguments(), strategy: RowNormPlan.Strategy?,
    tuning: DeviceTuning?, call: OpCall = OpCall()
) throws -> RowNormKernels.Outputs {
    let problem = try RowNormProblem.validated(
        kind, input: input, normalizedShape: normalizedShape, weight: weight, bias: bias, eps: eps,
        residual: fused.residual, inputBias: fused.inputBias, weightOffset: fused.weightOffset,
        activation: fused.activation)
    let statisticsShape = problem.statisticsShape
    if fused.returnsResidualSum && fused.residual == nil {
        throw NormError.invalidArgument(argument: "returnsResidualSum", reason: "there is no residual to add")
    }
    if input.isEmpty {
        // As PyTorch: an empty output, the statistics of no values (mean 0, invstd or
        // 1/rms NaN) for each row (none when rows = 0), no kernel launch.
        var outputs = RowNormKernels.Outputs(
            output: try Tensor(zerosLike: input),
            saveMean: kind == .layerNorm ? try Tensor(repeating: 0, shape: statisticsShape, on: input.backend) : nil,
            saveScale: try Tensor(repeating: .nan, shape: statisticsShape, on: input.backend), events: [])
        if fused.returnsResidualSum, let residual = fused.residual { outputs.residualSum = try Tensor(zerosLike: residual) }
        return outputs
    }
    switch input.backend {
    case .reference:
        return try referenceRowNormForward(problem, input, weight: weight, bias: bias, eps: eps, fusing: fused)
    case .openCL(let runtime):
        let plan = RowNormPlan(problem: problem, device: runtime.device, tuning: tuning ?? runtime.tuning, strategy: strategy)
        return try RowNormKernels.run(
            problem, plan: plan, x: input.openCLBuffer, residual: fused.residual?.deviceBuffer,
            inputBias: fused.inputBias?.deviceBuffer, returnsResidualSum: fused.returnsResidualSum,
            weight: weight?.deviceBuffer, bias: bias?.deviceBuffer, eps: eps,
            call: call.reading(input, fused.residual, fused.inputBias, weight, bias), on: runtime)
    }
}

/// The reference forward: the unfused sequence, h = (x + inputBias) + residual stored in the
/// residual's type, the plain norm of h with γ + offset, its output stored in the input's
/// type, then the activation.
private func referenceRowNormForward(
    _ problem: RowNormProblem, _ input: Tensor, weight: Tensor?, bias: Tensor?, eps: Float,
    fusing fused: RowNormFusionArguments
) throws -> RowNormKernels.Outputs {
    let (rows, rowLength, statisticsShape) = (problem.rows, problem.rowLength, problem.statisticsShape)
    var h = try input.toArray()
    if let residual = fused.residual {
        h = ReferenceEpilogue.sum(
            h, try residual.toArray(), bias: try fused.inputBias?.toArray(), as: residual.elementType)
    }
    let gamma = try weight?.toArray().map { $0 + fused.weightOffset }
    let beta = try bias?.toArray()
    let result: (output: [Float], mean: [Float]?, scale: [Float])
    switch problem.kind {
    case .layerNorm:
        let r = ReferenceLayerNorm.forward(rows: rows, rowLength: rowLength, x: h, weight: gamma, bias: beta, eps: Double(eps))
        result = (r.output, r.saveMean, r.saveInvstd)
    case .rmsNorm:
        let r = ReferenceRMSNorm.forward(rows: rows, rowLength: rowLength, x: h, weight: gamma, bias: beta, eps: Double(eps))
        result = (r.output, nil, r.saveInvRms)
    }
    var outputs = RowNormKernels.Outputs(
        output: Tensor(
            referenceValues: ReferenceEpilogue.activate(result.output, fused.activation, as: problem.elementType),
            shape: problem.shape, layout: problem.layout, elementType: problem.elementType),
        saveMean: result.mean.map { Tensor(referenceValues: $0, shape: statisticsShape) },
        saveScale: Tensor(referenceValues: result.scale, shape: statisticsShape), events: [])
    if fused.returnsResidualSum, let residual = fused.residual {
        outputs.residualSum = Tensor(
            referenceValues: h, shape: problem.shape, layout: problem.layout, elementType: residual.elementType)
    }
    return outputs
}
