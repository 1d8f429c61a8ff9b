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
    /// Elements per load along a contiguous row: 4 when `M % 4 == 0`, else 1 (a
    /// vector never straddles two channels, so γ and β stay per vector).
    let vectorWidth: Int
    /// Channels per load in the column kernels: 4 when `C % 4 == 0`, else 1.
    let channelVectorWidth: Int
    /// Column vectors per work-item in the column kernels.
    let columnTile: Int
    /// Work-items of the column kernels per sample (one per tile of column vectors),
    /// and their work-group size.
    let columnWorkItems: Int
    let columnWorkGroupSize: Int
    let reductionWorkGroupSize: Int
    let elementwiseWorkGroupSize: Int
    let elementwiseWorkGroups: Int
    let chunkedAccess: Bool
    /// Whether element indices need 64 bits: the elements, plus the overshoot of a
    /// work-item's range past the end (up to the number of work-items), reach 2^32.
    let wideIndices: Bool
    /// Work-group size of the one-work-item-per-row or per-channel kernels.
    let perRowWorkGroupSize: Int

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
        vectorWidth = problem.hasContiguousRows && problem.spatial % 4 == 0 ? 4 : 1
        channelVectorWidth = problem.channels % 4 == 0 ? 4 : 1
        columnTile = max(1, tuning.columnTile)
        chunkedAccess = tuning.chunkedAccess
        // Three floats of local memory per work-item in the reduction tree, plus two
        // coefficients per work-group.
        let localLimit = (device.localMemoryBytes - 16) / (3 * MemoryLayout<Float>.size)
        reductionWorkGroupSize = BatchNormPlan.powerOfTwo(
            atMost: min(tuning.reductionWorkGroupSize, device.maxWorkGroupSize, localLimit))
        elementwiseWorkGroupSize = max(1, min(tuning.elementwiseWorkGroupSize, device.maxWorkGroupSize))
        perRowWorkGroupSize = max(1, min(64, device.maxWorkGroupSize))
        columnWorkItems = (problem.channels / channelVectorWidth).ceilingDivided(by: columnTile)
        columnWorkGroupSize = min(elementwiseWorkGroupSize, columnWorkItems.roundedUp(toMultipleOf: 4))

        let targetGroups = max(1, device.computeUnits * tuning.workGroupsPerComputeUnit)
        let vectors = problem.count / (problem.hasContiguousRows ? vectorWidth : channelVectorWidth)
        elementwiseWorkGroups = max(1, min(targetGroups, vectors.ceilingDivided(by: elementwiseWorkGroupSize)))
        let maximumItems = max(reductionWorkGroupSize, elementwiseWorkGroups * elementwiseWorkGroupSize)
        wideIndices = problem.count + 2 * maximumItems >= 1 << 32

        if let forced {
            strategy = forced
        } else if problem.statistics == .running {
            strategy = .runningStatistics
        } else if problem.hasContiguousRows {
            // Split only when the rows alone cannot fill the device and each slice still
            // gets a worthwhile amount of data.
            let wanted = targetGroups.ceilingDivided(by: problem.rows)
            let worthwhile = problem.valuesPerRow / vectorWidth / max(1, tuning.minimumVectorsPerWorkGroup)
            let slices = min(wanted, worthwhile, 1024)
            strategy = slices > 1 ? .splitRows(slicesPerRow: slices) : .fusedRows
        } else {
            // With chunked access (CPUs) a work-group's items run one after another on
            // one core, so the aim is targetGroups busy work-items; on GPUs it is
            // targetGroups full work-groups.
            let wantedItems = chunkedAccess ? targetGroups : targetGroups * columnWorkGroupSize
            let items = problem.batch * columnWorkItems
            let slices = min(wantedItems.ceilingDivided(by: items), problem.spatial / Self.minimumRowsPerSlice, 1024)
            strategy = .columns(spatialSlices: max(1, slices))
        }
    }

    /// The `-D` constants the kernels of `group_norm.cl` are specialised with.
    func buildOptions(for problem: GroupNormProblem) -> String {
        [
            "-cl-std=CL1.2",
            problem.elementType.buildOption,
            "-D CHANNELS=\(problem.channels)",
            "-D SPATIAL=\(problem.spatial)",
            "-D GROUPS=\(problem.groups)",
            "-D VEC=\(vectorWidth)",
            "-D WG=\(reductionWorkGroupSize)",
            "-D CHUNKED=\(chunkedAccess ? 1 : 0)",
            "-D HAS_WEIGHT=\(problem.hasWeight ? 1 : 0)",
            "-D HAS_BIAS=\(problem.hasBias ? 1 : 0)",
            "-D SAVE_VAR=\(problem.statistics == .input(savesVariance: true) ? 1 : 0)",
            "-D INDEX_T=\(wideIndices ? "ulong" : "uint")",
            "-D CVEC=\(channelVectorWidth)",
            "-D TILE=\(columnTile)",
        ].joined(separator: " ")
    }

    /// Fewer spatial rows than this per slice make the partials cost more than they save.
    static let minimumRowsPerSlice = 64
}
