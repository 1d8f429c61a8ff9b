import Testing
@testable import NormCL

/// BatchNorm with half-precision storage (float32 statistics and arithmetic) on every
/// strategy and both layouts, against the reference on the same half values.
@Suite("BatchNorm half storage")
struct BatchNormHalfTests {
    static let shapes: [[Int]] = [[2, 1], [3, 5, 7], [2, 3, 5, 7], [4, 8, 9, 12], [16, 3, 33, 33], [64, 12], [1, 2, 4099]]

    /// Every strategy that applies to `shape` in `layout`.
    static func strategies(_ shape: [Int], _ layout: TensorLayout) -> [BatchNormPlan.Strategy?] {
        let rowsByChannels = layout == .channelsLast || shape.dropFirst(2).allSatisfy { $0 == 1 }
        return rowsByChannels
            ? [nil, .columns, .splitColumns(rowGroups: 3)]
            : [nil, .fusedPerChannel, .channelItems, .splitReduction(groupsPerChannel: 3)]
    }

    @Test("training and inference match the reference", arguments: shapes, TensorLayout.allCases)
    func halfStorage(shape: [Int], layout: TensorLayout) throws {
        let runtime = try #require(sharedRuntime)
        var harness = BatchNormHarness(shape: shape, offset: 1, scale: 2, seed: UInt64(shape.reduce(1, *)) &+ 11)
        harness.layout = layout
        harness.elementType = .float16
        for strategy in Self.strategies(shape, layout) {
            try harness.check(on: .openCL(runtime), training: true, strategy: strategy)
        }
        try harness.check(on: .openCL(runtime), training: false)
    }

    @Test("large-mean half data (1000 + N(0,1)) keeps float32 statistics")
    func largeMean() throws {
        let runtime = try #require(sharedRuntime)
        // Half spacing at 1000 is 0.5: the data is coarse, but both sides see the same values.
        var harness = BatchNormHarness(shape: [8, 4, 16, 16], offset: 1000, seed: 5)
        harness.elementType = .float16
        try harness.check(on: .openCL(runtime), training: true)
    }

    @Test("half tensors round to nearest even and read back as the stored halves")
    func roundTrip() throws {
        for backend in allBackends {
            let values: [Float] = [1, 1.00048828125, 1.000732421875, 65504, 70000, -0.1, 0x1p-24, .nan]
            let tensor = try Tensor(values, shape: [values.count], elementType: .float16, on: backend)
            let back = try tensor.toArray()
            // 1 + 2^-11 is a tie: to even (1); 1 + 3·2^-12 rounds up to 1 + 2^-10; 70000 overflows to +inf.
            #expect(Array(back.prefix(7)) == [1, 1, 1.0009765625, 65504, .infinity, Float(Float16(-0.1)), 0x1p-24])
            #expect(back[7].isNaN)
        }
    }

    @Test("half parameters are rejected: parameters are float32")
    func halfParameters() throws {
        for backend in allBackends {
            let input = try Tensor(repeating: 1, shape: [2, 3, 4], elementType: .float16, on: backend)
            let weight = try Tensor([1, 1, 1], shape: [3], elementType: .float16, on: backend)
            #expect(throws: NormError.self) { try batchNorm(input, weight: weight) }
        }
    }
}
