import Testing
@testable import NormCL

/// Switchable Norm backward on OpenCL against the float64 reference: branch sets ×
/// estimators × layouts × element types, every strategy forced, masks, affine on/off,
/// large-mean data, the split coefficient step, determinism.
@Suite("SwitchableNorm backward")
struct SwitchableNormBackwardTests {
    /// L = 2, primes, no multiple of 4, one sample or one channel, a long run, 3-d input,
    /// 1×1 spatial and (N, C) input (direct).
    static let shapes: [[Int]] = [
        [2, 1, 2], [3, 5, 7], [2, 3, 5, 7], [4, 8, 9, 9], [1, 4, 6, 6], [2, 12, 4, 4, 3], [1, 2, 4099], [3, 2, 1, 1], [7, 5],
    ]

    // Each (shape, options, layout, element type) compiles its own program (~1 s cold on
    // PoCL), so the sweeps below cover every combination across cases, not every product.

    @Test("matches the reference with the automatic plan", arguments: shapes.indices)
    func automaticPlan(shapeIndex: Int) throws {
        let runtime = try #require(sharedRuntime)
        let shape = Self.shapes[shapeIndex], spatial = shape.dropFirst(2).reduce(1, *)
        // Every layout × element type pair, each on two or three shapes of the sweep.
        let layout: TensorLayout = shapeIndex % 2 == 0 ? .channelsFirst : .channelsLast
        let elementType: ElementType = shapeIndex % 4 < 2 ? .float32 : .float16
        var harness = SwitchableNormBackwardHarness(
            shape: shape, layout: layout, elementType: elementType, seed: UInt64(shape.reduce(1, *)))
        if spatial == 1 { harness.forward.options.varianceEstimator = .biased }
        try harness.check(on: runtime, training: shape[0] * spatial > 1)
    }

    @Test("every branch set and estimator, training and inference", arguments: [[3, 6, 5, 5], [6, 5]])
    func variants(shape: [Int]) throws {
        let runtime = try #require(sharedRuntime)
        let branchSets: [SwitchableNormOptions.Branches] =
            shape.count == 2 ? [.layerBatch] : SwitchableNormOptions.Branches.allCases
        for (b, branches) in branchSets.enumerated() {
            for estimator in [SwitchableNormOptions.VarianceEstimator.biased, .unbiased] {
                for training in [true, false] {
                    // Layout and element type alternate over the combinations.
                    let flip = (b + (estimator == .biased ? 0 : 1) + (training ? 0 : 1)) % 2 == 0
                    var harness = SwitchableNormBackwardHarness(
                        shape: shape, layout: flip ? .channelsFirst : .channelsLast,
                        elementType: training == (estimator == .biased) ? .float16 : .float32, seed: 11)
                    harness.forward.options.branches = branches
                    harness.forward.options.varianceEstimator = estimator
                    try harness.check(on: runtime, training: training)
                }
            }
        }
    }

    @Test("each strategy forced, with and without affine parameters")
    func everyStrategy() throws {
        let runtime = try #require(sharedRuntime)
        let cases: [([Int], SwitchableNormPlan.Strategy, ElementType)] = [
            ([2, 3, 37], .runPerWorkItem(slices: 1), .float32), ([4, 8, 6, 6], .runPerWorkItem(slices: 3), .float16),
            ([4, 8, 6, 6], .runPerWorkGroup(slices: 1), .float32), ([2, 3, 37], .runPerWorkGroup(slices: 5), .float16),
            ([2, 3, 37], .columns(slices: 1), .float32), ([4, 8, 6, 6], .columns(slices: 2), .float16),
            ([2, 3, 37], .columns(slices: 7), .float16),
        ]
        for (shape, strategy, elementType) in cases {
            var harness = SwitchableNormBackwardHarness(shape: shape, elementType: elementType, seed: 5)
            if case .columns = strategy {
                harness.forward.layout = .channelsLast
                harness.reorderToLayout()
            }
            try harness.check(on: runtime, training: true, strategy: strategy)
        }
        var plain = SwitchableNormBackwardHarness(shape: [3, 5, 7], affine: false, seed: 6)
        try plain.check(on: runtime, training: true, strategy: .runPerWorkGroup(slices: 2))
        plain.forward.layout = .channelsLast
        plain.reorderToLayout()
        try plain.check(on: runtime, training: true, strategy: .columns(slices: 2))
    }

