/// How a ``RowNormProblem`` (LayerNorm or RMSNorm) runs on one OpenCL device: which
/// kernels of `Kernels/layer_norm.cl`, and their launch geometry, chosen from the
/// problem's shape and the device's limits and ``DeviceTuning``.
///
/// Strategies (each says when it applies):
/// - ``Strategy/fused(itemsPerRow:rowsPerGroup:)``: enough rows to keep every compute
///   unit busy. One launch: `itemsPerRow` work-items share a row (merging their
///   partial moments in local memory when more than one), a work-group takes
///   `rowsPerGroup` rows, and each work-item normalises its part of the row right
///   after the statistics, while it is still in cache. On CPUs (chunked access) few
///   work-items per row, each walking a contiguous chunk with vector loads, are
///   fastest; on GPUs a wide group per row with interleaved loads.
/// - ``Strategy/splitRows(slices:itemsPerSlice:)``: few rows with long reductions
///   (e.g. 2 rows of a million values). Each row is cut into `slices` slices whose
///   partial moments a work-group of `itemsPerSlice` work-items writes; one
///   work-item per row merges them in a fixed order; then an elementwise pass
///   normalises. Three launches, no host wait between them.
struct RowNormPlan: Equatable, Sendable {
    enum Strategy: Equatable, Sendable {
        case fused(itemsPerRow: Int, rowsPerGroup: Int)
        case splitRows(slices: Int, itemsPerSlice: Int)
    }

    private(set) var strategy: Strategy
    /// Elements per load: 4 when `D % 4 == 0`, else 1.
    let vectorWidth: Int
    /// The device's launch sizes (work-group sizes, the elementwise pass, per-row kernels).
    let geometry: LaunchGeometry
    /// Whether the elementwise pass needs 64-bit vector indices: the vectors, plus the
    /// overshoot of a work-item's range past the end, reach 2^32.
    let wideIndices: Bool

    /// The widest reduction work-group of a device and tuning (`geometry`), with one
    /// Moments (three floats) of local memory per work-item for the merge.
    static func widestGroup(_ geometry: LaunchGeometry) -> Int {
        geometry.reductionWorkGroupSize(localBytesPerItem: 3 * MemoryLayout<Float>.size, reservedLocalBytes: 64)
    }

    /// The plan for `problem` on `device`, or with `strategy` forced (tests use this
    /// to run every strategy and geometry on shapes where the heuristic would not
    /// pick it). Work-item counts must be powers of two.
    init(problem: RowNormProblem, device: OpenCLDevice, tuning: DeviceTuning, strategy forced: Strategy? = nil) {
        let geometry = LaunchGeometry(device: device, tuning: tuning)
        self.geometry = geometry
        vectorWidth = geometry.vectorWidth(dividing: problem.rowLength)
        let vectors = problem.count / vectorWidth
        let vectorsPerRow = problem.rowLength / vectorWidth
        wideIndices = LaunchGeometry.needsWideIndices(
            elements: vectors, workItems: geometry.elementwiseLaunch(vectors: vectors).global[0])

        if let forced {
            switch forced {
            case .fused(let items, let rowsPerGroup):
                precondition(items.nonzeroBitCount == 1 && rowsPerGroup >= 1, "bad fused geometry \(forced)")
            case .splitRows(let slices, let items):
                precondition(items.nonzeroBitCount == 1 && slices >= 1, "bad split geometry \(forced)")
            }
            strategy = forced
            return
        }
        let chunked = geometry.chunkedAccess
        let widest = Self.widestGroup(geometry)
        // CPUs: one work-item walks the whole row (a contiguous stream, no barrier);
        // GPUs: up to a full work-group per row, each work-item a few vectors.
        let items = chunked ? 1 : min(widest, LaunchGeometry.powerOfTwo(atMost: max(1, vectorsPerRow / 4)))
        let rows = problem.rows
        if rows < geometry.targetWorkGroups {
            // Too few rows to fill the device: split long rows into slices.
            let slices = geometry.slicesPerSegment(segments: rows, vectorsPerSegment: vectorsPerRow)
            if slices > 1 {
                strategy = .splitRows(slices: slices, itemsPerSlice: chunked ? 1 : widest)
                return
            }
        }
        // Fill a work-group with rows, but keep at least targetWorkGroups work-groups.
        // A power of two: the work-group size is part of what a driver may compile a
        // kernel for (PoCL compiles each kernel once per local size, ~0.2 s here), so
        // row counts share at most five sizes instead of one each below the full group.
        let groupSize = chunked ? geometry.elementwiseWorkGroupSize : widest
        let rowsPerGroup = LaunchGeometry.powerOfTwo(atMost: max(1, min(groupSize / items, rows / geometry.targetWorkGroups)))
        strategy = .fused(itemsPerRow: items, rowsPerGroup: rowsPerGroup)
    }

    /// This plan with `strategy` instead (the backward plan spreads the fused rows).
    func with(strategy: Strategy) -> RowNormPlan {
        var plan = self
        plan.strategy = strategy
        return plan
    }

    /// Work-items sharing one row (fused) or one slice (split).
    var itemsPerReduction: Int {
        switch strategy {
        case .fused(let items, _), .splitRows(_, let items): items
        }
    }

    /// The split strategy's elementwise pass over every vector of `problem`'s input.
    func elementwiseLaunch(for problem: RowNormProblem) -> (global: [Int], local: [Int]) {
        geometry.elementwiseLaunch(vectors: problem.count / vectorWidth)
    }

    /// Rows per work-group of the fused kernels (1 for the split strategy).
    var rowsPerGroup: Int {
        if case .fused(_, let rowsPerGroup) = strategy { rowsPerGroup } else { 1 }
    }

    /// Work-items the fused kernels' local scratch holds (`SCRATCH_ITEMS`): the device's
    /// widest reduction group, or a wider forced group. Not the group itself: its rows
    /// per group follow the row count (``init(problem:device:tuning:strategy:)``), and
    /// as a build option they made a program per row count on GPUs.
    var scratchItems: Int { max(Self.widestGroup(geometry), itemsPerReduction * rowsPerGroup) }

    /// What the kernels of both directions are specialised on: the op, the element type,
    /// the vector width, the work-items per row, the access pattern and γ (read for every
    /// element). No sizes: D and the row count are kernel arguments, and the rows per
    /// work-group come from the launch, so one program serves every shape. With several
    /// work-items per row the local scratch is sized by ``scratchItems``.
    func specialization(for problem: RowNormProblem, wideIndices: Bool) -> KernelSpecialization {
        var options = KernelSpecialization(
            elementType: problem.elementType, geometry: geometry, wideIndices: wideIndices)
        options.flag("RMS", problem.kind == .rmsNorm)
        options.define("VEC", vectorWidth)
        options.define("ITEMS", itemsPerReduction)
        if itemsPerReduction > 1 { options.define("SCRATCH_ITEMS", scratchItems) }
        options.flag("HAS_WEIGHT", problem.hasWeight)
        problem.fusion.specialize(&options, storage: problem.elementType)
        return options
    }

    /// The build options of the kernels of `layer_norm.cl`.
    func buildOptions(for problem: RowNormProblem) -> KernelSpecialization {
        var options = specialization(for: problem, wideIndices: wideIndices)
        options.flag("HAS_BIAS", problem.hasBias)
        return options
    }
}
