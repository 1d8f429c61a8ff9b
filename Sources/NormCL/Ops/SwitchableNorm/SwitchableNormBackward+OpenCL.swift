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
        var mean: DeviceBuffer
        var invstd: DeviceBuffer
        var instanceMean: DeviceBuffer?
        var instanceVariance: DeviceBuffer?
        var layerMean: DeviceBuffer
        var layerVariance: DeviceBuffer
        /// The BN statistics that were mixed in: the batch's in training, the running ones
        /// in inference; nil without a BN branch.
        var batchMean: DeviceBuffer?
        var batchVariance: DeviceBuffer?
    }

    static func run(
        _ problem: SwitchableNormProblem, plan: SwitchableNormBackwardPlan, inputs: Inputs, mask: NormGradientMask,
        on runtime: OpenCLRuntime
    ) throws -> SwitchableNormGradients {
        let program = try runtime.program(.switchableNormBackward, options: plan.buildOptions(for: problem))
        let g = plan.geometry
        let direct = plan.strategy == .direct
        let runs = problem.instances, slices = plan.strategy.slices, k = problem.branches.count
        func floats(_ shape: [Int]) throws -> Tensor { try Tensor(uninitializedShape: shape, on: runtime) }
        let dWeight = mask.contains(.weight) ? try floats([problem.channels]) : nil
        let dBias = mask.contains(.bias) ? try floats([problem.channels]) : nil
        let dMeanLogits = try floats([k]), dVarianceLogits = try floats([k])
        let dx =
            mask.contains(.input)
            ? try Tensor(
                uninitializedShape: problem.shape, layout: problem.layout, elementType: problem.elementType, on: runtime)
            : nil
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

        var events: [KernelEvent] = []
        let sumsArguments: [KernelArgument] = [
            .buffer(inputs.x), .buffer(inputs.gradOutput), .buffer(inputs.mean), .buffer(partials),
        ]
        switch plan.strategy {
        case .direct:
            break
        case .runPerWorkItem:
            let local = g.reductionWorkGroupSize
            events.append(
                try runtime.enqueue(
                    "snb_sums_items", from: program, global: [(runs * slices).roundedUp(toMultipleOf: local)],
                    local: [local], arguments: sumsArguments))
        case .runPerWorkGroup:
            let local = g.reductionWorkGroupSize
            events.append(
                try runtime.enqueue(
                    "snb_sums_groups", from: program, global: [slices * local, runs], local: [local, 1],
                    arguments: sumsArguments))
        case .columns:
            let local = g.columnWorkGroupSize
            events.append(
                try runtime.enqueue(
                    "snb_sums_columns", from: program,
                    global: [g.columnWorkItems.roundedUp(toMultipleOf: local), problem.batch * slices], local: [local, 1],
                    arguments: sumsArguments))
        }

        let coefficientArguments: [KernelArgument] = [
            .buffer(inputs.x), .buffer(inputs.gradOutput), .buffer(partials), .buffer(inputs.mean), .buffer(inputs.invstd),
            .buffer(inputs.instanceMean), .buffer(inputs.instanceVariance), .buffer(inputs.layerMean),
            .buffer(inputs.layerVariance), .buffer(inputs.batchMean), .buffer(inputs.batchVariance),
            .buffer(inputs.meanLogits), .buffer(inputs.varianceLogits), .buffer(inputs.weight), .buffer(sums),
            .buffer(adjoints), .buffer(setAdjoints), .buffer(coefficients), .buffer(logitPartials),
            .buffer(dWeight?.deviceBuffer), .buffer(dBias?.deviceBuffer), .buffer(dMeanLogits.deviceBuffer),
            .buffer(dVarianceLogits.deviceBuffer), try .count(problem.batch), try .count(problem.channels),
            try .count(partialCount),
        ]
        if plan.splitCoefficients {
            let local = g.statisticsWorkGroupSize
            // Every launch covers all statisticsWorkItems work-items: each writes its logit
            // partials, idle or not, so the final sum reads no stale slot.
            let global = [g.statisticsWorkItems.roundedUp(toMultipleOf: local)]
            precondition(global[0] == partialCount, "statisticsWorkItems must be a multiple of the work-group size")
            for name in ["snb_instances", "snb_sets", "snb_mix"] {
                events.append(
                    try runtime.enqueue(name, from: program, global: global, local: [local], arguments: coefficientArguments))
            }
            events.append(
                try runtime.enqueue("snb_logits", from: program, global: [1], local: [1], arguments: coefficientArguments))
        } else {
            let local = plan.coefficientWorkGroupSize
            events.append(
                try runtime.enqueue(
                    "snb_coefficients", from: program, global: [local], local: [local], arguments: coefficientArguments))
        }

        if let dx {
            let local = g.elementwiseWorkGroupSize
            events.append(
                try runtime.enqueue(
                    problem.layout == .channelsLast && !direct ? "snb_dx_columns" : "snb_dx_rows", from: program,
                    global: [g.elementwiseWorkGroups * local], local: [local],
                    arguments: [
                        .buffer(inputs.x), .buffer(inputs.gradOutput), .buffer(dx.deviceBuffer), .buffer(coefficients),
                    ]))
        }
        return SwitchableNormGradients(
            input: dx, weight: dWeight, bias: dBias, meanLogits: dMeanLogits, varianceLogits: dVarianceLogits,
            events: events)
    }
}