    @Test("GPU-style tuning: interleaved access, column tile 1, wide work-groups")
    func interleavedTuning() throws {
        let runtime = try #require(sharedRuntime)
        let gpu = DeviceTuning.gpuStyle64
        for (shape, elementType) in [([2, 3, 37], ElementType.float32), ([1, 4, 3000], .float16)] {
            var harness = SwitchableNormBackwardHarness(shape: shape, elementType: elementType, seed: 8)
            harness.tuning = gpu
            try harness.check(on: runtime, training: elementType == .float32, strategy: .runPerWorkGroup(slices: 4))
            harness.forward.layout = .channelsLast
            harness.reorderToLayout()
            try harness.check(on: runtime, training: elementType == .float16, strategy: .columns(slices: 3))
        }
    }

    @Test("each gradient mask; weight alone, bias alone")
    func masks() throws {
        let runtime = try #require(sharedRuntime)
        let masks: [NormGradientMask] = [[], .input, .weight, .bias, [.weight, .bias], [.input, .bias], .all]
        for layout in [TensorLayout.channelsFirst, .channelsLast] {
            var harness = SwitchableNormBackwardHarness(shape: [3, 4, 5, 5], layout: layout, seed: 6)
            for mask in masks {
                harness.mask = mask
                try harness.check(on: runtime, training: true)
            }
            harness.mask = .all
            harness.forward.bias = nil
            try harness.check(on: runtime, training: true)
            if layout == .channelsFirst {
                harness.forward.weight = nil
                try harness.check(on: runtime, training: true)
            }
        }
    }

    @Test("large-mean data 1e4 + N(0,1): centred sums keep the precision", arguments: [[4, 6, 9, 9], [2, 3, 2000], [16, 20]])
    func largeMean(shape: [Int]) throws {
        let runtime = try #require(sharedRuntime)
        // Both layouts over the cases; IN + LN + BN in training, then LN + BN.
        let layout: TensorLayout = shape.count == 3 ? .channelsLast : .channelsFirst
        var harness = SwitchableNormBackwardHarness(shape: shape, layout: layout, offset: 1e4, seed: 14)
        try harness.check(on: runtime, training: true)
        if shape.count > 2 {
            harness.forward.options.branches = .layerBatch
            try harness.check(on: runtime, training: shape.count == 3)
        }
    }

    @Test("large N·C: the coefficient step split over the device")
    func splitCoefficients() throws {
        let runtime = try #require(sharedRuntime)
        let oneD = SwitchableNormBackwardHarness(shape: [64, 81], elementType: .float16, seed: 12)
        try oneD.check(on: runtime, training: true)
        try oneD.check(on: runtime, training: false)
        for layout in [TensorLayout.channelsFirst, .channelsLast] {
            var harness = SwitchableNormBackwardHarness(shape: [3, 1500, 5], layout: layout, seed: 13)
            try harness.check(on: runtime, training: true)
            if layout == .channelsFirst {
                harness.forward.options.branches = .instanceLayer
                harness.tuning = DeviceTuning.gpuStyle64
                try harness.check(on: runtime, training: false)
            }
        }
    }

    @Test("the whole pipeline: OpenCL forward, then backward, against the reference pipeline")
    func pipeline() throws {
        let runtime = try #require(sharedRuntime)
        for (layout, elementType) in [(TensorLayout.channelsFirst, ElementType.float32), (.channelsLast, .float16)] {
            let harness = SwitchableNormBackwardHarness(shape: [4, 8, 7, 7], layout: layout, elementType: elementType, seed: 2)
            try harness.checkPipeline(on: runtime)
        }
    }

