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
    /// Vector widths, launch geometry and sizes, shared with ``BatchNormBackwardPlan``.
    let launch: BatchNormLaunch

    /// Whether element indices need 64 bits.
    var wideIndices: Bool { launch.wideIndices }

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
        // The reduction tree keeps one Moments (three floats) per work-item.
        launch = BatchNormLaunch(
            shape: problem.shape, layout: problem.layout, device: device, tuning: tuning,
            localBytesPerItem: 3 * MemoryLayout<Float>.size)
        if let forced {
            strategy = forced
        } else if !problem.isTraining {
            strategy = .inference
        } else {
            strategy = launch.reduction()
        }
    }

    /// The build options of `batch_norm.cl` for `problem`: the launch's alone. γ, β,
    /// the running update and Batch Renorm act once per channel, so the kernels take them
    /// as arguments (NULL when absent) and every such combination shares one program.
    func specialization(for problem: BatchNormProblem) -> KernelSpecialization {
        launch.specialization(elementType: problem.elementType)
    }
}
