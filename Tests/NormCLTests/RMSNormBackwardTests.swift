import Testing
@testable import NormCL

/// RMSNorm backward on OpenCL against the float64 reference (both fed the same saved
/// `rstd`): awkward shapes, both element types, γ on/off, masks, every strategy with
/// and without the fused dγ reduction, GPU-style kernels, bit-identical repeats. The
/// kernels are LayerNorm's with `-D RMS=1`; this suite covers what RMS changes.
@Suite("RMSNorm backward")
struct RMSNormBackwardTests {
    static let shapes: [([Int], [Int])] = [
        ([3, 1], [1]), ([1, 2], [2]), ([17, 13], [13]), ([2, 3, 4], [3, 4]), ([6, 257], [257]), ([3, 1023], [1023]),
        ([2, 4100], [4100]), ([131, 64], [64]),
    ]

    /// Each shape in float32 with γ, and in half storage with γ on every other shape.
    @Test("matches the reference: shapes × element types, γ on/off", arguments: shapes.indices)
    func sweep(index: Int) throws {
        try RowNormBackwardHarness.checkSweep(.rmsNorm, shape: Self.shapes[index], index: index)
    }

    @Test("strategies, fusion, masks, GPU-style kernels and large-magnitude rows")
    func paths() throws {
        let backend = Backend.openCL(try #require(sharedRuntime))
        let harness = try RowNormBackwardHarness(.rmsNorm, shape: [37, 1000], normalizedShape: [1000], seed: 3)
        for strategy in [
            RowNormPlan.Strategy.fused(itemsPerRow: 1, rowsPerGroup: 4), .fused(itemsPerRow: 16, rowsPerGroup: 2),
            .splitRows(slices: 7, itemsPerSlice: 4),
        ] {
            try harness.check(on: backend, strategy: strategy)
        }
        try harness.check(on: backend, fuseParameters: false)
        for mask in [NormGradientMask.input, .weight, .bias] { try harness.check(on: backend, mask: mask) }
        let odd = try RowNormBackwardHarness(.rmsNorm, shape: [300, 13], normalizedShape: [13], elementType: .float16, seed: 4)
        for tuning in [nil, DeviceTuning.gpuStyle] {
            try odd.check(on: backend, tuning: tuning)
            try harness.check(on: backend, tuning: tuning)
        }
        let large = try RowNormBackwardHarness(.rmsNorm, shape: [6, 4099], normalizedShape: [4099], offset: 1e4)
        try large.check(on: backend)
    }

    @Test("bit-identical dx and dγ when run twice")
    func deterministic() throws {
        let backend = Backend.openCL(try #require(sharedRuntime))
        let harness = try RowNormBackwardHarness(.rmsNorm, shape: [2000, 72], normalizedShape: [72], seed: 6)
        for tuning in [nil, DeviceTuning.gpuStyle] {
            let first = try harness.run(on: backend, tuning: tuning), second = try harness.run(on: backend, tuning: tuning)
            #expect(try first.dx?.toArray().map(\.bitPattern) == second.dx?.toArray().map(\.bitPattern))
            #expect(try first.dWeight?.toArray().map(\.bitPattern) == second.dWeight?.toArray().map(\.bitPattern))
            #expect(first.dBias == nil)
        }
    }
}
