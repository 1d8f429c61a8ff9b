import Testing
@testable import NormCL

/// BatchNorm training forward on OpenCL against the float64 reference.
@Suite("BatchNorm training forward")
struct BatchNormTrainingTests {
    /// Awkward shapes: 1×1-like, primes, sizes that are no multiple of any work-group
    /// or vector width, 1d/2d/3d, many tiny channels and few long ones.
    static let shapes: [[Int]] = [
        [2, 1], [1, 1, 2], [3, 5], [7, 3, 11], [2, 3, 5, 7], [5, 7, 13, 17], [2, 3, 2, 3, 5],
        [1, 1, 4099], [2, 13, 8, 8], [16, 3, 33, 33], [4, 6, 17, 19], [64, 512], [256, 37], [3, 2, 1, 1], [37, 8], [1000, 20], [5, 4096],
        [2, 64, 56, 56], [1, 2, 65_537],
    ]

    @Test("matches the reference with the automatic plan", arguments: shapes)
    func automaticPlan(shape: [Int]) throws {
        let runtime = try #require(sharedRuntime)
        try BatchNormHarness(shape: shape, seed: UInt64(shape.reduce(1, *))).check(on: .openCL(runtime), training: true)
    }

    @Test("matches the reference with each strategy forced", arguments: shapes)
    func everyStrategy(shape: [Int]) throws {
        let runtime = try #require(sharedRuntime)
        let harness = BatchNormHarness(shape: shape, seed: UInt64(shape.count * 7919))
        var strategies: [BatchNormPlan.Strategy] = [
            .fusedPerChannel, .channelItems, .splitReduction(groupsPerChannel: 3), .splitReduction(groupsPerChannel: 64),
        ]
        if shape.count == 2 || shape.dropFirst(2).allSatisfy({ $0 == 1 }) { strategies.append(.columns) }
        for strategy in strategies {
            try harness.check(on: .openCL(runtime), training: true, strategy: strategy)
        }
    }

    @Test("affine off, and weight or bias alone", arguments: [[4, 3, 5, 5], [9, 8]])
    func partialAffine(shape: [Int]) throws {
        let runtime = try #require(sharedRuntime)
        var harness = BatchNormHarness(shape: shape, affine: false)
        try harness.check(on: .openCL(runtime), training: true)
        let full = BatchNormHarness(shape: shape)
        harness.weight = full.weight
        try harness.check(on: .openCL(runtime), training: true)
        harness.weight = nil
        harness.bias = full.bias
        try harness.check(on: .openCL(runtime), training: true)
    }

    @Test("without running statistics")
    func noRunningStatistics() throws {
        let runtime = try #require(sharedRuntime)
        try BatchNormHarness(shape: [6, 5, 7, 3], tracking: false).check(on: .openCL(runtime), training: true)
    }
}
