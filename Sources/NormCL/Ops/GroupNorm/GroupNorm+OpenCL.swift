/// Enqueues the kernels of a ``GroupNormPlan`` (from `Kernels/group_norm.cl`), for
/// GroupNorm and InstanceNorm alike.
///
/// Nothing here waits: the outputs are device tensors whose contents are ready once
/// the returned events complete, which a later read does implicitly.
enum GroupNormKernels {
    struct Inputs {
        var x: DeviceBuffer
        var weight: DeviceBuffer?
        var bias: DeviceBuffer?
        /// InstanceNorm's running statistics: read in inference, updated in training
        /// when the problem saves variances.
        var runningMean: DeviceBuffer?
        var runningVar: DeviceBuffer?
        /// Effective weight of the new batch in the running update.
        var momentum: Float
        var eps: Float
    }

    struct Outputs {
        var output: Tensor
        /// `(N, G)` saved statistics (nil for running-statistics inference).
        var saveMean: Tensor?
        var saveInvstd: Tensor?
        /// Updated running statistics (InstanceNorm training with tracking).
        var runningMean: Tensor?
        var runningVar: Tensor?
        var events: [KernelEvent]
    }

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

        var arguments: [KernelArgument] { [.buffer(pilot), .buffer(offset), .buffer(scale), .buffer(shift)] }
    }

    static func run(_ problem: GroupNormProblem, plan: GroupNormPlan, inputs: Inputs, on runtime: OpenCLRuntime) throws -> Outputs {
        let program = try runtime.program(.groupNorm, options: plan.buildOptions(for: problem))
        let output = try Tensor(
            uninitializedShape: problem.shape, layout: problem.layout, elementType: problem.elementType, on: runtime)
        let planes = problem.batch * problem.channels
        if plan.strategy == .runningStatistics {
            let coefficients = try Coefficients(planes: planes, on: runtime)
            let local = plan.perRowWorkGroupSize
            let coefficientEvent = try runtime.enqueue(
                "in_running_coefficients", from: program, global: [planes.roundedUp(toMultipleOf: local)], local: [local],
                arguments: [
                    .buffer(inputs.runningMean), .buffer(inputs.runningVar), .buffer(inputs.weight), .buffer(inputs.bias),
                    try .count(planes), .float(inputs.eps),
                ] + coefficients.arguments)
            let applyEvent = try enqueueApply(
                problem, plan: plan, x: inputs.x, output: output, coefficients: coefficients, program: program, on: runtime)
            return Outputs(output: output, events: [coefficientEvent, applyEvent])
        }

        let rowShape = [problem.batch, problem.groups]
        let saveMean = try Tensor(uninitializedShape: rowShape, on: runtime)
        let saveInvstd = try Tensor(uninitializedShape: rowShape, on: runtime)
        let savesVariance = problem.statistics == .input(savesVariance: true)
        let saveVar = savesVariance ? try DeviceBuffer(byteCount: problem.rows * 4, on: runtime) : nil
        let statisticsArguments: [KernelArgument] = [
            .buffer(saveMean.deviceBuffer), .buffer(saveInvstd.deviceBuffer), .buffer(saveVar),
        ]
        var events: [KernelEvent] = []
        switch plan.strategy {
        case .fusedRows:
            let wg = plan.reductionWorkGroupSize
            events.append(
                try runtime.enqueue(
                    "gn_fused_rows", from: program, global: [problem.rows * wg], local: [wg],
                    arguments: [.buffer(inputs.x), .buffer(output.deviceBuffer), .buffer(inputs.weight), .buffer(inputs.bias)]
                        + statisticsArguments + [.float(inputs.eps)]))
        case .splitRows(let slices), .columns(let slices):
            // Partial moments per (row, part), merged per row, then the apply pass.
            let isColumns = plan.strategy == .columns(spatialSlices: slices)
            let parts = isColumns ? problem.channelsPerGroup * slices : slices
            let partials = try DeviceBuffer(byteCount: problem.rows * parts * 3 * 4, on: runtime)
            let pilots = try DeviceBuffer(byteCount: problem.rows * 4, on: runtime)
            let coefficients = try Coefficients(planes: planes, on: runtime)
            if isColumns {
                let local = plan.columnWorkGroupSize
                events.append(
                    try runtime.enqueue(
                        "gn_column_partials", from: program,
                        global: [plan.columnWorkItems.roundedUp(toMultipleOf: local), problem.batch, slices],
                        local: [local, 1, 1], arguments: [.buffer(inputs.x), .buffer(partials), .buffer(pilots)]))
            } else {
                let wg = plan.reductionWorkGroupSize
                events.append(
                    try runtime.enqueue(
                        "gn_row_partials", from: program, global: [slices * wg, problem.rows], local: [wg, 1],
                        arguments: [.buffer(inputs.x), .buffer(partials), .buffer(pilots)]))
            }
            let local = plan.perRowWorkGroupSize
            events.append(
                try runtime.enqueue(
                    "gn_finish_rows", from: program, global: [problem.rows.roundedUp(toMultipleOf: local)], local: [local],
                    arguments: [
                        .buffer(pilots), .buffer(partials), try .count(problem.rows), try .count(parts),
                        .float(Float(problem.valuesPerRow)), .float(inputs.eps), .buffer(inputs.weight), .buffer(inputs.bias),
                    ] + statisticsArguments + coefficients.arguments))
            events.append(
                try enqueueApply(
                    problem, plan: plan, x: inputs.x, output: output, coefficients: coefficients, program: program,
                    on: runtime))
        case .runningStatistics:
            preconditionFailure("running-statistics plans return above")
        }

        var runningMean: Tensor? = nil
        var runningVar: Tensor? = nil
        if savesVariance, inputs.runningMean != nil, inputs.runningVar != nil {
            let channelShape = [problem.channels]
            let mean = try Tensor(uninitializedShape: channelShape, on: runtime)
            let variance = try Tensor(uninitializedShape: channelShape, on: runtime)
            let local = plan.perRowWorkGroupSize
            events.append(
                try runtime.enqueue(
                    "in_update_running", from: program, global: [problem.channels.roundedUp(toMultipleOf: local)],
                    local: [local],
                    arguments: [
                        .buffer(saveMean.deviceBuffer), .buffer(saveVar), try .count(problem.batch),
                        .buffer(inputs.runningMean), .buffer(inputs.runningVar), .buffer(mean.deviceBuffer),
                        .buffer(variance.deviceBuffer), .float(inputs.momentum),
                    ]))
            runningMean = mean
            runningVar = variance
        }
        return Outputs(
            output: output, saveMean: saveMean, saveInvstd: saveInvstd, runningMean: runningMean, runningVar: runningVar,
            events: events)
    }

    /// `y = ((x − pilot_k) − offset_k)·scale_k + shift_k`, `k = n·C + c`, over every
    /// element: per plane for contiguous rows, row by row with channel vectors for
    /// channels-last memory.
    private static func enqueueApply(
        _ problem: GroupNormProblem, plan: GroupNormPlan, x: DeviceBuffer, output: Tensor, coefficients: Coefficients,
        program: CompiledProgram, on runtime: OpenCLRuntime
    ) throws -> KernelEvent {
        let (kernel, count) =
            problem.hasContiguousRows
            ? ("gn_apply_planes", problem.batch * problem.channels) : ("gn_apply_columns", problem.batch * problem.spatial)
        return try runtime.enqueue(
            kernel, from: program,
            global: [plan.elementwiseWorkGroups * plan.elementwiseWorkGroupSize], local: [plan.elementwiseWorkGroupSize],
            arguments: [.buffer(x), .buffer(output.deviceBuffer), try .count(count)] + coefficients.arguments)
    }
}
