/// Enqueues the kernels of a ``GroupNormPlan`` (from `Kernels/group_norm.cl`), for
/// GroupNorm and InstanceNorm alike.
///
/// Nothing here waits: the outputs are device tensors whose contents are ready once
/// the returned events complete, which a later read does implicitly.
enum GroupNormKernels {
    /// x, γ, β, eps, and InstanceNorm's running statistics: read in inference, updated in
    /// training when the problem saves variances.
    typealias Inputs = ChannelInputs
    /// `(N, G)` saved statistics (nil for running-statistics inference); running
    /// statistics updated by InstanceNorm training with tracking.
    typealias Outputs = ChannelOutputs

    /// Per-(n, c) `pilot`, `offset`, `scale` and `shift` of the apply step, written by
    /// the kernel before it.
    private struct Coefficients {
        let pilot: DeviceBuffer, offset: DeviceBuffer, scale: DeviceBuffer, shift: DeviceBuffer

        init(planes: Int, on runtime: OpenCLRuntime) throws {
            pilot = try DeviceBuffer(byteCount: planes * 4, on: runtime)
            offset = try DeviceBuffer(byteCount: planes * 4, on: runtime)
            scale = try DeviceBuffer(byteCount: planes * 4, on: runtime)
            shift = try DeviceBuffer(byteCount: planes * 4, on: runtime)
        }
    }

    /// - Parameter running: InstanceNorm's running statistics (the tensors behind
    ///   `inputs.runningMean` and `inputs.runningVar`), which the updated ones may overwrite
    ///   in place when they are the call's destinations.
    static func run(
        _ problem: GroupNormProblem, plan: GroupNormPlan, inputs: Inputs, running: RunningStatistics?, call: OpCall,
        on runtime: OpenCLRuntime
    ) throws -> Outputs {
        let program = try runtime.program(.groupNorm, options: plan.specialization(for: problem))
        let geometry = plan.geometry
        let output = try call.forward(
            \.output, "output", shape: problem.shape, layout: problem.layout, elementType: problem.elementType, on: runtime)
        let planes = problem.planes
        let channels = try KernelArgument.count(problem.channels)
        let groups = try KernelArgument.count(problem.groups)
        let cpg = try KernelArgument.count(problem.channelsPerGroup)
        let spatial = try KernelArgument.count(problem.spatial)
        let spatialVectors = try KernelArgument.count(problem.spatial / geometry.vectorWidth)
        if plan.strategy == .runningStatistics {
            var launches = KernelLaunches(program, on: runtime, waitingFor: call.waitList)
            let coefficients = try Coefficients(planes: planes, on: runtime)
            let launch = geometry.launch.perSegmentLaunch(segments: planes)
            try launches.enqueue(
                "in_running_coefficients", launch,
                [
                    "running_mean": .buffer(inputs.runningMean), "running_var": .buffer(inputs.runningVar),
                    "weight": .buffer(inputs.weight), "bias": .buffer(inputs.bias), "planes": try .count(planes),
                    "channels": channels, "eps": .float(inputs.eps), "coef_pilot": .buffer(coefficients.pilot),
                    "coef_offset": .buffer(coefficients.offset), "coef_scale": .buffer(coefficients.scale),
                    "coef_shift": .buffer(coefficients.shift),
                ])
            try enqueueApply(
                problem, plan: plan, x: inputs.x, output: output, coefficients: coefficients, launches: &launches)
            return Outputs(output: output, events: launches.events)
        }

        let rowShape = [problem.batch, problem.groups]
        let saveMean = try call.forward(\.saveMean, "saveMean", shape: rowShape, on: runtime)
        let saveInvstd = try call.forward(\.saveInvstd, "saveInvstd", shape: rowShape, on: runtime)
        let savesVariance = problem.statistics == .input(savesVariance: true)
        let saveVar = savesVariance ? try DeviceBuffer(byteCount: problem.rows * 4, on: runtime) : nil
        // InstanceNorm training with running statistics (in_update_running reads each
        // channel's old value first).
        let updatedRunning = try call.runningStatistics(
            running, updated: savesVariance && inputs.runningMean != nil && inputs.runningVar != nil,
            channels: problem.channels, on: runtime)
        var launches = KernelLaunches(program, on: runtime, waitingFor: call.waitList)
        switch plan.strategy {
        case .fusedRows:
            let wg = geometry.reductionWorkGroupSize
            try launches.enqueue(
                "gn_fused_rows", ([problem.rows * wg], [wg]),
                [
                    "x": .buffer(inputs.x), "y": .buffer(output.deviceBuffer), "weight": .buffer(inputs.weight),
                    "bias": .buffer(inputs.bias), "save_mean": .buffer(saveMean.deviceBuffer),
                    "save_invstd": .buffer(saveInvstd.deviceBuffer), "save_var": .buffer(saveVar),
                    "eps": .float(inputs.eps), "groups": groups, "cpg": cpg, "spatial_vecs": spatialVectors,
                ])
        case .splitRows(let slices), .columns(let slices):
            // Partial moments per (row, part), merged per row, then the apply pass.
            let isColumns = plan.strategy == .columns(spatialSlices: slices)
            let parts = isColumns ? problem.channelsPerGroup * slices : slices
            let partials = try DeviceBuffer(byteCount: problem.rows * parts * 3 * 4, on: runtime)
            let pilots = try DeviceBuffer(byteCount: problem.rows * 4, on: runtime)
            let coefficients = try Coefficients(planes: planes, on: runtime)
            if isColumns {
                let launch = geometry.columnLaunch(batch: problem.batch, slices: slices)
                try launches.enqueue(
                    "gn_column_partials", launch,
                    [
                        "x": .buffer(inputs.x), "partials": .buffer(partials), "pilots": .buffer(pilots),
                        "channels": channels, "spatial": spatial, "cpg": cpg,
                    ])
            } else {
                let wg = geometry.reductionWorkGroupSize
                try launches.enqueue(
                    "gn_row_partials", ([slices * wg, problem.rows], [wg, 1]),
                    [
                        "x": .buffer(inputs.x), "partials": .buffer(partials), "pilots": .buffer(pilots),
                        "cpg": cpg, "spatial_vecs": spatialVectors,
                    ])
            }
            let launch = geometry.launch.perSegmentLaunch(segments: problem.rows)
            try launches.enqueue(
                "gn_finish_rows", launch,
                [
                    "pilots": .buffer(pilots), "partials": .buffer(partials), "rows": try .count(problem.rows),
                    "parts": try .count(parts), "count": .float(Float(problem.valuesPerRow)),
                    "eps": .float(inputs.eps), "weight": .buffer(inputs.weight), "bias": .buffer(inputs.bias),
                    "save_mean": .buffer(saveMean.deviceBuffer), "save_invstd": .buffer(saveInvstd.deviceBuffer),
                    "save_var": .buffer(saveVar), "coef_pilot": .buffer(coefficients.pilot),
                    "coef_offset": .buffer(coefficients.offset), "coef_scale": .buffer(coefficients.scale),
                    "coef_shift": .buffer(coefficients.shift), "groups": groups, "cpg": cpg,
                ])
            try enqueueApply(
                problem, plan: plan, x: inputs.x, output: output, coefficients: coefficients, launches: &launches)
        case .runningStatistics:
            preconditionFailure("running-statistics plans return above")
        }

        if let (runningMean, runningVar) = updatedRunning {
            let launch = geometry.launch.perSegmentLaunch(segments: problem.channels)
            try launches.enqueue(
                "in_update_running", launch,
                [
                    "save_mean": .buffer(saveMean.deviceBuffer), "save_var": .buffer(saveVar),
                    "batch": try .count(problem.batch), "channels": channels, "spatial": spatial,
                    "running_mean_in": .buffer(inputs.runningMean), "running_var_in": .buffer(inputs.runningVar),
                    "running_mean_out": .buffer(runningMean.deviceBuffer),
                    "running_var_out": .buffer(runningVar.deviceBuffer), "momentum": .float(inputs.momentum),
                ])
        }
        return Outputs(
            output: output, saveMean: saveMean, saveInvstd: saveInvstd, runningMean: updatedRunning?.mean,
            runningVar: updatedRunning?.variance, events: launches.events)
    }

