/// Enqueues the kernels of a backward ``BatchNormPlan`` (from `Kernels/batch_norm_backward.cl`).
///
/// Nothing here waits: the gradients are device tensors whose contents are ready once
/// the returned events complete.
enum BatchNormBackwardKernels {
    struct Inputs {
        var x: DeviceBuffer
        var dy: DeviceBuffer
        var weight: DeviceBuffer?
        /// Saved mean (training) or running mean (inference).
        var mean: DeviceBuffer
        /// Saved invstd (training) or running variance (inference).
        var second: DeviceBuffer
        var renormR: DeviceBuffer?
        var renormD: DeviceBuffer?
        /// Inference only: `invstd = 1/sqrt(running_var + eps)`.
        var eps: Float
        /// β, read only with an activation (it enters the activation's input).
        var bias: DeviceBuffer? = nil
        /// The forward's addend z (problems with `hasAddend` only).
        var addend: DeviceBuffer? = nil
    }

    /// Each channel's `(Σdy, Σdy·(x − mean))` summed elsewhere (synchronized BatchNorm:
    /// every part of the batch), uploaded as the split reduction's partials with one part
    /// per channel; `count` is the whole batch's values per channel.
    struct GivenSums {
        let partials: DeviceBuffer
        let count: Int
    }

    /// - Parameter given: sums to finish with instead of the input's own (training
    ///   problems only): the reduction is skipped, the finishing and dx steps run.
    static func run(
        _ problem: BatchNormBackwardProblem, plan: BatchNormPlan, inputs: Inputs, call: OpCall, on runtime: OpenCLRuntime,
        given: GivenSums? = nil
    ) throws -> NormGradients {
        precondition((inputs.addend != nil) == problem.hasAddend, "an addend exactly when the problem has one")
        let launch = plan.launch
        let mask = problem.outputMask
        let channelShape = [problem.channels]
        let (dx, gradWeight, gradBias) = try call.gradients(
            mask, shape: problem.shape, layout: problem.layout, elementType: problem.elementType,
            parameterShape: channelShape, on: runtime)
        let dz =
            mask.contains(.addend)
            ? try call.backward(
                \.gradAddend, "gradAddend", shape: problem.shape, layout: problem.layout,
                elementType: problem.elementType, on: runtime) : nil
        let program = try runtime.program(.batchNormBackward, options: plan.specialization(for: problem))
        // CHANNEL_PARAMETERS in batch_norm_backward.cl.
        let channelArguments: KeyValuePairs<String, KernelArgument> = [
            "mean": .buffer(inputs.mean), "stat": .buffer(inputs.second), "eps": .float(inputs.eps),
            "weight": .buffer(inputs.weight), "bias": .buffer(inputs.bias), "renorm_r": .buffer(inputs.renormR),
            "renorm_d": .buffer(inputs.renormD), "grad_weight": .buffer(gradWeight?.deviceBuffer),
            "grad_bias": .buffer(gradBias?.deviceBuffer),
        ]
        // x, dy and z, then dx and dz: what every kernel that writes gradients elementwise takes first.
        let inputsAndGradients: KeyValuePairs<String, KernelArgument> = [
            "x": .buffer(inputs.x), "dy": .buffer(inputs.dy), "z": .buffer(inputs.addend),
            "dx": .buffer(dx?.deviceBuffer), "dz": .buffer(dz?.deviceBuffer),
        ]
        var launches = KernelLaunches(program, on: runtime, waitingFor: call.waitList)
        /// With an activation, the per-channel shift of its input (channel_pre's), for the
        /// elementwise dx passes; nil without one.
        func preShift() throws -> DeviceBuffer? {
            problem.activation == .none ? nil : try DeviceBuffer(byteCount: problem.channels * 4, on: runtime)
        }

        /// dx and dz from per-channel coefficients (`mean_dy`, `xcoef` nil in inference).
        func enqueueDx(scale: DeviceBuffer?, meanDy: DeviceBuffer?, xcoef: DeviceBuffer?, preShift: DeviceBuffer?)
            throws
        {
            // An empty part of a synchronized batch still writes dγ and dβ, but no dx.
            guard dx != nil || dz != nil, problem.count > 0 else { return }
            let coefficients: KeyValuePairs<String, KernelArgument> = [
                "mean": .buffer(inputs.mean), "scale": .buffer(scale), "mean_dy": .buffer(meanDy), "xcoef": .buffer(xcoef),
                "pre_shift": .buffer(preShift),
            ]
            if problem.isRowsByChannels {
                try launches.enqueue(
                    "bnb_dx_columns", launch.elementwise, inputsAndGradients, try launch.columnSizes(), coefficients)
            } else {
                try launches.enqueue(
                    "bnb_dx", launch.elementwise, inputsAndGradients, try launch.planeSizes(), coefficients,
                    [
                        "stat": .buffer(inputs.second), "weight": .buffer(inputs.weight), "bias": .buffer(inputs.bias),
                        "eps": .float(inputs.eps),
                    ])
            }
        }

        /// Steps 2 and 3 of the split paths: each channel's `groups` partials merged in
        /// order (dγ, dβ and dx's coefficients), then dx.
        func finishAndDx(partials: DeviceBuffer, groups: Int, count: Int) throws {
            let scale = try DeviceBuffer(byteCount: problem.channels * 4, on: runtime)
            let meanDy = try DeviceBuffer(byteCount: problem.channels * 4, on: runtime)
            let xcoef = try DeviceBuffer(byteCount: problem.channels * 4, on: runtime)
            let shift = try preShift()
            try launches.enqueue(
                "bnb_finish", launch.perChannelItems, ["partials": .buffer(partials)], try launch.channelCount(),
                ["groups": try .count(groups), "count": .float(Float(count))], channelArguments,
                [
                    "scale": .buffer(scale), "mean_dy": .buffer(meanDy), "xcoef": .buffer(xcoef),
                    "pre_shift": .buffer(shift),
                ])
            try enqueueDx(scale: scale, meanDy: meanDy, xcoef: xcoef, preShift: shift)
        }

        func gradients() -> NormGradients {
            var gradients = NormGradients(input: dx, weight: gradWeight, bias: gradBias, events: launches.events)
            gradients.addend = dz
            return gradients
        }
        if let given {
            try finishAndDx(partials: given.partials, groups: 1, count: given.count)
            return gradients()
        }
        switch plan.strategy {
        case .elementwise where !problem.isRowsByChannels:
            // One launch: bnb_dx computes each channel's scale (and β) itself.
            try enqueueDx(scale: nil, meanDy: nil, xcoef: nil, preShift: nil)
        case .elementwise:
            let scale = try DeviceBuffer(byteCount: problem.channels * 4, on: runtime)
            let shift = try preShift()
            try launches.enqueue(
                "bnb_inference_scale", launch.perChannelItems, try launch.channelCount(),
                [
                    "stat": .buffer(inputs.second), "eps": .float(inputs.eps), "weight": .buffer(inputs.weight),
                    "bias": .buffer(inputs.bias), "scale": .buffer(scale), "pre_shift": .buffer(shift),
                ])
            try enqueueDx(scale: scale, meanDy: nil, xcoef: nil, preShift: shift)
        case .fusedPerChannel, .columns:
            let columns = plan.strategy == .columns
            let (geometry, sizes) = try launch.singlePass(columns: columns)
            try launches.enqueue(
                columns ? "bnb_columns" : "bnb_fused", geometry, inputsAndGradients, sizes, channelArguments)
        case .channelItems:
            try launches.enqueue(
                "bnb_channels", launch.channelItems, inputsAndGradients, try launch.planeSizes(), channelArguments)
        case .splitReduction(let groups), .splitColumns(rowGroups: let groups):
            // Partial (Σdy, Σdy·(x − mean)) per (channel, slice), merged per channel in
            // order, then the dx pass.
            let partials = try enqueuePartialSums(
                problem, launch: launch, inputs: inputs, groups: groups,
                columns: plan.strategy == .splitColumns(rowGroups: groups), launches: &launches)
            try finishAndDx(partials: partials, groups: groups, count: problem.valuesPerChannel)
        }
        return gradients()
    }

