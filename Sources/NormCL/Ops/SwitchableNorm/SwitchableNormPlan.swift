/// How a ``SwitchableNormProblem`` runs on one OpenCL device: the instance-moments pass
/// (the only full read of x besides the apply pass) and its launch geometry, chosen from
/// the shape and the device; then one single-work-group statistics kernel and the apply
/// pass, whatever the strategy.
///
/// Strategies (each says when it applies):
/// - ``Strategy/direct``: `L == 1` (`(N, C)` input, or spatial dims of 1): every element
///   is its own instance, there is no moments pass, and the statistics kernel writes y.
///   One launch.
/// - ``Strategy/runPerWorkItem(slices:)``: NCHW on CPUs (chunked access): one work-item
///   per (run, slice) walks its contiguous elements with float4 loads, no local memory.
///   `slices > 1` when the N·C runs alone cannot keep the device busy (few long runs).
/// - ``Strategy/runPerWorkGroup(slices:)``: NCHW on GPUs: a work-group per (run, slice),
///   neighbouring work-items on neighbouring chunks, a local tree merge.
/// - ``Strategy/columns(slices:)``: NHWC: per sample, work-items own adjacent channel
///   vectors and walk the L rows (each row segment one contiguous read); `slices > 1`
///   splits the rows when N × the channel tiles cannot fill the device.
///
/// Slices of a run are merged in a fixed order by the statistics step (deterministic).
/// The statistics step is one work-group (one launch) up to
/// ``statisticsSplitThreshold`` instances N·C; above, where one compute unit would take
/// milliseconds (e.g. `(256, 2048)`), it is three device-wide launches
/// (``splitStatistics``): merge the slices, LN and BN statistics, mixing.
struct SwitchableNormPlan: Equatable, Sendable {
    enum Strategy: Equatable, Sendable {
        case direct
        case runPerWorkItem(slices: Int)
        case runPerWorkGroup(slices: Int)
        case columns(slices: Int)

        var slices: Int {
            switch self {
            case .direct: 1
            case .runPerWorkItem(let slices), .runPerWorkGroup(let slices), .columns(let slices): slices
            }
        }
    }

    let strategy: Strategy
    /// Channels per load in the NHWC kernels: 4 when `C % 4 == 0`, else 1.
    let channelVectorWidth: Int
    /// Column vectors per work-item in the NHWC moments kernel.
    let columnTile: Int
    let columnWorkItems: Int
    let columnWorkGroupSize: Int
    let reductionWorkGroupSize: Int
    let elementwiseWorkGroupSize: Int
    let elementwiseWorkGroups: Int
    /// Work-items of the single work-group of the statistics kernel, and the work-group
    /// size of the split statistics kernels.
    let statisticsWorkGroupSize: Int
    /// Whether the statistics step runs device-wide (large N·C) instead of in one work-group.
    let splitStatistics: Bool
    /// The most work-items of a split statistics kernel (they stride over the instances).
    let statisticsWorkItems: Int
    let chunkedAccess: Bool
    /// Whether element offsets need 64 bits.
    let wideIndices: Bool