    /// `y = ((x − pilot_k) − offset_k)·scale_k + shift_k`, `k = n·C + c`, over every
    /// element: per plane for contiguous rows, row by row with channel vectors for
    /// channels-last memory.
    private static func enqueueApply(
        _ problem: GroupNormProblem, plan: GroupNormPlan, x: DeviceBuffer, output: Tensor, coefficients: Coefficients,
        launches: inout KernelLaunches
    ) throws {
        let geometry = plan.geometry
        let (global, local) = (geometry.elementwiseGlobal, geometry.elementwiseLocal)
        if problem.hasContiguousRows {
            try launches.enqueue(
                "gn_apply_planes", (global, local),
                [
                    "x": .buffer(x), "y": .buffer(output.deviceBuffer),
                    "planes": try .count(problem.planes),
                    "spatial_vecs": try .count(problem.spatial / geometry.vectorWidth),
                    "pilot": .buffer(coefficients.pilot), "offset": .buffer(coefficients.offset),
                    "scale": .buffer(coefficients.scale), "shift": .buffer(coefficients.shift),
                ])
            return
        }
        try launches.enqueue(
            "gn_apply_columns", (global, local),
            [
                "x": .buffer(x), "y": .buffer(output.deviceBuffer), "rows": try .count(problem.batch * problem.spatial),
                "spatial": try .count(problem.spatial), "channels": try .count(problem.channels),
                "pilot": .buffer(coefficients.pilot), "offset": .buffer(coefficients.offset),
                "scale": .buffer(coefficients.scale), "shift": .buffer(coefficients.shift),
            ])
    }
}
