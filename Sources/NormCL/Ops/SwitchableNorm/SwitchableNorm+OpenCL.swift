/// Enqueues the kernels of a ``SwitchableNormPlan`` (from `Kernels/switchable_norm.cl`):
/// instance moments, statistics and mixing, apply. Nothing here waits.
enum SwitchableNormKernels {
    struct Inputs {
        var x: DeviceBuffer
        var meanLogits: DeviceBuffer
        var varianceLogits: DeviceBuffer
        var weight: DeviceBuffer?
        var bias: DeviceBuffer?
        var runningMean: DeviceBuffer?
        var runningVar: DeviceBuffer?
        /// Effective weight of the new batch in the running update.
        var momentum: Float
        var eps: Float
    }

    struct Outputs {
        var output: Tensor
        var mean: Tensor
        var invstd: Tensor
        var instanceMean: Tensor?
        var instanceVariance: Tensor?
        var layerMean: Tensor
        var layerVariance: Tensor
        var batchMean: Tensor?
        var batchVariance: Tensor?
        var runningMean: Tensor?
        var runningVar: Tensor?
        var events: [KernelEvent]
    }

    static func run(
        _ problem: SwitchableNormProblem, plan: SwitchableNormPlan, inputs: Inputs, on runtime: OpenCLRuntime
    ) throws -> Outputs {
        let program = try runtime.program(.switchableNorm, options: plan.buildOptions(for: problem))
        let direct = plan.strategy == .direct
        let instances = problem.instances, slices = plan.strategy.slices
        let output = try Tensor(
            uninitializedShape: problem.shape, layout: problem.layout, elementType: problem.elementType, on: runtime)
        func floats(_ shape: [Int]) throws -> Tensor { try Tensor(uninitializedShape: shape, on: runtime) }
        let instanceShape = [problem.batch, problem.channels]
        let mean = try floats(instanceShape), invstd = try floats(instanceShape)
        let instanceMean = problem.branches.hasInstance ? try floats(instanceShape) : nil
        let instanceVariance = problem.branches.hasInstance ? try floats(instanceShape) : nil
        let layerMean = try floats([problem.batch]), layerVariance = try floats([problem.batch])
        let batchMean = problem.usesBatchStatistics ? try floats([problem.channels]) : nil
        let batchVariance = problem.usesBatchStatistics ? try floats([problem.channels]) : nil
        let runningMean = problem.updatesRunningStatistics ? try floats([problem.channels]) : nil
        let runningVar = problem.updatesRunningStatistics ? try floats([problem.channels]) : nil
        // Scratch: partial moments per (run, slice), pilots and apply coefficients per run,
        // LN and BN means relative to their reference pilots.
        let partials = direct ? nil : try DeviceBuffer(byteCount: instances * slices * 3 * 4, on: runtime)
        let pilots = direct ? nil : try DeviceBuffer(byteCount: instances * 4, on: runtime)
        let offset = direct ? nil : try DeviceBuffer(byteCount: instances * 4, on: runtime)
        let scale = direct ? nil : try DeviceBuffer(byteCount: instances * 4, on: runtime)
        let layerRelative = try DeviceBuffer(byteCount: problem.batch * 4, on: runtime)
        let batchRelative = try DeviceBuffer(byteCount: problem.channels * 4, on: runtime)

        var events: [KernelEvent] = []
        let momentsArguments: [KernelArgument] = [.buffer(inputs.x), .buffer(partials), .buffer(pilots)]
        switch plan.strategy {
        case .direct:
            break
        case .runPerWorkItem:
            let local = plan.reductionWorkGroupSize
            events.append(
                try runtime.enqueue(
                    "sn_moments_items", from: program, global: [(instances * slices).roundedUp(toMultipleOf: local)],
                    local: [local], arguments: momentsArguments))
        case .runPerWorkGroup:
            let local = plan.reductionWorkGroupSize
            events.append(
                try runtime.enqueue(
                    "sn_moments_groups", from: program, global: [slices * local, instances], local: [local, 1],
                    arguments: momentsArguments))
        case .columns:
            let local = plan.columnWorkGroupSize
            events.append(
                try runtime.enqueue(
                    "sn_moments_columns", from: program,
                    global: [plan.columnWorkItems.roundedUp(toMultipleOf: local), problem.batch * slices], local: [local, 1],
                    arguments: momentsArguments))
        }
        let statisticsArguments: [KernelArgument] = [
            .buffer(inputs.x), .buffer(direct ? output.deviceBuffer : nil), .buffer(partials), .buffer(pilots),
            .buffer(inputs.meanLogits), .buffer(inputs.varianceLogits), .buffer(inputs.weight), .buffer(inputs.bias),
            .buffer(inputs.runningMean), .buffer(inputs.runningVar),
            .buffer(runningMean?.deviceBuffer), .buffer(runningVar?.deviceBuffer),
            .float(inputs.momentum), .float(inputs.eps), .buffer(layerRelative), .buffer(batchRelative),
            .buffer(layerMean.deviceBuffer), .buffer(layerVariance.deviceBuffer),
            .buffer(batchMean?.deviceBuffer), .buffer(batchVariance?.deviceBuffer),
            .buffer(instanceMean?.deviceBuffer), .buffer(instanceVariance?.deviceBuffer),
            .buffer(mean.deviceBuffer), .buffer(invstd.deviceBuffer), .buffer(offset), .buffer(scale),
            try .count(problem.batch), try .count(problem.channels),
        ]
        if plan.splitStatistics {
            // Device-wide launches, each work-item striding over runs, samples or channels.
            let local = plan.statisticsWorkGroupSize
            func global(_ count: Int) -> [Int] { [min(count, plan.statisticsWorkItems).roundedUp(toMultipleOf: local)] }
            if !direct && slices > 1 {
                events.append(
                    try runtime.enqueue(
                        "sn_merge_partials", from: program, global: global(instances), local: [local],
                        arguments: statisticsArguments))
            }
            events.append(
                try runtime.enqueue(
                    "sn_set_statistics", from: program,
                    global: global(problem.batch + problem.channels.ceilingDivided(by: 8)), local: [local],
                    arguments: statisticsArguments))
            events.append(
                try runtime.enqueue(
                    "sn_mix", from: program, global: global(instances), local: [local],
                    arguments: statisticsArguments))
        } else {
            let local = plan.statisticsWorkGroupSize
            events.append(
                try runtime.enqueue(
                    "sn_statistics", from: program, global: [local], local: [local], arguments: statisticsArguments))
        }
        if !direct {
            let local = plan.elementwiseWorkGroupSize
            events.append(
                try runtime.enqueue(
                    problem.layout == .channelsLast ? "sn_apply_columns" : "sn_apply_rows", from: program,
                    global: [plan.elementwiseWorkGroups * local], local: [local],
                    arguments: [
                        .buffer(inputs.x), .buffer(output.deviceBuffer), .buffer(pilots), .buffer(offset), .buffer(scale),
                        .buffer(inputs.bias),
                    ]))
        }
        return Outputs(
            output: output, mean: mean, invstd: invstd, instanceMean: instanceMean, instanceVariance: instanceVariance,
            layerMean: layerMean, layerVariance: layerVariance, batchMean: batchMean, batchVariance: batchVariance,
            runningMean: runningMean, runningVar: runningVar, events: events)
    }
}
