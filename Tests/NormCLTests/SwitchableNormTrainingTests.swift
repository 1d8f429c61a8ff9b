import Testing
@testable import NormCL

/// Switchable Norm forward on OpenCL against the float64 reference: shape sweep, both
/// layouts and element types, every variant and plan strategy.
@Suite("SwitchableNorm forward")
struct SwitchableNormTrainingTests {
    /// Awkward shapes: L = 2, primes, sizes no multiple of 4 or 16, one channel or one
    /// sample, a long run, 3-d input; (N, C, 1, 1) takes the direct strategy.
    static let shapes: [[Int]] = [
        [2, 1, 2], [3, 5, 7], [2, 3, 5, 7], [4, 8, 9, 9], [1, 4, 6, 6], [5, 7, 13], [2, 12, 4, 4, 3], [1, 1, 4099],
        [8, 16, 14, 14], [3, 2, 1, 1],
    ]

    @Test("matches the reference with the automatic plan, both layouts and element types", arguments: shapes)
    func automaticPlan(shape: [Int]) throws {
        let runtime = try #require(sharedRuntime)
        for layout in [TensorLayout.channelsFirst, .channelsLast] {
            for elementType in ElementType.allCases {
                var harness = SwitchableNormHarness(
                    shape: shape, layout: layout, elementType: elementType, seed: UInt64(shape.reduce(1, *)))
                if shape.dropFirst(2).reduce(1, *) == 1 { harness.options.varianceEstimator = .biased }
                try harness.check(on: .openCL(runtime), training: true)
            }
        }
    }

    @Test("every branch set and estimator, training and inference", arguments: [[4, 6, 5, 5], [3, 8, 16], [6, 5]])
    func variants(shape: [Int]) throws {
        let runtime = try #require(sharedRuntime)
        let branchSets: [SwitchableNormOptions.Branches] =
            shape.count == 2 ? [.layerBatch] : SwitchableNormOptions.Branches.allCases
        for layout in [TensorLayout.channelsFirst, .channelsLast] {
            for branches in branchSets {
                for estimator in [SwitchableNormOptions.VarianceEstimator.biased, .unbiased] {
                    for training in [true, false] {
                        var harness = SwitchableNormHarness(shape: shape, layout: layout, seed: 11)
                        harness.options.branches = branches
                        harness.options.varianceEstimator = estimator
                        if !branches.hasBatch { harness.untrack() }
                        try harness.check(on: .openCL(runtime), training: training)
                    }
                }
            }
        }
    }

    @Test("each strategy forced", arguments: [[2, 3, 37], [1, 2, 5000], [4, 8, 6, 6], [2, 5, 3, 3]])
    func everyStrategy(shape: [Int]) throws {
        let runtime = try #require(sharedRuntime)
        let runStrategies: [SwitchableNormPlan.Strategy] = [
            .runPerWorkItem(slices: 1), .runPerWorkItem(slices: 3), .runPerWorkItem(slices: 8),
            .runPerWorkGroup(slices: 1), .runPerWorkGroup(slices: 5),
        ]
        for elementType in ElementType.allCases {
            let harness = SwitchableNormHarness(shape: shape, elementType: elementType, seed: 5)
            for strategy in runStrategies {
                try harness.check(on: .openCL(runtime), training: true, strategy: strategy)
            }
            var columns = harness
            columns.layout = .channelsLast
            for slices in [1, 2, 7] {
                try columns.check(on: .openCL(runtime), training: true, strategy: .columns(slices: slices))
            }
        }
    }

    @Test("GPU-style tuning: interleaved access, column tile 1, wide work-groups", arguments: [[2, 3, 37], [3, 8, 9, 9], [1, 4, 3000]])
    func interleavedTuning(shape: [Int]) throws {
        let runtime = try #require(sharedRuntime)
        let gpu = DeviceTuning.gpuStyle64
        for elementType in ElementType.allCases {
            var harness = SwitchableNormHarness(shape: shape, elementType: elementType, seed: 8)
            harness.tuning = gpu
            try harness.check(on: .openCL(runtime), training: true)
            for strategy in [SwitchableNormPlan.Strategy.runPerWorkGroup(slices: 1), .runPerWorkGroup(slices: 4), .runPerWorkItem(slices: 2)] {
                try harness.check(on: .openCL(runtime), training: true, strategy: strategy)
            }
            harness.layout = .channelsLast
            try harness.check(on: .openCL(runtime), training: true)
            try harness.check(on: .openCL(runtime), training: false, strategy: .columns(slices: 3))
        }
    }

