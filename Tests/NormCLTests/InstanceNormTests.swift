import Testing
@testable import NormCL

/// InstanceNorm on OpenCL against the float64 reference: instance statistics with
/// every strategy, running statistics (update and inference), both layouts, both
/// element types, large-mean data.
@Suite("InstanceNorm")
struct InstanceNormTests {
    static let shapes: [[Int]] = [
        [2, 3, 5, 7], [3, 4, 9], [1, 8, 16, 16], [2, 5, 17, 19], [1, 2, 4099], [2, 3, 2, 3, 5], [4, 12, 2],
        [2, 68, 5, 5], [3, 10, 8, 8],
    ]

    @Test("instance statistics match the reference with every strategy, NCHW and NHWC", arguments: shapes)
    func sweep(shape: [Int]) throws {
        let runtime = try #require(sharedRuntime)
        for layout in TensorLayout.allCases {
            for affine in [false, true] {
                var harness = GroupNormHarness(
                    op: .instance(useInputStats: true), shape: shape, offset: -1, scale: 2, affine: affine,
                    seed: UInt64(shape.reduce(1, *)) &+ 7)
                harness.layout = layout
                for strategy in harness.strategies { try harness.check(on: .openCL(runtime), strategy: strategy) }
            }
        }
    }

    @Test("running statistics: update in training (momentum and cumulative), use in inference", arguments: [
        [3, 6, 7, 7], [2, 8, 32], [4, 3, 2, 3, 4],
    ])
    func runningStatistics(shape: [Int]) throws {
        let runtime = try #require(sharedRuntime)
        for layout in TensorLayout.allCases {
            for momentum: Float? in [0.1, nil, 1] {
                var harness = GroupNormHarness(
                    op: .instance(useInputStats: true), shape: shape, offset: 3, scale: 2, tracking: true, seed: 13)
                harness.layout = layout
                harness.momentum = momentum
                harness.numBatchesTracked = 4
                for strategy in harness.strategies { try harness.check(on: .openCL(runtime), strategy: strategy) }
                harness.op = .instance(useInputStats: false)
                for strategy in harness.strategies { try harness.check(on: .openCL(runtime), strategy: strategy) }
            }
        }
    }

    @Test("half storage matches the reference", arguments: [[2, 3, 5, 7], [2, 8, 8, 8]])
    func half(shape: [Int]) throws {
        let runtime = try #require(sharedRuntime)
        for layout in TensorLayout.allCases {
            for useInputStats in [true, false] {
                let harness = GroupNormHarness(
                    op: .instance(useInputStats: useInputStats), shape: shape, offset: 1, scale: 2, tracking: true, seed: 17)
                    .stored(as: .float16, layout)
                for strategy in harness.strategies { try harness.check(on: .openCL(runtime), strategy: strategy) }
            }
        }
    }

    /// 1e4 + N(0,1) with per-channel offsets, and a constant instance, which must
    /// normalise to exactly β; running statistics near 1e4 stay accurate.
    @Test("large-mean data and a constant instance")
    func largeMean() throws {
        let runtime = try #require(sharedRuntime)
        let shape = [4, 8, 9, 9], spatial = 81
        var harness = GroupNormHarness(op: .instance(useInputStats: true), shape: shape, offset: 1e4, tracking: true, seed: 37)
        for i in harness.x.indices {
            harness.x[i] += Float(7 * ((i / spatial) % 8))
            if i < spatial { harness.x[i] = 1e4 }  // (n 0, c 0)
        }
        let nchw = harness.x
        for layout in TensorLayout.allCases {
            harness.layout = layout
            harness.x = layout == .channelsFirst ? nchw : GroupNormHarness.toChannelsLast(nchw, shape: shape)
            for strategy in harness.strategies {
                try harness.check(on: .openCL(runtime), strategy: strategy)
                let y = try harness.run(on: .openCL(runtime), strategy: strategy).output
                for m in 0..<spatial {
                    #expect(y[layout == .channelsFirst ? m : m * 8] == harness.bias?[0], "constant instance \(layout)")
                }
            }
        }
    }

