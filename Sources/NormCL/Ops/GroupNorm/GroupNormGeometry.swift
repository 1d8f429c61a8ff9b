/// The launch sizes GroupNorm's and InstanceNorm's forward and backward plans share,
/// derived once from the problem and ``LaunchGeometry``: vector widths, the column
/// kernels' work-items, the elementwise passes, the index width, and the build options
/// every program of the family starts with.
struct GroupNormGeometry: Equatable, Sendable {
    let launch: LaunchGeometry
    /// Elements per load along a contiguous row: 4 when `M % 4 == 0`, else 1 (a
    /// vector never straddles two channels, so γ and β stay per vector).
    let vectorWidth: Int
    /// Channels per load in the column kernels: 4 when `C % 4 == 0`, else 1.
    let channelVectorWidth: Int
    /// Work-items of the column kernels per sample (one per tile of column vectors),
    /// and their work-group size.
    let columnWorkItems: Int
    let columnWorkGroupSize: Int
    /// Work-group size of the row and plane reductions (a power of two).
    let reductionWorkGroupSize: Int
    /// The elementwise passes' launch (over every vector of the input).
    let elementwiseGlobal: [Int]
    let elementwiseLocal: [Int]
    /// Whether element indices need 64 bits: the elements, plus the overshoot of a
    /// work-item's range past the end, reach 2^32.
    let wideIndices: Bool

    /// - Parameter reductionBytesPerItem: local memory per work-item of the reduction tree.
    init(problem: GroupNormProblem, device: OpenCLDevice, tuning: DeviceTuning, reductionBytesPerItem: Int) {
        launch = LaunchGeometry(device: device, tuning: tuning)
        vectorWidth = problem.hasContiguousRows && problem.spatial % 4 == 0 ? 4 : 1
        channelVectorWidth = problem.channels % 4 == 0 ? 4 : 1
        (columnWorkItems, columnWorkGroupSize) = launch.columnWorkItems(
            columnVectors: problem.channels / channelVectorWidth)
        reductionWorkGroupSize = launch.reductionWorkGroupSize(localBytesPerItem: reductionBytesPerItem)
        let vectors = problem.count / (problem.hasContiguousRows ? vectorWidth : channelVectorWidth)
        (elementwiseGlobal, elementwiseLocal) = launch.elementwiseLaunch(vectors: vectors)
        wideIndices = LaunchGeometry.needsWideIndices(
            elements: problem.count, workItems: max(reductionWorkGroupSize, elementwiseGlobal[0]))
    }

    /// Spatial slices of the column strategy: with chunked access (CPUs) a
    /// work-group's items run one after another on one core, so the aim is
    /// ``LaunchGeometry/targetWorkGroups`` busy work-items; on GPUs it is that many
    /// full work-groups. Never fewer than ``minimumRowsPerSlice`` rows a slice.
    func columnSlices(for problem: GroupNormProblem) -> Int {
        let wantedItems =
            launch.chunkedAccess ? launch.targetWorkGroups : launch.targetWorkGroups * columnWorkGroupSize
        let items = problem.batch * columnWorkItems
        return max(1, min(wantedItems.ceilingDivided(by: items), problem.spatial / Self.minimumRowsPerSlice, 1024))
    }

    /// The options both kernel files share: element type, access, index width, VEC and
    /// WG; CVEC and TILE only for plans that run column kernels (so row plans do not
    /// build one program per `C % 4`). γ and β are arguments (NULL when absent): the
    /// kernels read them once per channel or run.
    func specialization(for problem: GroupNormProblem, columnKernels: Bool) -> KernelSpecialization {
        var options = KernelSpecialization(
            elementType: problem.elementType, chunkedAccess: launch.chunkedAccess, wideIndices: wideIndices)
        options.define("VEC", columnKernels ? 1 : vectorWidth)
        options.define("WG", reductionWorkGroupSize)
        if columnKernels {
            options.define("CVEC", channelVectorWidth)
            options.define("TILE", launch.columnTile)
        }
        return options
    }

    /// The launch of a column kernel over `batch` samples and `slices` spatial slices.
    func columnLaunch(batch: Int, slices: Int) -> (global: [Int], local: [Int]) {
        ([columnWorkItems.roundedUp(toMultipleOf: columnWorkGroupSize), batch, slices], [columnWorkGroupSize, 1, 1])
    }

    /// Fewer spatial rows than this per slice make the partials cost more than they save.
    static let minimumRowsPerSlice = 64
}