    @Test("the plan's choices on this device", arguments: [[8, 64, 56, 56], [1, 2, 65_536], [2, 3], [4, 64, 7, 7]])
    func planChoices(shape: [Int]) throws {
        let runtime = try #require(sharedRuntime)
        for layout in [TensorLayout.channelsFirst, .channelsLast] {
            let input = try Tensor(repeating: 1, shape: shape, layout: layout, on: .openCL(runtime))
            let logits = try Tensor(repeating: 1, shape: [shape.count == 2 ? 2 : 3], on: .openCL(runtime))
            let problem = try SwitchableNormProblem.validated(
                input: input, meanLogits: logits, varianceLogits: logits, weight: nil, bias: nil, running: nil, training: true,
                options: .init(branches: shape.count == 2 ? .layerBatch : .instanceLayerBatch))
            let plan = SwitchableNormPlan(problem: problem, device: runtime.device, tuning: runtime.tuning)
            switch plan.strategy {
            case .direct: #expect(problem.spatial == 1)
            case .runPerWorkItem(let slices), .runPerWorkGroup(let slices):
                #expect(layout == .channelsFirst && problem.spatial > 1)
                // Few long runs are split, many runs are not.
                #expect((slices > 1) == (problem.instances < 16 && problem.spatial >= 4096), "\(shape) \(plan.strategy)")
            case .columns(let slices):
                #expect(layout == .channelsLast && problem.spatial > 1)
                #expect(slices >= 1 && slices <= Swift.max(1, problem.spatial / ChannelGeometry.minimumRowsPerSlice))
            }
        }
    }

    @Test("large N·C: the statistics step split over the device")
    func splitStatistics() throws {
        let runtime = try #require(sharedRuntime)
        var oneD = SwitchableNormHarness(shape: [64, 81], elementType: .float16, offset: 1e4, seed: 12)
        oneD.options.branches = .layerBatch
        try oneD.check(on: .openCL(runtime), training: true)
        try oneD.check(on: .openCL(runtime), training: false)
        for layout in [TensorLayout.channelsFirst, .channelsLast] {
            var harness = SwitchableNormHarness(shape: [3, 1500, 5], layout: layout, seed: 13)
            try harness.check(on: .openCL(runtime), training: true)
            try harness.check(
                on: .openCL(runtime), training: true,
                strategy: layout == .channelsFirst ? .runPerWorkItem(slices: 2) : .columns(slices: 2))
            harness.options.branches = .instanceLayer
            harness.untrack()
            try harness.check(on: .openCL(runtime), training: true)
        }
    }

    @Test("the direct strategy: (N, C) input and spatial dims of 1")
    func direct() throws {
        let runtime = try #require(sharedRuntime)
        for shape in [[7, 5], [1, 9], [64, 33], [5, 4, 1]] {
            for elementType in ElementType.allCases {
                var harness = SwitchableNormHarness(shape: shape, elementType: elementType, seed: 3)
                harness.options.branches = .layerBatch
                try harness.check(on: .openCL(runtime), training: shape[0] > 1)
                try harness.check(on: .openCL(runtime), training: false, strategy: .direct)
            }
        }
        var biased = SwitchableNormHarness(shape: [4, 6, 1, 1], seed: 4)
        biased.options.varianceEstimator = .biased
        try biased.check(on: .openCL(runtime), training: true, strategy: .direct)
    }

    @Test("affine off, weight or bias alone, no running statistics")
    func partialAffine() throws {
        let runtime = try #require(sharedRuntime)
        for layout in [TensorLayout.channelsFirst, .channelsLast] {
            var harness = SwitchableNormHarness(shape: [3, 4, 5, 5], layout: layout, affine: false)
            try harness.check(on: .openCL(runtime), training: true)
            let full = SwitchableNormHarness(shape: [3, 4, 5, 5])
            harness.weight = full.weight
            try harness.check(on: .openCL(runtime), training: true)
            harness.weight = nil
            harness.bias = full.bias
            harness.untrack()
            try harness.check(on: .openCL(runtime), training: true)
        }
    }

