import Testing
@testable import NormCL

/// GroupNorm on OpenCL against the float64 reference: every strategy, both layouts,
/// both element types, awkward sizes and large-mean data.
@Suite("GroupNorm")
struct GroupNormTests {
    typealias Case = GroupNormCase

    static let cases: [Case] =
        GroupNormCase.sweep + [
            Case(shape: [1, 32, 16, 16], groups: 32),
            Case(shape: [2, 32, 8, 8], groups: 1),  // LayerNorm-like: one group per sample
            Case(shape: [3, 10, 8, 8], groups: 5),  // C % 4 != 0: scalar column loads
        ]

    @Test("matches the reference with every strategy, NCHW and NHWC", arguments: cases)
    func sweep(testCase: Case) throws {
        let runtime = try #require(sharedRuntime)
        for layout in TensorLayout.allCases {
            for affine in [true, false] {
                var harness = GroupNormHarness(
                    op: .group(testCase.groups), shape: testCase.shape, offset: 2, scale: 3, affine: affine,
                    seed: UInt64(testCase.shape.reduce(1, *)) &+ (affine ? 1 : 2))
                harness.layout = layout
                for strategy in harness.strategies {
                    try harness.check(on: .openCL(runtime), strategy: strategy)
                }
            }
        }
    }

    @Test("half storage matches the reference (float32 statistics, half outputs)", arguments: [
        Case(shape: [2, 6, 5, 7], groups: 3), Case(shape: [2, 16, 8, 8], groups: 4), Case(shape: [2, 24, 6, 6], groups: 8),
        Case(shape: [4, 8], groups: 2),
    ])
    func half(testCase: Case) throws {
        let runtime = try #require(sharedRuntime)
        for layout in TensorLayout.allCases {
            let harness = GroupNormHarness(op: .group(testCase.groups), shape: testCase.shape, offset: 1, scale: 2, seed: 5)
                .stored(as: .float16, layout)
            for strategy in harness.strategies {
                try harness.check(on: .openCL(runtime), strategy: strategy)
            }
        }
    }

    @Test("only weight, only bias, and eps 0 and 0.5")
    func parameterVariants() throws {
        let runtime = try #require(sharedRuntime)
        for layout in TensorLayout.allCases {
            var harness = GroupNormHarness(op: .group(4), shape: [3, 16, 6, 6], seed: 9)
            harness.layout = layout
            let (weight, bias) = (harness.weight, harness.bias)
            for (w, b, eps) in [(weight, nil, Float(1e-5)), (nil, bias, 1e-5), (weight, bias, 0), (weight, bias, 0.5)] {
                harness.weight = w
                harness.bias = b
                harness.eps = eps
                for strategy in harness.strategies { try harness.check(on: .openCL(runtime), strategy: strategy) }
            }
        }
    }

    /// 1e4 + N(0,1), with channel means 10 apart inside each group, and a constant
    /// group at 1e4, which must normalise to exactly β (variance 0, not a rounding
    /// residue amplified by 1/sqrt(eps)).
    @Test("large-mean data and a constant group", arguments: [[4, 16, 9, 9], [2, 8, 64]])
    func largeMean(shape: [Int]) throws {
        let runtime = try #require(sharedRuntime)
        var harness = GroupNormHarness(op: .group(4), shape: shape, offset: 1e4, seed: 31)
        let spatial = shape.dropFirst(2).reduce(1, *)
        for i in harness.x.indices {
            let c = (i / spatial) % shape[1]
            harness.x[i] += Float(10 * (c % 4))
            if i < 4 * spatial { harness.x[i] = 1e4 }  // sample 0, group 0
        }
        let nchw = harness
        for layout in TensorLayout.allCases {
            harness.layout = layout
            harness.x = layout == .channelsFirst ? nchw.x : GroupNormHarness.toChannelsLast(nchw.x, shape: shape)
            for strategy in harness.strategies {
                try harness.check(on: .openCL(runtime), strategy: strategy)
                let y = try harness.run(on: .openCL(runtime), strategy: strategy).output
                for c in 0..<4 {
                    for m in 0..<spatial {
                        let i = layout == .channelsFirst ? c * spatial + m : m * shape[1] + c
                        #expect(y[i] == harness.bias?[c], "constant group, channel \(c), \(layout) \(String(describing: strategy))")
                    }
                }
            }
        }
    }

    @Test("NHWC equals NCHW on the same data permuted", arguments: [
        Case(shape: [2, 12, 7, 9], groups: 3), Case(shape: [3, 64, 4, 4], groups: 16), Case(shape: [1, 6, 300], groups: 2),
    ])
    func layoutsAgree(testCase: Case) throws {
        let runtime = try #require(sharedRuntime)
        for elementType in ElementType.allCases {
            var nchw = GroupNormHarness(op: .group(testCase.groups), shape: testCase.shape, offset: 5, seed: 41)
            nchw.elementType = elementType
            var nhwc = nchw
            nhwc.layout = .channelsLast
            nhwc.x = GroupNormHarness.toChannelsLast(nchw.x, shape: testCase.shape)
            let first = try nchw.run(on: .openCL(runtime))
            let last = try nhwc.run(on: .openCL(runtime))
            let permuted = GroupNormHarness.toChannelsLast(first.output, shape: testCase.shape)
            expectOutputClose(
                last.output, permuted, "output \(testCase) \(elementType)", base: 4e-6, half: elementType == .float16,
                halfFloor: 0x1p-24)
            expectClose(last.saveMean ?? [], first.saveMean ?? [], "saveMean", relative: 4 * 0x1p-24, absolute: 4e-6)
            expectClose(last.saveInvstd ?? [], first.saveInvstd ?? [], "saveInvstd", relative: 2e-6)
        }
    }

