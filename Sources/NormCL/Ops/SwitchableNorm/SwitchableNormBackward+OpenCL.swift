/// Enqueues the kernels of a ``SwitchableNormBackwardPlan`` (from
/// `Kernels/switchable_norm_backward.cl`): per-instance sums, coefficients and logit
/// gradients, dx. Nothing here waits.
enum SwitchableNormBackwardKernels {
    struct Inputs {
        var gradOutput: DeviceBuffer
        var x: DeviceBuffer
        var meanLogits: DeviceBuffer
        var varianceLogits: DeviceBuffer
        var weight: DeviceBuffer?
        /// The BN set is the one that was mixed in: the batch's in training, the running
        /// one in inference; nil without a BN branch.
        var statistics: SwitchableNormStatistics<DeviceBuffer>
    }

    static func run(
        _ problem: SwitchableNormProblem, plan: SwitchableNormBackwardPlan, inputs: Inputs, mask: NormGradientMask,
        call: OpCall, on runtime: OpenCLRuntime
    ) throws -> SwitchableNormGradients {
        let program = try runtime.program(.switchableNormBackward, options: plan.buildOptions(for: problem))
        let g = plan.geometry
        let direct = plan.strategy == .direct
        let runs = problem.instances, slices = plan.strategy.slices, k = problem.branches.count
        let (dx, dWeight, dBias) = try call.gradients(
            mask, shape: problem.shape, layout: problem.layout, elementType: problem.elementType,
            parameterShape: [problem.channels], on: runtime)
        // The logit gradients have no destination.
        let dMeanLogits = try Tensor(uninitializedShape: [k], on: runtime)
        let dVarianceLogits = try Tensor(uninitializedShape: [k], on: runtime)
        // Scratch: per-(run, slice) sums, per-run sums and adjoints, set adjoints, dx
        // coefficients, per-work-item logit partials.
        let partials = direct ? nil : try DeviceBuffer(byteCount: runs * slices * 2 * 4, on: runtime)
        let sums = try DeviceBuffer(byteCount: runs * 2 * 4, on: runtime)
        let adjoints = try DeviceBuffer(byteCount: runs * 2 * 4, on: runtime)
        let setAdjoints = try DeviceBuffer(byteCount: (problem.batch + problem.channels) * 2 * 4, on: runtime)
        // dx = a·dy + b·(x − m) + c per run, plus b₂·(x − m₂) without IN and with BN from x
        // (the kernel's TWO_CENTERS): 4 or 6 floats per run.
        let twoCenters = !problem.branches.hasInstance && problem.branches.hasBatch && problem.training
        let coefficients = try DeviceBuffer(byteCount: runs * (twoCenters ? 6 : 4) * 4, on: runtime)
        let partialCount = plan.splitCoefficients ? plan.geometry.statisticsWorkItems : plan.coefficientWorkGroupSize
        let logitPartials = try DeviceBuffer(byteCount: partialCount * 2 * k * 4, on: runtime)

        let batch = try KernelArgument.count(problem.batch), channels = try KernelArgument.count(problem.channels)
        let spatial = try KernelArgument.count(problem.spatial), sliceCount = try KernelArgument.count(slices)

        var launches = KernelLaunches(program, on: runtime, waitingFor: call.waitList)
        if let pass = g.instancePass(for: problem) {
            try launches.enqueue(
                "snb_sums_\(pass.kernel)", (pass.global, pass.local),
                [
                    "x": .buffer(inputs.x), "dy": .buffer(inputs.gradOutput), "mean": .buffer(inputs.statistics.mean),
                    "partials": .buffer(partials), "runs": try .count(runs), "channels": channels, "spatial": spatial,
                    "slices": sliceCount,
                ])
        }

        let coefficientArguments: KeyValuePairs<String, KernelArgument> = [
            "x": .buffer(inputs.x), "dy": .buffer(inputs.gradOutput), "partials": .buffer(partials),
            "mean": .buffer(inputs.statistics.mean), "invstd": .buffer(inputs.statistics.invstd), "instance_mean": .buffer(inputs.statistics.instanceMean),
            "instance_var": .buffer(inputs.statistics.instanceVariance), "layer_mean": .buffer(inputs.statistics.layerMean),
            "layer_var": .buffer(inputs.statistics.layerVariance), "batch_mean": .buffer(inputs.statistics.batchMean),
            "batch_var": .buffer(inputs.statistics.batchVariance), "mean_logits": .buffer(inputs.meanLogits),
            "var_logits": .buffer(inputs.varianceLogits), "weight": .buffer(inputs.weight), "sums": .buffer(sums),
            "adjoints": .buffer(adjoints), "set_adjoints": .buffer(setAdjoints), "coefficients": .buffer(coefficients),
            "logit_partials": .buffer(logitPartials), "dweight": .buffer(dWeight?.deviceBuffer),
            "dbias": .buffer(dBias?.deviceBuffer), "dmean_logits": .buffer(dMeanLogits.deviceBuffer),
            "dvar_logits": .buffer(dVarianceLogits.deviceBuffer), "batch": batch, "channels": channels, "spatial": spatial,
            "slices": sliceCount, "partial_count": try .count(partialCount), "unbiased": .uint(problem.unbiased ? 1 : 0),
        ]
        if plan.splitCoefficients {
            // Every launch covers all statisticsWorkItems work-items: each writes its logit
            // partials, idle or not, so the final sum reads no stale slot.
            let (global, local) = g.statisticsLaunch(covering: g.statisticsWorkItems)
            precondition(global[0] == partialCount, "statisticsWorkItems must be a multiple of the work-group size")
            for name in ["snb_instances", "snb_sets", "snb_mix"] {
                try launches.enqueue(name, (global, local), coefficientArguments)
            }
            try launches.enqueue("snb_logits", ([1], [1]), coefficientArguments)
        } else {
            let local = plan.coefficientWorkGroupSize
            try launches.enqueue("snb_coefficients", ([local], [local]), coefficientArguments)
        }

        if let dx {
            let (global, local) = g.elementwiseLaunch(for: problem)
            try launches.enqueue(
                g.elementwiseColumns(for: problem) ? "snb_dx_columns" : "snb_dx_rows", (global, local),
                [
                    "x": .buffer(inputs.x), "dy": .buffer(inputs.gradOutput), "dx": .buffer(dx.deviceBuffer),
                    "coefficients": .buffer(coefficients), "batch": batch, "channels": channels, "spatial": spatial,
                ])
        }
        return SwitchableNormGradients(
            input: dx, weight: dWeight, bias: dBias, meanLogits: dMeanLogits, varianceLogits: dVarianceLogits,
            events: launches.events)
    }
}
