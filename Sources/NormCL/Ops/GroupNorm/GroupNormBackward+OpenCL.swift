/// Enqueues the kernels of a ``GroupNormBackwardPlan`` (from
/// `Kernels/group_norm_backward.cl`), for GroupNorm and InstanceNorm alike.
///
/// Nothing here waits: the gradients are device tensors whose contents are ready once
/// the returned events complete, which a later read does implicitly.
enum GroupNormBackwardKernels {
    /// Where the statistics the forward pass normalised with come from.
    enum Statistics {
        /// Mean and invstd per (n, g) row, as the forward pass saved them.
        case saved(mean: DeviceBuffer, invstd: DeviceBuffer)
        /// InstanceNorm's running mean and variance per channel (constants in backward).
        case running(mean: DeviceBuffer, variance: DeviceBuffer, eps: Float)
    }

    struct Inputs {
        var gradOutput: DeviceBuffer
        var x: DeviceBuffer
        var weight: DeviceBuffer?
        var statistics: Statistics
    }

    /// The per-(n, c) coefficients of `dx = a·dy + b·(x − mean) + c`.
    private struct Coefficients {
        let a: DeviceBuffer, b: DeviceBuffer, mean: DeviceBuffer, c: DeviceBuffer

        init(planes: Int, on runtime: OpenCLRuntime) throws {
            a = try DeviceBuffer(byteCount: planes * 4, on: runtime)
            b = try DeviceBuffer(byteCount: planes * 4, on: runtime)
            mean = try DeviceBuffer(byteCount: planes * 4, on: runtime)
            c = try DeviceBuffer(byteCount: planes * 4, on: runtime)
        }

        var arguments: [KernelArgument] { [.buffer(a), .buffer(b), .buffer(mean), .buffer(c)] }
    }

    static func run(
        _ problem: GroupNormProblem, plan: GroupNormBackwardPlan, inputs: Inputs, on runtime: OpenCLRuntime
    ) throws -> NormGradients {
        let mask = plan.mask
        guard !mask.isEmpty else { return NormGradients(input: nil, weight: nil, bias: nil, events: []) }
        let program = try runtime.program(.groupNormBackward, options: plan.buildOptions(for: problem))
        let planes = problem.batch * problem.channels
        let spatialVectors = try KernelArgument.count(problem.spatial / plan.vectorWidth)
        var events: [KernelEvent] = []

        let mean: DeviceBuffer
        let invstd: DeviceBuffer
        switch inputs.statistics {
        case .saved(let savedMean, let savedInvstd):
            (mean, invstd) = (savedMean, savedInvstd)
        case .running(let runningMean, let runningVar, let eps):
            // Rows of (n, c) so that every path reads its statistics as it reads saved ones.
            mean = try DeviceBuffer(byteCount: planes * 4, on: runtime)
            invstd = try DeviceBuffer(byteCount: planes * 4, on: runtime)
            let local = plan.perRowWorkGroupSize
            events.append(
                try runtime.enqueue(
                    "gnb_running_rows", from: program, global: [planes.roundedUp(toMultipleOf: local)], local: [local],
                    arguments: [
                        .buffer(runningMean), .buffer(runningVar), try .count(planes), .float(eps), .buffer(mean),
                        .buffer(invstd),
                    ]))
        }

        let dx =
            mask.contains(.input)
            ? try Tensor(
                uninitializedShape: problem.shape, layout: problem.layout, elementType: problem.elementType, on: runtime)
            : nil
        let wantsParameters = mask.contains(.weight) || mask.contains(.bias)
        // (Σdy, invstd·Σdy·(x − mean)) per plane, for dγ and dβ.
        let sums = wantsParameters ? try DeviceBuffer(byteCount: planes * 2 * 4, on: runtime) : nil

        switch plan.strategy {
        case .fusedRows:
            let wg = plan.reductionWorkGroupSize
            events.append(
                try runtime.enqueue(
                    "gnb_fused_rows", from: program, global: [problem.rows * wg], local: [wg],
                    arguments: [
                        .buffer(inputs.gradOutput), .buffer(inputs.x), .buffer(inputs.weight), .buffer(mean),
                        .buffer(invstd), .buffer(dx?.deviceBuffer), .buffer(sums), spatialVectors,
                    ]))
        case .splitPlanes(let slices), .columns(let slices):
            let isColumns = plan.strategy == .columns(spatialSlices: slices)
            var partials: DeviceBuffer? = nil
            if plan.reduces(problem) {
                let buffer = try DeviceBuffer(byteCount: planes * slices * 2 * 4, on: runtime)
                partials = buffer
                if isColumns {
                    let local = plan.columnWorkGroupSize
                    events.append(
                        try runtime.enqueue(
                            "gnb_column_partials", from: program,
                            global: [plan.columnWorkItems.roundedUp(toMultipleOf: local), problem.batch, slices],
                            local: [local, 1, 1],
                            arguments: [.buffer(inputs.gradOutput), .buffer(inputs.x), .buffer(mean), .buffer(buffer)]))
                } else {
                    let wg = plan.reductionWorkGroupSize
                    events.append(
                        try runtime.enqueue(
                            "gnb_plane_partials", from: program, global: [slices * wg, planes], local: [wg, 1],
                            arguments: [
                                .buffer(inputs.gradOutput), .buffer(inputs.x), .buffer(mean), .buffer(buffer),
                                spatialVectors,
                            ]))
                }
            }
            let coefficients = dx == nil ? nil : try Coefficients(planes: planes, on: runtime)
            let local = plan.perRowWorkGroupSize
            events.append(
                try runtime.enqueue(
                    "gnb_finish_rows", from: program, global: [problem.rows.roundedUp(toMultipleOf: local)],
                    local: [local],
                    arguments: [
                        .buffer(partials), try .count(problem.rows), try .count(partials == nil ? 0 : slices),
                        .buffer(inputs.weight), .buffer(mean), .buffer(invstd), .buffer(sums),
                    ] + (coefficients?.arguments ?? [.buffer(nil), .buffer(nil), .buffer(nil), .buffer(nil)])))
            if let dx, let coefficients {
                let (kernel, count) =
                    isColumns ? ("gnb_dx_columns", problem.batch * problem.spatial) : ("gnb_dx_planes", planes)
                let shape: [KernelArgument] = isColumns ? [try .count(count)] : [try .count(count), spatialVectors]
                events.append(
                    try runtime.enqueue(
                        kernel, from: program,
                        global: [plan.elementwiseWorkGroups * plan.elementwiseWorkGroupSize],
                        local: [plan.elementwiseWorkGroupSize],
                        arguments: [.buffer(inputs.gradOutput), .buffer(inputs.x), .buffer(dx.deviceBuffer)] + shape
                            + coefficients.arguments))
            }
        }

        var dWeight: Tensor? = nil
        var dBias: Tensor? = nil
        if let sums {
            let channelShape = [problem.channels]
            dWeight = mask.contains(.weight) ? try Tensor(uninitializedShape: channelShape, on: runtime) : nil
            dBias = mask.contains(.bias) ? try Tensor(uninitializedShape: channelShape, on: runtime) : nil
            let local = plan.perRowWorkGroupSize
            events.append(
                try runtime.enqueue(
                    "gnb_parameter_grads", from: program, global: [problem.channels.roundedUp(toMultipleOf: local)],
                    local: [local],
                    arguments: [
                        .buffer(sums), try .count(problem.batch), .buffer(dWeight?.deviceBuffer),
                        .buffer(dBias?.deviceBuffer),
                    ]))
        }
        return NormGradients(input: dx, weight: dWeight, bias: dBias, events: events)
    }
}
