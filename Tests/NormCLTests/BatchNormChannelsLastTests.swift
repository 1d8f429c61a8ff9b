import Testing
@testable import NormCL

/// BatchNorm on channels-last (NHWC) memory: against the reference, and against NCHW
/// on the same values permuted.
@Suite("BatchNorm channels-last")
struct BatchNormChannelsLastTests {
    static let shapes: [[Int]] = [
        [2, 1, 3, 3], [3, 5, 7], [2, 3, 5, 7], [4, 64, 9, 11], [2, 13, 8, 8], [8, 6, 17, 19], [2, 3, 2, 3, 5],
        [1, 2, 4099], [5, 8, 1, 1], [2, 256, 4, 4], [1, 4, 65_537],
    ]

    @Test("training matches the reference with every column strategy", arguments: shapes)
    func training(shape: [Int]) throws {
        let runtime = try #require(sharedRuntime)
        var harness = BatchNormHarness(shape: shape, offset: 2, scale: 3, seed: UInt64(shape.reduce(1, *)) &+ 3)
        harness.layout = .channelsLast
        let strategies: [BatchNormPlan.Strategy?] = [
            nil, .columns, .splitColumns(rowGroups: 3), .splitColumns(rowGroups: 64),
        ]
        for strategy in strategies {
            try harness.check(on: .openCL(runtime), training: true, strategy: strategy)
        }
    }

    @Test("inference matches the reference", arguments: shapes)
    func inference(shape: [Int]) throws {
        let runtime = try #require(sharedRuntime)
        var harness = BatchNormHarness(shape: shape, seed: 11)
        harness.layout = .channelsLast
        try harness.check(on: .openCL(runtime), training: false)
    }

    @Test("large-mean data (1e4 + N(0,1)) and outliers at the pilot's rows", arguments: [[16, 12, 7, 7], [4, 64, 33]])
    func largeMean(shape: [Int]) throws {
        let runtime = try #require(sharedRuntime)
        var harness = BatchNormHarness(shape: shape, offset: 1e4, seed: 19)
        harness.layout = .channelsLast
        for strategy: BatchNormPlan.Strategy? in [nil, .columns, .splitColumns(rowGroups: 5)] {
            try harness.check(on: .openCL(runtime), training: true, strategy: strategy)
        }
        // Row 0 is one of the pilot's samples: make it an outlier in every channel.
        for c in 0..<shape[1] { harness.x[c] = 3e4 }
        for strategy: BatchNormPlan.Strategy? in [nil, .columns, .splitColumns(rowGroups: 5)] {
            try harness.check(on: .openCL(runtime), training: true, strategy: strategy)
        }
    }

    /// The same values in both layouts give the same results, element for element
    /// (after permuting back), within the harness's output tolerance.
    @Test("equals NCHW on the same data permuted", arguments: [[4, 6, 5, 7], [8, 64, 14, 14], [3, 10, 33]])
    func matchesChannelsFirst(shape: [Int]) throws {
        let runtime = try #require(sharedRuntime)
        let nchw = BatchNormHarness(shape: shape, offset: -1, scale: 2, seed: 5)
        var nhwc = nchw
        nhwc.layout = .channelsLast
        let (batch, channels, spatial) = (shape[0], shape[1], shape.dropFirst(2).reduce(1, *))
        func nhwcIndex(_ i: Int) -> Int {  // NCHW index i → NHWC index
            let m = i % spatial, c = (i / spatial) % channels, n = i / (spatial * channels)
            return (n * spatial + m) * channels + c
        }
        for i in nchw.x.indices { nhwc.x[nhwcIndex(i)] = nchw.x[i] }
        #expect(batch * channels * spatial == nchw.x.count)
        for training in [true, false] {
            let a = try nchw.run(on: .openCL(runtime), training: training)
            let b = try nhwc.run(on: .openCL(runtime), training: training)
            let permuted = nchw.x.indices.map { b.output[nhwcIndex($0)] }
            expectClose(permuted, a.output, "NHWC vs NCHW output training=\(training)") { i in
                2e-6 * (1 + Swift.abs(Double(a.output[i])))
            }
            if training {
                expectClose(b.saveInvstd ?? [], a.saveInvstd ?? [], "NHWC vs NCHW invstd", relative: 1e-6)
                expectClose(b.runningVar ?? [], a.runningVar ?? [], "NHWC vs NCHW running var", relative: 2e-6)
            }
        }
    }

    @Test("the plan splits rows only when channels cannot fill the device")
    func planChoice() throws {
        let runtime = try #require(sharedRuntime)
        func strategy(_ shape: [Int]) throws -> BatchNormPlan.Strategy {
            let input = try Tensor(repeating: 0, shape: shape, layout: .channelsLast, on: .reference)
            let problem = try BatchNormProblem.validated(
                input: input, weight: nil, bias: nil, running: nil, mode: .training(updatesRunningStatistics: false),
                momentum: 0.1, eps: 1e-5)
            return BatchNormPlan(problem: problem, device: runtime.device, tuning: runtime.tuning).strategy
        }
        let target = runtime.device.computeUnits * runtime.tuning.workGroupsPerComputeUnit
        let channelsToFill = 4 * runtime.tuning.columnTile * target
        #expect(try strategy([64, channelsToFill, 2, 2]) == .columns)
        if case .splitColumns(let groups) = try strategy([32, 64, 56, 56]) {
            #expect(groups > 1 && groups <= 1024)
        } else {
            Issue.record("NHWC (32, 64, 56, 56) should split its rows on \(runtime.device.name)")
        }
        // Too few rows to split.
        #expect(try strategy([2, 8, 3, 3]) == .columns)
    }
}