    /// Step 1 of the split paths: `groups` slices per channel (row slices of the columns
    /// of a `(rows, C)` matrix with `columns`) write their `(Σg, Σg·(x − mean))` (g = dy
    /// through the epilogue) to the returned buffer (`C·groups` float pairs, channel-major).
    static func enqueuePartialSums(
        _ problem: BatchNormBackwardProblem, launch: BatchNormLaunch, inputs: Inputs, groups: Int, columns: Bool,
        launches: inout KernelLaunches
    ) throws -> DeviceBuffer {
        let partials = try DeviceBuffer(byteCount: problem.channels * groups * 2 * 4, on: launches.runtime)
        let inputArguments: KeyValuePairs<String, KernelArgument> = [
            "x": .buffer(inputs.x), "dy": .buffer(inputs.dy), "z": .buffer(inputs.addend),
        ]
        // mean, PRE_PARAMETERS (batch_norm_backward.cl) and the partials.
        let channelArguments: KeyValuePairs<String, KernelArgument> = [
            "mean": .buffer(inputs.mean), "stat": .buffer(inputs.second), "eps": .float(inputs.eps),
            "weight": .buffer(inputs.weight), "bias": .buffer(inputs.bias), "renorm_r": .buffer(inputs.renormR),
            "renorm_d": .buffer(inputs.renormD), "partials": .buffer(partials),
        ]
        if columns {
            try launches.enqueue(
                "bnb_column_partials", launch.columnItems(rowGroups: groups), inputArguments, try launch.columnSizes(),
                channelArguments)
        } else {
            try launches.enqueue(
                "bnb_partial_sums", launch.sliceGroups(groups), inputArguments, try launch.planeSizes(),
                channelArguments)
        }
        return partials
    }
}
