/// How a BatchNorm (or Batch Renorm) forward or backward problem runs on one OpenCL
/// device: which kernels of `Kernels/batch_norm.cl` or `Kernels/batch_norm_backward.cl`,
/// and their launch geometry, chosen from the problem's shape and the device's limits.
///
/// Both directions reduce per channel over the N·M values of the channel — the forward
/// its moments, the backward `Σdy` and `Σdy·(x − mean)` — and then write an elementwise
/// result (y, dx), so one set of strategies serves both (each says when it applies):
/// - ``Strategy/fusedPerChannel``: NCHW with enough channels to keep every compute unit
///   busy with one work-group each. One launch: a work-group reduces its channel, then
///   writes the channel's y or dx (the backward also dγ, dβ) while it is still in cache.
/// - ``Strategy/channelItems``: NCHW with many channels of few values each (on a CPU,
///   fewer than ``DeviceTuning/minimumVectorsPerWorkGroup`` vectors), where scheduling a
///   work-group per channel costs more than its reduction saves. One launch: a
///   work-item reduces its channel alone and writes the channel's y or dx.
/// - ``Strategy/splitReduction(groupsPerChannel:)``: NCHW with few channels and long
///   reductions (e.g. `C = 1`, millions of values). `G` work-groups per channel write
///   partials, one work-item per channel merges them in a fixed order, and an
///   elementwise pass writes y or dx. Three launches, no host wait between them.
/// - ``Strategy/columns``: a row-major `(rows, C)` matrix — channels-last input
///   (`rows = N·M`) or `(N, C)` input — with enough channels to fill the device. Each
///   channel is a strided column there, so work-items take adjacent channels (4 per load
///   when `C % 4 == 0`, ``DeviceTuning/columnTile`` vectors each) and walk the rows; no
///   work-group reduction. One launch.
/// - ``Strategy/splitColumns(rowGroups:)``: the same matrix with too few channels to
///   fill the device (e.g. NHWC with C = 64): `R` row slices write partials per channel,
///   merged per channel in a fixed order, then a row-wise elementwise pass. Three
///   launches.
/// - ``Strategy/elementwise``: nothing to reduce — forward inference with the running
///   statistics, or a backward pass that needs no sums (inference, dx alone:
///   `dx = dy·γ·invstd`). One launch for NCHW (the pass computes each channel's scale
///   where it uses it, once per plane run on CPUs: a launch costs 0.06–0.2 ms on PoCL);
///   for a `(rows, C)` matrix a per-channel scale kernel first (a scale per element
///   vector there would cost a square root and a division per load). Two launches.
///
/// The backward leaves out a strategy's dx step when the mask leaves out dx.
struct BatchNormPlan: Equatable, Sendable {
    enum Strategy: Equatable, Sendable {
        case fusedPerChannel
        case channelItems
        case splitReduction(groupsPerChannel: Int)
        case columns
        case splitColumns(rowGroups: Int)
        case elementwise
    }

    let strategy: Strategy
    /// Vector widths, launch geometry and sizes.
    let launch: BatchNormLaunch

    /// Whether element indices need 64 bits.
    var wideIndices: Bool { launch.wideIndices }

    /// The forward plan for `problem` on `device`, or with `strategy` forced (tests use
    /// this to run every strategy on shapes where the heuristic would not pick it).
    /// Training reduces; inference is elementwise.
    init(problem: BatchNormProblem, device: OpenCLDevice, tuning: DeviceTuning, strategy forced: Strategy? = nil) {
        precondition(
            forced == nil || (forced == .elementwise) == !problem.isTraining,
            "strategy \(forced.map { "\($0)" } ?? "") does not fit mode \(problem.mode)")
        // The reduction tree keeps one Moments (three floats) per work-item.
        self.init(
            problem, layout: problem.layout, reduces: problem.isTraining, localBytesPerItem: 3 * MemoryLayout<Float>.size,
            device: device, tuning: tuning, strategy: forced)
    }

    /// The backward plan for `problem`: elementwise when it needs no sums.
    init(
        problem: BatchNormBackwardProblem, device: OpenCLDevice, tuning: DeviceTuning, strategy forced: Strategy? = nil
    ) {
        precondition(forced != .elementwise || !problem.needsSums, "the elementwise strategy computes no sums")
        // The reduction tree keeps one float2 per work-item.
        self.init(
            problem, layout: problem.layout, reduces: problem.needsSums, localBytesPerItem: 2 * MemoryLayout<Float>.size,
            device: device, tuning: tuning, strategy: forced)
    }

    private init(
        _ problem: some ChannelShaped, layout: TensorLayout, reduces: Bool, localBytesPerItem: Int,
        device: OpenCLDevice, tuning: DeviceTuning, strategy forced: Strategy?
    ) {
        switch forced {
        case .columns?, .splitColumns?:
            precondition(layout == .channelsLast || problem.spatial == 1, "column strategies take (rows, C) input")
        case .fusedPerChannel?, .channelItems?, .splitReduction?:
            precondition(layout == .channelsFirst || problem.spatial == 1, "per-channel strategies take NCHW memory")
        case .elementwise?, nil:
            break
        }
        launch = BatchNormLaunch(
            shape: problem.shape, layout: layout, device: device, tuning: tuning, localBytesPerItem: localBytesPerItem)
        strategy = forced ?? (reduces ? launch.reduction() : .elementwise)
    }

    /// The build options of `batch_norm.cl` for `problem`: the launch's, and the fused
    /// epilogue's (``KernelSpecialization/addBatchNormEpilogue(activation:addend:)``). γ, β,
    /// the running update and Batch Renorm act once per channel, so the kernels take them
    /// as arguments (NULL when absent) and every such combination shares one program.
    func specialization(for problem: BatchNormProblem) -> KernelSpecialization {
        var specialization = launch.specialization(elementType: problem.elementType)
        specialization.addBatchNormEpilogue(activation: problem.activation, addend: problem.hasAddend)
        return specialization
    }

    /// The build options of `batch_norm_backward.cl` for `problem`: the launch's and
    /// whether the statistics are the running ones (which changes dx's arithmetic). γ,
    /// Batch Renorm's r and d, and which gradients to write act once per channel (or
    /// work-group), so the kernels take them as arguments (NULL when absent) and every
    /// such combination shares one program.
    func specialization(for problem: BatchNormBackwardProblem) -> KernelSpecialization {
        var specialization = launch.specialization(elementType: problem.elementType)
        specialization.flag("INFERENCE", problem.mode == .inference)
        specialization.addBatchNormEpilogue(activation: problem.activation, addend: problem.hasAddend)
        return specialization
    }
}

extension KernelSpecialization {
    /// BatchNorm's fused epilogue `y = f(BN(x) + z)`: `ACTIVATION` (epilogue.cl) and
    /// `HAS_ADDEND` (reduction.cl), each defined only when present, so that the programs
    /// of unfused BatchNorm keep their options (and their cached binaries). Both change
    /// the arithmetic of every element, so they are build options, not arguments.
    mutating func addBatchNormEpilogue(activation: Activation, addend: Bool) {
        fuse(activation)
        if addend { flag("HAS_ADDEND", true) }
    }
}
