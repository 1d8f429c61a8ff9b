import Testing
@testable import NormCL

/// BatchNorm on channels-last (NHWC) memory: against the reference, and against NCHW
/// on the same values permuted.
@Suite("BatchNorm channels-last")
struct BatchNormChannelsLastTests {
    static let shapes: [[Int]] = [
        [2, 1, 3, 3], [3, 5, 7], [2, 3, 5, 7], [4, 64, 9, 11], [2, 13, 8, 8], [8, 6, 17, 19], [2, 3, 2, 3, 5],
        [1, 2, 4099], [5, 8, 1, 1], [2, 256, 4, 4], [1, 4, 65_537],
        // Several column tiles with a narrower last one (CVEC 4 and CVEC 1).
        [3, 68, 5, 5], [4, 37, 6, 6], [200, 260],
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

    @Test("without affine parameters, without tracking, and with a cumulative average")
    func parameterVariants() throws {
        let runtime = try #require(sharedRuntime)
        for (affine, tracking) in [(false, true), (true, false), (false, false)] {
            var harness = BatchNormHarness(shape: [6, 12, 9, 9], affine: affine, tracking: tracking, seed: 23)
            harness.layout = .channelsLast
            harness.momentum = nil
            for strategy: BatchNormPlan.Strategy? in [nil, .columns, .splitColumns(rowGroups: 4)] {
                try harness.check(on: .openCL(runtime), training: true, strategy: strategy)
            }
            if tracking { try harness.check(on: .openCL(runtime), training: false) }
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

    /// Three of the five rows the pilot is sampled from (0, 1/4, 1/2) hold an outlier
    /// in every channel, so the median is the outlier, ~150σ from the mean, over 65,536
    /// rows. The float32 `mean − pilot ≈ −1000` then rounds at ulp(1000), so the bound
    /// is the harness's plus 4 ulps of |mean − pilot|; every path must apply
    /// `((x − pilot) − (mean − pilot))·scale`, since folding `(mean − pilot)·scale` into
    /// the shift rounds the output itself at that magnitude (outside this bound).
    @Test("the pilot itself an outlier, NHWC and NCHW")
    func outlierPilot() throws {
        let runtime = try #require(sharedRuntime)
        let shape = [16, 4, 64, 64]
        let rows = 16 * 64 * 64, channels = 4, spatial = 64 * 64
        var nhwc = BatchNormHarness(shape: shape, seed: 29)
        nhwc.layout = .channelsLast
        let last = rows - 1
        for row in [0, last / 4, last / 2] {
            for c in 0..<channels { nhwc.x[row * channels + c] = 1000 }
        }
        let distance = [Double](repeating: 1000, count: channels)  // |mean − pilot| ≈ 1000
        for strategy: BatchNormPlan.Strategy? in [nil, .columns, .splitColumns(rowGroups: 7)] {
            try nhwc.check(on: .openCL(runtime), training: true, strategy: strategy, pilotDistance: distance)
        }
        var nchw = BatchNormHarness(shape: shape, seed: 29)
        for v in [0, last / 4, last / 2] {
            let n = v / spatial, m = v % spatial
            for c in 0..<channels { nchw.x[(n * channels + c) * spatial + m] = 1000 }
        }
        for strategy: BatchNormPlan.Strategy? in [nil, .fusedPerChannel, .splitReduction(groupsPerChannel: 7)] {
            try nchw.check(on: .openCL(runtime), training: true, strategy: strategy, pilotDistance: distance)
        }
    }

    /// The same values in both layouts give the same results, element for element
    /// (after permuting back), within the harness's output tolerance, for every pair
    /// of strategies.
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
        let pairs: [(training: Bool, nchw: BatchNormPlan.Strategy?, nhwc: BatchNormPlan.Strategy?)] = [
            (false, nil, nil), (true, nil, nil),
            (true, .fusedPerChannel, .columns), (true, .splitReduction(groupsPerChannel: 3), .splitColumns(rowGroups: 3)),
            (true, .fusedPerChannel, .splitColumns(rowGroups: 5)),
        ]
        for (training, nchwStrategy, nhwcStrategy) in pairs {
            let label = "NHWC \(nhwcStrategy.map { "\($0)" } ?? "auto") vs NCHW \(nchwStrategy.map { "\($0)" } ?? "auto")"
            let a = try nchw.run(on: .openCL(runtime), training: training, strategy: nchwStrategy)
            let b = try nhwc.run(on: .openCL(runtime), training: training, strategy: nhwcStrategy)
            let permuted = nchw.x.indices.map { b.output[nhwcIndex($0)] }
            expectClose(permuted, a.output, "\(label) output training=\(training)") { i in
                2e-6 * (1 + Swift.abs(Double(a.output[i])))
            }
            if training, let invstd = a.saveInvstd {
                expectClose(b.saveMean ?? [], a.saveMean ?? [], "\(label) mean") { c in
                    2e-6 / Double(invstd[c]) + 2 * 0x1p-24 * Swift.abs(Double(a.saveMean?[c] ?? 0))
                }
                expectClose(b.saveInvstd ?? [], invstd, "\(label) invstd", relative: 1e-6)
                expectClose(b.runningVar ?? [], a.runningVar ?? [], "\(label) running var", relative: 2e-6)
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
        // Enough channels for `target` full column work-groups: no split.
        let channelsToFill = 4 * runtime.tuning.columnTile * target * runtime.tuning.elementwiseWorkGroupSize
        #expect(try strategy([64, channelsToFill, 2, 2]) == .columns)
        if case .splitColumns(let groups) = try strategy([32, 64, 56, 56]) {
            // Enough work-items: one per targeted work-group on CPUs (chunked access), a
            // full column work-group per targeted work-group on GPUs.
            let items = (64 / 4).ceilingDivided(by: runtime.tuning.columnTile)
            let local = min(runtime.tuning.elementwiseWorkGroupSize, items.roundedUp(toMultipleOf: 4))
            let wanted = runtime.tuning.chunkedAccess ? target : target * local
            #expect(groups <= 1024 && items * groups >= min(wanted, 1024 * items))
        } else {
            Issue.record("NHWC (32, 64, 56, 56) should split its rows on \(runtime.device.name)")
        }
        // Too few rows to split.
        #expect(try strategy([2, 8, 3, 3]) == .columns)
    }

    @Test("on a CPU: one pass when the column tiles fill the compute units; many short NCHW channels one per work-item")
    func cpuPlanChoice() throws {
        let runtime = try #require(sharedRuntime)
        let cpu = DeviceTuning(defaultsFor: .cpu)
        func strategy(_ shape: [Int], _ layout: TensorLayout) throws -> BatchNormPlan.Strategy {
            let input = try Tensor(repeating: 0, shape: shape, layout: layout, on: .reference)
            let problem = try BatchNormProblem.validated(
                input: input, weight: nil, bias: nil, running: nil, mode: .training(updatesRunningStatistics: false),
                momentum: 0.1, eps: 1e-5)
            return BatchNormPlan(problem: problem, device: runtime.device, tuning: cpu).strategy
        }
        let units = runtime.device.computeUnits, target = units * cpu.workGroupsPerComputeUnit
        // CPU defaults: 16 channels a vector, 4 vectors a work-item, 16 work-items a work-group,
        // so 1024 channels a column work-group.
        let channelsPerGroup = 16 * (cpu.columnTile * 4 / 16) * cpu.elementwiseWorkGroupSize
        #expect(try strategy([256, units * channelsPerGroup], .channelsLast) == .columns)
        #expect(try strategy([256, 2 * units * channelsPerGroup], .channelsLast) == .columns)
        if units > 1 {
            // Fewer column work-groups than compute units: 256 rows split into 4 slices.
            #expect(try strategy([256, channelsPerGroup], .channelsLast) == .splitColumns(rowGroups: 4))
        }
        // NCHW: at least `target` channels of fewer than minimumVectorsPerWorkGroup vectors.
        #expect(try strategy([4, target, 14, 14], .channelsFirst) == .channelItems)
        #expect(try strategy([4, 4 * target, 7, 7], .channelsFirst) == .channelItems)
        #expect(try strategy([1, target, 256, 256], .channelsFirst) == .fusedPerChannel)
        if target > 1 { #expect(try strategy([4, target - 1, 14, 14], .channelsFirst) == .fusedPerChannel) }
        // A GPU tuning keeps a work-group per channel, and splits rows by work-group count.
        let gpu = DeviceTuning(defaultsFor: .gpu)
        let input = try Tensor(repeating: 0, shape: [4, 1024, 14, 14], on: .reference)
        let problem = try BatchNormProblem.validated(
            input: input, weight: nil, bias: nil, running: nil, mode: .training(updatesRunningStatistics: false),
            momentum: 0.1, eps: 1e-5)
        #expect(BatchNormPlan(problem: problem, device: runtime.device, tuning: gpu).strategy == .fusedPerChannel)
    }
}