    @Test("extreme logits: one branch takes (almost) all the weight")
    func extremeLogits() throws {
        let runtime = try #require(sharedRuntime)
        var harness = SwitchableNormHarness(shape: [3, 4, 7, 7], seed: 9)
        harness.meanLogits = [30, -30, 0]
        harness.varianceLogits = [-50, 0, 50]
        try harness.check(on: .openCL(runtime), training: true)
    }

    @Test("one large case: (8, 64, 28, 28), both layouts")
    func largeCase() throws {
        let runtime = try #require(sharedRuntime)
        for layout in [TensorLayout.channelsFirst, .channelsLast] {
            try SwitchableNormHarness(shape: [8, 64, 28, 28], layout: layout, seed: 21).check(on: .openCL(runtime), training: true)
        }
    }
}

/// Runs Switchable Norm on a backend and on the reference with the same data (in the
/// layout's memory order) and checks every output within stated tolerances.
struct SwitchableNormHarness: ChannelsAndSpatial {
    var shape: [Int]
    var layout: TensorLayout = .channelsFirst
    var elementType: ElementType = .float32
    var options = SwitchableNormOptions()
    var x: [Float]
    /// The mixing logits of the means and of the variances, one per branch.
    var meanLogits, varianceLogits: [Float]
    /// γ and β (nil: not affine).
    var weight, bias: [Float]?
    /// The running statistics a BN branch reads and updates (nil: not tracked).
    var runningMean, runningVar: [Float]?
    /// Replaces the runtime's tuning on OpenCL (e.g. GPU-style launches on a CPU device).
    var tuning: DeviceTuning?

    var batch: Int { shape[0] }

    /// Drops the running statistics (the op then neither reads nor updates any).
    mutating func untrack() {
        runningMean = nil
        runningVar = nil
    }

    /// Data `offset + scale·N(0,1)` plus a per-(n, c) shift of `instanceSpread·N(0,1)` (so
    /// IN, LN and BN statistics differ), random affine parameters, logits and running statistics.
    init(
        shape: [Int], layout: TensorLayout = .channelsFirst, elementType: ElementType = .float32, offset: Double = 0,
        scale: Double = 1, instanceSpread: Double = 0.5, affine: Bool = true, seed: UInt64 = 1
    ) {
        var rng = SeededGenerator(seed: seed)
        self.shape = shape
        self.layout = layout
        self.elementType = elementType
        let channels = shape[1], batch = shape[0], spatial = shape.dropFirst(2).reduce(1, *)
        let shifts = rng.normals(batch * channels, scale: instanceSpread)
        let noise = rng.normals(shape.reduce(1, *), offset: offset, scale: scale)
        // Logical (n, c, m) order, then into memory order.
        var values = [Float](repeating: 0, count: noise.count)
        for n in 0..<batch {
            for c in 0..<channels {
                for m in 0..<spatial {
                    let logical = (n * channels + c) * spatial + m
                    let memory = layout == .channelsFirst ? logical : (n * spatial + m) * channels + c
                    values[memory] = noise[logical] + shifts[n * channels + c]
                }
            }
        }
        x = values
        let branchCount = shape.count == 2 ? 2 : 3
        if shape.count == 2 { options.branches = .layerBatch }
        meanLogits = rng.normals(branchCount, offset: 1, scale: 0.7)
        varianceLogits = rng.normals(branchCount, offset: 1, scale: 0.7)
        if affine {
            weight = rng.normals(channels, offset: 1, scale: 0.5)
            bias = rng.normals(channels, scale: 0.5)
        }
        runningMean = rng.normals(channels, offset: offset)
        runningVar = (0..<channels).map { _ in Float.random(in: 0.5...2, using: &rng) }
    }

    /// The reference's arrays, plus numBatchesTracked.
    typealias Result = ReadBack<ReferenceSwitchableNorm.Result>

