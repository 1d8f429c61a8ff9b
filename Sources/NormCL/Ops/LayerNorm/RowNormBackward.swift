/// LayerNorm's and RMSNorm's backward behind their entry points: validation, the empty
/// input, the reference path and the OpenCL plan. `saveMean` is LayerNorm's (nil for
/// RMSNorm), `saveScale` the saved invstd or rstd; `strategy`, `fuseParameters` and
/// `tuning` force the OpenCL plan's choices (tests use them to cover every kernel).
func rowNormBackward(
    _ kind: RowNormProblem.Kind, _ gradOutput: Tensor, input: Tensor, normalizedShape: [Int], weight: Tensor?,
    saveMean: Tensor?, saveScale: Tensor, outputMask: NormGradientMask, strategy: RowNormPlan.Strategy?,
    fuseParameters: Bool?, tuning: DeviceTuning?, call: OpCall = OpCall()
) throws -> NormGradients {
    let problem = try RowNormBackwardProblem.validated(
        kind, gradOutput: gradOutput, input: input, normalizedShape: normalizedShape, weight: weight,
        saveMean: saveMean, saveScale: saveScale, outputMask: outputMask)
    let forward = problem.forward
    if input.isEmpty {
        return try NormGradients.empty(
            like: input, parameterShape: normalizedShape, mask: outputMask, hasBias: kind == .layerNorm)
    }
    switch input.backend {
    case .reference:
        let (rows, rowLength) = (problem.rows, problem.rowLength)
        let (x, dy, gamma) = (try input.toArray(), try gradOutput.toArray(), try weight?.toArray())
        let result: (input: [Float], weight: [Float], bias: [Float]?)
        if let saveMean {
            let r = ReferenceLayerNorm.backward(
                rows: rows, rowLength: rowLength, x: x, gradOutput: dy, weight: gamma, mean: try saveMean.toArray(),
                invstd: try saveScale.toArray())
            result = (r.input, r.weight, r.bias)
        } else {
            let r = ReferenceRMSNorm.backward(
                rows: rows, rowLength: rowLength, x: x, gradOutput: dy, weight: gamma, invRms: try saveScale.toArray())
            result = (r.input, r.weight, nil)
        }
        return NormGradients(
            input: problem.needsInput
                ? Tensor(
                    referenceValues: result.input, shape: forward.shape, layout: forward.layout,
                    elementType: forward.elementType) : nil,
            weight: problem.needsWeight ? Tensor(referenceValues: result.weight, shape: normalizedShape) : nil,
            bias: problem.needsBias ? result.bias.map { Tensor(referenceValues: $0, shape: normalizedShape) } : nil,
            events: [])
    case .openCL(let runtime):
        let x = input.openCLBuffer, dy = gradOutput.openCLBuffer, scale = saveScale.openCLBuffer
        let plan = RowNormBackwardPlan(
            problem: problem, device: runtime.device, tuning: tuning ?? runtime.tuning, strategy: strategy,
            fuseParameters: fuseParameters)
        return try RowNormBackwardKernels.run(
            problem, plan: plan, gradOutput: dy, x: x, weight: weight?.deviceBuffer,
            statistics: .init(mean: saveMean?.deviceBuffer, scale: scale),
            call: call.reading(gradOutput, input, weight, saveMean, saveScale), on: runtime)
    }
}