    @Test("the same input twice gives bit-identical gradients")
    func determinism() throws {
        let runtime = try #require(sharedRuntime)
        for (shape, layout) in [([4, 8, 33, 33], TensorLayout.channelsFirst), ([4, 8, 33, 33], .channelsLast), ([3, 1500, 5], .channelsFirst)] {
            var harness = SwitchableNormBackwardHarness(shape: shape, layout: layout, seed: 4)
            let first = try harness.run(on: .openCL(runtime), training: true)
            let second = try harness.run(on: .openCL(runtime), training: true)
            for (a, b, what) in [
                (first.input, second.input, "dx"), (first.weight, second.weight, "dγ"), (first.bias, second.bias, "dβ"),
                (first.meanLogits, second.meanLogits, "dwμ"), (first.varianceLogits, second.varianceLogits, "dwσ"),
            ] {
                #expect(a?.map(\.bitPattern) == b?.map(\.bitPattern), "\(what) \(shape) \(layout)")
            }
            if shape[1] > 1000 { continue }
            harness.forward.elementType = .float16
            let h1 = try harness.run(on: .openCL(runtime), training: true)
            let h2 = try harness.run(on: .openCL(runtime), training: true)
            #expect(h1.input?.map(\.bitPattern) == h2.input?.map(\.bitPattern), "half dx \(shape) \(layout)")
        }
    }

    @Test("the layer's backward is the functional one with its parameters and mode")
    func layer() throws {
        let shape = [3, 4, 5]
        var rng = SeededGenerator(seed: 17)
        let input = try Tensor(rng.normals(60), shape: shape, on: .reference)
        let dy = try Tensor(rng.normals(60), shape: shape, on: .reference)
        var layer = try SwitchableNorm(numFeatures: 4, on: .reference)
        layer.weight = try Tensor(rng.normals(4, offset: 1, scale: 0.5), on: .reference)
        layer.meanLogits = try Tensor(rng.normals(3, offset: 1), on: .reference)
        for training in [true, false] {
            layer.isTraining = training
            let running = layer.runningStatistics
            let forward = try layer.forward(input)
            let gradients = try layer.backward(dy, forward: forward)
            let expected = try switchableNormBackward(
                dy, input: input, meanLogits: layer.meanLogits, varianceLogits: layer.varianceLogits, weight: layer.weight,
                forward: forward, runningStatistics: running, training: training)
            #expect(try gradients.input?.toArray() == expected.input?.toArray())
            #expect(try gradients.weight?.toArray() == expected.weight?.toArray())
            #expect(try gradients.meanLogits.toArray() == expected.meanLogits.toArray())
            #expect(try gradients.varianceLogits.toArray() == expected.varianceLogits.toArray())
        }
    }

    @Test("the reference backend runs the reference backward")
    func referenceBackend() throws {
        let harness = SwitchableNormBackwardHarness(shape: [2, 3, 4, 4], elementType: .float16, seed: 1)
        let result = try harness.run(on: .reference, training: true)
        #expect(result.input?.count == 96 && result.weight?.count == 3 && result.meanLogits.count == 3)
    }
}

/// Runs Switchable Norm backward on OpenCL and on the reference with the same data and
/// the same saved statistics (the reference forward's, uploaded), and checks every
/// gradient within stated tolerances.
struct SwitchableNormBackwardHarness {
    var forward: SwitchableNormHarness
    /// dy in logical (n, c, l) order; ``reorderToLayout()`` keeps x and dy consistent.
    var gradOutput: [Float]
    var mask: NormGradientMask = .all
    var tuning: DeviceTuning?

    init(
        shape: [Int], layout: TensorLayout = .channelsFirst, elementType: ElementType = .float32, offset: Double = 0,
        affine: Bool = true, seed: UInt64 = 1
    ) {
        forward = SwitchableNormHarness(
            shape: shape, layout: layout, elementType: elementType, offset: offset, affine: affine, seed: seed)
        var rng = SeededGenerator(seed: seed &+ 99)
        gradOutput = rng.normals(shape.reduce(1, *))
    }

