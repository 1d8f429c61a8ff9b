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

    let strategy: Strategy
    /// Elements per load: 4 when `D % 4 == 0`, else 1.
    let vectorWidth: Int
    let chunkedAccess: Bool
    /// Work-items and work-group size of the split strategy's elementwise pass.
    let elementwiseWorkGroupSize: Int
    let elementwiseWorkGroups: Int
    /// Work-group size of the one-work-item-per-row merge kernel.
    let perRowWorkGroupSize: Int
    /// Whether the elementwise pass needs 64-bit vector indices: the vectors, plus the
    /// overshoot of a work-item's range past the end, reach 2^32.
    let wideIndices: Bool

    /// The plan for `problem` on `device`, or with `strategy` forced (tests use this
    /// to run every strategy and geometry on shapes where the heuristic would not
    /// pick it). Work-item counts must be powers of two.
    init(problem: RowNormProblem, device: OpenCLDevice, tuning: DeviceTuning, strategy forced: Strategy? = nil) {
        vectorWidth = problem.rowLength % 4 == 0 ? 4 : 1
        chunkedAccess = tuning.chunkedAccess
        elementwiseWorkGroupSize = max(1, min(tuning.elementwiseWorkGroupSize, device.maxWorkGroupSize))
        perRowWorkGroupSize = max(1, min(64, device.maxWorkGroupSize))
        let targetGroups = max(1, device.computeUnits * tuning.workGroupsPerComputeUnit)
        let vectors = problem.count / vectorWidth
        let vectorsPerRow = problem.rowLength / vectorWidth
        elementwiseWorkGroups = max(1, min(targetGroups, vectors.ceilingDivided(by: elementwiseWorkGroupSize)))
        wideIndices = vectors + 2 * elementwiseWorkGroups * elementwiseWorkGroupSize >= 1 << 32

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
        // Three floats of local memory per work-item for the merge of partial moments.
        let localLimit = (device.localMemoryBytes - 64) / (3 * MemoryLayout<Float>.size)
        let widest = Self.powerOfTwo(atMost: min(tuning.reductionWorkGroupSize, device.maxWorkGroupSize, localLimit))
        // CPUs: one work-item walks the whole row (a contiguous stream, no barrier);
        // GPUs: up to a full work-group per row, each work-item a few vectors.
        let items = chunkedAccess ? 1 : min(widest, Self.powerOfTwo(atMost: max(1, vectorsPerRow / 4)))
        let rows = problem.rows
        if rows < targetGroups {
            // Too few rows to fill the device: split long rows into slices.
            let wanted = targetGroups.ceilingDivided(by: rows)
            let worthwhile = vectorsPerRow / max(1, tuning.minimumVectorsPerWorkGroup)
            let slices = min(wanted, worthwhile, 1024)
            if slices > 1 {
                strategy = .splitRows(slices: slices, itemsPerSlice: chunkedAccess ? 1 : widest)
                return
            }
        }
        // Fill a work-group with rows, but keep at least targetGroups work-groups.
        let groupSize = chunkedAccess ? elementwiseWorkGroupSize : widest
        let rowsPerGroup = max(1, min(groupSize / items, rows / targetGroups))
        strategy = .fused(itemsPerRow: items, rowsPerGroup: rowsPerGroup)
    }

    /// Work-items sharing one row (fused) or one slice (split).
    var itemsPerReduction: Int {
        switch strategy {
        case .fused(let items, _), .splitRows(_, let items): items
        }
    }

    /// The `-D` constants the kernels of `layer_norm.cl` are specialised with.
    func buildOptions(for problem: RowNormProblem) -> String {
        let rowsPerGroup = if case .fused(_, let rowsPerGroup) = strategy { rowsPerGroup } else { 1 }
        return [
            "-cl-std=CL1.2",
            problem.elementType.buildOption,
            "-D RMS=\(problem.kind == .rmsNorm ? 1 : 0)",
            "-D ROW_LENGTH=\(problem.rowLength)",
            "-D VEC=\(vectorWidth)",
            "-D ITEMS=\(itemsPerReduction)",
            "-D ROWS_PER_GROUP=\(rowsPerGroup)",
            "-D CHUNKED=\(chunkedAccess ? 1 : 0)",
            "-D HAS_WEIGHT=\(problem.hasWeight ? 1 : 0)",
            "-D HAS_BIAS=\(problem.hasBias ? 1 : 0)",
            "-D INDEX_T=\(wideIndices ? "ulong" : "uint")",
        ].joined(separator: " ")
    }

    static func powerOfTwo(atMost limit: Int) -> Int {
        var size = 1
        while size * 2 <= limit { size *= 2 }
        return size
    }
}
