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
///   per (run, slice) walks its contiguous elements (float4 loads when `L % 4 == 0`), no
///   local memory.
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
///
/// Sizes (N, C, L, slices) are kernel arguments: the programs are specialised only on the
/// element type, vector widths, work-group size, access pattern, index width, strategy
/// (direct or not) and the mode flags, so one program serves every shape.
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
    /// Vector widths, column tiles and the moments pass's work-group size. `VEC` reads
    /// NCHW runs (1 for NHWC and direct, whose kernels do not read runs); the NHWC
    /// kernels read `CVEC` channels a load (1 in the NCHW and direct programs).
    let channel: ChannelGeometry
    /// Work-items of the single work-group of the statistics kernel, and the work-group
    /// size of the split statistics kernels.
    let statisticsWorkGroupSize: Int
    /// Whether the statistics step runs device-wide (large N·C) instead of in one work-group.
    let splitStatistics: Bool
    /// The most work-items of a split statistics kernel (they stride over the instances).
    let statisticsWorkItems: Int
    /// Whether element offsets need 64 bits.
    let wideIndices: Bool

    /// The device's launch sizes (work-group sizes, column tiles, access pattern).
    var launch: LaunchGeometry { channel.launch }
    var chunkedAccess: Bool { launch.chunkedAccess }
    var reductionWorkGroupSize: Int { channel.reductionWorkGroupSize }

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
        let launch = LaunchGeometry(device: device, tuning: tuning)
        // The moments kernel keeps one Moments (3 floats) per work-item in local memory.
        let channel = ChannelGeometry(
            problem, layout: problem.layout, launch: launch, localBytesPerItem: 3 * MemoryLayout<Float>.size)
        self.channel = channel
        statisticsWorkGroupSize = launch.perSegmentWorkGroupSize
        splitStatistics = problem.instances > Self.statisticsSplitThreshold
        statisticsWorkItems = launch.targetWorkGroups * statisticsWorkGroupSize
        // Elementwise launches have at most one work-item per element.
        wideIndices = channel.wideIndices(elements: problem.count, elementwiseVectors: problem.count)

        let targetGroups = launch.targetWorkGroups
        if let forced {
            strategy = forced
        } else if direct {
            strategy = .direct
        } else if problem.layout == .channelsLast {
            // Split the rows only when the tiles of all samples cannot fill the device.
            strategy = .columns(slices: channel.columnSlices(samples: problem.batch, rows: problem.spatial))
        } else if launch.chunkedAccess {
            // A CPU core runs a work-group's items one after another: aim for
            // targetGroups work-groups' worth of items, each slice still a worthwhile read.
            let wanted = (targetGroups * channel.reductionWorkGroupSize).ceilingDivided(by: problem.instances)
            let worthwhile = problem.spatial / Self.minimumElementsPerItemSlice
            strategy = .runPerWorkItem(slices: max(1, min(wanted, worthwhile, 1024)))
        } else {
            strategy = .runPerWorkGroup(
                slices: launch.slicesPerSegment(segments: problem.instances, vectorsPerSegment: problem.spatial / 4))
        }
    }

    /// What both programs (`switchable_norm.cl`, `switchable_norm_backward.cl`) are
    /// specialised on; the forward and the backward add their own flags.
    func specialization(for problem: SwitchableNormProblem) -> KernelSpecialization {
        let columns = elementwiseColumns(for: problem)
        var options = channel.specialization(
            elementType: problem.elementType, wideIndices: wideIndices,
            vectorWidth: channel.vectorWidth,
            channelVectorWidth: columns ? channel.channelVectorWidth : 1)
        // Switchable Norm's own block length (Kernels/reduction.cl, VECTOR_BLOCK): 64 vectors
        // per fold, as before the shared library; 16 made its half-storage moments pass
        // 1.3x slower.
        options.define("VECTOR_BLOCK", 64)
        options.flag("DIRECT", strategy == .direct)
        options.flag("HAS_IN", problem.branches.hasInstance)
        options.flag("HAS_BN", problem.branches.hasBatch)
        return options
    }

    /// The build options of `switchable_norm.cl`: the shared specialisation alone. γ, β,
    /// the running update and whether the BN set comes from the batch (training) or the
    /// running statistics act once per channel or instance, so the kernels take them as
    /// arguments (NULL or a flag) and every such combination shares one program.
    func buildOptions(for problem: SwitchableNormProblem) -> KernelSpecialization {
        specialization(for: problem)
    }

    /// The step-1 pass over x (forward: instance moments, backward: instance sums): the
    /// kernel's name suffix and its launch; nil for ``Strategy/direct``.
    func instancePass(for problem: SwitchableNormProblem) -> (kernel: String, global: [Int], local: [Int])? {
        let slices = strategy.slices, local = channel.reductionWorkGroupSize
        switch strategy {
        case .direct: return nil
        case .runPerWorkItem: return ("items", [(problem.instances * slices).roundedUp(toMultipleOf: local)], [local])
        case .runPerWorkGroup: return ("groups", [slices * local, problem.instances], [local, 1])
        case .columns:
            return ("columns", [channel.columnItems, problem.batch * slices], [channel.columnWorkGroupSize, 1])
        }
    }

    /// Whether the elementwise pass (forward apply, backward dx) walks NHWC rows of
    /// channels (`columns`) rather than NCHW runs (`rows`, also for direct).
    func elementwiseColumns(for problem: SwitchableNormProblem) -> Bool {
        problem.layout == .channelsLast && strategy != .direct
    }

    /// The launch of the elementwise pass: one work-item per vector of `VEC` (runs) or
    /// `CVEC` (columns) elements, as many work-groups as fill the device.
    func elementwiseLaunch(for problem: SwitchableNormProblem) -> (global: [Int], local: [Int]) {
        let width = elementwiseColumns(for: problem) ? channel.channelVectorWidth : channel.vectorWidth
        return launch.elementwiseLaunch(vectors: problem.count / width)
    }

    /// The launch of the split statistics kernels over `count` runs, samples or channels.
    func statisticsLaunch(covering count: Int) -> (global: [Int], local: [Int]) {
        ([min(count, statisticsWorkItems).roundedUp(toMultipleOf: statisticsWorkGroupSize)], [statisticsWorkGroupSize])
    }

    /// The most instances N·C the one-work-group statistics kernel takes.
    static let statisticsSplitThreshold = 4096

    /// The shortest slice of a run one work-item should get.
    static let minimumElementsPerItemSlice = 1024
}