    /// Re-lays x out in ``forward``'s layout after it was switched from channels-first to
    /// channels-last (dy is random either way).
    mutating func reorderToLayout() {
        precondition(forward.layout == .channelsLast, "the data were generated channels-first")
        let N = forward.batch, C = forward.channels, L = forward.spatial
        var permuted = forward.x
        for n in 0..<N {
            for c in 0..<C {
                for m in 0..<L { permuted[(n * L + m) * C + c] = forward.x[(n * C + c) * L + m] }
            }
        }
        forward.x = permuted
    }

    struct Result {
        var input: [Float]?
        var weight: [Float]?
        var bias: [Float]?
        var meanLogits: [Float]
        var varianceLogits: [Float]
    }

    var options: SwitchableNormOptions { forward.options }
    var logitCount: Int { options.branches.count }

    /// The reference forward's output, its tensors moved to `backend`.
    func savedForward(on backend: Backend, training: Bool) throws -> (SwitchableNormOutput, RunningStatistics?) {
        var running = runningStatistics(on: .reference)
        let input = try Tensor(forward.x, shape: forward.shape, layout: forward.layout, elementType: forward.elementType, on: .reference)
        let out = try switchableNorm(
            input, meanLogits: try Tensor(Array(forward.meanLogits.prefix(logitCount)), on: .reference),
            varianceLogits: try Tensor(Array(forward.varianceLogits.prefix(logitCount)), on: .reference),
            weight: try forward.weight.map { try Tensor($0, on: .reference) },
            bias: try forward.bias.map { try Tensor($0, on: .reference) }, runningStatistics: &running,
            training: training, options: options)
        func move(_ t: Tensor?) throws -> Tensor? { try t.map { try Tensor($0.toArray(), shape: $0.shape, on: backend) } }
        let moved = SwitchableNormOutput(
            output: try move(out.output)!, saveMean: try move(out.saveMean)!, saveInvstd: try move(out.saveInvstd)!,
            instanceMean: try move(out.instanceMean), instanceVariance: try move(out.instanceVariance),
            layerMean: try move(out.layerMean)!, layerVariance: try move(out.layerVariance)!,
            batchMean: try move(out.batchMean), batchVariance: try move(out.batchVariance), events: [])
        return (moved, training ? nil : runningStatistics(on: backend))
    }

    func runningStatistics(on backend: Backend) -> RunningStatistics? {
        guard options.branches.hasBatch, let mean = forward.runningMean, let variance = forward.runningVar else { return nil }
        return RunningStatistics(mean: try! Tensor(mean, on: backend), variance: try! Tensor(variance, on: backend))
    }

    /// The backward pass on `backend`, fed the reference forward's statistics.
    func run(on backend: Backend, training: Bool, strategy: SwitchableNormPlan.Strategy? = nil) throws -> Result {
        let (saved, running) = try savedForward(on: backend, training: training)
        return try backward(on: backend, saved: saved, running: running, training: training, strategy: strategy)
    }

    func backward(
        on backend: Backend, saved: SwitchableNormOutput, running: RunningStatistics?, training: Bool,
        strategy: SwitchableNormPlan.Strategy? = nil
    ) throws -> Result {
        let layout = forward.layout, elementType = forward.elementType
        let g = try switchableNormBackward(
            try Tensor(gradOutput, shape: forward.shape, layout: layout, elementType: elementType, on: backend),
            input: try Tensor(forward.x, shape: forward.shape, layout: layout, elementType: elementType, on: backend),
            meanLogits: try Tensor(Array(forward.meanLogits.prefix(logitCount)), on: backend),
            varianceLogits: try Tensor(Array(forward.varianceLogits.prefix(logitCount)), on: backend),
            weight: try forward.weight.map { try Tensor($0, on: backend) }, forward: saved, runningStatistics: running,
            training: training, options: options, outputMask: mask, strategy: strategy, tuning: tuning)
        return Result(
            input: try g.input?.toArray(), weight: try g.weight?.toArray(), bias: try g.bias?.toArray(),
            meanLogits: try g.meanLogits.toArray(), varianceLogits: try g.varianceLogits.toArray())
    }