    /// A NaN in one group and an Inf in another make exactly those groups NaN.
    @Test("NaN and Inf stay in their group")
    func nonFinite() throws {
        let runtime = try #require(sharedRuntime)
        let shape = [3, 8, 6, 6], spatial = 36
        for layout in TensorLayout.allCases {
            var harness = GroupNormHarness(op: .group(4), shape: shape, seed: 3)
            var x = harness.x
            x[(1 * 8 + 2) * spatial + 5] = .nan  // n = 1, group 1
            x[(2 * 8 + 7) * spatial] = .infinity  // n = 2, group 3
            harness.layout = layout
            harness.x = layout == .channelsFirst ? x : GroupNormHarness.toChannelsLast(x, shape: shape)
            let expected = try harness.run(on: .reference)
            for strategy in harness.strategies {
                let actual = try harness.run(on: .openCL(runtime), strategy: strategy)
                let y = actual.output
                expectClose(y, expected.output, "output \(layout) \(String(describing: strategy))") { i in
                    2e-6 * (1 + Swift.abs(Double(expected.output[i])))
                }
                // Clean rows keep exact statistics; a poisoned row's are the reference's: mean
                // NaN (the NaN row) or +Inf (the Inf row, as a float64 sum gives), invstd NaN.
                for r in 0..<12 {
                    let poisoned = r == 1 * 4 + 1 || r == 2 * 4 + 3
                    let mean = actual.saveMean?[r] ?? 0, reference = expected.saveMean?[r] ?? 0
                    if poisoned {
                        let expectedMean: Float = r == 1 * 4 + 1 ? .nan : .infinity
                        #expect(reference.isNaN == expectedMean.isNaN && (reference.isNaN || reference == expectedMean))
                        #expect(expectedMean.isNaN ? mean.isNaN : mean == expectedMean, "row \(r) mean \(mean)")
                        #expect((actual.saveInvstd?[r] ?? 0).isNaN && (expected.saveInvstd?[r] ?? 0).isNaN, "row \(r)")
                    } else {
                        #expect(Swift.abs(Double(mean) - Double(reference)) <= 1e-5, "row \(r) mean \(mean) vs \(reference)")
                    }
                }
                for i in y.indices {
                    let (n, c) = harness.sampleAndChannel(ofElement: i)
                    let poisoned = (n == 1 && c / 2 == 1) || (n == 2 && c / 2 == 3)
                    #expect(y[i].isNaN == poisoned, "element \(i) (n \(n), c \(c)) \(layout)")
                }
            }
        }
    }

    /// One big case per layout: long rows, several work-groups per row when split.
    @Test("a larger shape, both layouts")
    func larger() throws {
        let runtime = try #require(sharedRuntime)
        for layout in TensorLayout.allCases {
            var harness = GroupNormHarness(op: .group(2), shape: [2, 8, 96, 96], offset: -3, scale: 0.5, seed: 77)
            harness.layout = layout
            for strategy in harness.strategies.prefix(3) { try harness.check(on: .openCL(runtime), strategy: strategy) }
        }
    }

    @Test("the plan picks fused rows, split rows and columns from the shape")
    func planChoice() throws {
        let runtime = try #require(sharedRuntime)
        let cpu = DeviceTuning.cpuLike
        func plan(_ shape: [Int], _ groups: Int, _ layout: TensorLayout, statistics: GroupNormProblem.Statistics = .input(savesVariance: false)) throws -> GroupNormPlan {
            let input = try Tensor(repeating: 0, shape: shape, layout: layout, on: .reference)
            let problem = try GroupNormProblem.validated(
                input: input, groups: groups, weight: nil, bias: nil, statistics: statistics, eps: 1e-5, op: "GroupNorm")
            return GroupNormPlan(problem: problem, device: runtime.device, tuning: cpu)
        }
        let units = runtime.device.computeUnits
        #expect(try plan([8, 512, 32, 32], 32, .channelsFirst).strategy == .fusedRows)
        #expect(try plan([8, 512, 32, 32], 32, .channelsFirst).vectorWidth == 4)
        #expect(try plan([2, 4, 5, 5], 2, .channelsFirst).strategy == .fusedRows, "short rows are not split")
        if case .splitRows(let slices) = try plan([1, 4, 512, 512], 1, .channelsFirst).strategy {
            #expect(slices == units * 4)
        } else {
            Issue.record("one huge row should be split")
        }
        if case .columns(let slices) = try plan([1, 64, 128, 128], 64, .channelsLast).strategy {
            #expect(slices == units * 4, "one column work-item per sample: slices fill the device")
        } else {
            Issue.record("NHWC takes the column strategy")
        }
        #expect(try plan([64, 512, 8, 8], 32, .channelsLast).strategy == .columns(spatialSlices: 1))
        #expect(try plan([2, 8, 3], 2, .channelsLast).vectorWidth == 1)
        #expect(try plan([2, 8, 3, 3], 8, .channelsFirst, statistics: .running).strategy == .runningStatistics)
    }
}
