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
    /// Vector widths, launch geometry and sizes, shared with ``BatchNormPlan``.
    let launch: BatchNormLaunch

    /// Whether element indices need 64 bits.
    var wideIndices: Bool { launch.wideIndices }

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
        // The reduction tree keeps one float2 per work-item.
        launch = BatchNormLaunch(
            shape: problem.shape, layout: problem.layout, device: device, tuning: tuning,
            localBytesPerItem: 2 * MemoryLayout<Float>.size)
        if let forced {
            strategy = forced
        } else if !problem.needsSums {
            strategy = .elementwise
        } else {
            strategy = launch.reduction()
        }
    }

    /// The build options of `batch_norm_backward.cl` for `problem`: the launch's and
    /// whether the statistics are the running ones (which changes dx's arithmetic). γ,
    /// Batch Renorm's r and d, and which gradients to write act once per channel (or
    /// work-group), so the kernels take them as arguments (NULL when absent) and every
    /// such combination shares one program.
    func specialization(for problem: BatchNormBackwardProblem) -> KernelSpecialization {
        var specialization = launch.specialization(elementType: problem.elementType)
        specialization.flag("INFERENCE", problem.mode == .inference)
        return specialization
    }
}