    /// Compares OpenCL (with `strategy`) against the reference, both fed the same saved
    /// statistics.
    ///
    /// Tolerances: dx is a sum of nearly cancelling terms, each of the size of
    /// `G·(|dy| + mean|dy|·(1 + |x̂|))` with `G = max|γ|·max invstd` (the LN and BN terms
    /// carry every channel's γ); float32 sums and products round each to ~1e-7 relative,
    /// so dx gets `1e-5` of that scale (plus one half rounding of dx with half storage).
    /// dγ, dβ get `1e-5` of the sum of their terms' magnitudes, the logit gradients `1e-5`
    /// of the sum of `|adjoint|·|statistic − mixed statistic|` bounds.
    func check(
        on runtime: OpenCLRuntime, training: Bool, strategy: SwitchableNormPlan.Strategy? = nil,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let (refSaved, refRunning) = try savedForward(on: .reference, training: training)
        let expected = try backward(on: .reference, saved: refSaved, running: refRunning, training: training)
        let actual = try run(on: .openCL(runtime), training: training, strategy: strategy)
        compare(actual, expected, saved: refSaved, training: training, strategy: strategy, sourceLocation: sourceLocation)
    }

    /// OpenCL forward then OpenCL backward vs the same on the reference: the saved
    /// statistics differ by their own float32 rounding too, so tolerances are 4× wider.
    func checkPipeline(on runtime: OpenCLRuntime, sourceLocation: SourceLocation = #_sourceLocation) throws {
        func pipeline(_ backend: Backend) throws -> (Result, SwitchableNormOutput) {
            var running = runningStatistics(on: backend)
            let input = try Tensor(forward.x, shape: forward.shape, layout: forward.layout, elementType: forward.elementType, on: backend)
            let out = try switchableNorm(
                input, meanLogits: try Tensor(Array(forward.meanLogits.prefix(logitCount)), on: backend),
                varianceLogits: try Tensor(Array(forward.varianceLogits.prefix(logitCount)), on: backend),
                weight: try forward.weight.map { try Tensor($0, on: backend) },
                bias: try forward.bias.map { try Tensor($0, on: backend) }, runningStatistics: &running,
                training: true, options: options)
            return (try backward(on: backend, saved: out, running: nil, training: true), out)
        }
        let (expected, saved) = try pipeline(.reference)
        let (actual, _) = try pipeline(.openCL(runtime))
        compare(actual, expected, saved: saved, training: true, strategy: nil, scale: 4, sourceLocation: sourceLocation)
    }

