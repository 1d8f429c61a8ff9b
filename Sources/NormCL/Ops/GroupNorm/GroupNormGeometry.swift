/// What GroupNorm's and InstanceNorm's forward and backward plans share: the
/// ``ChannelGeometry`` (its members read as this geometry's own), the elementwise
/// passes' launch and the index width, derived once from the problem.
@dynamicMemberLookup
struct GroupNormGeometry: Equatable, Sendable {
    let channel: ChannelGeometry
    /// The elementwise passes' launch (over every vector of the input).
    let elementwiseGlobal: [Int]
    let elementwiseLocal: [Int]
    /// Whether element indices need 64 bits: the elements, plus the overshoot of a
    /// work-item's range past the end, reach 2^32.
    let wideIndices: Bool

    /// - Parameter reductionBytesPerItem: local memory per work-item of the reduction tree.
    init(problem: GroupNormProblem, device: OpenCLDevice, tuning: DeviceTuning, reductionBytesPerItem: Int) {
        channel = ChannelGeometry(
            problem, layout: problem.layout, launch: LaunchGeometry(device: device, tuning: tuning),
            localBytesPerItem: reductionBytesPerItem)
        let vectors = problem.count / (problem.hasContiguousRows ? channel.vectorWidth : channel.channelVectorWidth)
        (elementwiseGlobal, elementwiseLocal) = channel.launch.elementwiseLaunch(vectors: vectors)
        wideIndices = channel.wideIndices(elements: problem.count, elementwiseVectors: vectors)
    }

    subscript<T>(dynamicMember member: KeyPath<ChannelGeometry, T>) -> T { channel[keyPath: member] }

    /// Spatial slices of the column strategy (``ChannelGeometry/columnSlices(samples:rows:)``
    /// over the N samples' M rows), and with chunked access (CPUs) at least enough that the
    /// launch has ``LaunchGeometry/targetWorkGroups`` work-groups: a CPU driver runs each
    /// work-group's items one after another on one thread (PoCL here: one work-group of 8
    /// items keeps one of its two threads busy, two keep both), so busy items alone do not
    /// spread the work. The diffusion U-Net's GroupNorm at batch 1, NHWC, 32 groups, on
    /// PoCL here (target 8): `(1, 640, 32, 32)` has 10 column work-items in one work-group
    /// of 12, 1 slice by items (one core), 8 by work-groups; `(1, 320, 64, 64)` has 5 in
    /// one of 8, 2 slices by items (one work-group per core, nothing to balance with), 8
    /// by work-groups; `(2, 640, 32, 32)` 1 and 4.
    func columnSlices(for problem: GroupNormProblem) -> Int {
        let slices = channel.columnSlices(samples: problem.batch, rows: problem.spatial)
        guard channel.launch.chunkedAccess else { return slices }
        let workGroupsPerSlice = max(1, problem.batch * channel.columnItems / channel.columnWorkGroupSize)
        let wanted = channel.launch.targetWorkGroups.ceilingDivided(by: workGroupsPerSlice)
        return max(slices, min(wanted, problem.spatial / ChannelGeometry.minimumRowsPerSlice, 1024))
    }

    /// The options both kernel files share; CVEC and TILE only for plans that run column
    /// kernels (so row plans do not build one program per `C % 4`). γ and β are
    /// arguments (NULL when absent): the kernels read them once per channel or run.
    /// A fused activation is `ACTIVATION`, defined only when there is one, so that programs
    /// without one are built exactly as before.
    func specialization(for problem: GroupNormProblem, columnKernels: Bool) -> KernelSpecialization {
        var options = channel.specialization(
            elementType: problem.elementType, wideIndices: wideIndices,
            vectorWidth: columnKernels ? 1 : channel.vectorWidth,
            channelVectorWidth: columnKernels ? channel.channelVectorWidth : nil)
        options.fuse(problem.activation)
        return options
    }

    /// The launch of a column kernel over `batch` samples and `slices` spatial slices.
    func columnLaunch(batch: Int, slices: Int) -> (global: [Int], local: [Int]) {
        ([channel.columnItems, batch, slices], [channel.columnWorkGroupSize, 1, 1])
    }
}
