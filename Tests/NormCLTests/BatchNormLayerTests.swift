import Testing
@testable import NormCL

/// The `BatchNorm` layer over several steps: running statistics, momentum
/// conventions, mode switches and the affine/tracking options.
@Suite("BatchNorm layer")
struct BatchNormLayerTests {
    /// Per-channel mean and biased variance in float64, computed here (not by the library).
    static func batchStatistics(_ x: [Float], shape: [Int]) -> (mean: [Double], variance: [Double]) {
        let (batch, channels) = (shape[0], shape[1])
        let spatial = shape.dropFirst(2).reduce(1, *)
        var mean = [Double](repeating: 0, count: channels), variance = mean
        for c in 0..<channels {
            var values: [Double] = []
            for b in 0..<batch {
                for m in 0..<spatial { values.append(Double(x[(b * channels + c) * spatial + m])) }
            }
            mean[c] = values.reduce(0, +) / Double(values.count)
            variance[c] = values.reduce(0) { $0 + ($1 - mean[c]) * ($1 - mean[c]) } / Double(values.count)
        }
        return (mean, variance)
    }

    /// Runs `layer` on `x` of `shape` and checks that it outputs x̂, `x` normalised with
    /// the batch's own statistics (biased variance, eps 1e-5, no γ or β), within
    /// 1e-5·(1 + |x̂|): float32 statistics and arithmetic, outputs of order 1.
    static func expectBatchNormalized(
        by layer: inout BatchNorm, _ x: [Float], shape: [Int], on backend: Backend,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let y = try layer(try Tensor(x, shape: shape, on: backend)).toArray()
        let stats = batchStatistics(x, shape: shape)
        let (channels, spatial) = (shape[1], shape.dropFirst(2).reduce(1, *))
        for i in x.indices {
            let c = (i / spatial) % channels
            let expected = (Double(x[i]) - stats.mean[c]) / (stats.variance[c] + 1e-5).squareRoot()
            #expect(
                Swift.abs(Double(y[i]) - expected) <= 1e-5 * (1 + Swift.abs(expected)), "element \(i): \(y[i]) vs \(expected)",
                sourceLocation: sourceLocation)
        }
    }

    /// Batches of different sizes (n/(n−1) differs per step) and random data.
    static let batchShapes: [[Int]] = [[8, 3, 5, 5], [4, 3, 5, 5], [6, 3, 5, 5], [2, 3, 5, 5]]

    static func batches(seed: UInt64) -> [[Float]] {
        var rng = SeededGenerator(seed: seed)
        return batchShapes.enumerated().map { step, shape in
            rng.normals(shape.reduce(1, *), offset: Double(step) - 1.5, scale: 0.5 + Double(step))
        }
    }

    /// Two identical layers, one on OpenCL and one on the reference, with the same
    /// random affine parameters.
    static func layerPair(momentum: Float?, affine: Bool = true) throws -> (openCL: BatchNorm, reference: BatchNorm) {
        let runtime = try #require(sharedRuntime)
        var gpu = try BatchNorm(numFeatures: 3, momentum: momentum, affine: affine, on: .openCL(runtime))
        var cpu = try BatchNorm(numFeatures: 3, momentum: momentum, affine: affine, on: .reference)
        if affine {
            var rng = SeededGenerator(seed: 404)
            let gamma = rng.normals(3, offset: 1, scale: 0.5), beta = rng.normals(3)
            gpu.weight = try Tensor(gamma, on: .openCL(runtime))
            gpu.bias = try Tensor(beta, on: .openCL(runtime))
            cpu.weight = try Tensor(gamma, on: .reference)
            cpu.bias = try Tensor(beta, on: .reference)
        }
        return (gpu, cpu)
    }

    /// Runs every batch through both layers, comparing outputs at each step.
    static func train(_ pair: inout (openCL: BatchNorm, reference: BatchNorm), batches: [[Float]]) throws {
        let runtime = try #require(sharedRuntime)
        for (step, x) in batches.enumerated() {
            let shape = batchShapes[step]
            let a = try pair.openCL(try Tensor(x, shape: shape, on: .openCL(runtime))).toArray()
            let e = try pair.reference(try Tensor(x, shape: shape, on: .reference)).toArray()
            // Outputs of order 1 from data of order 1: 1e-5·(1 + |y|), as in the harness.
            expectClose(a, e, "step \(step) output") { i in 1e-5 * (1 + Swift.abs(Double(e[i]))) }
        }
    }

    /// Running statistics and counters of two layers agree: relative 2e-5 plus 1e-6
    /// absolute — a few float32 roundings per step, over four steps.
    static func expectSameRunningStatistics(_ a: BatchNorm, _ e: BatchNorm, _ label: String) throws {
        let ra = try #require(a.runningStatistics), re = try #require(e.runningStatistics)
        expectClose(try ra.mean.toArray(), try re.mean.toArray(), "\(label) running mean", relative: 2e-5, absolute: 1e-6)
        expectClose(try ra.variance.toArray(), try re.variance.toArray(), "\(label) running var", relative: 2e-5, absolute: 1e-6)
        #expect(ra.numBatchesTracked == re.numBatchesTracked, "\(label) numBatchesTracked")
    }

    @Test("OpenCL layer matches the reference layer over four training steps", arguments: [Float(0.1), 0.3])
    func trainingSteps(momentum: Float) throws {
        var pair = try Self.layerPair(momentum: momentum)
        let batches = Self.batches(seed: 1)
        try Self.train(&pair, batches: batches)
        try Self.expectSameRunningStatistics(pair.openCL, pair.reference, "momentum \(momentum)")
        #expect(pair.openCL.runningStatistics?.numBatchesTracked == batches.count)

        // And the reference against the update rule applied by hand, from (0, 1).
        var mean = [Double](repeating: 0, count: 3), variance = [Double](repeating: 1, count: 3)
        let m = Double(momentum)
        for (step, x) in batches.enumerated() {
            let stats = Self.batchStatistics(x, shape: Self.batchShapes[step])
            let n = Double(Self.batchShapes[step][0] * 25)
            for c in 0..<3 {
                mean[c] = (1 - m) * mean[c] + m * stats.mean[c]
                variance[c] = (1 - m) * variance[c] + m * stats.variance[c] * n / (n - 1)
            }
        }
        for layer in [pair.openCL, pair.reference] {
            // 1e-5·(1 + |v|): float32 storage of the statistics between steps, and a float32 momentum.
            try Self.expectRunning(layer, mean: mean, variance: variance, "\(layer.weight!.backend.name) vs hand")
        }
    }

    /// Checks a layer's running statistics against values computed in the test, within
    /// 1e-5·(1 + |v|).
    static func expectRunning(
        _ layer: BatchNorm, mean: [Double], variance: [Double], _ label: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let running = try #require(layer.runningStatistics)
        expectClose(try running.mean.toArray(), mean.map(Float.init), "\(label): running mean", sourceLocation: sourceLocation) { i in
            1e-5 * (1 + Swift.abs(mean[i]))
        }
        expectClose(try running.variance.toArray(), variance.map(Float.init), "\(label): running var", sourceLocation: sourceLocation) { i in
            1e-5 * (1 + Swift.abs(variance[i]))
        }
    }

    /// momentum nil: after k steps the running mean is the plain average of the k batch
    /// means and the running variance that of the k unbiased batch variances (the
    /// initial 0 and 1 are forgotten at the first step, whose factor is 1/1).
    @Test("momentum nil is a cumulative average")
    func cumulativeAverage() throws {
        var pair = try Self.layerPair(momentum: nil)
        let batches = Self.batches(seed: 2)
        let runtime = try #require(sharedRuntime)
        for k in 1...batches.count {
            // Step k on both layers (data of shape batchShapes[k − 1]).
            let shape = Self.batchShapes[k - 1]
            _ = try pair.openCL(try Tensor(batches[k - 1], shape: shape, on: .openCL(runtime)))
            _ = try pair.reference(try Tensor(batches[k - 1], shape: shape, on: .reference))

            var meanAverage = [Double](repeating: 0, count: 3), varAverage = meanAverage
            for step in 0..<k {
                let stats = Self.batchStatistics(batches[step], shape: Self.batchShapes[step])
                let n = Double(Self.batchShapes[step][0] * 25)
                for c in 0..<3 {
                    meanAverage[c] += stats.mean[c] / Double(k)
                    varAverage[c] += stats.variance[c] * n / (n - 1) / Double(k)
                }
            }
            for layer in [pair.openCL, pair.reference] {
                #expect(layer.runningStatistics?.numBatchesTracked == k)
                // 1e-5·(1 + |v|): k float32 updates with factors 1/k.
                try Self.expectRunning(layer, mean: meanAverage, variance: varAverage, "\(layer.weight!.backend.name) after \(k) steps")
            }
        }
    }

    @Test("momentum 0 keeps the initial statistics; momentum 1 keeps only the last batch's")
    func momentumEdges() throws {
        let batches = Self.batches(seed: 3)
        var frozen = try Self.layerPair(momentum: 0)
        try Self.train(&frozen, batches: batches)
        for layer in [frozen.openCL, frozen.reference] {
            let running = try #require(layer.runningStatistics)
            // (1 − 0)·r + 0·batch is r exactly in float32.
            #expect(try running.mean.toArray() == [0, 0, 0])
            #expect(try running.variance.toArray() == [1, 1, 1])
            #expect(running.numBatchesTracked == batches.count)
        }

        var last = try Self.layerPair(momentum: 1)
        try Self.train(&last, batches: batches)
        try Self.expectSameRunningStatistics(last.openCL, last.reference, "momentum 1")
        let lastShape = Self.batchShapes[batches.count - 1]
        let stats = Self.batchStatistics(batches[batches.count - 1], shape: lastShape)
        let n = Double(lastShape[0] * 25)
        for layer in [last.openCL, last.reference] {
            let running = try #require(layer.runningStatistics)
            // Float32 statistics of 50 values of order 1..4: 1e-5 relative plus 1e-6.
            expectClose(try running.mean.toArray(), stats.mean.map(Float.init), "last batch mean") { i in 1e-6 + 1e-5 * Swift.abs(stats.mean[i]) }
            expectClose(try running.variance.toArray(), stats.variance.map { Float($0 * n / (n - 1)) }, "last batch unbiased var", relative: 1e-5)
        }
    }

    /// After training, inference uses the running statistics and leaves them alone.
    @Test("isTraining = false normalises with the running statistics")
    func switchToInference() throws {
        let runtime = try #require(sharedRuntime)
        var pair = try Self.layerPair(momentum: 0.2)
        try Self.train(&pair, batches: Self.batches(seed: 4))
        pair.openCL.isTraining = false
        pair.reference.isTraining = false
        let running = try #require(pair.openCL.runningStatistics)
        let (mean, variance) = (try running.mean.toArray(), try running.variance.toArray())
        let gamma = try pair.openCL.weight!.toArray(), beta = try pair.openCL.bias!.toArray()

        var rng = SeededGenerator(seed: 5)
        let shape = [5, 3, 4, 4]
        let x = rng.normals(shape.reduce(1, *), offset: 4, scale: 3)  // far from the running statistics
        let out = try pair.openCL.forward(try Tensor(x, shape: shape, on: .openCL(runtime)))
        let y = try out.output.toArray()
        #expect(out.saveMean == nil && out.saveInvstd == nil)
        for i in x.indices {
            let c = (i / 16) % 3
            let expected = (Double(x[i]) - Double(mean[c])) / (Double(variance[c]) + 1e-5).squareRoot() * Double(gamma[c]) + Double(beta[c])
            // 1e-5·(1 + |y|): float32 arithmetic on values of order 10.
            #expect(Swift.abs(Double(y[i]) - expected) <= 1e-5 * (1 + Swift.abs(expected)), "element \(i): \(y[i]) vs \(expected)")
        }
        let referenceY = try pair.reference(try Tensor(x, shape: shape, on: .reference)).toArray()
        expectClose(y, referenceY, "inference OpenCL vs reference layer") { i in 1e-5 * (1 + Swift.abs(Double(referenceY[i]))) }

        let after = try #require(pair.openCL.runningStatistics)
        #expect(try after.mean.toArray() == mean)
        #expect(try after.variance.toArray() == variance)
        #expect(after.numBatchesTracked == 4)
        #expect(pair.reference.runningStatistics?.numBatchesTracked == 4)
    }

    /// Without tracking there are no running statistics, so inference mode still
    /// normalises with the batch's statistics (PyTorch's `track_running_stats=False`).
    @Test("trackRunningStats: false uses batch statistics in inference", arguments: BackendChoice.allCases)
    func noTrackingInference(choice: BackendChoice) throws {
        let backend = try choice.backend()
        var layer = try BatchNorm(numFeatures: 3, trackRunningStats: false, on: backend)
        #expect(layer.runningStatistics == nil)
        layer.isTraining = false
        let shape = [4, 3, 6]
        var rng = SeededGenerator(seed: 6)
        let x = rng.normals(shape.reduce(1, *), offset: 7, scale: 2)
        try Self.expectBatchNormalized(by: &layer, x, shape: shape, on: backend)
        #expect(layer.runningStatistics == nil)
    }

    @Test("affine: false has no weight or bias and outputs x̂", arguments: BackendChoice.allCases)
    func notAffine(choice: BackendChoice) throws {
        let backend = try choice.backend()
        var layer = try BatchNorm(numFeatures: 3, affine: false, on: backend)
        #expect(layer.weight == nil)
        #expect(layer.bias == nil)
        let shape = [5, 3, 7]
        var rng = SeededGenerator(seed: 9)
        let x = rng.normals(shape.reduce(1, *), offset: -2, scale: 4)
        try Self.expectBatchNormalized(by: &layer, x, shape: shape, on: backend)
        #expect(layer.runningStatistics?.numBatchesTracked == 1)
    }

    /// The unbiased running-variance update on numbers small enough to do by hand:
    /// x = [[1, 2], [3, 6]] in one channel (shape [2, 1, 2]): mean 3, squared
    /// deviations 4 + 1 + 0 + 9 = 14, biased var 14/4 = 3.5 (normalises), unbiased
    /// var 14/3 (running). From (0, 1) with momentum 0.1: running mean 0.3, running
    /// var 0.9 + 0.1·14/3 = 1.3666….
    @Test("running_var uses the unbiased variance, normalisation the biased one", arguments: BackendChoice.allCases)
    func unbiasedRunningVariance(choice: BackendChoice) throws {
        let backend = try choice.backend()
        var layer = try BatchNorm(numFeatures: 1, affine: false, on: backend)
        let out = try layer.forward(try Tensor([1, 2, 3, 6], shape: [2, 1, 2], on: backend))
        let running = try #require(layer.runningStatistics)
        // 1e-6 relative: a handful of float32 roundings.
        #expect(try Swift.abs(Double(running.mean.toArray()[0]) - 0.3) <= 1e-6 * 0.3)
        let expectedVar = 0.9 * 1 + 0.1 * (14.0 / 3.0)
        #expect(try Swift.abs(Double(running.variance.toArray()[0]) - expectedVar) <= 1e-6 * expectedVar)
        #expect(running.numBatchesTracked == 1)
        let y = try out.output.toArray()
        let invstd = 1 / (3.5 + 1e-5).squareRoot()
        for (i, x) in [1.0, 2, 3, 6].enumerated() {
            #expect(Swift.abs(Double(y[i]) - (x - 3) * invstd) <= 1e-6, "y[\(i)] = \(y[i])")
        }
        #expect(try Swift.abs(Double(out.saveMean!.toArray()[0]) - 3) <= 1e-6)
        #expect(try Swift.abs(Double(out.saveInvstd!.toArray()[0]) - invstd) <= 1e-6 * invstd)
    }
}
