/// How a ``BatchNormProblem`` runs on one OpenCL device: which kernels, and their
/// launch geometry, chosen from the problem's shape and the device's limits.
///
/// Strategies (each says when it applies):
/// - ``Strategy/fusedPerChannel``: training, when there are enough channels to keep
///   every compute unit busy with one work-group each. One launch: a work-group
///   computes its channel's statistics, then normalises the channel while it is
///   still in cache.
/// - ``Strategy/splitReduction(groupsPerChannel:)``: training with few channels and
///   long reductions (e.g. `C = 1`, millions of values). `G` work-groups per channel
///   write partial moments, one work-item per channel merges them in a fixed order,
///   and an elementwise pass normalises. Three launches, no host wait between them.
/// - ``Strategy/columns``: training on a row-major `(rows, C)` matrix — channels-last
///   input (`rows = N·M`) or `(N, C)` input — with enough channels to fill the device.
///   Each channel is a strided column there, so work-items take adjacent channels (4
///   per load when `C % 4 == 0`, ``DeviceTuning/columnTile`` vectors each) and walk the
///   rows; no work-group reduction. One launch.
/// - ``Strategy/splitColumns(rowGroups:)``: the same matrix with too few channels to
///   fill the device (e.g. NHWC with C = 64): `R` row slices write partial moments per
///   channel, merged per channel in a fixed order, then a row-wise elementwise pass.
///   Three launches.
/// - ``Strategy/inference``: the elementwise pass with the running statistics. One
///   launch for NCHW (the pass computes each channel's scale where it uses it, once per
///   plane run on CPUs: a launch costs 0.06–0.2 ms on PoCL); for a `(rows, C)` matrix a
///   per-channel scale kernel first (a scale per element vector there would cost a
///   square root and a division per load). Two launches.
struct BatchNormPlan: Equatable, Sendable {
    enum Strategy: Equatable, Sendable {
        case fusedPerChannel
        case splitReduction(groupsPerChannel: Int)
        case columns
        case splitColumns(rowGroups: Int)
        case inference
    }

    let strategy: Strategy
    /// Elements per load along the spatial axis of NCHW input: 4 when `M % 4 == 0`, else 1.
    let vectorWidth: Int
    /// Channels per load in the column kernels: 4 when `C % 4 == 0`, else 1.
    let channelVectorWidth: Int
    /// Column vectors per work-item in the column kernels.
    let columnTile: Int
    /// Work-items of the column kernels (one per tile of column vectors), and their
    /// work-group size.
    let columnWorkItems: Int
    let columnWorkGroupSize: Int
    let reductionWorkGroupSize: Int
    let elementwiseWorkGroupSize: Int
    let elementwiseWorkGroups: Int
    let chunkedAccess: Bool
    /// Whether element indices need 64 bits: the elements, plus the overshoot of a
    /// work-item's range past the end (up to the number of work-items), reach 2^32.
    let wideIndices: Bool
    /// Work-group size of the one-work-item-per-channel kernels (scale, merge).
    let perChannelWorkGroupSize: Int

