/// How a ``GroupNormProblem`` (GroupNorm or InstanceNorm) runs on one OpenCL device:
/// which kernels of `Kernels/group_norm.cl`, and their launch geometry, chosen from
/// the problem's shape and the device's limits.
///
/// A "row" is one (n, g) pair: N·G rows of (C/G)·M values each.
///
/// Strategies (each says when it applies):
/// - ``Strategy/fusedRows``: rows contiguous in memory (channels-first, or `(N, C)`
///   input) and enough of them to give every compute unit work. One work-group per
///   row computes its statistics, then normalises the row while it is still in cache.
///   One launch.
/// - ``Strategy/splitRows(slicesPerRow:)``: contiguous rows, too few of them for the
///   device (N·G below compute units × ``DeviceTuning/workGroupsPerComputeUnit``)
///   and long enough to be worth splitting. `S` work-groups per row write partial
///   moments, one work-item per row merges them in a fixed order, and an
///   elementwise pass normalises. Three launches, no host wait between them.
/// - ``Strategy/columns(spatialSlices:)``: channels-last input. Each sample is a
///   row-major `(M, C)` matrix; work-items own adjacent channel vectors (4 channels
///   per load when `C % 4 == 0`, ``DeviceTuning/columnTile`` vectors each) and walk
///   `S` slices of the M spatial rows, writing per-(n, c, slice) moments; one work-item
///   per (n, g) merges its channels and slices with Chan's formula in a fixed order;
///   then a row-wise elementwise pass. Three launches. `S` grows until the device
///   is busy (few samples and channels, e.g. InstanceNorm with C = 64).
/// - ``Strategy/runningStatistics``: InstanceNorm inference with tracked running
///   statistics: a per-channel affine map (coefficients per (n, c), then the
///   elementwise pass of the layout). Two launches.
struct GroupNormPlan: Equatable, Sendable {
    enum Strategy: Equatable, Sendable {
        case fusedRows
        case splitRows(slicesPerRow: Int)
        case columns(spatialSlices: Int)
        case runningStatistics
    }

    let strategy: Strategy
    /// The launch sizes (shared with the backward plan).
    let geometry: GroupNormGeometry

    /// Elements per load along a contiguous row (``GroupNormGeometry/vectorWidth``).
    var vectorWidth: Int { geometry.vectorWidth }
    /// Whether element indices need 64 bits (``GroupNormGeometry/wideIndices``).
    var wideIndices: Bool { geometry.wideIndices }

    /// The plan for `problem` on `device`, or with `strategy` forced (tests use this
    /// to run every strategy on shapes where the heuristic would not pick it).
    init(problem: GroupNormProblem, device: OpenCLDevice, tuning: DeviceTuning, strategy forced: Strategy? = nil) {
        if let forced {
            precondition(
                (forced == .runningStatistics) == (problem.statistics == .running),
                "strategy \(forced) does not fit statistics \(problem.statistics)")
            switch forced {
            case .fusedRows, .splitRows:
                precondition(problem.hasContiguousRows, "row strategies take channels-first memory")
            case .columns:
                precondition(problem.layout == .channelsLast || problem.spatial == 1, "column strategies take (N, M, C) memory")
            case .runningStatistics:
                break
            }
        }
        // One Moments (three floats) of local memory per work-item in the reduction tree.
        geometry = GroupNormGeometry(
            problem: problem, device: device, tuning: tuning, reductionBytesPerItem: 3 * MemoryLayout<Float>.size)

        if let forced {
            strategy = forced
        } else if problem.statistics == .running {
            strategy = .runningStatistics
        } else if problem.hasContiguousRows {
            // Split only when the rows alone cannot fill the device and each slice still
            // gets a worthwhile amount of data.
            let slices = geometry.launch.slicesPerSegment(
                segments: problem.rows, vectorsPerSegment: problem.valuesPerRow / geometry.vectorWidth)
            strategy = slices > 1 ? .splitRows(slicesPerRow: slices) : .fusedRows
        } else {
            strategy = .columns(spatialSlices: geometry.columnSlices(for: problem))
        }
    }

    /// Whether the plan runs the column kernels (channels-last statistics or apply).
    func usesColumnKernels(_ problem: GroupNormProblem) -> Bool {
        switch strategy {
        case .columns: true
        case .runningStatistics: !problem.hasContiguousRows
        case .fusedRows, .splitRows: false
        }
    }

    /// What the kernels of `group_norm.cl` are specialised on (no sizes, no affine
    /// parameters, no saved variance: those are arguments).
    func specialization(for problem: GroupNormProblem) -> KernelSpecialization {
        geometry.specialization(for: problem, columnKernels: usesColumnKernels(problem))
    }
}
