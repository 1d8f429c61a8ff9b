import Testing
@testable import NormCL

/// BatchNorm's backward kernels against the reference: every layout, element type,
/// strategy and mask, awkward shapes, long reductions, large-mean data, determinism.
@Suite("BatchNorm backward")
struct BatchNormBackwardTests {
    /// Primes, sizes not a multiple of 4 or of a work-group, (N, C), 1-element spatial,
    /// 3-d, many channels, a long plane.
    static let shapes: [[Int]] = [
        [2, 3], [3, 5, 7], [2, 3, 5, 7], [4, 8, 9, 12], [5, 12, 1], [64, 12], [2, 7, 3, 2, 5], [1, 2, 4099], [3, 36, 5, 5],
    ]

    @Test("training matches the reference on every strategy", arguments: shapes, ElementType.allCases)
    func training(shape: [Int], elementType: ElementType) throws {
        let runtime = try #require(sharedRuntime)
        for layout in TensorLayout.allCases {
            let harness = BatchNormBackwardHarness(shape: shape, offset: 1, scale: 2, seed: UInt64(shape.reduce(1, *)))
                .stored(as: elementType, layout)
            for strategy in harness.strategies(mask: .all) {
                try harness.check(on: .openCL(runtime), strategy: strategy)
            }
        }
    }

    @Test("inference matches the reference on every strategy", arguments: [[2, 3], [3, 5, 7], [4, 8, 9, 12], [1, 2, 4099]], ElementType.allCases)
    func inference(shape: [Int], elementType: ElementType) throws {
        let runtime = try #require(sharedRuntime)
        for layout in TensorLayout.allCases {
            var harness = BatchNormBackwardHarness(shape: shape, offset: 1, scale: 2, seed: UInt64(shape.reduce(1, *)) + 5)
                .stored(as: elementType, layout)
            harness.mode = .inference
            for mask: NormGradientMask in [.all, .input] {
                for strategy in harness.strategies(mask: mask) {
                    try harness.check(on: .openCL(runtime), mask: mask, strategy: strategy)
                }
            }
        }
    }

    @Test(
        "every mask, with and without γ, on every strategy",
        arguments: [NormGradientMask.input, .weight, .bias, [.weight, .bias], [.input, .bias], .all])
    func masks(mask: NormGradientMask) throws {
        let runtime = try #require(sharedRuntime)
        for layout in TensorLayout.allCases {
            for affine in [true, false] {
                // Without γ only in training: the other modes share its γ-free code.
                let modes: [BatchNormBackwardHarness.Mode] =
                    affine ? [.training, .inference, .renorm(BatchRenormLimits(rmax: 2, dmax: 1))] : [.training]
                for mode in modes {
                    var harness = BatchNormBackwardHarness(shape: [3, 8, 5, 3], affine: affine, seed: 4)
                    harness.layout = layout
                    harness.mode = mode
                    for strategy in harness.strategies(mask: mask) {
                        try harness.check(on: .openCL(runtime), mask: mask, strategy: strategy)
                    }
                }
            }
        }
    }

    @Test("an empty mask computes nothing and enqueues nothing")
    func emptyMask() throws {
        for backend in allBackends {
            let result = try BatchNormBackwardHarness(shape: [2, 3, 4], seed: 1).run(on: backend, mask: [])
            #expect(result.dx == nil && result.dWeight == nil && result.dBias == nil && result.kernels.isEmpty)
        }
    }

    @Test("long reductions and large-mean data (1e4 + N(0,1)), both layouts and types")
    func longAndLargeMean() throws {
        let runtime = try #require(sharedRuntime)
        for (shape, offset) in [([1, 2, 70_001], 0.0), ([3, 1, 20_000], 1e4), ([8, 4, 23, 23], 1e4), ([6_000, 5], 1e4)] {
            for layout in TensorLayout.allCases {
                for elementType in ElementType.allCases {
                    // Half spacing at 1e4 is 8: use 1000 there, which half still resolves to 0.5.
                    let dataOffset = elementType == .float16 ? Swift.min(offset, 1000) : offset
                    let harness = BatchNormBackwardHarness(shape: shape, offset: dataOffset, seed: 9)
                        .stored(as: elementType, layout)
                    try harness.check(on: .openCL(runtime))
                }
            }
        }
    }

