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
    /// over the N samples' M rows).
    func columnSlices(for problem: GroupNormProblem) -> Int {
        channel.columnSlices(samples: problem.batch, rows: problem.spatial)
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
