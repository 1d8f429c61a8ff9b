import Testing
@testable import NormCL

/// BatchNorm in inference mode (`training: false`): running statistics replace the
/// batch statistics, nothing is updated; the functional form requires running
/// statistics (as `F.batch_norm`), a layer without them uses batch statistics (as
/// PyTorch's modules do).
@Suite("BatchNorm inference")
struct BatchNormInferenceTests {
    static let shapes: [[Int]] = [
        [1, 1], [2, 1], [1, 3], [3, 5], [7, 3, 11], [2, 3, 5, 7], [5, 7, 13, 17], [2, 3, 2, 3, 5],
        [1, 1, 4099], [2, 13, 8, 8], [16, 3, 33, 33], [64, 512], [256, 37], [3, 2, 1, 1], [1, 2, 65_537],
    ]

    @Test("matches the reference over a shape sweep", arguments: shapes)
    func sweep(shape: [Int]) throws {
        let runtime = try #require(sharedRuntime)
        try BatchNormHarness(shape: shape, offset: 2, scale: 3, seed: UInt64(shape.reduce(1, *)) &* 3)
            .check(on: .openCL(runtime), training: false)
    }

    /// Data and running means around 1e4 (running means near the data's, as after
    /// training on such data): `x − running_mean` must be taken before scaling.
    @Test("large-mean data with large running means", arguments: [[8, 3, 32, 32], [5, 7, 13, 17], [64, 16], [2, 3, 1001]])
    func largeRunningMeans(shape: [Int]) throws {
        let runtime = try #require(sharedRuntime)
        var harness = BatchNormHarness(shape: shape, offset: 1e4, seed: 11)
        var rng = SeededGenerator(seed: 12)
        harness.runningMean = rng.normals(shape[1], offset: 1e4, scale: 0.5)
        // Tolerance: the harness's, which includes the float32 rounding of a 1e4 mean.
        try harness.check(on: .openCL(runtime), training: false)
        harness.runningMean = rng.normals(shape[1], offset: -3e4, scale: 0.5)
        harness.x = harness.x.map { $0 - 4e4 }
        try harness.check(on: .openCL(runtime), training: false)
    }

    @Test("affine off, weight alone, bias alone", arguments: [[4, 3, 5, 5], [9, 8]])
    func partialAffine(shape: [Int]) throws {
        let runtime = try #require(sharedRuntime)
        let full = BatchNormHarness(shape: shape, seed: 3)
        var harness = full
        harness.weight = nil
        harness.bias = nil
        try harness.check(on: .openCL(runtime), training: false)
        harness.weight = full.weight
        try harness.check(on: .openCL(runtime), training: false)
        harness.weight = nil
        harness.bias = full.bias
        try harness.check(on: .openCL(runtime), training: false)
    }

    /// Inference against the formula evaluated here in float64, on both backends.
    @Test("matches y = (x − running_mean)/sqrt(running_var + eps)·γ + β computed by hand", arguments: BackendChoice.allCases)
    func handComputed(choice: BackendChoice) throws {
        let backend = try choice.backend()
        let shape = [3, 2, 2]
        let x: [Float] = [1, 2, -3, 4, 0.5, 6, 7, -8, 9, 10, 11, 12]
        let (mean, variance): ([Float], [Float]) = ([1.5, -2], [4, 0.25])
        let (gamma, beta): ([Float], [Float]) = ([2, -0.5], [0.25, 3])
        let eps: Float = 1e-3
        var running: RunningStatistics? = RunningStatistics(mean: try Tensor(mean, on: backend), variance: try Tensor(variance, on: backend))
        let out = try batchNorm(
            try Tensor(x, shape: shape, on: backend), weight: try Tensor(gamma, on: backend), bias: try Tensor(beta, on: backend),
            runningStatistics: &running, training: false, eps: eps)
        let y = try out.output.toArray()
        for i in x.indices {
            let c = (i / 2) % 2
            let expected = (Double(x[i]) - Double(mean[c])) / (Double(variance[c]) + Double(eps)).squareRoot() * Double(gamma[c]) + Double(beta[c])
            // 1e-6·(1 + |y|): a few float32 roundings of values of order 10.
            #expect(Swift.abs(Double(y[i]) - expected) <= 1e-6 * (1 + Swift.abs(expected)), "element \(i): \(y[i]) vs \(expected)")
        }
    }

