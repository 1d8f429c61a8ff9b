/// How a ``RowNormBackwardProblem`` (LayerNorm or RMSNorm backward) runs on one
/// OpenCL device: which kernels of `Kernels/layer_norm_backward.cl`, and their launch
/// geometry.
///
/// The strategy is the forward's (``RowNormPlan``), so a row is split over work-items
/// the same way in both directions:
/// - ``RowNormPlan/Strategy/fused(itemsPerRow:rowsPerGroup:)``: many rows. A work-group
///   has `rowsPerGroup` row lanes of `itemsPerRow` work-items; lane `L` walks a block of
///   ``rowsPerLane`` consecutive rows. Per row: Σg and Σg·x̂ over the row (merged in
///   local memory when `itemsPerRow > 1`), then dx from the same elements while they
///   are in cache — and, when ``fusesParameters``, dy·x̂ and dy added to the lane's
///   column partials (each work-item owns the same columns in every row, so no two
///   work-items touch one partial), so x and dy are read from memory once.
///   Then `rownorm_backward_parameters` adds the ``partialBlocks`` partials of each
///   column in lane order: dγ, dβ. Two launches.
/// - ``RowNormPlan/Strategy/splitRows(slices:itemsPerSlice:)``: few long rows. Σg and
///   Σg·x̂ per (row, slice), merged per row in slice order; then a column walk writes
///   dx and the column partials of ``rowBlocks`` row blocks; then the final reduce.
///   Four launches, no host wait.
///
/// Without ``fusesParameters`` the fused strategy writes dx only and the column walk
/// (reading x and dy a second time) computes the partials: the unfused baseline, kept
/// for comparison and tests.
struct RowNormBackwardPlan: Equatable, Sendable {
    /// The forward plan of the same problem, with the strategy below: the vector width,
    /// the work-group shape and the specialisation both directions share.
    let forward: RowNormPlan
    var strategy: RowNormPlan.Strategy { forward.strategy }
    /// Elements per load: 4 when `D % 4 == 0`, else 1.
    var vectorWidth: Int { forward.vectorWidth }
    var geometry: LaunchGeometry { forward.geometry }
    /// Fused strategy: the dx kernel also accumulates the column partials.
    let fusesParameters: Bool
    /// Fused strategy: rows one row lane walks, and the number of lanes (the last may
    /// have fewer rows; every lane has at least one).
    let rowsPerLane: Int
    let lanes: Int
    /// The column walk: work-items across the columns (a multiple of the elementwise
    /// work-group size), and row blocks of ``rowsPerBlock`` rows.
    let columnItems: Int
    let rowBlocks: Int
    let rowsPerBlock: Int
    /// The final column reduce: a work-group is `finalColumns` column vectors ×
    /// `finalLanes` work-items splitting the partial blocks.
    let finalColumns: Int
    let finalLanes: Int
    /// Fused strategy with interleaved spans of at most ``maximumPrivatePartials``
    /// vectors per work-item (GPUs): the vectors per work-item, whose column partials
    /// the fused kernel keeps in registers over the lane's rows; 0 otherwise (chunked
    /// spans are whole rows on CPUs: their partials are updated in cache row by row).
    let privatePartials: Int

    static let maximumPrivatePartials = 8

    /// Rows a lane of the fused kernel walks at most: bounds the float32 recursive
    /// summation of the column partials (and the partials' memory, see below).
    static let maximumRowsPerLane = 256
    /// Rows a lane walks at least when it accumulates column partials, so that the
    /// partials (2·D floats per lane) stay below an eighth of the input's bytes.
    static let minimumRowsPerLane = 8