    /// The plan for `problem` on `device`, or with `strategy` forced (tests use this to
    /// run every strategy on shapes where the heuristic would not pick it).
    init(problem: SwitchableNormProblem, device: OpenCLDevice, tuning: DeviceTuning, strategy forced: Strategy? = nil) {
        let direct = problem.spatial == 1
        if let forced {
            switch forced {
            case .direct: precondition(direct, "the direct strategy takes L == 1")
            case .runPerWorkItem, .runPerWorkGroup:
                precondition(!direct && problem.layout == .channelsFirst, "run strategies take NCHW input with L > 1")
            case .columns: precondition(!direct && problem.layout == .channelsLast, "columns take NHWC input with L > 1")
            }
            precondition(forced.slices >= 1, "slices must be positive")
        }
        channelVectorWidth = problem.channels % 4 == 0 ? 4 : 1
        columnTile = max(1, tuning.columnTile)
        chunkedAccess = tuning.chunkedAccess
        let localLimit = (device.localMemoryBytes - 16) / (3 * MemoryLayout<Float>.size)
        reductionWorkGroupSize = Self.powerOfTwo(atMost: min(tuning.reductionWorkGroupSize, device.maxWorkGroupSize, localLimit))
        elementwiseWorkGroupSize = max(1, min(tuning.elementwiseWorkGroupSize, device.maxWorkGroupSize))
        statisticsWorkGroupSize = max(1, min(64, device.maxWorkGroupSize))
        splitStatistics = problem.instances > Self.statisticsSplitThreshold
        columnWorkItems = (problem.channels / channelVectorWidth).ceilingDivided(by: columnTile)
        columnWorkGroupSize = min(elementwiseWorkGroupSize, columnWorkItems.roundedUp(toMultipleOf: 4))

        let targetGroups = max(1, device.computeUnits * tuning.workGroupsPerComputeUnit)
        statisticsWorkItems = targetGroups * statisticsWorkGroupSize
        elementwiseWorkGroups = max(1, min(targetGroups, (problem.count / 4).ceilingDivided(by: elementwiseWorkGroupSize)))
        // Work-items' ranges may overshoot the end by a few vectors per work-item.
        wideIndices = problem.count + 8 * elementwiseWorkGroups * elementwiseWorkGroupSize >= 1 << 32

        if let forced {
            strategy = forced
        } else if direct {
            strategy = .direct
        } else if problem.layout == .channelsLast {
            // Split the rows only when the tiles of all samples cannot fill the device:
            // on CPUs targetGroups busy work-items, on GPUs that many full work-groups.
            let wantedItems = chunkedAccess ? targetGroups : targetGroups * columnWorkGroupSize
            let slices = min(
                wantedItems.ceilingDivided(by: columnWorkItems * problem.batch), problem.spatial / Self.minimumRowsPerSlice, 1024)
            strategy = .columns(slices: max(1, slices))
        } else {
            if chunkedAccess {
                // A CPU core runs a work-group's items one after another: aim for
                // targetGroups work-groups' worth of items, each slice still a worthwhile read.
                let wanted = (targetGroups * reductionWorkGroupSize).ceilingDivided(by: problem.instances)
                let worthwhile = problem.spatial / Self.minimumElementsPerItemSlice
                strategy = .runPerWorkItem(slices: max(1, min(wanted, worthwhile, 1024)))
            } else {
                let wanted = targetGroups.ceilingDivided(by: problem.instances)
                let worthwhile = problem.spatial / (4 * max(1, tuning.minimumVectorsPerWorkGroup))
                strategy = .runPerWorkGroup(slices: max(1, min(wanted, worthwhile, 1024)))
            }
        }
    }

    /// The `-D` constants the kernels of `switchable_norm.cl` are specialised with.
    func buildOptions(for problem: SwitchableNormProblem) -> String {
        let branches = problem.branches
        return [
            "-cl-std=CL1.2",
            problem.elementType.buildOption,
            "-D BATCH=\(problem.batch)",
            "-D CHANNELS=\(problem.channels)",
            "-D SPATIAL=\(problem.spatial)",
            "-D SLICES=\(strategy.slices)",
            "-D WG=\(reductionWorkGroupSize)",
            "-D CHUNKED=\(chunkedAccess ? 1 : 0)",
            "-D INDEX_T=\(wideIndices ? "ulong" : "uint")",
            "-D CVEC=\(channelVectorWidth)",
            "-D TILE=\(columnTile)",
            "-D DIRECT=\(strategy == .direct ? 1 : 0)",
            "-D HAS_IN=\(branches.hasInstance ? 1 : 0)",
            "-D HAS_BN=\(branches.hasBatch ? 1 : 0)",
            "-D UNBIASED=\(problem.unbiased ? 1 : 0)",
            "-D TRAINING=\(problem.training ? 1 : 0)",
            "-D TRACK_RUNNING=\(problem.updatesRunningStatistics ? 1 : 0)",
            "-D HAS_WEIGHT=\(problem.hasWeight ? 1 : 0)",
            "-D HAS_BIAS=\(problem.hasBias ? 1 : 0)",
        ].joined(separator: " ")
    }

    /// The most instances N·C the one-work-group statistics kernel takes.
    static let statisticsSplitThreshold = 4096

    /// Fewer rows than this per slice make the partials cost more than they save.
    static let minimumRowsPerSlice = 64
    /// The shortest slice of a run one work-item should get.
    static let minimumElementsPerItemSlice = 1024

    static func powerOfTwo(atMost limit: Int) -> Int {
        var size = 1
        while size * 2 <= limit { size *= 2 }
        return size
    }
}