    func run(on backend: Backend, training: Bool, strategy: SwitchableNormPlan.Strategy? = nil) throws -> Result {
        let input = try Tensor(x, shape: shape, layout: layout, elementType: elementType, on: backend)
        let count = options.branches.count
        let wm = try Tensor(Array(meanLogits.prefix(count)), on: backend)
        let wv = try Tensor(Array(varianceLogits.prefix(count)), on: backend)
        let w = try weight.map { try Tensor($0, on: backend) }
        let b = try bias.map { try Tensor($0, on: backend) }
        var running = options.branches.hasBatch ? try runningStatistics(runningMean, runningVar, on: backend) : nil
        let out = try switchableNorm(
            input, meanLogits: wm, varianceLogits: wv, weight: w, bias: b, runningStatistics: &running,
            training: training, options: options, strategy: strategy, tuning: tuning)
        return Result(
            arrays: ReferenceSwitchableNorm.Result(
                output: try out.output.toArray(), statistics: try out.statistics.map { try $0.toArray() },
                runningMean: try running?.mean.toArray(), runningVar: try running?.variance.toArray()),
            numBatchesTracked: running?.numBatchesTracked)
    }

    /// Compares `backend` (with `strategy`) against the reference.
    ///
    /// Tolerances: every statistic is accumulated relative to per-instance pilots, so
    /// float32 rounds quantities of the size of the data's spread, not of its offset:
    /// variances agree to `4e-6` relative, invstd to `2e-6`, means to `4e-6` of the
    /// spread plus 2 ulps of their own value; outputs to `4e-6·(1 + |y|)`; with half
    /// storage the output also gets `2^-10·|y| + 2^-14` (one rounding, either way).
    func check(
        on backend: Backend, training: Bool, strategy: SwitchableNormPlan.Strategy? = nil,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let expected = try run(on: .reference, training: training)
        let actual = try run(on: backend, training: training, strategy: strategy)
        let label =
            "\(shape) \(layout) \(elementType) \(options.branches) \(options.varianceEstimator) training=\(training) strategy=\(strategy.map { "\($0)" } ?? "auto")"
        expectOutputClose(
            actual.output, expected.output, "output \(label)", base: 4e-6, half: elementType == .float16, halfFloor: 0x1p-14,
            sourceLocation: sourceLocation)
        expectClose(actual.invstd, expected.invstd, "invstd \(label)", relative: 2e-6, sourceLocation: sourceLocation)
        expectClose(actual.mean, expected.mean, "mean \(label)", sourceLocation: sourceLocation) { r in
            4e-6 / Double(expected.invstd[r]) + 2 * 0x1p-24 * Swift.abs(Double(expected.mean[r]))
        }
        // A statistic's spread: the square root of its variance (or of the mixed one).
        let spread = expected.invstd.map { 1 / Double($0) }.max() ?? 1
        func compareMeans(_ a: [Float]?, _ e: [Float]?, _ what: String) {
            guard let e else {
                #expect(a == nil, "\(what) present \(label)", sourceLocation: sourceLocation)
                return
            }
            expectClose(a ?? [], e, "\(what) \(label)", sourceLocation: sourceLocation) { i in
                4e-6 * spread + 2 * 0x1p-24 * Swift.abs(Double(e[i]))
            }
        }
        func compareVariances(_ a: [Float]?, _ e: [Float]?, _ what: String) {
            guard let e else {
                #expect(a == nil, "\(what) present \(label)", sourceLocation: sourceLocation)
                return
            }
            expectClose(a ?? [], e, "\(what) \(label)", relative: 4e-6, absolute: 1e-6 * spread * spread, sourceLocation: sourceLocation)
        }
        compareMeans(actual.instanceMean, expected.instanceMean, "instanceMean")
        compareVariances(actual.instanceVariance, expected.instanceVariance, "instanceVariance")
        compareMeans(actual.layerMean, expected.layerMean, "layerMean")
        compareVariances(actual.layerVariance, expected.layerVariance, "layerVariance")
        compareMeans(actual.batchMean, expected.batchMean, "batchMean")
        compareVariances(actual.batchVariance, expected.batchVariance, "batchVariance")
        compareMeans(actual.runningMean, expected.runningMean, "runningMean")
        compareVariances(actual.runningVar, expected.runningVar, "runningVar")
        #expect(actual.numBatchesTracked == expected.numBatchesTracked, "numBatchesTracked \(label)")
    }
}