    @Test("InstanceNorm equals GroupNorm with one group per channel")
    func equalsGroupNorm() throws {
        let runtime = try #require(sharedRuntime)
        let values = GroupNormHarness(op: .group(6), shape: [2, 6, 10, 10], seed: 43).x
        for layout in TensorLayout.allCases {
            let input = try Tensor(values, shape: [2, 6, 10, 10], layout: layout, on: .openCL(runtime))
            let a = try instanceNorm(input)
            let b = try groupNorm(input, numGroups: 6)
            #expect(try a.output.toArray() == b.output.toArray())
            #expect(try a.saveMean?.toArray() == b.saveMean?.toArray())
        }
    }
}

/// The InstanceNorm layer's defaults and modes, and every error case of both ops'
/// InstanceNorm-specific arguments.
@Suite("InstanceNorm layer and errors")
struct InstanceNormLayerTests {
    @Test("defaults: not affine, no tracking; inference without tracking uses instance statistics", arguments: BackendChoice.allCases)
    func defaults(choice: BackendChoice) throws {
        let backend = try choice.backend()
        var layer = try InstanceNorm(numFeatures: 3, on: backend)
        #expect(layer.weight == nil && layer.bias == nil && layer.runningStatistics == nil && layer.isTraining)
        #expect(layer.momentum == 0.1 && layer.eps == 1e-5)
        let values = GroupNormHarness(op: .instance(useInputStats: true), shape: [2, 3, 4, 4], seed: 2).x
        let input = try Tensor(values, shape: [2, 3, 4, 4], on: backend)
        let training = try layer(input).toArray()
        layer.isTraining = false
        let inference = try layer(input).toArray()
        #expect(training == inference)
        let expected = try instanceNorm(try Tensor(values, shape: [2, 3, 4, 4], on: .reference)).output.toArray()
        expectClose(training, expected, "layer output", relative: 2e-6, absolute: 2e-6)
    }

    @Test("tracking: training updates the statistics, inference uses them", arguments: BackendChoice.allCases)
    func tracking(choice: BackendChoice) throws {
        let backend = try choice.backend()
        var layer = try InstanceNorm(numFeatures: 4, momentum: nil, affine: true, trackRunningStats: true, on: backend)
        #expect(try layer.weight?.toArray() == [1, 1, 1, 1] && layer.bias?.toArray() == [0, 0, 0, 0])
        let shape = [3, 4, 5, 6]
        var rng = SeededGenerator(seed: 8)
        let first = rng.normals(360, offset: 2, scale: 3), second = rng.normals(360, offset: -1, scale: 0.5)
        _ = try layer(try Tensor(first, shape: shape, on: backend))
        _ = try layer(try Tensor(second, shape: shape, on: backend))
        #expect(layer.runningStatistics?.numBatchesTracked == 2)
        // Cumulative average of the two batches' statistics, from the reference.
        var expected: RunningStatistics? = try RunningStatistics(channels: 4, on: .reference)
        for values in [first, second] {
            _ = try instanceNorm(try Tensor(values, shape: shape, on: .reference), runningStatistics: &expected, momentum: nil)
        }
        expectClose(try layer.runningStatistics?.mean.toArray() ?? [], try expected?.mean.toArray() ?? [], "mean", relative: 1e-5, absolute: 1e-6)
        expectClose(try layer.runningStatistics?.variance.toArray() ?? [], try expected?.variance.toArray() ?? [], "var", relative: 1e-5)
        // Inference: (x − running_mean)/sqrt(running_var + eps), the statistics unchanged.
        layer.isTraining = false
        let y = try layer(try Tensor(first, shape: shape, on: backend)).toArray()
        let mean = try expected?.mean.toArray() ?? [], variance = try expected?.variance.toArray() ?? []
        for i in stride(from: 0, to: 360, by: 7) {
            let c = (i / 30) % 4
            let e = (Double(first[i]) - Double(mean[c])) / (Double(variance[c]) + 1e-5).squareRoot()
            #expect(Swift.abs(Double(y[i]) - e) <= 1e-5 * (1 + Swift.abs(e)), "element \(i)")
        }
        #expect(layer.runningStatistics?.numBatchesTracked == 2)
    }

