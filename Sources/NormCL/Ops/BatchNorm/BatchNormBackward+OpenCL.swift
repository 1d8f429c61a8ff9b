/// Enqueues the kernels of a ``BatchNormBackwardPlan`` (from `Kernels/batch_norm_backward.cl`).
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

    static func run(
        _ problem: BatchNormBackwardProblem, plan: BatchNormBackwardPlan, inputs: Inputs, on runtime: OpenCLRuntime
    ) throws -> NormGradients {
        let program = try runtime.program(.batchNormBackward, options: plan.buildOptions(for: problem))
        let mask = problem.outputMask
        let channelShape = [problem.channels]
        let dx =
            mask.contains(.input)
            ? try Tensor(uninitializedShape: problem.shape, layout: problem.layout, elementType: problem.elementType, on: runtime)
            : nil
        let gradWeight = mask.contains(.weight) ? try Tensor(uninitializedShape: channelShape, on: runtime) : nil
        let gradBias = mask.contains(.bias) ? try Tensor(uninitializedShape: channelShape, on: runtime) : nil
        // CHANNEL_PARAMETERS in batch_norm_backward.cl.
        let channelArguments: [KernelArgument] = [
            .buffer(inputs.mean), .buffer(inputs.second), .float(inputs.eps), .buffer(inputs.weight),
            .buffer(inputs.renormR), .buffer(inputs.renormD),
            .buffer(gradWeight?.deviceBuffer), .buffer(gradBias?.deviceBuffer),
        ]
        let rows = problem.isRowsByChannels ? problem.valuesPerChannel : problem.batch
        let rowsArgument = try KernelArgument.count(rows)
        let wg = plan.reductionWorkGroupSize
        let perChannelGlobal = [problem.channels.roundedUp(toMultipleOf: plan.perChannelWorkGroupSize)]
        let perChannelLocal = [plan.perChannelWorkGroupSize]
        var events: [KernelEvent] = []

        /// dx from per-channel coefficients (`mean_dy`, `xcoef` nil in inference).
        func enqueueDx(scale: DeviceBuffer?, meanDy: DeviceBuffer?, xcoef: DeviceBuffer?) throws {
            guard let dx else { return }
            events.append(
                try runtime.enqueue(
                    problem.isRowsByChannels ? "bnb_dx_columns" : "bnb_dx", from: program,
                    global: [plan.elementwiseWorkGroups * plan.elementwiseWorkGroupSize],
                    local: [plan.elementwiseWorkGroupSize],
                    arguments: [
                        .buffer(inputs.x), .buffer(inputs.dy), .buffer(dx.deviceBuffer), rowsArgument, .buffer(inputs.mean),
                        .buffer(scale), .buffer(meanDy), .buffer(xcoef),
                    ] + (problem.isRowsByChannels ? [] : [.buffer(inputs.second), .buffer(inputs.weight), .float(inputs.eps)])))
        }

        switch plan.strategy {
        case .elementwise where !problem.isRowsByChannels:
            // One launch: bnb_dx computes each channel's scale itself.
            try enqueueDx(scale: nil, meanDy: nil, xcoef: nil)
        case .elementwise:
            let scale = try DeviceBuffer(byteCount: problem.channels * 4, on: runtime)
            events.append(
                try runtime.enqueue(
                    "bnb_inference_scale", from: program, global: perChannelGlobal, local: perChannelLocal,
                    arguments: [.buffer(inputs.second), .float(inputs.eps), .buffer(inputs.weight), .buffer(scale)]))
            try enqueueDx(scale: scale, meanDy: nil, xcoef: nil)
        case .fusedPerChannel:
            events.append(
                try runtime.enqueue(
                    "bnb_fused", from: program, global: [problem.channels * wg], local: [wg],
                    arguments: [.buffer(inputs.x), .buffer(inputs.dy), .buffer(dx?.deviceBuffer), rowsArgument]
                        + channelArguments))
        case .columns:
            let local = plan.columnWorkGroupSize
            events.append(
                try runtime.enqueue(
                    "bnb_columns", from: program, global: [plan.columnWorkItems.roundedUp(toMultipleOf: local)], local: [local],
                    arguments: [.buffer(inputs.x), .buffer(inputs.dy), .buffer(dx?.deviceBuffer), rowsArgument]
                        + channelArguments))
        case .splitReduction(let groups), .splitColumns(rowGroups: let groups):
            // Partial (Σdy, Σdy·(x − mean)) per (channel, slice), merged per channel in
            // order, then the dx pass.
            let partials = try DeviceBuffer(byteCount: problem.channels * groups * 2 * 4, on: runtime)
            if case .splitColumns = plan.strategy {
                let local = plan.columnWorkGroupSize
                events.append(
                    try runtime.enqueue(
                        "bnb_column_partials", from: program,
                        global: [plan.columnWorkItems.roundedUp(toMultipleOf: local), groups], local: [local, 1],
                        arguments: [.buffer(inputs.x), .buffer(inputs.dy), rowsArgument, .buffer(inputs.mean), .buffer(partials)]))
            } else {
                events.append(
                    try runtime.enqueue(
                        "bnb_partial_sums", from: program, global: [groups * wg, problem.channels], local: [wg, 1],
                        arguments: [.buffer(inputs.x), .buffer(inputs.dy), rowsArgument, .buffer(inputs.mean), .buffer(partials)]))
            }
            let scale = try DeviceBuffer(byteCount: problem.channels * 4, on: runtime)
            let meanDy = try DeviceBuffer(byteCount: problem.channels * 4, on: runtime)
            let xcoef = try DeviceBuffer(byteCount: problem.channels * 4, on: runtime)
            events.append(
                try runtime.enqueue(
                    "bnb_finish", from: program, global: perChannelGlobal, local: perChannelLocal,
                    arguments: [.buffer(partials), try .count(groups), .float(Float(problem.valuesPerChannel))]
                        + channelArguments + [.buffer(scale), .buffer(meanDy), .buffer(xcoef)]))
            try enqueueDx(scale: scale, meanDy: meanDy, xcoef: xcoef)
        }
        return NormGradients(input: dx, weight: gradWeight, bias: gradBias, events: events)
    }
}