    func compare(
        _ actual: Result, _ expected: Result, saved: SwitchableNormOutput, training: Bool,
        strategy: SwitchableNormPlan.Strategy?, scale: Double = 1, sourceLocation: SourceLocation
    ) {
        let f = forward
        let label =
            "\(f.shape) \(f.layout) \(f.elementType) \(options.branches) \(options.varianceEstimator) training=\(training) mask=\(mask.rawValue) strategy=\(strategy.map { "\($0)" } ?? "auto")"
        let N = f.batch, C = f.channels, L = f.spatial
        let index = ReferenceBatchNorm.Indexing(batch: N, channels: C, spatial: L, layout: f.layout)
        let mean = (try? saved.saveMean.toArray()) ?? [], invstd = (try? saved.saveInvstd.toArray()) ?? []
        let dy = f.elementType == .float16 ? gradOutput.map { Float(Float16($0)) } : gradOutput
        let x = f.x.map { f.elementType == .float16 ? Float(Float16($0)) : $0 }
        let gammaMax = f.weight.map { $0.map { Swift.abs(Double($0)) }.max() ?? 1 } ?? 1
        let G = gammaMax * Double(invstd.max() ?? 1)
        let meanAbsDy = dy.reduce(0) { $0 + Swift.abs(Double($1)) } / Double(dy.count)
        // |x̂| per element, and per-channel bounds of the dγ, dβ terms.
        var xhat = [Double](repeating: 0, count: x.count)
        var dBiasBound = [Double](repeating: 0, count: C), dWeightBound = dBiasBound
        var meanAdjBound = 0.0, varAdjBound = 0.0
        for n in 0..<N {
            for c in 0..<C {
                let r = n * C + c
                for m in 0..<L {
                    let i = index(n, c, m)
                    xhat[i] = Swift.abs(Double(x[i]) - Double(mean[r])) * Double(invstd[r])
                    dBiasBound[c] += Swift.abs(Double(dy[i]))
                    dWeightBound[c] += Swift.abs(Double(dy[i])) * xhat[i]
                    meanAdjBound += G * Swift.abs(Double(dy[i]))
                    varAdjBound += 0.5 * G * Double(invstd[r]) * Swift.abs(Double(dy[i])) * xhat[i]
                }
            }
        }
        let half = f.elementType == .float16
        if mask.contains(.input) {
            let e = expected.input ?? []
            expectClose(actual.input ?? [], e, "dx \(label)", sourceLocation: sourceLocation) { i in
                scale * 1e-5 * G * (Swift.abs(Double(dy[i])) + meanAbsDy * (1 + xhat[i]))
                    + (half ? 0x1p-10 * Swift.abs(Double(e[i])) + 0x1p-24 : 0)
            }
        } else {
            #expect(actual.input == nil, "dx present \(label)", sourceLocation: sourceLocation)
        }
        if mask.contains(.weight) {
            expectClose(actual.weight ?? [], expected.weight ?? [], "dγ \(label)", sourceLocation: sourceLocation) { c in
                scale * 1e-5 * dWeightBound[c] + 1e-30
            }
        } else {
            #expect(actual.weight == nil, "dγ present \(label)", sourceLocation: sourceLocation)
        }
        if mask.contains(.bias) {
            expectClose(actual.bias ?? [], expected.bias ?? [], "dβ \(label)", sourceLocation: sourceLocation) { c in
                scale * 1e-5 * dBiasBound[c] + 1e-30
            }
        } else {
            #expect(actual.bias == nil, "dβ present \(label)", sourceLocation: sourceLocation)
        }
        // The statistics' spread from the mixed ones, for the logit bounds.
        var means: [[Float]] = [], variances: [[Float]] = []
        if let m = try? saved.instanceMean?.toArray(), let v = try? saved.instanceVariance?.toArray() {
            means.append(m)
            variances.append(v)
        }
        if let m = try? saved.layerMean.toArray(), let v = try? saved.layerVariance.toArray() {
            means.append(m)
            variances.append(v)
        }
        if let m = (try? saved.batchMean?.toArray()) ?? (training ? nil : f.runningMean),
            let v = (try? saved.batchVariance?.toArray()) ?? (training ? nil : f.runningVar), options.branches.hasBatch
        {
            means.append(m)
            variances.append(v)
        }
        // |μ_k(r) − μ(r)| is at most the range of all branch means (μ(r) is a convex mix).
        let allMeans = means.flatMap { $0 }.map(Double.init)
        let meanDev = (allMeans.max() ?? 0) - (allMeans.min() ?? 0)
        let varMax = variances.flatMap { $0 }.map { Swift.abs(Double($0)) }.max() ?? 1
        expectClose(actual.meanLogits, expected.meanLogits, "dwμ \(label)", sourceLocation: sourceLocation) { _ in
            scale * 1e-5 * meanAdjBound * meanDev + 1e-30
        }
        expectClose(actual.varianceLogits, expected.varianceLogits, "dwσ \(label)", sourceLocation: sourceLocation) { _ in
            scale * 1e-5 * varAdjBound * 2 * varMax
        }
    }
}
