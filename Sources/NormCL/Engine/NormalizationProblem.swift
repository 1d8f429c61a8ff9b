/// One normalization problem, described apart from any data: which op, which
/// direction, and the shape, layout, element type and flags that decide which
/// kernels run. It is what ``OpenCLRuntime/warmUp(_:)`` takes.
///
/// Two problems that differ only in their sizes share their programs: sizes are kernel
/// arguments, and a program is specialised only on what changes its code (see
/// docs/ARCHITECTURE.md). A second shape of a warmed-up (op, direction, layout,
/// element type, flags) therefore runs without a build, unless its shape picks another
/// strategy or vector width.
public struct NormalizationProblem: Hashable, Sendable {
    /// The op and its op-specific settings.
    public enum Operation: Hashable, Sendable {
        /// BatchNorm: `training` uses batch statistics and updates running ones;
        /// otherwise the running statistics normalise (inference).
        case batchNorm(training: Bool)
        /// Batch Renormalization (training, running statistics updated).
        case batchRenorm
        /// LayerNorm over the trailing `normalizedShape` dimensions.
        case layerNorm(normalizedShape: [Int])
        /// RMSNorm over the trailing `normalizedShape` dimensions.
        case rmsNorm(normalizedShape: [Int])
        /// InstanceNorm with instance statistics.
        case instanceNorm
        /// GroupNorm with `groups` groups.
        case groupNorm(groups: Int)
        /// Switchable Normalization; `training` as for BatchNorm.
        case switchableNorm(training: Bool, options: SwitchableNormOptions)
    }

    /// Forward only, or forward followed by its backward (all gradients).
    public enum Direction: Hashable, Sendable {
        case forward
        case backward
    }

    public var operation: Operation
    public var direction: Direction
    /// The input's shape, `(N, C, spatial…)` or `(…, normalizedShape)`.
    public var shape: [Int]
    public var layout: TensorLayout
    public var elementType: ElementType
    /// Whether the op has a weight (γ) and bias (β).
    public var affine: Bool

    public init(
        _ operation: Operation, direction: Direction = .forward, shape: [Int], layout: TensorLayout = .channelsFirst,
        elementType: ElementType = .float32, affine: Bool = true
    ) {
        self.operation = operation
        self.direction = direction
        self.shape = shape
        self.layout = layout
        self.elementType = elementType
        self.affine = affine
    }
}

extension OpenCLRuntime {
    /// Builds — or loads from the disk cache — every program `problems` need, and makes
    /// the device generate each kernel's code, so the first real call of each problem
    /// (and of every other shape that shares its programs) runs without a build.
    ///
    /// It runs each problem once on scratch tensors of its shape (uninitialised device
    /// memory, released afterwards; running statistics of its own), the one way to reach
    /// exactly the kernels the real call will launch — PoCL also compiles a kernel's
    /// work-group function on its first launch — and then waits for the device. Nothing
    /// the caller owns is read or written.
    ///
    /// - Throws: what the op itself would throw for the problem (``NormError`` for a
    ///   shape the op rejects), or an ``OpenCLError``/``KernelBuildError``.
    public func warmUp(_ problems: [NormalizationProblem]) throws {
        for problem in problems { try run(problem) }
        try finish()
    }

    private func run(_ problem: NormalizationProblem) throws {
        let backend = Backend.openCL(self)
        let x = try Tensor(
            uninitializedShape: problem.shape, layout: problem.layout, elementType: problem.elementType, on: self)
        let parameterCount: Int
        switch problem.operation {
        case .layerNorm(let normalized), .rmsNorm(let normalized): parameterCount = normalized.reduce(1, *)
        default: parameterCount = problem.shape.count > 1 ? problem.shape[1] : 1
        }
        func parameter(_ value: Float) throws -> Tensor? {
            problem.affine ? try Tensor(repeating: value, shape: [parameterCount], on: backend) : nil
        }
        func running() throws -> RunningStatistics {
            RunningStatistics(
                mean: try Tensor(repeating: 0, shape: [parameterCount], on: backend),
                variance: try Tensor(repeating: 1, shape: [parameterCount], on: backend))
        }
        let weight = try parameter(1), bias = try parameter(0)
        let backward = problem.direction == .backward
        let dy = backward ? x : nil
        switch problem.operation {
        case .batchNorm(let training):
            var statistics = try running()
            let out = try batchNorm(x, weight: weight, bias: bias, runningStatistics: &statistics, training: training)
            if let dy { _ = try batchNormBackward(dy, forward: out) }
        case .batchRenorm:
            var statistics = try running()
            let out = try batchRenorm(
                x, weight: weight, bias: bias, runningStatistics: &statistics, limits: BatchRenormLimits(rmax: 3, dmax: 5))
            if let dy { _ = try batchNormBackward(dy, forward: out) }
        case .layerNorm(let normalized):
            let out = try layerNorm(x, normalizedShape: normalized, weight: weight, bias: bias)
            if let dy { _ = try layerNormBackward(dy, forward: out) }
        case .rmsNorm(let normalized):
            let out = try rmsNorm(x, normalizedShape: normalized, weight: weight)
            if let dy { _ = try rmsNormBackward(dy, forward: out) }
        case .instanceNorm:
            let out = try instanceNorm(x, weight: weight, bias: bias)
            if let dy { _ = try instanceNormBackward(dy, forward: out) }
        case .groupNorm(let groups):
            let out = try groupNorm(x, numGroups: groups, weight: weight, bias: bias)
            if let dy { _ = try groupNormBackward(dy, forward: out) }
        case .switchableNorm(let training, let options):
            let logits = try Tensor(repeating: 0, shape: [options.branches.count], on: backend)
            var statistics = try running()
            let out = try switchableNorm(
                x, meanLogits: logits, varianceLogits: logits, weight: weight, bias: bias,
                runningStatistics: &statistics, training: training, options: options)
            if let dy { _ = try switchableNormBackward(dy, forward: out) }
        }
    }
}