    /// The plan for `problem` on `device`, with the forward strategy forced when
    /// `strategy` is given and the parameter fusion forced when `fuseParameters` is
    /// (tests use them to run every kernel on shapes where the heuristic would not).
    init(
        problem: RowNormBackwardProblem, device: OpenCLDevice, tuning: DeviceTuning,
        strategy forced: RowNormPlan.Strategy? = nil, fuseParameters: Bool? = nil
    ) {
        let plan = RowNormPlan(problem: problem.forward, device: device, tuning: tuning, strategy: forced)
        let geometry = plan.geometry
        // The input bias's partials are dx's column sums: the kernel that writes dx forms them.
        fusesParameters = (fuseParameters ?? true) || problem.needsInputBias
        let rows = problem.rows
        let vectorsPerRow = problem.rowLength / plan.vectorWidth
        let targetGroups = geometry.targetWorkGroups

        var strategy = plan.strategy
        if case .fused(let items, let rowsPerGroup) = strategy {
            let accumulates = problem.needsParameters && fusesParameters
            let wantedLanes = targetGroups * rowsPerGroup
            var perLane = min(Self.maximumRowsPerLane, rows.ceilingDivided(by: wantedLanes))
            if accumulates { perLane = max(perLane, min(rows, Self.minimumRowsPerLane)) }
            rowsPerLane = max(1, perLane)
            lanes = rows.ceilingDivided(by: rowsPerLane)
            if forced == nil && lanes < wantedLanes {
                // Fewer lanes than the forward's rows per group would fill: spread them
                // over more work-groups (a power of two, as the forward's).
                let spread = LaunchGeometry.powerOfTwo(atMost: max(1, min(rowsPerGroup, lanes / targetGroups)))
                strategy = .fused(itemsPerRow: items, rowsPerGroup: spread)
            }
        } else {
            rowsPerLane = 1
            lanes = 1
        }
        forward = plan.with(strategy: strategy)
        if case .fused(let items, _) = strategy, !geometry.chunkedAccess,
            vectorsPerRow.ceilingDivided(by: items) <= Self.maximumPrivatePartials
        {
            privatePartials = vectorsPerRow.ceilingDivided(by: items)
        } else {
            privatePartials = 0
        }

        // The column walk: enough work-items across the columns to fill the device,
        // more row blocks when the columns alone do not (or when blocks would get long).
        let columnGroupSize = geometry.elementwiseWorkGroupSize
        let targetItems = targetGroups * columnGroupSize
        columnItems = min(vectorsPerRow, targetItems).roundedUp(toMultipleOf: columnGroupSize)
        let wantedBlocks = max(
            targetItems.ceilingDivided(by: columnItems), rows.ceilingDivided(by: Self.maximumRowsPerLane))
        rowsPerBlock = rows.ceilingDivided(by: min(rows, wantedBlocks))
        rowBlocks = rows.ceilingDivided(by: rowsPerBlock)

        finalLanes = geometry.chunkedAccess ? 1 : min(16, LaunchGeometry.powerOfTwo(atMost: max(1, lanes, rowBlocks)))
        finalColumns = max(1, columnGroupSize / finalLanes)
    }

    /// Whether the fused kernel accumulates the column partials.
    func fusedAccumulates(_ problem: RowNormBackwardProblem) -> Bool {
        if case .fused = strategy { problem.needsParameters && fusesParameters } else { false }
    }

    /// The partial blocks the final reduce adds per column: the fused kernel's lanes,
    /// or the column walk's row blocks.
    func partialBlocks(_ problem: RowNormBackwardProblem) -> Int {
        fusedAccumulates(problem) ? lanes : rowBlocks
    }

    /// The capacity of the fused kernel's register partials: ``privatePartials``
    /// rounded up to a power of two (at most ``maximumPrivatePartials``), so that row
    /// lengths share programs; 0 when the kernel does not keep them in registers. It
    /// does not depend on the gradients wanted, so every gradient mask shares a program.
    var privatePartialsCapacity: Int {
        guard privatePartials > 0 else { return 0 }
        var capacity = 1
        while capacity < privatePartials { capacity *= 2 }
        return capacity
    }

    /// The build options of the kernels of `layer_norm_backward.cl`: the forward's
    /// specialisation and the final reduce's work-group shape. No sizes (D, rows,
    /// lanes, blocks are kernel arguments), and not which gradients are formed (NULL
    /// outputs and a `parameters` argument, checked once per vector). The kernels index
    /// with explicit 64-bit offsets and never use INDEX_T, so it stays the default.
    func buildOptions(for problem: RowNormBackwardProblem) -> KernelSpecialization {
        var options = forward.specialization(for: problem.forward, wideIndices: false)
        // β is read only to recompute an activation's input (never for a gradient).
        if problem.forward.fusion.activation != .none { options.flag("HAS_BIAS", problem.forward.hasBias) }
        if problem.hadInputBias { options.flag("INPUT_BIAS_GRADIENT", true) }
        options.define("FINAL_LANES", finalLanes)
        options.define("FINAL_COLS", finalColumns)
        options.define("PRIVATE_PARTIALS", privatePartialsCapacity)
        return options
    }
}
