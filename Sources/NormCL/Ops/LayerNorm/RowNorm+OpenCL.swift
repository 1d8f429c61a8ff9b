/// Enqueues the kernels of a ``RowNormPlan`` (from `Kernels/layer_norm.cl`) for
/// LayerNorm and RMSNorm.
///
/// Nothing here waits: the outputs are device tensors whose contents are ready once
/// the returned events complete, which a later read does implicitly.
enum RowNormKernels {
    struct Outputs {
        var output: Tensor
        /// LayerNorm only: the mean per row.
        var saveMean: Tensor?
        /// `1 / sqrt(var + eps)` (LayerNorm) or `1 / sqrt(mean(x²) + eps)` (RMSNorm) per row.
        var saveScale: Tensor
        var events: [KernelEvent]
    }

    static func run(
        _ problem: RowNormProblem, plan: RowNormPlan, x: DeviceBuffer, weight: DeviceBuffer?, bias: DeviceBuffer?,
        eps: Float, on runtime: OpenCLRuntime
    ) throws -> Outputs {
        let program = try runtime.program(.layerNorm, options: plan.buildOptions(for: problem))
        let output = try Tensor(
            uninitializedShape: problem.shape, layout: problem.layout, elementType: problem.elementType, on: runtime)
        let statisticsShape = problem.statisticsShape
        let saveMean = problem.kind == .layerNorm ? try Tensor(uninitializedShape: statisticsShape, on: runtime) : nil
        let saveScale = try Tensor(uninitializedShape: statisticsShape, on: runtime)
        let rows = problem.rows
        let rowsArgument = try KernelArgument.count(rows)
        var events: [KernelEvent] = []
        switch plan.strategy {
        case .fused(let items, let rowsPerGroup):
            let groups = rows.ceilingDivided(by: rowsPerGroup)
            let local = items * rowsPerGroup
            events.append(
                try runtime.enqueue(
                    "rownorm_fused", from: program, global: [groups * local], local: [local],
                    arguments: [
                        .buffer(x), .buffer(output.deviceBuffer), rowsArgument, .buffer(weight), .buffer(bias),
                        .buffer(saveMean?.deviceBuffer), .buffer(saveScale.deviceBuffer), .float(eps),
                    ]))
        case .splitRows(let slices, let items):
            // Partial moments per (row, slice), merged per row, then the apply pass.
            let partials = try DeviceBuffer(byteCount: rows * slices * 3 * 4, on: runtime)
            let pilots = try DeviceBuffer(byteCount: rows * 4, on: runtime)
            let offsets = try DeviceBuffer(byteCount: rows * 4, on: runtime)
            events.append(
                try runtime.enqueue(
                    "rownorm_partials", from: program, global: [slices * items, rows], local: [items, 1],
                    arguments: [.buffer(x), .buffer(partials), .buffer(pilots)]))
            let perRow = plan.perRowWorkGroupSize
            events.append(
                try runtime.enqueue(
                    "rownorm_finish", from: program, global: [rows.roundedUp(toMultipleOf: perRow)], local: [perRow],
                    arguments: [
                        .buffer(partials), try .count(slices), rowsArgument, .buffer(pilots), .buffer(offsets),
                        .buffer(saveMean?.deviceBuffer), .buffer(saveScale.deviceBuffer), .float(eps),
                    ]))
            let local = plan.elementwiseWorkGroupSize
            events.append(
                try runtime.enqueue(
                    "rownorm_apply", from: program, global: [plan.elementwiseWorkGroups * local], local: [local],
                    arguments: [
                        .buffer(x), .buffer(output.deviceBuffer), rowsArgument, .buffer(weight), .buffer(bias),
                        .buffer(pilots), .buffer(offsets), .buffer(saveScale.deviceBuffer),
                    ]))
        }
        return Outputs(output: output, saveMean: saveMean, saveScale: saveScale, events: events)
    }
}