    /// The functional form needs running statistics in inference, as PyTorch's
    /// `F.batch_norm` ("running_mean must be defined in evaluation mode").
    @Test("functional inference without running statistics is an error", arguments: BackendChoice.allCases)
    func functionalNeedsRunningStatistics(choice: BackendChoice) throws {
        let backend = try choice.backend()
        let x = try Tensor([Float](repeating: 1, count: 12), shape: [3, 4], on: backend)
        var none: RunningStatistics? = nil
        #expect(throws: NormError.invalidArgument(
            argument: "runningStatistics", reason: "inference (training: false) needs running statistics")) {
            _ = try batchNorm(x, runningStatistics: &none, training: false)
        }
    }

    /// PyTorch module semantics: a layer without running statistics normalises with
    /// the batch's own statistics in inference too (`track_running_stats=False`).
    @Test("a layer without running statistics uses batch statistics in inference", arguments: BackendChoice.allCases)
    func layerWithoutRunningStatisticsUsesBatch(choice: BackendChoice) throws {
        let backend = try choice.backend()
        let shape = [6, 4, 5, 3]
        let harness = BatchNormHarness(shape: shape, offset: 3, scale: 2, tracking: false, seed: 21)
        var layer = try BatchNorm(numFeatures: shape[1], trackRunningStats: false, on: backend)
        layer.weight = try Tensor(harness.weight!, on: backend)
        layer.bias = try Tensor(harness.bias!, on: backend)
        layer.isTraining = false
        let result = try layer.forward(try Tensor(harness.x, shape: shape, on: backend))
        let inference = try result.output.toArray()
        // The same data in training mode on the reference: batch statistics.
        let batchStatistics = try harness.run(on: .reference, training: true)
        // Tolerance as the harness's for outputs (see BatchNormHarness.check).
        expectClose(inference, batchStatistics.output, "inference without running statistics vs training") { i in
            2e-6 * (1 + Swift.abs(Double(batchStatistics.output[i])))
        }
        #expect(layer.runningStatistics == nil)

        // Independently: every channel of the output has mean β and variance γ²·var/(var + eps) ≈ γ².
        let channels = shape[1], spatial = shape[2] * shape[3]
        let gamma = try #require(harness.weight), beta = try #require(harness.bias)
        for c in 0..<channels {
            let values = inference.indices.filter { ($0 / spatial) % channels == c }.map { Double(inference[$0]) }
            let mean = values.reduce(0, +) / Double(values.count)
            let variance = values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(values.count)
            // 1e-4: float32 outputs of order 1 summed over 90 values; eps/var ≈ 2.5e-6 shrinks the variance.
            #expect(Swift.abs(mean - Double(beta[c])) <= 1e-4 * (1 + Swift.abs(Double(gamma[c]))), "channel \(c) mean \(mean) vs β \(beta[c])")
            let gammaSquared = Double(gamma[c]) * Double(gamma[c])
            #expect(Swift.abs(variance - gammaSquared) <= 1e-4 * (1 + gammaSquared), "channel \(c) variance \(variance) vs γ² \(gammaSquared)")
        }
    }

    @Test("returns no saved statistics and leaves running statistics untouched", arguments: BackendChoice.allCases)
    func runningStatisticsUnchanged(choice: BackendChoice) throws {
        let backend = try choice.backend()
        let harness = BatchNormHarness(shape: [4, 5, 6, 7], seed: 8)
        let meanValues = try #require(harness.runningMean), varValues = try #require(harness.runningVar)
        for momentum: Float? in [0.1, nil, 1] {
            var running: RunningStatistics? = RunningStatistics(
                mean: try Tensor(meanValues, on: backend), variance: try Tensor(varValues, on: backend), numBatchesTracked: 7)
            let out = try batchNorm(
                try Tensor(harness.x, shape: harness.shape, on: backend), weight: try Tensor(harness.weight!, on: backend),
                bias: try Tensor(harness.bias!, on: backend), runningStatistics: &running, training: false, momentum: momentum)
            #expect(out.saveMean == nil, "momentum \(String(describing: momentum))")
            #expect(out.saveInvstd == nil)
            let after = try #require(running)
            #expect(try after.mean.toArray() == meanValues)
            #expect(try after.variance.toArray() == varValues)
            #expect(after.numBatchesTracked == 7)
            #expect(out.output.shape == harness.shape)
        }
    }

    /// A batch of one value per channel is fine in inference (it is an error in training).
    @Test("n == 1 per channel is allowed with running statistics", arguments: BackendChoice.allCases)
    func singleValuePerChannel(choice: BackendChoice) throws {
        let backend = try choice.backend()
        for shape in [[1, 3], [1, 3, 1, 1]] {
            let harness = BatchNormHarness(shape: shape, seed: 2)
            let result = try harness.run(on: backend, training: false)
            for c in 0..<3 {
                let expected =
                    (Double(harness.x[c]) - Double(harness.runningMean![c])) / (Double(harness.runningVar![c]) + 1e-5).squareRoot()
                    * Double(harness.weight![c]) + Double(harness.bias![c])
                // 1e-6·(1 + |y|): a few float32 roundings.
                #expect(Swift.abs(Double(result.output[c]) - expected) <= 1e-6 * (1 + Swift.abs(expected)), "\(shape) channel \(c)")
            }
        }
    }
}

/// The two backends, as a test argument (OpenCL requires a device: `#require(sharedRuntime)`).
enum BackendChoice: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case openCL, reference

    var testDescription: String { rawValue }

    func backend() throws -> Backend {
        switch self {
        case .openCL: .openCL(try #require(sharedRuntime))
        case .reference: .reference
        }
    }
}
