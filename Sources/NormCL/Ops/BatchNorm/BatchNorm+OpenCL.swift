/// Enqueues the kernels of a ``BatchNormPlan`` (from `Kernels/batch_norm.cl`).
///
/// Nothing here waits: the outputs are device tensors whose contents are ready once
/// the returned events complete, which a later read does implicitly.
enum BatchNormKernels {
    struct Inputs {
        var x: DeviceBuffer
        var weight: DeviceBuffer?
        var bias: DeviceBuffer?
        var runningMean: DeviceBuffer?
        var runningVar: DeviceBuffer?
        /// Effective weight of the new batch in the running update.
        var momentum: Float
        var eps: Float
        /// Batch Renorm's limits (problems with `renorm` only).
        var renorm: BatchRenormLimits? = nil
    }

    struct Outputs {
        var output: Tensor
        var saveMean: Tensor?
        var saveInvstd: Tensor?
        var runningMean: Tensor?
        var runningVar: Tensor?
        var renormR: Tensor? = nil
        var renormD: Tensor? = nil
        var events: [KernelEvent]
    }

    static func run(_ problem: BatchNormProblem, plan: BatchNormPlan, inputs: Inputs, on runtime: OpenCLRuntime) throws -> Outputs {
        let program = try runtime.program(.batchNorm, options: plan.buildOptions(for: problem))
        let output = try Tensor(
            uninitializedShape: problem.shape, layout: problem.layout, elementType: problem.elementType, on: runtime)
        if plan.strategy == .inference {
            return try runInference(problem, plan: plan, inputs: inputs, program: program, output: output, on: runtime)
        }
        return try runTraining(problem, plan: plan, inputs: inputs, program: program, output: output, on: runtime)
    }

    /// The elementwise pass, with each channel's scale computed from the running
    /// statistics inside it (NCHW); a per-channel scale kernel first for `(rows, C)`.
    private static func runInference(
        _ problem: BatchNormProblem, plan: BatchNormPlan, inputs: Inputs, program: CompiledProgram, output: Tensor,
        on runtime: OpenCLRuntime
    ) throws -> Outputs {
        if !problem.isRowsByChannels {
            let event = try runtime.enqueue(
                "bn_inference_apply", from: program,
                global: [plan.elementwiseWorkGroups * plan.elementwiseWorkGroupSize], local: [plan.elementwiseWorkGroupSize],
                arguments: [
                    .buffer(inputs.x), .buffer(output.deviceBuffer), try .count(problem.batch), .buffer(inputs.runningMean),
                    .buffer(inputs.runningVar), .buffer(inputs.weight), .buffer(inputs.bias), .float(inputs.eps),
                ])
            return Outputs(output: output, events: [event])
        }
        let coefficients = try Coefficients(channels: problem.channels, on: runtime)
        let scaleEvent = try runtime.enqueue(
            "bn_inference_scale", from: program,
            global: [problem.channels.roundedUp(toMultipleOf: plan.perChannelWorkGroupSize)], local: [plan.perChannelWorkGroupSize],
            arguments: [.buffer(inputs.runningVar), .buffer(inputs.weight), .buffer(inputs.bias), .float(inputs.eps)]
                + coefficients.arguments)
        let applyEvent = try enqueueApply(
            problem, plan: plan, x: inputs.x, output: output, pilot: inputs.runningMean, coefficients: coefficients,
            program: program, on: runtime)
        return Outputs(output: output, events: [scaleEvent, applyEvent])
    }

    /// Per-channel `offset`, `scale` and `shift` of the apply step, written by the
    /// kernel before it.
    private struct Coefficients {
        let offset: DeviceBuffer, scale: DeviceBuffer, shift: DeviceBuffer

        init(channels: Int, on runtime: OpenCLRuntime) throws {
            offset = try DeviceBuffer(byteCount: channels * 4, on: runtime)
            scale = try DeviceBuffer(byteCount: channels * 4, on: runtime)
            shift = try DeviceBuffer(byteCount: channels * 4, on: runtime)
        }

        var arguments: [KernelArgument] { [.buffer(offset), .buffer(scale), .buffer(shift)] }
    }

    /// `y = ((x − pilot_c) − offset_c)·scale_c + shift_c` over every element: per plane
    /// for NCHW, row by row with channel vectors for a `(rows, C)` matrix.
    private static func enqueueApply(
        _ problem: BatchNormProblem, plan: BatchNormPlan, x: DeviceBuffer, output: Tensor, pilot: DeviceBuffer?,
        coefficients: Coefficients, program: CompiledProgram, on runtime: OpenCLRuntime
    ) throws -> KernelEvent {
        let (kernel, count) =
            problem.isRowsByChannels ? ("bn_apply_columns", problem.valuesPerChannel) : ("bn_apply", problem.batch)
        return try runtime.enqueue(
            kernel, from: program,
            global: [plan.elementwiseWorkGroups * plan.elementwiseWorkGroupSize], local: [plan.elementwiseWorkGroupSize],
            arguments: [
                .buffer(x), .buffer(output.deviceBuffer), try .count(count), .buffer(pilot),
            ] + coefficients.arguments)
    }