    @Test("GPU-style tuning: interleaved access, column tile 1, wide work-groups", arguments: [[2, 3, 37], [3, 8, 9, 9], [1, 4, 3000], [50, 6]])
    func interleavedTuning(shape: [Int]) throws {
        let runtime = try #require(sharedRuntime)
        let gpu = DeviceTuning.gpuStyle64
        for layout in TensorLayout.allCases {
            // Half storage on one shape: its loads and stores are the same macros on every path.
            for elementType in shape == [3, 8, 9, 9] ? ElementType.allCases : [.float32] {
                var harness = BatchNormBackwardHarness(shape: shape, offset: 3, seed: 8).stored(as: elementType, layout)
                harness.tuning = gpu
                for strategy in harness.strategies(mask: .all) {
                    try harness.check(on: .openCL(runtime), strategy: strategy)
                }
                harness.mode = .inference
                try harness.check(on: .openCL(runtime), mask: .input)
                try harness.check(on: .openCL(runtime), mask: .all)
            }
        }
    }

    @Test("the same input twice gives bit-identical gradients")
    func deterministic() throws {
        let runtime = try #require(sharedRuntime)
        for layout in TensorLayout.allCases {
            var harness = BatchNormBackwardHarness(shape: [4, 6, 31, 17], offset: 2, seed: 12)
            harness.layout = layout
            for strategy in harness.strategies(mask: .all) {
                let first = try harness.run(on: .openCL(runtime), strategy: strategy)
                let second = try harness.run(on: .openCL(runtime), strategy: strategy)
                #expect(first.dx?.map(\.bitPattern) == second.dx?.map(\.bitPattern))
                #expect(first.dWeight?.map(\.bitPattern) == second.dWeight?.map(\.bitPattern))
                #expect(first.dBias?.map(\.bitPattern) == second.dBias?.map(\.bitPattern))
            }
        }
    }

    @Test("NaN in dy poisons its channel only; Inf in dy gives an infinite dβ")
    func nonFinite() throws {
        for backend in allBackends {
            for layout in TensorLayout.allCases {
                var harness = BatchNormBackwardHarness(shape: [3, 4, 5], seed: 3)
                harness.layout = layout
                let index = ReferenceBatchNorm.Indexing(batch: 3, channels: 4, spatial: 5, layout: layout)
                harness.dy[index(1, 2, 3)] = .nan
                harness.dy[index(2, 1, 0)] = .infinity
                let result = try harness.run(on: backend)
                let dBias = try #require(result.dBias), dWeight = try #require(result.dWeight), dx = try #require(result.dx)
                #expect(dBias[2].isNaN && dWeight[2].isNaN)
                #expect(dBias[1] == .infinity)
                #expect(dBias[0].isFinite && dBias[3].isFinite && dWeight[0].isFinite && dWeight[3].isFinite)
                for b in 0..<3 {
                    for m in 0..<5 {
                        #expect(dx[index(b, 2, m)].isNaN)
                        #expect(dx[index(b, 0, m)].isFinite && dx[index(b, 3, m)].isFinite)
                    }
                }
            }
        }
    }

    @Test("the plan's choices on this device", arguments: [[32, 64, 56, 56], [1, 2, 65_536], [2, 3], [256, 2048]])
    func planChoices(shape: [Int]) throws {
        let runtime = try #require(sharedRuntime)
        for layout in TensorLayout.allCases {
            for mode in [BatchNormBackwardProblem.Mode.training, .inference] {
                for mask: NormGradientMask in [.all, .input] {
                    let problem = BatchNormBackwardProblem(
                        shape: shape, layout: layout, elementType: .float32, mode: mode, hasWeight: true, outputMask: mask)
                    let plan = BatchNormPlan(problem: problem, device: runtime.device, tuning: runtime.tuning)
                    switch plan.strategy {
                    case .elementwise: #expect(mode == .inference && mask == .input)
                    case .columns, .splitColumns: #expect(problem.isRowsByChannels && problem.needsSums)
                    case .fusedPerChannel, .channelItems, .splitReduction: #expect(!problem.isRowsByChannels && problem.needsSums)
                    }
                }
            }
        }
    }
}
