/// Enqueues the kernels of a ``BatchNormPlan`` (from `Kernels/batch_norm.cl`).
///
/// Nothing here waits: the outputs are device tensors whose contents are ready once
/// the returned events complete, which a later read does implicitly.
enum BatchNormKernels {
    typealias Inputs = ChannelInputs
    typealias Outputs = ChannelOutputs

    /// Each channel's moments merged elsewhere (synchronized BatchNorm: every part of the
    /// batch, on every device or process), uploaded in the form of the split reduction's
    /// partials with one part per channel: `pilots[c]`, and `(count, mean − pilot, M2)`
    /// at `partials[3c...]`. `count` is the whole batch's values per channel.
    struct GivenMoments {
        let pilots: DeviceBuffer
        let partials: DeviceBuffer
        let count: Int
    }

    /// - Parameters:
    ///   - renorm: Batch Renorm's limits (problems with `renorm` only).
    ///   - addend: z of the fused `y = f(BN(x) + z)` (problems with `hasAddend` only):
    ///     every kernel that writes y reads it beside x.
    ///   - given: moments to normalise with instead of the input's own (training
    ///     problems only): the reduction is skipped, the finishing and apply steps run.
    static func run(
        _ problem: BatchNormProblem, plan: BatchNormPlan, inputs: Inputs, renorm: BatchRenormLimits?,
        running: RunningStatistics?, call: OpCall, on runtime: OpenCLRuntime, addend: DeviceBuffer? = nil,
        given: GivenMoments? = nil
    ) throws -> Outputs {
        precondition((addend != nil) == problem.hasAddend, "an addend exactly when the problem has one")
        let output = try call.forward(
            \.output, "output", shape: problem.shape, layout: problem.layout, elementType: problem.elementType, on: runtime)
        let program = try runtime.program(.batchNorm, options: plan.specialization(for: problem))
        var launches = KernelLaunches(program, on: runtime, waitingFor: call.waitList)
        // Every kernel that writes y takes x, y and the addend z first (NULL without one).
        let xyz: KeyValuePairs<String, KernelArgument> = [
            "x": .buffer(inputs.x), "y": .buffer(output.deviceBuffer), "z": .buffer(addend),
        ]
        if plan.strategy == .elementwise {
            try enqueueInference(problem, plan: plan, inputs: inputs, xyz: xyz, output: output, launches: &launches)
            return Outputs(output: output, events: launches.events)
        }
        return try runTraining(
            problem, plan: plan, inputs: inputs, renorm: renorm, running: running, call: call, xyz: xyz,
            output: output, given: given, launches: &launches)
    }

    /// The elementwise pass, with each channel's scale computed from the running
    /// statistics inside it (NCHW); a per-channel scale kernel first for `(rows, C)`.
    private static func enqueueInference(
        _ problem: BatchNormProblem, plan: BatchNormPlan, inputs: Inputs, xyz: KeyValuePairs<String, KernelArgument>,
        output: Tensor, launches: inout KernelLaunches
    ) throws {
        let launch = plan.launch
        if !problem.isRowsByChannels {
            try launches.enqueue(
                "bn_inference_apply", launch.elementwise, xyz, try launch.planeSizes(),
                [
                    "running_mean": .buffer(inputs.runningMean), "running_var": .buffer(inputs.runningVar),
                    "weight": .buffer(inputs.weight), "bias": .buffer(inputs.bias), "eps": .float(inputs.eps),
                ])
            return
        }
        let coefficients = try Coefficients(channels: problem.channels, on: launches.runtime)
        try launches.enqueue(
            "bn_inference_scale", launch.perChannelItems, try launch.channelCount(),
            [
                "running_var": .buffer(inputs.runningVar), "weight": .buffer(inputs.weight),
                "bias": .buffer(inputs.bias), "eps": .float(inputs.eps),
            ],
            coefficients.arguments)
        try enqueueApply(
            launch, xyz: xyz, output: output, pilot: inputs.runningMean, coefficients: coefficients,
            launches: &launches)
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

        var arguments: KeyValuePairs<String, KernelArgument> {
            ["offset": .buffer(offset), "scale": .buffer(scale), "shift": .buffer(shift)]
        }
    }

    /// `y = ((x − pilot_c) − offset_c)·scale_c + shift_c` over every element (through the
    /// epilogue): per plane for NCHW, row by row with channel vectors for a `(rows, C)` matrix.
    private static func enqueueApply(
        _ launch: BatchNormLaunch, xyz: KeyValuePairs<String, KernelArgument>, output: Tensor, pilot: DeviceBuffer?,
        coefficients: Coefficients, launches: inout KernelLaunches
    ) throws {
        // An empty part of a synchronized batch still writes its statistics, but no y.
        guard output.count > 0 else { return }
        try launches.enqueue(
            launch.isRowsByChannels ? "bn_apply_columns" : "bn_apply", launch.elementwise, xyz, try launch.sizes(),
            ["pilot": .buffer(pilot)], coefficients.arguments)
    }

