import Testing
@testable import NormCL

/// Batch Renormalization (training) against the reference, on every strategy.
@Suite("Batch Renorm")
struct BatchRenormTests {
    /// Running statistics far from the batch's, so r and d clip for some channels
    /// and not for others.
    static func harness(_ shape: [Int], layout: TensorLayout = .channelsFirst, limits: BatchRenormLimits) -> BatchNormHarness {
        var harness = BatchNormHarness(shape: shape, offset: 0.5, scale: 2, seed: UInt64(shape.reduce(1, *)) &+ 101)
        harness.layout = layout
        harness.renorm = limits
        let channels = shape[1]
        harness.runningMean = (0..<channels).map { Float($0 % 5) - 2 }
        harness.runningVar = (0..<channels).map { [0.05, 0.5, 4, 40][$0 % 4] }
        return harness
    }

    @Test(
        "matches the reference on every strategy and layout",
        arguments: [[6, 8, 5, 5], [3, 5, 7], [2, 3, 65], [40, 12]], [BatchRenormLimits(rmax: 3, dmax: 5), BatchRenormLimits(rmax: 1.5, dmax: 0.5)])
    func matchesReference(shape: [Int], limits: BatchRenormLimits) throws {
        let runtime = try #require(sharedRuntime)
        for layout in TensorLayout.allCases {
            let harness = Self.harness(shape, layout: layout, limits: limits)
            for strategy in BatchNormHalfTests.strategies(shape, layout) {
                try harness.check(on: .openCL(runtime), training: true, strategy: strategy)
            }
        }
    }

    @Test("clipping is active in the test data, and rmax = 1, dmax = 0 is BatchNorm")
    func limits() throws {
        for backend in allBackends {
            let clipped = Self.harness([6, 8, 5, 5], limits: BatchRenormLimits(rmax: 1.5, dmax: 0.5))
            let result = try clipped.run(on: backend, training: true)
            let r = try #require(result.renormR), d = try #require(result.renormD)
            #expect(r.contains(1.5) && r.contains(1 / 1.5) && r.contains { $0 > 1 / 1.5 && $0 < 1.5 })
            #expect(d.contains(0.5) && d.contains(-0.5) && d.contains { Swift.abs($0) < 0.5 })

            var plain = Self.harness([6, 8, 5, 5], limits: .batchNorm)
            let renormed = try plain.run(on: backend, training: true)
            plain.renorm = nil
            let batchNormed = try plain.run(on: backend, training: true)
            #expect(renormed.renormR == [Float](repeating: 1, count: 8))
            #expect(renormed.renormD == [Float](repeating: 0, count: 8))
            #expect(renormed.output == batchNormed.output)
            #expect(renormed.runningVar == batchNormed.runningVar)
        }
    }

    @Test("half storage and large-mean data")
    func halfAndLargeMean() throws {
        let runtime = try #require(sharedRuntime)
        var harness = Self.harness([4, 6, 9, 9], limits: BatchRenormLimits(rmax: 2, dmax: 3))
        harness.elementType = .float16
        try harness.check(on: .openCL(runtime), training: true)
        var shifted = Self.harness([4, 6, 9, 9], limits: BatchRenormLimits(rmax: 2, dmax: 3))
        shifted.x = shifted.x.map { $0 + 1e4 }
        shifted.runningMean = shifted.runningMean?.map { $0 + 1e4 }
        try shifted.check(on: .openCL(runtime), training: true)
    }

    @Test("the layer uses the limits in training and plain running statistics in inference")
    func layer() throws {
        for backend in allBackends {
            var layer = try BatchNorm(numFeatures: 3, on: backend)
            layer.renorm = BatchRenormLimits(rmax: 2, dmax: 1)
            let input = try Tensor((0..<24).map { Float($0 % 7) * 3 + 10 }, shape: [4, 3, 2], on: backend)
            let trained = try layer.forward(input)
            #expect(trained.renormR != nil && layer.runningStatistics?.numBatchesTracked == 1)
            layer.isTraining = false
            #expect(try layer.forward(input).renormR == nil)
        }
    }

    @Test("rejects limits out of range and missing running statistics")
    func errors() throws {
        for backend in allBackends {
            let input = try Tensor(repeating: 1, shape: [2, 3, 4], on: backend)
            var running = try RunningStatistics(channels: 3, on: backend)
            for (limits, name) in [
                (BatchRenormLimits(rmax: 0.5, dmax: 1), "rmax"), (BatchRenormLimits(rmax: .nan, dmax: 1), "rmax"),
                (BatchRenormLimits(rmax: 2, dmax: -1), "dmax"), (BatchRenormLimits(rmax: 2, dmax: .nan), "dmax"),
            ] {
                #expect {
                    try batchRenorm(input, runningStatistics: &running, limits: limits)
                } throws: { error in
                    guard case NormError.invalidArgument(let argument, _) = error else { return false }
                    return argument == name
                }
            }
            #expect(running.numBatchesTracked == 0, "a failed call leaves the running statistics alone")
            var none: RunningStatistics? = nil
            #expect(throws: NormError.self) {
                try batchNorm(
                    input, weight: nil, bias: nil, runningStatistics: &none, training: true, momentum: 0.1, eps: 1e-5,
                    strategy: nil, renorm: BatchRenormLimits(rmax: 2, dmax: 1))
            }
        }
    }
}
