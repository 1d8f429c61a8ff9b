/// How a ``BatchNormBackwardProblem`` runs on one OpenCL device: which kernels of
/// `Kernels/batch_norm_backward.cl`, and their launch geometry.
///
/// The backward pass reduces `Σdy` and `Σdy·(x − mean)` per channel in one pass over
/// x and dy, then writes dx; the strategies are the forward's (``BatchNormPlan``),
/// chosen by the same rules:
/// - ``Strategy/fusedPerChannel``: NCHW with enough channels to fill the device. One
///   work-group per channel reduces, finishes (dγ, dβ) and writes dx over the same
///   elements while they are in cache. One launch.
/// - ``Strategy/splitReduction(groupsPerChannel:)``: NCHW with few channels and long
///   reductions. `G` work-groups per channel write partial sums, one work-item per
///   channel merges them in order, an elementwise pass writes dx. Three launches.
/// - ``Strategy/columns``: a `(rows, C)` matrix (NHWC, or `(N, C)`) with enough
///   channels: work-items take adjacent column tiles, walk the rows to reduce, then
///   walk them again to write dx. One launch.
/// - ``Strategy/splitColumns(rowGroups:)``: the same matrix with too few channels:
///   `R` row slices write partial sums, merged per channel in order, then a row-wise
///   dx pass. Three launches.
/// - ``Strategy/elementwise``: inference when neither dγ nor dβ is asked for:
///   `dx = dy·γ·invstd` needs no reduction. One launch for NCHW (the dx pass computes
///   each channel's scale where it uses it); a per-channel scale, then the dx pass, for
///   a `(rows, C)` matrix.
///
/// A strategy's dx step is left out when the mask leaves out dx.
struct BatchNormBackwardPlan: Equatable, Sendable {
    enum Strategy: Equatable, Sendable {
        case fusedPerChannel
        case splitReduction(groupsPerChannel: Int)
        case columns
        case splitColumns(rowGroups: Int)
        case elementwise
    }

    let strategy: Strategy
    /// Elements per load along the spatial axis of NCHW input: 4 when `M % 4 == 0`, else 1.
    let vectorWidth: Int
    /// Channels per load in the column kernels: 4 when `C % 4 == 0`, else 1.
    let channelVectorWidth: Int
    /// Column vectors per work-item in the column kernels.
    let columnTile: Int
    let columnWorkItems: Int
    let columnWorkGroupSize: Int
    let reductionWorkGroupSize: Int
    let elementwiseWorkGroupSize: Int
    let elementwiseWorkGroups: Int
    let chunkedAccess: Bool
    /// Whether element indices need 64 bits.
    let wideIndices: Bool
    /// Work-group size of the one-work-item-per-channel kernels.
    let perChannelWorkGroupSize: Int

    /// The plan for `problem` on `device`, or with `strategy` forced (tests cover every
    /// strategy this way).
    init(
        problem: BatchNormBackwardProblem, device: OpenCLDevice, tuning: DeviceTuning, strategy forced: Strategy? = nil
    ) {
        if let forced {
            switch forced {
            case .columns, .splitColumns:
                precondition(problem.isRowsByChannels, "column strategies take (rows, C) input")
            case .fusedPerChannel, .splitReduction:
                precondition(problem.layout == .channelsFirst || problem.spatial == 1, "per-channel strategies take NCHW memory")
            case .elementwise:
                precondition(!problem.needsSums, "the elementwise strategy computes no sums")
            }
        }
        vectorWidth = problem.layout == .channelsFirst && problem.spatial % 4 == 0 ? 4 : 1
        channelVectorWidth = problem.channels % 4 == 0 ? 4 : 1
        columnTile = max(1, tuning.columnTile)
        chunkedAccess = tuning.chunkedAccess
        // Two floats of local memory per work-item in the reduction tree, three coefficients.
        let localLimit = (device.localMemoryBytes - 16) / (2 * MemoryLayout<Float>.size)
        reductionWorkGroupSize = BatchNormPlan.powerOfTwo(
            atMost: min(tuning.reductionWorkGroupSize, device.maxWorkGroupSize, localLimit))
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
        } else if !problem.needsSums {
            strategy = .elementwise
        } else if problem.isRowsByChannels {
            // As the forward: split the rows only when the channels cannot fill the device.
            let wantedItems = chunkedAccess ? targetGroups : targetGroups * columnWorkGroupSize
            let groups = min(
                wantedItems.ceilingDivided(by: columnWorkItems), problem.valuesPerChannel / BatchNormPlan.minimumRowsPerGroup,
                1024)
            strategy = groups > 1 ? .splitColumns(rowGroups: groups) : .columns
        } else {
            let wanted = targetGroups.ceilingDivided(by: problem.channels)
            let worthwhile = vectorsPerChannel / max(1, tuning.minimumVectorsPerWorkGroup)
            let groups = min(wanted, worthwhile, 1024)
            strategy = groups > 1 ? .splitReduction(groupsPerChannel: groups) : .fusedPerChannel
        }
    }

    /// The `-D` constants `batch_norm_backward.cl` is specialised with.
    func buildOptions(for problem: BatchNormBackwardProblem) -> String {
        let mask = problem.outputMask
        return [
            "-cl-std=CL1.2",
            "-D CHANNELS=\(problem.channels)",
            "-D SPATIAL=\(problem.spatial)",
            "-D VEC=\(vectorWidth)",
            "-D WG=\(reductionWorkGroupSize)",
            "-D CHUNKED=\(chunkedAccess ? 1 : 0)",
            "-D HAS_WEIGHT=\(problem.hasWeight ? 1 : 0)",
            "-D INFERENCE=\(problem.mode == .inference ? 1 : 0)",
            "-D RENORM=\(problem.mode == .renorm ? 1 : 0)",
            "-D NEED_DX=\(mask.contains(.input) ? 1 : 0)",
            "-D NEED_DW=\(mask.contains(.weight) ? 1 : 0)",
            "-D NEED_DB=\(mask.contains(.bias) ? 1 : 0)",
            problem.elementType.buildOption,
            "-D INDEX_T=\(wideIndices ? "ulong" : "uint")",
            "-D CVEC=\(channelVectorWidth)",
            "-D TILE=\(columnTile)",
        ].joined(separator: " ")
    }
}