    @Test("errors", arguments: BackendChoice.allCases)
    func errors(choice: BackendChoice) throws {
        let backend = try choice.backend()
        var none: RunningStatistics? = nil
        var running: RunningStatistics? = try RunningStatistics(channels: 3, on: backend)
        // Rank below 3: InstanceNorm needs a spatial dim.
        let matrix = try Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3], on: backend)
        #expect(Self.kind(try? instanceNormError { try instanceNorm(matrix) }) == "invalidShape(input)")
        // One spatial element with input statistics (PyTorch: "Expected more than 1 spatial element when training").
        let single = try Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3, 1], on: backend)
        #expect(throws: NormError.tooFewValuesPerChannel(valuesPerChannel: 1, shape: [2, 3, 1])) { try instanceNorm(single) }
        #expect(throws: NormError.tooFewValuesPerChannel(valuesPerChannel: 1, shape: [2, 3, 1])) {
            try instanceNorm(single, runningStatistics: &running)
        }
        #expect(running?.numBatchesTracked == 0, "a failed call changes nothing")
        // ... but inference with running statistics is fine there.
        let y = try instanceNorm(single, runningStatistics: &running, useInputStats: false).output.toArray()
        expectClose(y, [1, 2, 3, 4, 5, 6].map { Float(Double($0) / (1 + 1e-5).squareRoot()) }, "M = 1 inference", relative: 1e-6)
        // Inference needs running statistics.
        let input = try Tensor(repeating: 1, shape: [2, 3, 4], on: backend)
        #expect(Self.kind(try? instanceNormError { try instanceNorm(input, runningStatistics: &none, useInputStats: false) })
            == "invalidArgument(runningStatistics)")
        // Parameter and statistics shapes, types, momentum, eps, counter.
        let short = try Tensor([1, 2], on: backend)
        #expect(throws: NormError.shapeMismatch(argument: "weight", expected: [3], actual: [2])) { try instanceNorm(input, weight: short) }
        #expect(throws: NormError.shapeMismatch(argument: "bias", expected: [3], actual: [2])) { try instanceNorm(input, bias: short) }
        var badMean: RunningStatistics? = RunningStatistics(mean: short, variance: try Tensor([1, 1, 1], on: backend))
        #expect(throws: NormError.shapeMismatch(argument: "runningMean", expected: [3], actual: [2])) {
            try instanceNorm(input, runningStatistics: &badMean)
        }
        var badVar: RunningStatistics? = RunningStatistics(mean: try Tensor([0, 0, 0], on: backend), variance: short)
        #expect(throws: NormError.shapeMismatch(argument: "runningVar", expected: [3], actual: [2])) {
            try instanceNorm(input, runningStatistics: &badVar, useInputStats: false)
        }
        let halfWeight = try Tensor([1, 1, 1], shape: [3], elementType: .float16, on: backend)
        #expect(Self.kind(try? instanceNormError { try instanceNorm(input, weight: halfWeight) }) == "unsupported(weight)")
        #expect(Self.kind(try? instanceNormError { try instanceNorm(input, runningStatistics: &running, momentum: 1.5) })
            == "invalidArgument(momentum)")
        #expect(Self.kind(try? instanceNormError { try instanceNorm(input, eps: -1) }) == "invalidArgument(eps)")
        var negative: RunningStatistics? = running
        negative?.numBatchesTracked = -1
        #expect(Self.kind(try? instanceNormError { try instanceNorm(input, runningStatistics: &negative) })
            == "invalidArgument(numBatchesTracked)")
        // Layer: bad construction and channel mismatch.
        #expect(throws: NormError.self) { try InstanceNorm(numFeatures: 0, on: backend) }
        #expect(throws: NormError.self) { try InstanceNorm(numFeatures: 3, momentum: -0.1, on: backend) }
        var layer = try InstanceNorm(numFeatures: 4, on: backend)
        #expect(throws: NormError.shapeMismatch(argument: "input", expected: [2, 4, 4], actual: [2, 3, 4])) { try layer(input) }
        if case .openCL = backend {
            let elsewhere = try Tensor([1, 1, 1], on: .reference)
            #expect(Self.kind(try? instanceNormError { try instanceNorm(input, weight: elsewhere) }) == "backendMismatch(weight)")
        }
    }

    /// The NormError a call throws (nil when it succeeds or throws something else).
    func instanceNormError(_ body: () throws -> Any) throws -> NormError? {
        do { _ = try body() } catch let error as NormError { return error }
        return nil
    }

    static func kind(_ error: NormError??) -> String? {
        BatchNormErrorTests.caseAndArgument(error ?? nil)
    }
}
