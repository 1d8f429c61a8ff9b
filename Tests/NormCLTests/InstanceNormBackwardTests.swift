import Testing
@testable import NormCL

/// InstanceNorm backward on OpenCL against the float64 reference, with the input's
/// statistics and with running statistics (inference mode): every strategy, both
/// layouts and element types, masks, large-mean data.
@Suite("InstanceNorm backward")
struct InstanceNormBackwardTests {
    static let shapes: [[Int]] = [
        [2, 3, 5, 7],  // odd spatial, C % 4 != 0
        [3, 8, 16],  // float4 loads and channel vectors
        [1, 4, 4099],  // long prime planes, few of them
        [2, 68, 3, 3],  // several column tiles
    ]

    @Test("input statistics: every strategy, NCHW and NHWC, f32 and f16", arguments: shapes)
    func inputStatistics(shape: [Int]) throws {
        let runtime = try #require(sharedRuntime)
        for layout in TensorLayout.allCases {
            // Half storage on the first shape only (each shape and type is a kernel build).
            for elementType in shape == Self.shapes[0] ? ElementType.allCases : [.float32] {
                let harness = GroupNormBackwardHarness(
                    op: .instance, shape: shape, offset: 1, scale: 2, affine: layout == .channelsFirst,
                    seed: UInt64(shape.reduce(1, *)))
                    .stored(as: elementType, layout)
                for strategy in harness.strategies { try harness.check(on: .openCL(runtime), strategy: strategy) }
            }
        }
    }

    @Test("running statistics: dx = dy·γ·invstd, dγ over (x − running mean), every strategy", arguments: [
        [2, 3, 5, 7], [1, 4, 4099], [3, 5, 1],
    ])
    func runningStatistics(shape: [Int]) throws {
        let runtime = try #require(sharedRuntime)
        for layout in TensorLayout.allCases {
            for elementType in shape == [2, 3, 5, 7] ? ElementType.allCases : [.float32] {
                let harness = GroupNormBackwardHarness(
                    op: .instanceRunning, shape: shape, offset: 1, scale: 2, affine: layout == .channelsLast,
                    seed: UInt64(shape.reduce(1, *)) + 1)
                    .stored(as: elementType, layout)
                for strategy in harness.strategies { try harness.check(on: .openCL(runtime), strategy: strategy) }
            }
        }
    }

    @Test("masks and GPU-style tuning, both statistics modes")
    func masksAndTuning() throws {
        let runtime = try #require(sharedRuntime)
        for op in [GroupNormBackwardHarness.Op.instance, .instanceRunning] {
            for layout in TensorLayout.allCases {
                var harness = GroupNormBackwardHarness(op: op, shape: [2, 12, 7, 5], seed: 31)
                harness.layout = layout
                for mask: NormGradientMask in [.input, [.weight, .bias]] {
                    harness.mask = mask
                    for strategy in harness.strategies.dropFirst() {
                        try harness.check(on: .openCL(runtime), strategy: strategy)
                    }
                }
                harness.mask = .all
                for strategy in harness.strategies { try harness.check(on: .openCL(runtime), strategy: strategy, tuning: .gpuStyle) }
            }
        }
    }

    @Test("large-mean data (1e4 + N(0,1)) in both modes")
    func largeMean() throws {
        let runtime = try #require(sharedRuntime)
        for op in [GroupNormBackwardHarness.Op.instance, .instanceRunning] {
            for layout in TensorLayout.allCases {
                var harness = GroupNormBackwardHarness(op: op, shape: [2, 8, 9, 9], offset: 1e4, seed: 41)
                harness.layout = layout
                for strategy in harness.strategies { try harness.check(on: .openCL(runtime), strategy: strategy) }
            }
        }
    }

    @Test("equals GroupNorm backward with G = C; forward-output overload", arguments: BackendChoice.allCases)
    func groupNormWithOneGroupPerChannel(choice: BackendChoice) throws {
        let backend = try choice.backend()
        let harness = GroupNormBackwardHarness(op: .instance, shape: [2, 6, 4, 5], seed: 7).stored(as: .float32, .channelsLast)
        let (input, dy, affine) = try harness.tensors(on: backend)
        let weight = try #require(affine)
        let out = try instanceNorm(input, weight: weight)
        let instance = try instanceNormBackward(dy, input: input, weight: weight, forward: out)
        let group = try groupNormBackward(dy, input: input, numGroups: 6, weight: weight, savedStatisticsOf: GroupNormOutput(out))
        try expectIdentical(instance, group)
    }

    @Test("bit-identical results on repeated runs, both modes")
    func deterministic() throws {
        let runtime = try #require(sharedRuntime)
        for op in [GroupNormBackwardHarness.Op.instance, .instanceRunning] {
            var harness = GroupNormBackwardHarness(op: op, shape: [2, 12, 33, 7], offset: 2, seed: 5)
            harness.layout = .channelsLast
            let statistics = try harness.savedStatistics()
            for strategy in harness.strategies {
                let first = try harness.run(on: .openCL(runtime), statistics: statistics, strategy: strategy)
                let second = try harness.run(on: .openCL(runtime), statistics: statistics, strategy: strategy)
                #expect(first.input?.map(\.bitPattern) == second.input?.map(\.bitPattern))
                #expect(first.weight?.map(\.bitPattern) == second.weight?.map(\.bitPattern))
                #expect(first.bias?.map(\.bitPattern) == second.bias?.map(\.bitPattern))
            }
        }
    }
}
