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
        /// The forward pass only.
        case forward
        /// The forward pass, then its backward pass with every gradient.
        case backward
    }

    /// The op and its op-specific settings.
    public var operation: Operation
    /// Forward only, or forward and backward.
    public var direction: Direction
    /// The input's shape, `(N, C, spatial…)` or `(…, normalizedShape)`.
    public var shape: [Int]
    /// The input's memory layout.
    public var layout: TensorLayout
    /// The input's storage type.
    public var elementType: ElementType
    /// Whether the op has a weight (γ) and bias (β).
    public var affine: Bool
    /// What the call fuses around the norm (``Epilogue/none`` by default: the plain op).
    public var epilogue: Epilogue

    /// A problem.
    ///
    /// - Parameters:
    ///   - operation: the op and its op-specific settings.
    ///   - direction: forward only, or forward and backward.
    ///   - shape: the input's shape.
    ///   - layout: the input's memory layout.
    ///   - elementType: the input's storage type.
    ///   - affine: whether the op has a weight (γ) and bias (β).
    ///   - epilogue: what the call fuses around the norm; ``Epilogue/none`` (the default)
    ///     for the plain op.
    public init(
        _ operation: Operation, direction: Direction = .forward, shape: [Int], layout: TensorLayout = .channelsFirst,
        elementType: ElementType = .float32, affine: Bool = true, epilogue: Epilogue = .none
    ) {
        (self.operation, self.direction, self.shape, self.layout) = (operation, direction, shape, layout)
        (self.elementType, self.affine, self.epilogue) = (elementType, affine, epilogue)
    }
}

extension NormalizationProblem {
    /// What a call fuses around its normalization (see <doc:FusedEpilogues>), described
    /// apart from any data: the fused arguments that change which kernels run.
    ///
    /// ```swift
    /// // y = RMSNorm(x + residual) with h returned, the residual stream in float32 under
    /// // half activations, and its backward.
    /// NormalizationProblem(
    ///     .rmsNorm(normalizedShape: [4096]), direction: .backward, shape: [8, 4096], elementType: .float16,
    ///     epilogue: .init(residual: .init(elementType: .float32, returnsSum: true)))
    /// // relu(BN(x) + shortcut), training.
    /// NormalizationProblem(.batchNorm(training: true), shape: [32, 64, 56, 56],
    ///                      epilogue: .init(activation: .relu, addend: true))
    /// ```
    ///
    /// Each part is the argument of the same name of the fused call: a problem warmed up
    /// with an epilogue covers the calls with exactly those arguments (and the C API's
    /// `_fused` functions with the same tensors), not the plain op, nor the plain problem
    /// the fused one. An op that does not take a part (an activation for InstanceNorm or
    /// Switchable Norm, a residual for BatchNorm, an addend for LayerNorm, …) makes
    /// ``OpenCLRuntime/warmUp(_:)`` throw ``NormError/unsupported(argument:reason:)``.
    public struct Epilogue: Hashable, Sendable {
        /// The residual added before a LayerNorm or RMSNorm: `h = (x + inputBias) + residual`.
        public struct Residual: Hashable, Sendable {
            /// The residual's element type, which the sum h is stored in: nil for the
            /// input's, or ``ElementType/float32`` under half storage (the residual stream
            /// kept in float32).
            public var elementType: ElementType?
            /// Whether an input bias (`inputBias`, one float32 per column of the
            /// normalized shape) is added with the residual; the backward then returns its
            /// gradient.
            public var inputBias: Bool
            /// Whether the forward returns h (`returnsResidualSum`). The backward then reads
            /// the stored h when it has the input's element type, as
            /// ``rmsNormBackward(_:forward:gradResidualSum:outputMask:into:waitingFor:)`` and
            /// the C backward given `residual_sum` do.
            public var returnsSum: Bool

            /// A residual of `elementType` (nil: the input's), with an input bias or not,
            /// its sum returned or not.
            ///
            /// - Parameters:
            ///   - elementType: the residual's element type; nil for the input's.
            ///   - inputBias: whether an input bias is added with the residual.
            ///   - returnsSum: whether the forward returns h.
            public init(elementType: ElementType? = nil, inputBias: Bool = false, returnsSum: Bool = false) {
                self.elementType = elementType
                self.inputBias = inputBias
                self.returnsSum = returnsSum
            }
        }

        /// The activation after the norm (``Activation/none``: none): LayerNorm, RMSNorm,
        /// BatchNorm, Batch Renorm and GroupNorm.
        public var activation: Activation
        /// LayerNorm and RMSNorm: the residual added before the norm, or nil.
        public var residual: Residual?
        /// LayerNorm and RMSNorm: added to γ before it scales (`weightOffset`); needs
        /// ``NormalizationProblem/affine``. Its value is a kernel argument: any non-zero
        /// offset stands for every other.
        public var weightOffset: Float
        /// RMSNorm: whether it has a β, an offset added after the scaling (`bias`).
        /// LayerNorm's β is ``NormalizationProblem/affine``'s.
        public var rmsNormBias: Bool
        /// BatchNorm and Batch Renorm: whether an addend z (of the input's shape, layout and
        /// element type) is added before the activation, `y = f(BN(x) + z)`; the backward
        /// then returns dz.
        public var addend: Bool

        /// Nothing fused: the plain op.
        public static let none = Epilogue()

