/// Enqueues the kernels of a ``SwitchableNormPlan`` (from `Kernels/switchable_norm.cl`):
/// instance moments, statistics and mixing, apply. Nothing here waits.
enum SwitchableNormKernels {
    typealias Inputs = ChannelInputs

    struct Outputs {
        var output: Tensor
        var statistics: SwitchableNormStatistics<Tensor>
        var runningMean: Tensor?
        var runningVar: Tensor?
        var events: [KernelEvent]
    }

    /// Channels per work-item of the BN set loops (the kernels' SN_CHANNEL_TILE).
    static let channelTile = 8

    /// - Parameters:
    ///   - logits: the branch logits of the means and of the variances.
    ///   - running: the running statistics (the tensors behind `inputs.runningMean` and
    ///     `inputs.runningVar`), which the updated ones may overwrite in place when they
    ///     are the call's destinations.
    static func run(
        _ problem: SwitchableNormProblem, plan: SwitchableNormPlan, inputs: Inputs,
        logits: (mean: DeviceBuffer, variance: DeviceBuffer), running: RunningStatistics?, call: OpCall,
        on runtime: OpenCLRuntime
    ) throws -> Outputs {
        let program = try runtime.program(.switchableNorm, options: plan.buildOptions(for: problem))
        let direct = plan.strategy == .direct
        let instances = problem.instances, slices = plan.strategy.slices
        let output = try call.forward(
            \.output, "output", shape: problem.shape, layout: problem.layout, elementType: problem.elementType, on: runtime)
        // The mixed statistics go to the saveMean and saveInvstd destinations; the branch
        // statistics have none.
        let instanceShape = [problem.batch, problem.channels]
        let statistics = try SwitchableNormStatistics(
            forwardOf: problem, mean: try call.forward(\.saveMean, "saveMean", shape: instanceShape, on: runtime),
            invstd: try call.forward(\.saveInvstd, "saveInvstd", shape: instanceShape, on: runtime),
            allocate: { try Tensor(uninitializedShape: $0, on: runtime) })
        // batch_statistics reads each channel's old value first; mixing reads the running
        // statistics only in inference, which updates none.
        let updatedRunning = try call.runningStatistics(
            running, updated: problem.updatesRunningStatistics, channels: problem.channels, on: runtime)
        let (runningMean, runningVar) = (updatedRunning?.mean, updatedRunning?.variance)
        // Scratch: partial moments per (run, slice); per run the apply coefficients (pilot,
        // offset, scale, beta); LN and BN means relative to their reference pilots.
        let partials = direct ? nil : try DeviceBuffer(byteCount: instances * slices * 3 * 4, on: runtime)
        let coefficients = direct ? nil : try DeviceBuffer(byteCount: instances * 4 * 4, on: runtime)
        let layerRelative = try DeviceBuffer(byteCount: problem.batch * 4, on: runtime)
        let batchRelative = try DeviceBuffer(byteCount: problem.channels * 4, on: runtime)
        let batch = try KernelArgument.count(problem.batch), channels = try KernelArgument.count(problem.channels)
        let spatial = try KernelArgument.count(problem.spatial), sliceCount = try KernelArgument.count(slices)

        var launches = KernelLaunches(program, on: runtime, waitingFor: call.waitList)
        if let pass = plan.instancePass(for: problem) {
            try launches.enqueue(
                "sn_moments_\(pass.kernel)", (pass.global, pass.local),
                [
                    "x": .buffer(inputs.x), "partials": .buffer(partials), "coefficients": .buffer(coefficients),
                    "runs": try .count(instances), "channels": channels, "spatial": spatial, "slices": sliceCount,
                ])
        }
        let statisticsArguments: KeyValuePairs<String, KernelArgument> = [
            "x": .buffer(inputs.x), "y": .buffer(direct ? output.deviceBuffer : nil), "partials": .buffer(partials),
            "coefficients": .buffer(coefficients), "mean_logits": .buffer(logits.mean),
            "var_logits": .buffer(logits.variance), "weight": .buffer(inputs.weight), "bias": .buffer(inputs.bias),
            "running_mean_in": .buffer(inputs.runningMean), "running_var_in": .buffer(inputs.runningVar),
            "running_mean_out": .buffer(runningMean?.deviceBuffer), "running_var_out": .buffer(runningVar?.deviceBuffer),
            "momentum": .float(inputs.momentum), "eps": .float(inputs.eps), "ln_rel": .buffer(layerRelative),
            "bn_rel": .buffer(batchRelative), "layer_mean": .buffer(statistics.layerMean.deviceBuffer),
            "layer_var": .buffer(statistics.layerVariance.deviceBuffer),
            "batch_mean": .buffer(statistics.batchMean?.deviceBuffer),
            "batch_var": .buffer(statistics.batchVariance?.deviceBuffer),
            "instance_mean": .buffer(statistics.instanceMean?.deviceBuffer),
            "instance_var": .buffer(statistics.instanceVariance?.deviceBuffer),
            "save_mean": .buffer(statistics.mean.deviceBuffer), "save_invstd": .buffer(statistics.invstd.deviceBuffer),
            "batch": batch, "channels": channels, "spatial": spatial, "slices": sliceCount,
            "unbiased": .uint(problem.unbiased ? 1 : 0),
            "training": .uint(problem.training ? 1 : 0),
        ]
        if plan.splitStatistics {
            // Device-wide launches, each work-item striding over runs, samples or channels.
            var steps: [(String, Int)] = []
            if !direct && slices > 1 { steps.append(("sn_merge_partials", instances)) }
            steps.append(("sn_set_statistics", problem.batch + problem.channels.ceilingDivided(by: Self.channelTile)))
            steps.append(("sn_mix", instances))
            for (name, count) in steps {
                try launches.enqueue(name, plan.statisticsLaunch(covering: count), statisticsArguments)
            }
        } else {
            let local = plan.statisticsWorkGroupSize
            try launches.enqueue("sn_statistics", ([local], [local]), statisticsArguments)
        }
        if !direct {
            let (global, local) = plan.elementwiseLaunch(for: problem)
            try launches.enqueue(
                plan.elementwiseColumns(for: problem) ? "sn_apply_columns" : "sn_apply_rows", (global, local),
                [
                    "x": .buffer(inputs.x), "y": .buffer(output.deviceBuffer), "coefficients": .buffer(coefficients),
                    "batch": batch, "channels": channels, "spatial": spatial,
                ])
        }
        return Outputs(
            output: output, statistics: statistics, runningMean: runningMean, runningVar: runningVar,
            events: launches.events)
    }
}
