/// How a GroupNorm or InstanceNorm backward pass runs on one OpenCL device: which
/// kernels of `Kernels/group_norm_backward.cl`, and their launch geometry, chosen from
/// the problem's shape, the gradients asked for and the device's limits.
///
/// Every strategy reduces, per (n, c) plane, `Σdy` and `Σdy·(x − mean)` in one pass
/// over `x` and `dy`; combines them per (n, g) row into the coefficients of
/// `dx = a·dy + b·(x − mean) + c`, and per channel (over n, in order) into dγ and dβ.
///
/// Strategies (each says when it applies):
/// - ``Strategy/fusedRows``: channels-first rows (or `(N, C)` input), enough rows to
///   give every compute unit work, or planes too short to split. One work-group per
///   (n, g) row reduces its planes one after another, then writes dx over the row
///   while it is still in cache. One launch (two with dγ/dβ).
/// - ``Strategy/splitPlanes(slicesPerPlane:)``: channels-first, too few rows for the
///   device. `S` work-groups per (n, c) plane write partial sums, one work-item per
///   row merges them in a fixed order into the dx coefficients, and an elementwise
///   pass writes dx. Three launches (four with dγ/dβ), no host wait between them.
/// - ``Strategy/columns(spatialSlices:)``: channels-last input. Work-items own
///   adjacent channel vectors and walk `S` slices of the M spatial rows, writing
///   per-(n, c, slice) sums; then the same merge and a row-wise elementwise pass.
///
/// InstanceNorm with running statistics runs any of them after a kernel that writes
/// the per-(n, c) rows of the running statistics; its dx is then `a·dy` alone and the
/// reductions run only for dγ.
struct GroupNormBackwardPlan: Equatable, Sendable {
    enum Strategy: Equatable, Sendable {
        case fusedRows
        case splitPlanes(slicesPerPlane: Int)
        case columns(spatialSlices: Int)
    }

    let strategy: Strategy
    let mask: NormGradientMask
    /// Elements per load along a channels-first plane: 4 when `M % 4 == 0`, else 1.
    let vectorWidth: Int
    /// Channels per load in the column kernels: 4 when `C % 4 == 0`, else 1.
    let channelVectorWidth: Int
    /// Column vectors per work-item in the column kernels.
    let columnTile: Int
    /// Work-items of the column kernels per sample, and their work-group size.
    let columnWorkItems: Int
    let columnWorkGroupSize: Int
    let reductionWorkGroupSize: Int
    let elementwiseWorkGroupSize: Int
    let elementwiseWorkGroups: Int
    let chunkedAccess: Bool
    /// Whether element indices need 64 bits (as ``GroupNormPlan/wideIndices``).
    let wideIndices: Bool
    /// Work-group size of the one-work-item-per-row or per-channel kernels.
    let perRowWorkGroupSize: Int

    /// The plan for `problem` on `device`, or with `strategy` forced (tests use this
    /// to run every strategy on shapes where the heuristic would not pick it).
    init(
        problem: GroupNormProblem, mask: NormGradientMask, device: OpenCLDevice, tuning: DeviceTuning,
        strategy forced: Strategy? = nil
    ) {
        switch forced {
        case .fusedRows?, .splitPlanes?:
            precondition(problem.hasContiguousRows, "plane strategies take channels-first memory")
        case .columns?:
            precondition(problem.layout == .channelsLast || problem.spatial == 1, "column strategies take (N, M, C) memory")
        case nil:
            break
        }
        self.mask = mask
        vectorWidth = problem.hasContiguousRows && problem.spatial % 4 == 0 ? 4 : 1
        channelVectorWidth = problem.channels % 4 == 0 ? 4 : 1
        columnTile = max(1, tuning.columnTile)
        chunkedAccess = tuning.chunkedAccess
        // Two floats of local memory per work-item in the reduction tree.
        let localLimit = device.localMemoryBytes / (2 * MemoryLayout<Float>.size)
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
        } else if problem.hasContiguousRows {
            // Split when the rows alone cannot fill the device: planes (or slices of
            // them) give more work-groups, as long as each gets a worthwhile share.
            let planes = problem.batch * problem.channels
            let planeVectors = problem.spatial / vectorWidth
            let wanted = targetGroups.ceilingDivided(by: planes)
            let worthwhile = planeVectors / max(1, tuning.minimumVectorsPerWorkGroup)
            let slices = max(1, min(wanted, worthwhile, 1024))
            let splits = slices > 1 || (planes > problem.rows && planeVectors >= Self.minimumVectorsPerPlane)
            strategy = problem.rows < targetGroups && splits ? .splitPlanes(slicesPerPlane: slices) : .fusedRows
        } else {
            // As the forward column plan: targetGroups busy work-items with chunked
            // access (CPUs), targetGroups full work-groups otherwise (GPUs).
            let wantedItems = chunkedAccess ? targetGroups : targetGroups * columnWorkGroupSize
            let items = problem.batch * columnWorkItems
            let slices = min(
                wantedItems.ceilingDivided(by: items), problem.spatial / GroupNormPlan.minimumRowsPerSlice, 1024)
            strategy = .columns(spatialSlices: max(1, slices))
        }
    }

    /// Whether the kernels reduce the per-plane sums: for dγ or dβ, and for dx unless
    /// the statistics are constants (running statistics).
    func reduces(_ problem: GroupNormProblem) -> Bool {
        mask.contains(.weight) || mask.contains(.bias) || (mask.contains(.input) && problem.statistics != .running)
    }

    /// The `-D` constants the kernels of `group_norm_backward.cl` are specialised with.
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
            "-D INDEX_T=\(wideIndices ? "ulong" : "uint")",
            "-D CVEC=\(channelVectorWidth)",
            "-D TILE=\(columnTile)",
            "-D WANT_DX=\(mask.contains(.input) ? 1 : 0)",
            "-D WANT_DWEIGHT=\(mask.contains(.weight) ? 1 : 0)",
            "-D WANT_DBIAS=\(mask.contains(.bias) ? 1 : 0)",
            "-D RUNNING=\(problem.statistics == .running ? 1 : 0)",
        ].joined(separator: " ")
    }

    /// Planes shorter than this (in vectors) are not worth a work-group of their own.
    static let minimumVectorsPerPlane = 256
}
