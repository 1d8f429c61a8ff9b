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
        let program = try runtime.program(.batchNormBackward, options: plan.specialization(for: problem).text)
        let launch = plan.launch
        let mask = problem.outputMask
        let channelShape = [problem.channels]
        let (dx, gradWeight, gradBias) = try call.gradients(
            mask, shape: problem.shape, layout: problem.layout, elementType: problem.elementType,
            parameterShape: channelShape, on: runtime)
        // CHANNEL_PARAMETERS in batch_norm_backward.cl.
        let channelArguments: KeyValuePairs<String, KernelArgument> = [
            "mean": .buffer(inputs.mean), "stat": .buffer(inputs.second), "eps": .float(inputs.eps),
            "weight": .buffer(inputs.weight), "renorm_r": .buffer(inputs.renormR), "renorm_d": .buffer(inputs.renormD),
            "grad_weight": .buffer(gradWeight?.deviceBuffer), "grad_bias": .buffer(gradBias?.deviceBuffer),
        ]
        let inputsAndDx: KeyValuePairs<String, KernelArgument> = [
            "x": .buffer(inputs.x), "dy": .buffer(inputs.dy), "dx": .buffer(dx?.deviceBuffer),
        ]
        var launches = KernelLaunches(program, on: runtime, waitingFor: call.waitList)

        /// dx from per-channel coefficients (`mean_dy`, `xcoef` nil in inference).
        func enqueueDx(scale: DeviceBuffer?, meanDy: DeviceBuffer?, xcoef: DeviceBuffer?) throws {
            // An empty part of a synchronized batch still writes dγ and dβ, but no dx.
            guard let dx, dx.count > 0 else { return }
            let coefficients: KeyValuePairs<String, KernelArgument> = [
                "mean": .buffer(inputs.mean), "scale": .buffer(scale), "mean_dy": .buffer(meanDy), "xcoef": .buffer(xcoef),
            ]
            if problem.isRowsByChannels {
                try launches.enqueue(
                    "bnb_dx_columns", launch.elementwise, inputsAndDx, try launch.columnSizes(), coefficients)
            } else {
                try launches.enqueue(
                    "bnb_dx", launch.elementwise, inputsAndDx, try launch.planeSizes(), coefficients,
                    ["stat": .buffer(inputs.second), "weight": .buffer(inputs.weight), "eps": .float(inputs.eps)])
            }
        }

        /// Steps 2 and 3 of the split paths: each channel's `groups` partials merged in
        /// order (dγ, dβ and dx's coefficients), then dx.
        func finishAndDx(partials: DeviceBuffer, groups: Int, count: Int) throws {
            let scale = try DeviceBuffer(byteCount: problem.channels * 4, on: runtime)
            let meanDy = try DeviceBuffer(byteCount: problem.channels * 4, on: runtime)
            let xcoef = try DeviceBuffer(byteCount: problem.channels * 4, on: runtime)
            try launches.enqueue(
                "bnb_finish", launch.perChannelItems, ["partials": .buffer(partials)], try launch.channelCount(),
                ["groups": try .count(groups), "count": .float(Float(count))], channelArguments,
                ["scale": .buffer(scale), "mean_dy": .buffer(meanDy), "xcoef": .buffer(xcoef)])
            try enqueueDx(scale: scale, meanDy: meanDy, xcoef: xcoef)
        }

        if let given {
            try finishAndDx(partials: given.partials, groups: 1, count: given.count)
            return NormGradients(input: dx, weight: gradWeight, bias: gradBias, events: launches.events)
        }
        switch plan.strategy {
        case .elementwise where !problem.isRowsByChannels:
            // One launch: bnb_dx computes each channel's scale itself.
            try enqueueDx(scale: nil, meanDy: nil, xcoef: nil)
        case .elementwise:
            let scale = try DeviceBuffer(byteCount: problem.channels * 4, on: runtime)
            try launches.enqueue(
                "bnb_inference_scale", launch.perChannelItems, try launch.channelCount(),
                [
                    "stat": .buffer(inputs.second), "eps": .float(inputs.eps), "weight": .buffer(inputs.weight),
                    "scale": .buffer(scale),
                ])
            try enqueueDx(scale: scale, meanDy: nil, xcoef: nil)
        case .fusedPerChannel, .columns:
            let columns = plan.strategy == .columns
            let (geometry, sizes) = try launch.singlePass(columns: columns)
            try launches.enqueue(columns ? "bnb_columns" : "bnb_fused", geometry, inputsAndDx, sizes, channelArguments)
        case .splitReduction(let groups), .splitColumns(rowGroups: let groups):
            // Partial (Σdy, Σdy·(x − mean)) per (channel, slice), merged per channel in
            // order, then the dx pass.
            let partials = try enqueuePartialSums(
                problem, launch: launch, inputs: inputs, groups: groups,
                columns: plan.strategy == .splitColumns(rowGroups: groups), launches: &launches)
            try finishAndDx(partials: partials, groups: groups, count: problem.valuesPerChannel)
        }
        return NormGradients(input: dx, weight: gradWeight, bias: gradBias, events: launches.events)
    }

    /// Step 1 of the split paths: `groups` slices per channel (row slices of the columns
    /// of a `(rows, C)` matrix with `columns`) write their `(Σdy, Σdy·(x − mean))` to the
    /// returned buffer (`C·groups` float pairs, channel-major).
    static func enqueuePartialSums(
        _ problem: BatchNormBackwardProblem, launch: BatchNormLaunch, inputs: Inputs, groups: Int, columns: Bool,
        launches: inout KernelLaunches
    ) throws -> DeviceBuffer {
        let partials = try DeviceBuffer(byteCount: problem.channels * groups * 2 * 4, on: launches.runtime)
        let xAndDy: KeyValuePairs<String, KernelArgument> = ["x": .buffer(inputs.x), "dy": .buffer(inputs.dy)]
        let meanAndPartials: KeyValuePairs<String, KernelArgument> = [
            "mean": .buffer(inputs.mean), "partials": .buffer(partials),
        ]
        if columns {
            try launches.enqueue(
                "bnb_column_partials", launch.columnItems(rowGroups: groups), xAndDy, try launch.columnSizes(),
                meanAndPartials)
        } else {
            try launches.enqueue(
                "bnb_partial_sums", launch.sliceGroups(groups), xAndDy, try launch.planeSizes(), meanAndPartials)
        }
        return partials
    }
}
