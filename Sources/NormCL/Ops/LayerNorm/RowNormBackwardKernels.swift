/// Enqueues the kernels of a ``RowNormBackwardPlan`` (from
/// `Kernels/layer_norm_backward.cl`) for LayerNorm and RMSNorm backward.
///
/// Nothing here waits: the gradients are device tensors whose contents are ready once
/// the returned events complete, which a later read does implicitly.
enum RowNormBackwardKernels {
    /// The saved statistics' device buffers: LayerNorm's mean (nil for RMSNorm) and
    /// `invstd` or `rstd`.
    struct Statistics {
        var mean: DeviceBuffer?
        var scale: DeviceBuffer
    }

    /// Enqueues the backward. With a fused residual, `residual` (and `inputBias`) are
    /// added to `x` on every load and `gradResidualSum` (when given) to dx; `bias` is read
    /// for an activation's input.
    static func run(
        _ problem: RowNormBackwardProblem, plan: RowNormBackwardPlan, gradOutput: DeviceBuffer, x: DeviceBuffer,
        residual: DeviceBuffer? = nil, inputBias: DeviceBuffer? = nil, gradResidualSum: DeviceBuffer? = nil, weight: DeviceBuffer?,
        bias: DeviceBuffer? = nil, statistics: Statistics, call: OpCall, on runtime: OpenCLRuntime
    ) throws -> NormGradients {
        let forward = problem.forward
        guard problem.formsInput || problem.needsParameters else {
            return NormGradients(input: nil, weight: nil, bias: nil, events: [])
        }
        let program = try runtime.program(.layerNormBackward, options: plan.buildOptions(for: problem))
        let (dx, dWeight, dBias) = try call.gradients(
            problem.mask, shape: forward.shape, layout: forward.layout, elementType: forward.elementType,
            parameterShape: forward.normalizedShape, on: runtime)
        let dInputBias =
            problem.needsInputBias
            ? try call.backward(\.gradInputBias, "gradInputBias", shape: forward.normalizedShape, on: runtime) : nil
        // dx where it is formed: the caller's, or scratch when only its column sums are wanted.
        let dxBuffer =
            try dx?.deviceBuffer
            ?? (problem.formsInput ? DeviceBuffer(byteCount: forward.count * forward.elementType.byteCount, on: runtime) : nil)
        let blocks = plan.partialBlocks(problem)
        // dγ's partials, dβ's, then the input bias's: [2 or 3][blocks][D] floats.
        let partials =
            problem.needsParameters
            ? try DeviceBuffer(byteCount: problem.partialArrays * blocks * problem.rowLength * 4, on: runtime) : nil
        let rows = try KernelArgument.count(problem.rows)
        let rowLength = try KernelArgument.count(problem.rowLength)
        let columnBlocks = try KernelArgument.count(plan.rowBlocks)
        let (mean, scale) = (statistics.mean, statistics.scale)
        // Whose column partials the kernels form (the kernels' PARTIALS_DGAMMA, PARTIALS_DBETA).
        let parameters = KernelArgument.uint(problem.partialSets)
        let weightOffset = KernelArgument.float(forward.fusion.weightOffset)
        let activationBias = forward.fusion.activation == .none ? nil : bias
        var launches = KernelLaunches(program, on: runtime, waitingFor: call.waitList)

        /// The column walk: dx from `coefficients` (when given; the fused strategy writes
        /// dx itself) and block partials.
        func enqueueColumns(coefficients: DeviceBuffer?) throws {
            let columnDX = coefficients == nil ? nil : dxBuffer
            let local = plan.geometry.elementwiseWorkGroupSize
            try launches.enqueue(
                "rownorm_backward_columns", ([plan.columnItems, plan.rowBlocks], [local, 1]),
                [
                    "x": .buffer(x), "residual": .buffer(residual), "input_bias": .buffer(inputBias), "dy": .buffer(gradOutput),
                    "dx": .buffer(columnDX), "grad_sum": .buffer(gradResidualSum), "rows": rows,
                    "row_length": rowLength, "rows_per_block": try .count(plan.rowsPerBlock),
                    "blocks": columnBlocks, "weight": .buffer(weight), "weight_offset": weightOffset,
                    "bias": .buffer(activationBias), "save_mean": .buffer(mean),
                    "save_scale": .buffer(scale), "coefficients_in": .buffer(coefficients),
                    "partials": .buffer(partials), "parameters": parameters,
                ])
        }

        switch plan.strategy {
        case .fused(let items, let rowsPerGroup):
            if problem.formsInput || plan.fusedAccumulates(problem) {
                let groups = plan.lanes.ceilingDivided(by: rowsPerGroup)
                let local = items * rowsPerGroup
                try launches.enqueue(
                    "rownorm_backward_fused", ([groups * local], [local]),
                    [
                        "x": .buffer(x), "residual": .buffer(residual), "input_bias": .buffer(inputBias), "dy": .buffer(gradOutput),
                        "dx": .buffer(dxBuffer), "grad_sum": .buffer(gradResidualSum), "rows": rows,
                        "row_length": rowLength, "rows_per_lane": try .count(plan.rowsPerLane),
                        "lanes": try .count(plan.lanes), "weight": .buffer(weight), "weight_offset": weightOffset,
                        "bias": .buffer(activationBias), "save_mean": .buffer(mean),
                        "save_scale": .buffer(scale),
                        "partials": .buffer(plan.fusedAccumulates(problem) ? partials : nil),
                        "parameters": parameters,
                    ])
            }
            if problem.needsParameters && !plan.fusedAccumulates(problem) {
                try enqueueColumns(coefficients: nil)
            }
        case .splitRows(let slices, let items):
            var coefficients: DeviceBuffer? = nil
            if problem.formsInput {
                let sums = try DeviceBuffer(byteCount: problem.rows * slices * 2 * 4, on: runtime)
                let rowCoefficients = try DeviceBuffer(byteCount: problem.rows * 2 * 4, on: runtime)
                try launches.enqueue(
                    "rownorm_backward_slice_sums", ([slices * items, problem.rows], [items, 1]),
                    [
                        "x": .buffer(x), "residual": .buffer(residual), "input_bias": .buffer(inputBias), "dy": .buffer(gradOutput),
                        "row_length": rowLength, "weight": .buffer(weight), "weight_offset": weightOffset,
                        "bias": .buffer(activationBias), "save_mean": .buffer(mean), "save_scale": .buffer(scale),
                        "sums": .buffer(sums),
                    ])
                let perRow = plan.geometry.perSegmentLaunch(segments: problem.rows)
                try launches.enqueue(
                    "rownorm_backward_row_finish", perRow,
                    [
                        "sums": .buffer(sums), "slices": try .count(slices), "rows": rows, "row_length": rowLength,
                        "coefficients_out": .buffer(rowCoefficients),
                    ])
                coefficients = rowCoefficients
            }
            try enqueueColumns(coefficients: coefficients)
        }

        if problem.needsParameters {
            let vectors = problem.rowLength / plan.vectorWidth
            let columns = plan.finalColumns, lanes = plan.finalLanes
            try launches.enqueue(
                "rownorm_backward_parameters", ([vectors.roundedUp(toMultipleOf: columns), lanes], [columns, lanes]),
                [
                    "partials": .buffer(partials), "blocks": try .count(blocks), "row_length": rowLength,
                    "dgamma": .buffer(dWeight?.deviceBuffer), "dbeta": .buffer(dBias?.deviceBuffer),
                    "dinput_bias": .buffer(dInputBias?.deviceBuffer),
                ])
        }
        var gradients = NormGradients(input: dx, weight: dWeight, bias: dBias, events: launches.events)
        gradients.inputBias = dInputBias
        return gradients
    }
}