    /// Batch statistics (and running updates), then normalisation, per the plan's strategy.
    private static func runTraining(
        _ problem: BatchNormProblem, plan: BatchNormPlan, inputs: Inputs, renorm: BatchRenormLimits?,
        running: RunningStatistics?, call: OpCall, xyz: KeyValuePairs<String, KernelArgument>, output: Tensor,
        given: GivenMoments?, launches: inout KernelLaunches
    ) throws -> Outputs {
        let runtime = launches.runtime
        let launch = plan.launch
        let channelShape = [problem.channels]
        let saveMean = try call.forward(\.saveMean, "saveMean", shape: channelShape, on: runtime)
        let saveInvstd = try call.forward(\.saveInvstd, "saveInvstd", shape: channelShape, on: runtime)
        // finish_channel (batch_norm.cl) reads each channel's old values (also for r and d) first.
        let runningOut = try call.runningStatistics(
            running, updated: problem.mode == .training(updatesRunningStatistics: true), channels: problem.channels,
            on: runtime)
        let (runningMeanOut, runningVarOut) = (runningOut?.mean, runningOut?.variance)
        let renormR = problem.renorm ? try Tensor(uninitializedShape: channelShape, on: runtime) : nil
        let renormD = problem.renorm ? try Tensor(uninitializedShape: channelShape, on: runtime) : nil
        // weight, bias and STATISTICS_PARAMETERS in batch_norm.cl.
        let statistics: KeyValuePairs<String, KernelArgument> = [
            "weight": .buffer(inputs.weight), "bias": .buffer(inputs.bias),
            "save_mean": .buffer(saveMean.deviceBuffer), "save_invstd": .buffer(saveInvstd.deviceBuffer),
            "running_mean_in": .buffer(inputs.runningMean), "running_var_in": .buffer(inputs.runningVar),
            "running_mean_out": .buffer(runningMeanOut?.deviceBuffer), "running_var_out": .buffer(runningVarOut?.deviceBuffer),
            "momentum": .float(inputs.momentum), "eps": .float(inputs.eps),
            "renorm_r": .buffer(renormR?.deviceBuffer), "renorm_d": .buffer(renormD?.deviceBuffer),
            "rmax": .float(renorm?.rmax ?? 1), "dmax": .float(renorm?.dmax ?? 0),
        ]
        /// Steps 2 and 3 of the split paths: each channel's `groups` partials merged in
        /// order (statistics, running update, coefficients), then y.
        func finishAndApply(pilots: DeviceBuffer, partials: DeviceBuffer, groups: Int, count: Int) throws {
            let coefficients = try Coefficients(channels: problem.channels, on: runtime)
            try launches.enqueue(
                "bn_finish_moments", launch.perChannelItems, ["pilots": .buffer(pilots), "partials": .buffer(partials)],
                try launch.channelCount(), ["groups": try .count(groups), "count": .float(Float(count))], statistics,
                coefficients.arguments)
            try enqueueApply(
                launch, xyz: xyz, output: output, pilot: pilots, coefficients: coefficients, launches: &launches)
        }
        if let given {
            try finishAndApply(pilots: given.pilots, partials: given.partials, groups: 1, count: given.count)
            return Outputs(
                output: output, saveMean: saveMean, saveInvstd: saveInvstd, runningMean: runningMeanOut,
                runningVar: runningVarOut, renormR: renormR, renormD: renormD, events: launches.events)
        }
        switch plan.strategy {
        case .fusedPerChannel, .columns:
            let columns = plan.strategy == .columns
            let (geometry, sizes) = try launch.singlePass(columns: columns)
            try launches.enqueue(columns ? "bn_train_columns" : "bn_train_fused", geometry, xyz, sizes, statistics)
        case .channelItems:
            try launches.enqueue("bn_train_channels", launch.channelItems, xyz, try launch.planeSizes(), statistics)
        case .splitReduction(let groups), .splitColumns(rowGroups: let groups):
            // Partial moments per (channel, slice), merged per channel, then the apply pass.
            let (partials, pilots) = try enqueuePartialMoments(
                problem, launch: launch, x: inputs.x, groups: groups, columns: plan.strategy == .splitColumns(rowGroups: groups),
                launches: &launches)
            try finishAndApply(pilots: pilots, partials: partials, groups: groups, count: problem.valuesPerChannel)
        case .elementwise:
            preconditionFailure("run(_:plan:inputs:renorm:on:) sends inference plans to enqueueInference")
        }
        return Outputs(
            output: output, saveMean: saveMean, saveInvstd: saveInvstd,
            runningMean: runningMeanOut, runningVar: runningVarOut, renormR: renormR, renormD: renormD,
            events: launches.events)
    }

    /// Step 1 of the split paths: `groups` slices per channel (row slices of the columns
    /// of a `(rows, C)` matrix with `columns`) write their `(count, mean − pilot, M2)` to `partials`
    /// (`C·groups` triples, channel-major) and each channel's pilot to `pilots`.
    static func enqueuePartialMoments(
        _ problem: BatchNormProblem, launch: BatchNormLaunch, x: DeviceBuffer, groups: Int, columns: Bool,
        launches: inout KernelLaunches
    ) throws -> (partials: DeviceBuffer, pilots: DeviceBuffer) {
        let runtime = launches.runtime
        let partials = try DeviceBuffer(byteCount: problem.channels * groups * 3 * 4, on: runtime)
        let pilots = try DeviceBuffer(byteCount: problem.channels * 4, on: runtime)
        let outputs: KeyValuePairs<String, KernelArgument> = ["partials": .buffer(partials), "pilots": .buffer(pilots)]
        if columns {
            try launches.enqueue(
                "bn_column_partials", launch.columnItems(rowGroups: groups), ["x": .buffer(x)], try launch.columnSizes(),
                outputs)
        } else {
            try launches.enqueue(
                "bn_partial_moments", launch.sliceGroups(groups), ["x": .buffer(x)], try launch.planeSizes(), outputs)
        }
        return (partials, pilots)
    }
}