        /// An epilogue; every part defaults to none.
        ///
        /// - Parameters:
        ///   - activation: the activation after the norm.
        ///   - residual: LayerNorm and RMSNorm: the residual added before the norm.
        ///   - weightOffset: LayerNorm and RMSNorm: added to γ.
        ///   - rmsNormBias: RMSNorm: whether it has a β.
        ///   - addend: BatchNorm and Batch Renorm: whether an addend is added before the
        ///     activation.
        public init(
            activation: Activation = .none, residual: Residual? = nil, weightOffset: Float = 0,
            rmsNormBias: Bool = false, addend: Bool = false
        ) {
            self.activation = activation
            self.residual = residual
            self.weightOffset = weightOffset
            self.rmsNormBias = rmsNormBias
            self.addend = addend
        }

        /// Checks that `operation` takes every part that is set.
        func check(for operation: Operation) throws(NormError) {
            var rowNorm = false, batchNorm = false, activates = true
            switch operation {
            case .layerNorm, .rmsNorm: rowNorm = true
            case .batchNorm, .batchRenorm: batchNorm = true
            case .groupNorm: break
            case .instanceNorm, .switchableNorm: activates = false
            }
            let unsupported: [(set: Bool, taken: Bool, name: String)] = [
                (activation != .none, activates, "activation"), (residual != nil, rowNorm, "residual"),
                (weightOffset != 0, rowNorm, "weightOffset"), (addend, batchNorm, "addend"),
                (rmsNormBias, operation.isRMSNorm, "rmsNormBias"),
            ]
            if let part = unsupported.first(where: { $0.set && !$0.taken }) {
                throw .unsupported(argument: "epilogue.\(part.name)", reason: "\(operation) does not fuse it")
            }
        }
    }
}

extension NormalizationProblem.Operation {
    /// Whether this is RMSNorm.
    var isRMSNorm: Bool {
        if case .rmsNorm = self { return true }
        return false
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
    /// the caller owns is read or written. A problem's ``NormalizationProblem/epilogue``
    /// runs the fused op (and, for ``NormalizationProblem/Direction/backward``, its fused
    /// backward, all gradients), whose programs are not the plain op's.
    ///
    /// - Throws: what the op itself would throw for the problem (``NormError`` for a
    ///   shape the op rejects), ``NormError/unsupported(argument:reason:)`` for an
    ///   epilogue part the op does not fuse, or an ``OpenCLError``/``KernelBuildError``.
    public func warmUp(_ problems: [NormalizationProblem]) throws {
        for problem in problems { try run(problem) }
        try finish()
    }

    private func run(_ problem: NormalizationProblem) throws {
        let backend = Backend.openCL(self)
        let fused = problem.epilogue
        try fused.check(for: problem.operation)
        func scratch(_ elementType: ElementType) throws -> Tensor {
            try Tensor(uninitializedShape: problem.shape, layout: problem.layout, elementType: elementType, on: self)
        }
        let x = try scratch(problem.elementType)
        let parameterCount: Int
        switch problem.operation {
        case .layerNorm(let normalized), .rmsNorm(let normalized): parameterCount = normalized.reduce(1, *)
        default: parameterCount = problem.shape.count > 1 ? problem.shape[1] : 1
        }
        func parameter(_ value: Float, if present: Bool = problem.affine) throws -> Tensor? {
            present ? try Tensor(repeating: value, shape: [parameterCount], on: backend) : nil
        }
        func running() throws -> RunningStatistics {
            RunningStatistics(
                mean: try Tensor(repeating: 0, shape: [parameterCount], on: backend),
                variance: try Tensor(repeating: 1, shape: [parameterCount], on: backend))
        }
        let weight = try parameter(1), bias = try parameter(0)
        let backward = problem.direction == .backward
        let dy = backward ? x : nil
        let activation = fused.activation
        let addend = fused.addend ? try scratch(problem.elementType) : nil
        let residual = try fused.residual.map { try scratch($0.elementType ?? problem.elementType) }
        let returnsSum = fused.residual?.returnsSum ?? false
        let inputBias = try parameter(0, if: fused.residual?.inputBias ?? false)
        switch problem.operation {
        case .batchNorm(let training):
            var statistics = try running()
            let out = try batchNorm(
                x, weight: weight, bias: bias, runningStatistics: &statistics, training: training,
                activation: activation, addend: addend)
            if let dy { _ = try batchNormBackward(dy, forward: out) }
        case .batchRenorm:
            var statistics = try running()
            let out = try batchRenorm(
                x, weight: weight, bias: bias, runningStatistics: &statistics, limits: BatchRenormLimits(rmax: 3, dmax: 5),
                activation: activation, addend: addend)
            if let dy { _ = try batchNormBackward(dy, forward: out) }
        case .layerNorm(let normalized):
            let out = try layerNorm(
                x, normalizedShape: normalized, weight: weight, bias: bias, residual: residual, inputBias: inputBias,
                returnsResidualSum: returnsSum, weightOffset: fused.weightOffset, activation: activation)
            if let dy { _ = try layerNormBackward(dy, forward: out) }
        case .rmsNorm(let normalized):
            let out = try rmsNorm(
                x, normalizedShape: normalized, weight: weight, bias: parameter(0, if: fused.rmsNormBias),
                residual: residual, inputBias: inputBias, returnsResidualSum: returnsSum,
                weightOffset: fused.weightOffset, activation: activation)
            if let dy { _ = try rmsNormBackward(dy, forward: out) }
        case .instanceNorm:
            let out = try instanceNorm(x, weight: weight, bias: bias)
            if let dy { _ = try instanceNormBackward(dy, forward: out) }
        case .groupNorm(let groups):
            let out = try groupNorm(x, numGroups: groups, weight: weight, bias: bias, activation: activation)
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
