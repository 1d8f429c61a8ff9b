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
    }

    struct Outputs {
        var output: Tensor
        var saveMean: Tensor?
        var saveInvstd: Tensor?
        var runningMean: Tensor?
        var runningVar: Tensor?
        var events: [KernelEvent]
    }

    static func run(_ problem: BatchNormProblem, plan: BatchNormPlan, inputs: Inputs, on runtime: OpenCLRuntime) throws -> Outputs {
        let program = try runtime.program(.batchNorm, options: plan.buildOptions(for: problem))
        let output = try Tensor(uninitializedShape: problem.shape, layout: problem.layout, on: runtime)
        if plan.strategy == .inference {
            return try runInference(problem, plan: plan, inputs: inputs, program: program, output: output, on: runtime)
        }
        return try runTraining(problem, plan: plan, inputs: inputs, program: program, output: output, on: runtime)
    }

    /// Scale per channel from the running statistics, then the elementwise pass.
    private static func runInference(
        _ problem: BatchNormProblem, plan: BatchNormPlan, inputs: Inputs, program: CompiledProgram, output: Tensor,
        on runtime: OpenCLRuntime
    ) throws -> Outputs {
        let offset = try DeviceBuffer(byteCount: problem.channels * 4, on: runtime)
        let scale = try DeviceBuffer(byteCount: problem.channels * 4, on: runtime)
        let scaleEvent = try runtime.enqueue(
            "bn_inference_scale", from: program,
            global: [problem.channels.roundedUp(toMultipleOf: plan.perChannelWorkGroupSize)], local: [plan.perChannelWorkGroupSize],
            arguments: [.buffer(inputs.runningVar), .buffer(inputs.weight), .float(inputs.eps), .buffer(offset), .buffer(scale)])
        // (N, C) input: row-wise with channel vectors, not per-plane runs of length 1.
        let applyKernel = problem.spatial == 1 ? "bn_apply_columns" : "bn_apply"
        let applyEvent = try runtime.enqueue(
            applyKernel, from: program,
            global: [plan.elementwiseWorkGroups * plan.elementwiseWorkGroupSize], local: [plan.elementwiseWorkGroupSize],
            arguments: [
                .buffer(inputs.x), .buffer(output.deviceBuffer), .uint(UInt32(problem.batch)),
                .buffer(inputs.runningMean), .buffer(offset), .buffer(scale), .buffer(inputs.bias),
            ])
        return Outputs(output: output, events: [scaleEvent, applyEvent])
    }

    /// Batch statistics (and running updates), then normalisation, per the plan's strategy.
    private static func runTraining(
        _ problem: BatchNormProblem, plan: BatchNormPlan, inputs: Inputs, program: CompiledProgram, output: Tensor,
        on runtime: OpenCLRuntime
    ) throws -> Outputs {
        let channelShape = [problem.channels]
        let batch = KernelArgument.uint(UInt32(problem.batch))
        let elementwiseGlobal = plan.elementwiseWorkGroups * plan.elementwiseWorkGroupSize
        let saveMean = try Tensor(uninitializedShape: channelShape, on: runtime)
        let saveInvstd = try Tensor(uninitializedShape: channelShape, on: runtime)
        let tracksRunning = problem.mode == .training(updatesRunningStatistics: true)
        let runningMeanOut = tracksRunning ? try Tensor(uninitializedShape: channelShape, on: runtime) : nil
        let runningVarOut = tracksRunning ? try Tensor(uninitializedShape: channelShape, on: runtime) : nil
        let statisticsArguments: [KernelArgument] = [
            .buffer(saveMean.deviceBuffer), .buffer(saveInvstd.deviceBuffer),
            .buffer(inputs.runningMean), .buffer(inputs.runningVar),
            .buffer(runningMeanOut?.deviceBuffer), .buffer(runningVarOut?.deviceBuffer),
            .float(inputs.momentum), .float(inputs.eps),
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
        case .splitReduction(let groups):
            let partials = try DeviceBuffer(byteCount: problem.channels * groups * 3 * 4, on: runtime)
            let pilot = try DeviceBuffer(byteCount: problem.channels * 4, on: runtime)
            let offset = try DeviceBuffer(byteCount: problem.channels * 4, on: runtime)
            let scale = try DeviceBuffer(byteCount: problem.channels * 4, on: runtime)
            events.append(
                try runtime.enqueue(
                    "bn_partial_moments", from: program, global: [groups * wg, problem.channels], local: [wg, 1],
                    arguments: [.buffer(inputs.x), batch, .buffer(partials)]))
            events.append(
                try runtime.enqueue(
                    "bn_finish_moments", from: program,
                    global: [problem.channels.roundedUp(toMultipleOf: plan.perChannelWorkGroupSize)],
                    local: [plan.perChannelWorkGroupSize],
                    arguments: [.buffer(inputs.x), .buffer(partials), .uint(UInt32(groups)), batch, .buffer(inputs.weight)]
                        + statisticsArguments + [.buffer(pilot), .buffer(offset), .buffer(scale)]))
            events.append(
                try runtime.enqueue(
                    problem.spatial == 1 ? "bn_apply_columns" : "bn_apply", from: program,
                    global: [elementwiseGlobal], local: [plan.elementwiseWorkGroupSize],
                    arguments: [
                        .buffer(inputs.x), .buffer(output.deviceBuffer), batch,
                        .buffer(pilot), .buffer(offset), .buffer(scale), .buffer(inputs.bias),
                    ]))
        case .columns:
            precondition(problem.spatial == 1, "the column kernel takes (N, C) input")
            let items = (problem.channels / plan.channelVectorWidth).ceilingDivided(by: plan.columnTile)
            let local = min(plan.elementwiseWorkGroupSize, items.roundedUp(toMultipleOf: 4))
            events.append(
                try runtime.enqueue(
                    "bn_train_columns", from: program,
                    global: [items.roundedUp(toMultipleOf: local)], local: [local],
                    arguments: [.buffer(inputs.x), .buffer(output.deviceBuffer), batch, .buffer(inputs.weight), .buffer(inputs.bias)]
                        + statisticsArguments))
        case .inference:
            return try runInference(problem, plan: plan, inputs: inputs, program: program, output: output, on: runtime)
        }
        return Outputs(
            output: output, saveMean: saveMean, saveInvstd: saveInvstd,
            runningMean: runningMeanOut, runningVar: runningVarOut, events: events)
    }
}
