/// Enqueues the kernels of a ``RowNormPlan`` (from `Kernels/layer_norm.cl`) for
/// LayerNorm and RMSNorm.
///
/// Nothing here waits: the outputs are device tensors whose contents are ready once
/// the returned events complete, which a later read does implicitly.
enum RowNormKernels {
    struct Outputs {
        var output: Tensor
        /// LayerNorm only: the mean per row.
        var saveMean: Tensor?
        /// `1 / sqrt(var + eps)` (LayerNorm) or `1 / sqrt(mean(x²) + eps)` (RMSNorm) per row.
        var saveScale: Tensor
        var events: [KernelEvent]
        /// With a residual, when asked for: h = (x + inputBias) + residual, in the residual's element type.
        var residualSum: Tensor? = nil
    }

    /// Enqueues the forward; `residual` (and `inputBias`) are given when the problem fuses
    /// them, and the sum h is written when `returnsResidualSum`.
    static func run(
        _ problem: RowNormProblem, plan: RowNormPlan, x: DeviceBuffer, residual: DeviceBuffer? = nil,
        inputBias: DeviceBuffer? = nil, returnsResidualSum: Bool = false, weight: DeviceBuffer?, bias: DeviceBuffer?, eps: Float, call: OpCall,
        on runtime: OpenCLRuntime
    ) throws -> Outputs {
        let program = try runtime.program(.layerNorm, options: plan.buildOptions(for: problem))
        let output = try call.forward(
            \.output, "output", shape: problem.shape, layout: problem.layout, elementType: problem.elementType, on: runtime)
        let statisticsShape = problem.statisticsShape
        let saveMean =
            problem.kind == .layerNorm ? try call.forward(\.saveMean, "saveMean", shape: statisticsShape, on: runtime) : nil
        let saveScale = try call.forward(\.saveInvstd, "saveInvstd", shape: statisticsShape, on: runtime)
        let residualSum =
            returnsResidualSum
            ? try problem.fusion.residualType.map {
                try call.forward(
                    \.residualSum, "residualSum", shape: problem.shape, layout: problem.layout, elementType: $0,
                    on: runtime)
            } : nil
        let sum = residualSum?.deviceBuffer
        let weightOffset = KernelArgument.float(problem.fusion.weightOffset)
        let rows = try KernelArgument.count(problem.rows)
        let rowLength = try KernelArgument.count(problem.rowLength)
        let y = output.deviceBuffer
        var launches = KernelLaunches(program, on: runtime, waitingFor: call.waitList)
        switch plan.strategy {
        case .fused(let items, let rowsPerGroup):
            let groups = problem.rows.ceilingDivided(by: rowsPerGroup)
            let local = items * rowsPerGroup
            try launches.enqueue(
                "rownorm_fused", ([groups * local], [local]),
                [
                    "x": .buffer(x), "residual": .buffer(residual), "input_bias": .buffer(inputBias), "sum": .buffer(sum), "y": .buffer(y), "rows": rows,
                    "row_length": rowLength, "weight": .buffer(weight), "weight_offset": weightOffset,
                    "bias": .buffer(bias), "save_mean": .buffer(saveMean?.deviceBuffer),
                    "save_scale": .buffer(saveScale.deviceBuffer), "eps": .float(eps),
                ])
        case .splitRows(let slices, let items):
            // Partial statistics per (row, slice) (at most three floats each), merged per
            // row, then the apply pass.
            let partials = try DeviceBuffer(byteCount: problem.rows * slices * 3 * 4, on: runtime)
            let pilots = try DeviceBuffer(byteCount: problem.rows * 4, on: runtime)
            let offsets = try DeviceBuffer(byteCount: problem.rows * 4, on: runtime)
            try launches.enqueue(
                "rownorm_partials", ([slices * items, problem.rows], [items, 1]),
                [
                    "x": .buffer(x), "residual": .buffer(residual), "input_bias": .buffer(inputBias), "row_length": rowLength, "partials": .buffer(partials),
                    "pilots": .buffer(pilots),
                ])
            let perRow = plan.geometry.perSegmentLaunch(segments: problem.rows)
            try launches.enqueue(
                "rownorm_finish", perRow,
                [
                    "partials": .buffer(partials), "groups": try .count(slices), "rows": rows,
                    "row_length": rowLength, "pilots": .buffer(pilots), "offsets": .buffer(offsets),
                    "save_mean": .buffer(saveMean?.deviceBuffer), "save_scale": .buffer(saveScale.deviceBuffer),
                    "eps": .float(eps),
                ])
            let elementwise = plan.elementwiseLaunch(for: problem)
            try launches.enqueue(
                "rownorm_apply", elementwise,
                [
                    "x": .buffer(x), "residual": .buffer(residual), "input_bias": .buffer(inputBias), "sum": .buffer(sum), "y": .buffer(y), "rows": rows,
                    "row_length": rowLength, "weight": .buffer(weight), "weight_offset": weightOffset,
                    "bias": .buffer(bias), "pilots": .buffer(pilots),
                    "offsets": .buffer(offsets), "scales": .buffer(saveScale.deviceBuffer),
                ])
        }
        return Outputs(
            output: output, saveMean: saveMean, saveScale: saveScale, events: launches.events, residualSum: residualSum)
    }
}
