import Testing
@testable import NormCL

/// GroupNorm backward on OpenCL against the float64 reference: every strategy, both
/// layouts, both element types, masks, awkward sizes, large-mean data, determinism.
@Suite("GroupNorm backward")
struct GroupNormBackwardTests {
    typealias Case = GroupNormCase

    static let cases: [Case] =
        GroupNormCase.sweep + [Case(shape: [2, 16, 8, 8], groups: 1)]  // one group per sample, float4 loads

    @Test("matches the reference with every strategy, NCHW and NHWC", arguments: cases)
    func sweep(testCase: Case) throws {
        let runtime = try #require(sharedRuntime)
        for layout in TensorLayout.allCases {
            let affine = (testCase.shape.reduce(1, *) + (layout == .channelsLast ? 1 : 0)) % 2 == 0
            var harness = GroupNormBackwardHarness(
                op: .group(testCase.groups), shape: testCase.shape, offset: 2, scale: 3, affine: affine,
                seed: UInt64(testCase.shape.reduce(1, *)))
            harness.layout = layout
            for strategy in harness.strategies {
                try harness.check(on: .openCL(runtime), strategy: strategy)
            }
        }
    }

    @Test("half storage: half dy, x and dx, float32 sums and parameter gradients")
    func half() throws {
        let runtime = try #require(sharedRuntime)
        for (shape, groups) in [([2, 6, 5, 7], 3), ([2, 16, 8, 8], 4)] {
            for layout in TensorLayout.allCases {
                let harness = GroupNormBackwardHarness(op: .group(groups), shape: shape, offset: 1, scale: 2, seed: 5)
                    .stored(as: .float16, layout)
                for strategy in harness.strategies { try harness.check(on: .openCL(runtime), strategy: strategy) }
            }
        }
    }

    @Test("every mask: only what is asked for, equal to the full pass")
    func masks() throws {
        let runtime = try #require(sharedRuntime)
        let masks: [NormGradientMask] = [.input, .weight, [.input, .bias], []]
        for layout in TensorLayout.allCases {
            var harness = GroupNormBackwardHarness(op: .group(3), shape: [2, 12, 5, 5], seed: 21)
            harness.layout = layout
            for mask in masks {
                harness.mask = mask
                for strategy in harness.strategies.dropFirst() { try harness.check(on: .openCL(runtime), strategy: strategy) }
            }
        }
        // Nothing asked: nothing enqueued.
        var harness = GroupNormBackwardHarness(op: .group(3), shape: [2, 12, 5, 5], seed: 21)
        harness.mask = []
        #expect(try harness.run(on: .openCL(runtime), statistics: harness.savedStatistics()).events == 0)
    }

    @Test("GPU-style tuning (interleaved access, column tile 1, 256-wide groups) on this device")
    func gpuStyle() throws {
        let runtime = try #require(sharedRuntime)
        for (shape, groups, layout) in [
            ([2, 12, 17, 19], 4, TensorLayout.channelsFirst), ([1, 4, 4099], 1, .channelsFirst), ([2, 24, 6, 6], 8, .channelsLast),
            ([5, 8], 8, .channelsLast),
        ] {
            var harness = GroupNormBackwardHarness(op: .group(groups), shape: shape, offset: 1, scale: 2, seed: 8)
            harness.layout = layout
            for strategy in harness.strategies { try harness.check(on: .openCL(runtime), strategy: strategy, tuning: .gpuStyle) }
        }
    }

    /// 1e4 + N(0,1): a raw Σdy·x would cancel in float32 (1e4·Σdy swamps Σdy·(x − mean));
    /// the kernels centre on the saved mean. Also a constant group at 1e4 (variance 0,
    /// invstd 1/sqrt(eps)): dx must stay the reference's, not amplified rounding.
    @Test("large-mean data and a constant group keep full accuracy")
    func largeMean() throws {
        let runtime = try #require(sharedRuntime)
        for layout in TensorLayout.allCases {
            for elementType in ElementType.allCases {
                var harness = GroupNormBackwardHarness(
                    op: .group(4), shape: [2, 16, 9, 9], offset: 1e4, scale: elementType == .float16 ? 30 : 1, seed: 13)
                    .stored(as: elementType, layout)
                // Sample 0, group 1 constant.
                for c in 4..<8 {
                    for m in 0..<81 {
                        let i = layout == .channelsFirst ? c * 81 + m : m * 16 + c
                        harness.x[i] = 1e4
                    }
                }
                for strategy in harness.strategies { try harness.check(on: .openCL(runtime), strategy: strategy) }
            }
        }
    }

