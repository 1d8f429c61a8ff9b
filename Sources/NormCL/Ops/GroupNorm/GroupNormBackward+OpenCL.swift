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
        /// β, read only by a fused activation (its input is recomputed from x); nil for β = 0.
        var bias: DeviceBuffer? = nil
    }

    /// The per-(n, c) coefficients of `dx = a·dy + b·(x − mean) + c`, and with a fused
    /// activation β per (n, c): dy is then taken through f′ at `(x − mean)·a + β`.
    private struct Coefficients {
        let a: DeviceBuffer, b: DeviceBuffer, mean: DeviceBuffer, c: DeviceBuffer
        let beta: DeviceBuffer?

        init(planes: Int, activation: Activation, on runtime: OpenCLRuntime) throws {
            a = try DeviceBuffer(byteCount: planes * 4, on: runtime)
            b = try DeviceBuffer(byteCount: planes * 4, on: runtime)
            mean = try DeviceBuffer(byteCount: planes * 4, on: runtime)
            c = try DeviceBuffer(byteCount: planes * 4, on: runtime)
            beta = activation == .none ? nil : try DeviceBuffer(byteCount: planes * 4, on: runtime)
        }
    }

    static func run(
        _ problem: GroupNormProblem, plan: GroupNormBackwardPlan, inputs: Inputs, call: OpCall, on runtime: OpenCLRuntime
    ) throws -> NormGradients {
        let mask = plan.mask
        guard !mask.isEmpty else { return NormGradients(input: nil, weight: nil, bias: nil, events: []) }
        let program = try runtime.program(.groupNormBackward, options: plan.specialization(for: problem))
        let geometry = plan.geometry
        let planes = problem.planes
        let channels = try KernelArgument.count(problem.channels)
        let cpg = try KernelArgument.count(problem.channelsPerGroup)
        let spatial = try KernelArgument.count(problem.spatial)
        let spatialVectors = try KernelArgument.count(problem.spatial / geometry.vectorWidth)
        let (dx, dWeight, dBias) = try call.gradients(
            mask, shape: problem.shape, layout: problem.layout, elementType: problem.elementType,
            parameterShape: [problem.channels], on: runtime)
        var launches = KernelLaunches(program, on: runtime, waitingFor: call.waitList)

        let mean: DeviceBuffer
        let invstd: DeviceBuffer
        switch inputs.statistics {
        case .saved(let savedMean, let savedInvstd):
            (mean, invstd) = (savedMean, savedInvstd)
        case .running(let runningMean, let runningVar, let eps):
            // Rows of (n, c) so that every path reads its statistics as it reads saved ones.
            mean = try DeviceBuffer(byteCount: planes * 4, on: runtime)
            invstd = try DeviceBuffer(byteCount: planes * 4, on: runtime)
            let launch = geometry.launch.perSegmentLaunch(segments: planes)
            try launches.enqueue(
                "gnb_running_rows", launch,
                [
                    "running_mean": .buffer(runningMean), "running_var": .buffer(runningVar),
                    "planes": try .count(planes), "channels": channels, "eps": .float(eps), "mean": .buffer(mean),
                    "invstd": .buffer(invstd),
                ])
        }

        let wantsParameters = dWeight != nil || dBias != nil
        // (Σdy, invstd·Σdy·(x − mean)) per plane, for dγ and dβ.
        let sums = wantsParameters ? try DeviceBuffer(byteCount: planes * 2 * 4, on: runtime) : nil

        switch plan.strategy {
        case .fusedRows:
            let wg = geometry.reductionWorkGroupSize
            try launches.enqueue(
                "gnb_fused_rows", ([problem.rows * wg], [wg]),
                [
                    "dy": .buffer(inputs.gradOutput), "x": .buffer(inputs.x), "weight": .buffer(inputs.weight),
                    "bias": .buffer(inputs.bias), "mean": .buffer(mean), "invstd": .buffer(invstd),
                    "dx": .buffer(dx?.deviceBuffer),
                    "sums": .buffer(sums), "groups": try .count(problem.groups), "cpg": cpg,
                    "spatial_vecs": spatialVectors,
                ])
        case .splitPlanes(let slices), .columns(let slices):
            let isColumns = plan.strategy == .columns(spatialSlices: slices)
            var partials: DeviceBuffer? = nil
            if plan.reduces(problem) {
                let buffer = try DeviceBuffer(byteCount: planes * slices * 2 * 4, on: runtime)
                partials = buffer
                if isColumns {
                    let launch = geometry.columnLaunch(batch: problem.batch, slices: slices)
                    try launches.enqueue(
                        "gnb_column_partials", launch,
                        [
                            "dy": .buffer(inputs.gradOutput), "x": .buffer(inputs.x), "mean": .buffer(mean),
                            "invstd": .buffer(invstd), "weight": .buffer(inputs.weight), "bias": .buffer(inputs.bias),
                            "partials": .buffer(buffer), "channels": channels, "spatial": spatial, "cpg": cpg,
                        ])
                } else {
                    let wg = geometry.reductionWorkGroupSize
                    try launches.enqueue(
                        "gnb_plane_partials", ([slices * wg, planes], [wg, 1]),
                        [
                            "dy": .buffer(inputs.gradOutput), "x": .buffer(inputs.x), "mean": .buffer(mean),
                            "invstd": .buffer(invstd), "weight": .buffer(inputs.weight), "bias": .buffer(inputs.bias),
                            "partials": .buffer(buffer), "channels": channels, "cpg": cpg,
                            "spatial_vecs": spatialVectors,
                        ])
                }
            }
            let coefficients =
                dx == nil ? nil : try Coefficients(planes: planes, activation: problem.activation, on: runtime)
            let launch = geometry.launch.perSegmentLaunch(segments: problem.rows)
            try launches.enqueue(
                "gnb_finish_rows", launch,
                [
                    "partials": .buffer(partials), "rows": try .count(problem.rows),
                    "slices": try .count(partials == nil ? 0 : slices), "weight": .buffer(inputs.weight),
                    "bias": .buffer(inputs.bias), "mean": .buffer(mean), "invstd": .buffer(invstd),
                    "sums": .buffer(sums), "coef_a": .buffer(coefficients?.a), "coef_b": .buffer(coefficients?.b),
                    "coef_mean": .buffer(coefficients?.mean), "coef_c": .buffer(coefficients?.c),
                    "coef_beta": .buffer(coefficients?.beta),
                    "groups": try .count(problem.groups), "cpg": cpg, "count": .float(Float(problem.valuesPerRow)),
                ])
            if let dx, let coefficients {
                let (global, local) = (geometry.elementwiseGlobal, geometry.elementwiseLocal)
                if isColumns {
                    try launches.enqueue(
                        "gnb_dx_columns", (global, local),
                        [
                            "dy": .buffer(inputs.gradOutput), "x": .buffer(inputs.x), "dx": .buffer(dx.deviceBuffer),
                            "rows": try .count(problem.batch * problem.spatial), "spatial": spatial,
                            "channels": channels, "coef_a": .buffer(coefficients.a), "coef_b": .buffer(coefficients.b),
                            "coef_mean": .buffer(coefficients.mean), "coef_c": .buffer(coefficients.c),
                            "coef_beta": .buffer(coefficients.beta),
                        ])
                } else {
                    try launches.enqueue(
                        "gnb_dx_planes", (global, local),
                        [
                            "dy": .buffer(inputs.gradOutput), "x": .buffer(inputs.x), "dx": .buffer(dx.deviceBuffer),
                            "planes": try .count(planes), "spatial_vecs": spatialVectors,
                            "coef_a": .buffer(coefficients.a), "coef_b": .buffer(coefficients.b),
                            "coef_mean": .buffer(coefficients.mean), "coef_c": .buffer(coefficients.c),
                            "coef_beta": .buffer(coefficients.beta),
                        ])
                }
            }
        }

        if let sums {
            let launch = geometry.launch.perSegmentLaunch(segments: problem.channels)
            try launches.enqueue(
                "gnb_parameter_grads", launch,
                [
                    "sums": .buffer(sums), "batch": try .count(problem.batch), "channels": channels,
                    "dweight": .buffer(dWeight?.deviceBuffer), "dbias": .buffer(dBias?.deviceBuffer),
                ])
        }
        return NormGradients(input: dx, weight: dWeight, bias: dBias, events: launches.events)
    }
}