    /// Batch statistics (and running updates), then normalisation, per the plan's strategy.
    private static func runTraining(
        _ problem: BatchNormProblem, plan: BatchNormPlan, inputs: Inputs, program: CompiledProgram, output: Tensor,
        on runtime: OpenCLRuntime
    ) throws -> Outputs {
        let channelShape = [problem.channels]
        let batch = try KernelArgument.count(problem.batch)
        let rows = try KernelArgument.count(problem.valuesPerChannel)
        let saveMean = try Tensor(uninitializedShape: channelShape, on: runtime)
        let saveInvstd = try Tensor(uninitializedShape: channelShape, on: runtime)
        let tracksRunning = problem.mode == .training(updatesRunningStatistics: true)
        let runningMeanOut = tracksRunning ? try Tensor(uninitializedShape: channelShape, on: runtime) : nil
        let runningVarOut = tracksRunning ? try Tensor(uninitializedShape: channelShape, on: runtime) : nil
        let renormR = problem.renorm ? try Tensor(uninitializedShape: channelShape, on: runtime) : nil
        let renormD = problem.renorm ? try Tensor(uninitializedShape: channelShape, on: runtime) : nil
        // STATISTICS_PARAMETERS in batch_norm.cl.
        let statisticsArguments: [KernelArgument] = [
            .buffer(saveMean.deviceBuffer), .buffer(saveInvstd.deviceBuffer),
            .buffer(inputs.runningMean), .buffer(inputs.runningVar),
            .buffer(runningMeanOut?.deviceBuffer), .buffer(runningVarOut?.deviceBuffer),
            .float(inputs.momentum), .float(inputs.eps),
            .buffer(renormR?.deviceBuffer), .buffer(renormD?.deviceBuffer),
            .float(inputs.renorm?.rmax ?? 1), .float(inputs.renorm?.dmax ?? 0),
        ]
        let wg = plan.reductionWorkGroupSize
        var events: [KernelEvent] = []
        switch plan.strategy {
        case .fusedPerChannel:
            events.append(
                try runtime.enqueue(
                    "bn_train_fused", from: program, global: [problem.channels * wg], local: [wg],
                    arguments: [.buffer(inputs.x), .buffer(output.deviceBuffer), batch, .buffer(inputs.weight), .buffer(inputs.bias)]
                        + statisticsArguments))
        case .splitReduction(let groups), .splitColumns(rowGroups: let groups):
            // Partial moments per (channel, slice), merged per channel, then the apply pass.
            let partials = try DeviceBuffer(byteCount: problem.channels * groups * 3 * 4, on: runtime)
            let pilots = try DeviceBuffer(byteCount: problem.channels * 4, on: runtime)
            let coefficients = try Coefficients(channels: problem.channels, on: runtime)
            if case .splitColumns = plan.strategy {
                let local = plan.columnWorkGroupSize
                events.append(
                    try runtime.enqueue(
                        "bn_column_partials", from: program,
                        global: [plan.columnWorkItems.roundedUp(toMultipleOf: local), groups], local: [local, 1], arguments: [.buffer(inputs.x), rows, .buffer(partials), .buffer(pilots)]))
            } else {
                events.append(
                    try runtime.enqueue(
                        "bn_partial_moments", from: program, global: [groups * wg, problem.channels], local: [wg, 1],
                        arguments: [.buffer(inputs.x), batch, .buffer(partials), .buffer(pilots)]))
            }
            events.append(
                try runtime.enqueue(
                    "bn_finish_moments", from: program,
                    global: [problem.channels.roundedUp(toMultipleOf: plan.perChannelWorkGroupSize)],
                    local: [plan.perChannelWorkGroupSize],
                    arguments: [
                        .buffer(pilots), .buffer(partials), try .count(groups), .float(Float(problem.valuesPerChannel)),
                        .buffer(inputs.weight), .buffer(inputs.bias),
                    ] + statisticsArguments + coefficients.arguments))
            events.append(
                try enqueueApply(
                    problem, plan: plan, x: inputs.x, output: output, pilot: pilots, coefficients: coefficients,
                    program: program, on: runtime))
        case .columns:
            let local = plan.columnWorkGroupSize
            events.append(
                try runtime.enqueue(
                    "bn_train_columns", from: program,
                    global: [plan.columnWorkItems.roundedUp(toMultipleOf: local)], local: [local],
                    arguments: [.buffer(inputs.x), .buffer(output.deviceBuffer), rows, .buffer(inputs.weight), .buffer(inputs.bias)]
                        + statisticsArguments))
        case .inference:
            preconditionFailure("run(_:plan:inputs:on:) sends inference plans to runInference")
        }
        return Outputs(
            output: output, saveMean: saveMean, saveInvstd: saveInvstd,
            runningMean: runningMeanOut, runningVar: runningVarOut, renormR: renormR, renormD: renormD, events: events)
    }

}