    @Test("the same input twice gives bit-identical dx, dγ and dβ on every strategy")
    func deterministic() throws {
        let runtime = try #require(sharedRuntime)
        for layout in TensorLayout.allCases {
            var harness = GroupNormBackwardHarness(op: .group(4), shape: [2, 16, 23, 11], offset: 3, seed: 17)
            harness.layout = layout
            let statistics = try harness.savedStatistics()
            for strategy in harness.strategies {
                for tuning: DeviceTuning? in [nil, .gpuStyle] {
                    let first = try harness.run(on: .openCL(runtime), statistics: statistics, strategy: strategy, tuning: tuning)
                    let second = try harness.run(on: .openCL(runtime), statistics: statistics, strategy: strategy, tuning: tuning)
                    let bits = { (values: [Float]?) in values?.map(\.bitPattern) }
                    #expect(bits(first.input) == bits(second.input), "dx \(layout) \(String(describing: strategy))")
                    #expect(bits(first.weight) == bits(second.weight), "dγ \(layout) \(String(describing: strategy))")
                    #expect(bits(first.bias) == bits(second.bias), "dβ \(layout) \(String(describing: strategy))")
                }
            }
        }
    }

    @Test("the forward-output overload equals passing the saved statistics")
    func forwardOverload() throws {
        for backend in allBackends {
            let harness = GroupNormBackwardHarness(op: .group(2), shape: [2, 4, 3, 3], seed: 2)
            let (input, dy, affine) = try harness.tensors(on: backend)
            let weight = try #require(affine)
            let out = try groupNorm(input, numGroups: 2, weight: weight)
            let viaForward = try groupNormBackward(dy, input: input, numGroups: 2, weight: weight, forward: out)
            let direct = try groupNormBackward(dy, input: input, numGroups: 2, weight: weight, savedStatisticsOf: out)
            try expectIdentical(viaForward, direct)
        }
    }

    @Test("the plan: fused rows for many rows, split planes for few, columns for NHWC")
    func planChoice() throws {
        let runtime = try #require(sharedRuntime)
        let cpu = DeviceTuning.cpuLike
        func plan(_ shape: [Int], _ groups: Int, _ layout: TensorLayout) throws -> GroupNormBackwardPlan.Strategy {
            let input = try Tensor(repeating: 0, shape: shape, layout: layout, on: .reference)
            let problem = try GroupNormProblem.validated(
                input: input, groups: groups, weight: nil, bias: nil, statistics: .input(savesVariance: false), eps: 1e-5,
                op: "GroupNorm")
            return GroupNormBackwardPlan(problem: problem, mask: .all, device: runtime.device, tuning: cpu).strategy
        }
        let target = runtime.device.computeUnits * 4
        #expect(try plan([8, 512, 32, 32], 32, .channelsFirst) == .fusedRows)
        #expect(try plan([2, 4, 5, 5], 2, .channelsFirst) == .fusedRows, "short planes are not split")
        if case .splitPlanes(let slices) = try plan([1, 1, 512, 512], 1, .channelsFirst) {
            #expect(slices == target)
        } else {
            Issue.record("one huge plane should be split")
        }
        if target > 1 {
            #expect(try plan([1, 64, 64, 64], 1, .channelsFirst) == .splitPlanes(slicesPerPlane: 1), "planes fill the device")
        }
        guard case .columns = try plan([1, 64, 128, 128], 64, .channelsLast) else {
            Issue.record("NHWC takes the column strategy")
            return
        }
    }
}
