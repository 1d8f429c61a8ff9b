/// How a Switchable Norm backward pass runs on one OpenCL device.
///
/// The per-instance sums pass (`Σdy`, `Σdy·(x − μ)`) reads x and dy with exactly the
/// geometry of the forward's instance-moments pass, so the backward takes the forward's
/// ``SwitchableNormPlan`` (strategy, slices, work-group sizes, column tiling, vector
/// widths) for the same problem: ``SwitchableNormPlan/Strategy/direct`` skips the pass
/// (`L == 1`), the run strategies read NCHW runs,
/// ``SwitchableNormPlan/Strategy/columns(slices:)`` NHWC columns. Then the coefficient
/// step — one work-group up to ``SwitchableNormPlan/statisticsSplitThreshold`` instances,
/// else four device-wide launches — and the elementwise dx pass (skipped when dx is not
/// wanted).
struct SwitchableNormBackwardPlan: Equatable, Sendable {
    /// The forward plan whose geometry the sums and dx passes share.
    let geometry: SwitchableNormPlan

    /// Work-items of the one-work-group coefficient kernel (fixed: its logit partials are
    /// summed in work-item order, so results do not depend on the device's limits beyond it).
    let coefficientWorkGroupSize: Int

    init(
        problem: SwitchableNormProblem, device: OpenCLDevice, tuning: DeviceTuning,
        strategy: SwitchableNormPlan.Strategy? = nil
    ) {
        geometry = SwitchableNormPlan(problem: problem, device: device, tuning: tuning, strategy: strategy)
        coefficientWorkGroupSize = geometry.statisticsWorkGroupSize
    }

    var strategy: SwitchableNormPlan.Strategy { geometry.strategy }
    var splitCoefficients: Bool { geometry.splitStatistics }

    /// The step-1 kernel the strategy launches (only it is compiled): 0 none, 1 items,
    /// 2 groups, 3 columns.
    var sumsKernel: Int {
        switch strategy {
        case .direct: 0
        case .runPerWorkItem: 1
        case .runPerWorkGroup: 2
        case .columns: 3
        }
    }

    /// The build options of `switchable_norm_backward.cl`: the forward's shared
    /// specialisation, training (which changes the terms of dx for every element: the
    /// BN set's statistics depend on x only in training) and which kernels are compiled.
    func buildOptions(for problem: SwitchableNormProblem) -> KernelSpecialization {
        var options = geometry.specialization(for: problem)
        options.flag("TRAINING", problem.training)
        options.define("SUMS", sumsKernel)
        options.flag("SPLIT", splitCoefficients)
        options.flag("DX_COLUMNS", geometry.elementwiseColumns(for: problem))
        return options
    }
}
