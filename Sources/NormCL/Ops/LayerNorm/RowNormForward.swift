/// LayerNorm's and RMSNorm's forward behind their entry points: validation, the empty
/// input, the reference path and the OpenCL plan. The saved mean is LayerNorm's (nil for
/// RMSNorm), the saved scale LayerNorm's invstd or RMSNorm's 1/rms; `strategy` and
/// `tuning` force the OpenCL plan's choices (tests use them to cover every kernel).
func rowNormForward(
    _ kind: RowNormProblem.Kind, _ input: Tensor, normalizedShape: [Int], weight: Tensor?, bias: Tensor?, eps: Float,
    strategy: RowNormPlan.Strategy?, tuning: DeviceTuning?, call: OpCall = OpCall()
) throws -> RowNormKernels.Outputs {
    let problem = try RowNormProblem.validated(
        kind, input: input, normalizedShape: normalizedShape, weight: weight, bias: bias, eps: eps)
    let statisticsShape = problem.statisticsShape
    if input.isEmpty {
        // As PyTorch: an empty output, the statistics of no values (mean 0, invstd or
        // 1/rms NaN) for each row (none when rows = 0), no kernel launch.
        return RowNormKernels.Outputs(
            output: try Tensor(zerosLike: input),
            saveMean: kind == .layerNorm ? try Tensor(repeating: 0, shape: statisticsShape, on: input.backend) : nil,
            saveScale: try Tensor(repeating: .nan, shape: statisticsShape, on: input.backend), events: [])
    }
    switch input.backend {
    case .reference:
        let (rows, rowLength, x, gamma) = (problem.rows, problem.rowLength, try input.toArray(), try weight?.toArray())
        let result: (output: [Float], mean: [Float]?, scale: [Float])
        switch kind {
        case .layerNorm:
            let r = ReferenceLayerNorm.forward(
                rows: rows, rowLength: rowLength, x: x, weight: gamma, bias: try bias?.toArray(), eps: Double(eps))
            result = (r.output, r.saveMean, r.saveInvstd)
        case .rmsNorm:
            let r = ReferenceRMSNorm.forward(rows: rows, rowLength: rowLength, x: x, weight: gamma, eps: Double(eps))
            result = (r.output, nil, r.saveInvRms)
        }
        return RowNormKernels.Outputs(
            output: Tensor(
                referenceValues: result.output, shape: problem.shape, layout: problem.layout,
                elementType: problem.elementType),
            saveMean: result.mean.map { Tensor(referenceValues: $0, shape: statisticsShape) },
            saveScale: Tensor(referenceValues: result.scale, shape: statisticsShape), events: [])
    case .openCL(let runtime):
        let plan = RowNormPlan(problem: problem, device: runtime.device, tuning: tuning ?? runtime.tuning, strategy: strategy)
        return try RowNormKernels.run(
            problem, plan: plan, x: input.openCLBuffer, weight: weight?.deviceBuffer, bias: bias?.deviceBuffer, eps: eps,
            call: call.reading(input, weight, bias), on: runtime)
    }
}