    /// The plan for `problem` on `device`, or with `strategy` forced (tests use this
    /// to run every strategy on shapes where the heuristic would not pick it).
    init(problem: BatchNormProblem, device: OpenCLDevice, tuning: DeviceTuning, strategy forced: Strategy? = nil) {
        if let forced {
            precondition((forced == .inference) == !problem.isTraining, "strategy \(forced) does not fit mode \(problem.mode)")
            switch forced {
            case .columns, .splitColumns:
                precondition(problem.isRowsByChannels, "column strategies take (rows, C) input")
            case .fusedPerChannel, .splitReduction:
                precondition(problem.layout == .channelsFirst || problem.spatial == 1, "per-channel strategies take NCHW memory")
            case .inference:
                break
            }
        }
        vectorWidth = problem.layout == .channelsFirst && problem.spatial % 4 == 0 ? 4 : 1
        channelVectorWidth = problem.channels % 4 == 0 ? 4 : 1
        columnTile = max(1, tuning.columnTile)
        chunkedAccess = tuning.chunkedAccess
        // Three floats of local memory per work-item in the reduction tree, plus three
        // coefficients per work-group.
        let localLimit = (device.localMemoryBytes - 16) / (3 * MemoryLayout<Float>.size)
        reductionWorkGroupSize = Self.powerOfTwo(atMost: min(tuning.reductionWorkGroupSize, device.maxWorkGroupSize, localLimit))
        elementwiseWorkGroupSize = max(1, min(tuning.elementwiseWorkGroupSize, device.maxWorkGroupSize))
        perChannelWorkGroupSize = max(1, min(64, device.maxWorkGroupSize))
        columnWorkItems = (problem.channels / channelVectorWidth).ceilingDivided(by: columnTile)
        columnWorkGroupSize = min(elementwiseWorkGroupSize, columnWorkItems.roundedUp(toMultipleOf: 4))

        let targetGroups = max(1, device.computeUnits * tuning.workGroupsPerComputeUnit)
        let vectors = problem.count / vectorWidth
        let vectorsPerChannel = problem.valuesPerChannel / vectorWidth
        elementwiseWorkGroups = max(1, min(targetGroups, vectors.ceilingDivided(by: elementwiseWorkGroupSize)))
        let maximumItems = max(reductionWorkGroupSize, elementwiseWorkGroups * elementwiseWorkGroupSize)
        wideIndices = problem.count + 2 * maximumItems >= 1 << 32

        if let forced {
            strategy = forced
        } else if !problem.isTraining {
            strategy = .inference
        } else if problem.isRowsByChannels {
            // Split the rows only when the channels alone cannot fill the device. With
            // chunked access (CPUs) a work-group's items run one after another on one core,
            // so the aim is targetGroups busy work-items; on GPUs it is targetGroups full
            // work-groups of work-items.
            let wantedItems = chunkedAccess ? targetGroups : targetGroups * columnWorkGroupSize
            let rows = problem.valuesPerChannel
            let groups = min(wantedItems.ceilingDivided(by: columnWorkItems), rows / Self.minimumRowsPerGroup, 1024)
            strategy = groups > 1 ? .splitColumns(rowGroups: groups) : .columns
        } else {
            // Split only when channels alone cannot fill the device and each slice still
            // gets a worthwhile amount of data.
            let wanted = targetGroups.ceilingDivided(by: problem.channels)
            let worthwhile = vectorsPerChannel / max(1, tuning.minimumVectorsPerWorkGroup)
            let groups = min(wanted, worthwhile, 1024)
            strategy = groups > 1 ? .splitReduction(groupsPerChannel: groups) : .fusedPerChannel
        }
    }

    /// The `-D` constants the kernels of `batch_norm.cl` are specialised with.
    func buildOptions(for problem: BatchNormProblem) -> String {
        let updatesRunning = problem.mode == .training(updatesRunningStatistics: true)
        return [
            "-cl-std=CL1.2",
            "-D CHANNELS=\(problem.channels)",
            "-D SPATIAL=\(problem.spatial)",
            "-D VEC=\(vectorWidth)",
            "-D WG=\(reductionWorkGroupSize)",
            "-D CHUNKED=\(chunkedAccess ? 1 : 0)",
            "-D HAS_WEIGHT=\(problem.hasWeight ? 1 : 0)",
            "-D HAS_BIAS=\(problem.hasBias ? 1 : 0)",
            "-D TRACK_RUNNING=\(updatesRunning ? 1 : 0)",
            "-D RENORM=\(problem.renorm ? 1 : 0)",
            problem.elementType.buildOption,
            "-D INDEX_T=\(wideIndices ? "ulong" : "uint")",
            "-D CVEC=\(channelVectorWidth)",
            "-D TILE=\(columnTile)",
        ].joined(separator: " ")
    }

    /// Fewer rows than this per slice make the partials cost more than they save.
    static let minimumRowsPerGroup = 64

    static func powerOfTwo(atMost limit: Int) -> Int {
        var size = 1
        while size * 2 <= limit { size *= 2 }
        return size
    }
}
