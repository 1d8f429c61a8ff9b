import Testing
@testable import NormCL

/// RMSNorm on OpenCL against the float64 reference: shapes, weight on/off, both
/// element types, the eps default, large values, long rows, every strategy.
@Suite("RMSNorm forward")
struct RMSNormTests {
    static let shapes: [([Int], [Int])] = [
        ([3, 1], [1]), ([5, 7], [7]), ([17, 13], [13]), ([33, 100], [100]), ([6, 257], [257]),
        ([2, 3, 4], [3, 4]), ([7], [7]), ([19, 2048], [2048]),
    ]

    static let cases: [(shape: [Int], normalized: [Int], type: ElementType)] =
        shapes.flatMap { s in ElementType.allCases.map { (s.0, s.1, $0) } }

    @Test("matches the reference: shapes × element types × weight on/off", arguments: cases)
    func sweep(shape: [Int], normalized: [Int], type: ElementType) throws {
        let backend = Backend.openCL(try #require(sharedRuntime))
        for affine in [true, false] {
            let harness = RowNormHarness(.rmsNorm, shape: shape, normalizedShape: normalized, elementType: type, affine: affine, eps: 1e-6)
            try harness.check(on: backend)
        }
    }

    @Test("every strategy forced, and the GPU-style interleaved kernels", arguments: [
        RowNormPlan.Strategy.fused(itemsPerRow: 1, rowsPerGroup: 3), .fused(itemsPerRow: 8, rowsPerGroup: 2),
        .splitRows(slices: 5, itemsPerSlice: 1), .splitRows(slices: 3, itemsPerSlice: 8),
    ])
    func strategies(strategy: RowNormPlan.Strategy) throws {
        let backend = Backend.openCL(try #require(sharedRuntime))
        for (shape, type) in [([11, 1000], ElementType.float32), ([4, 4099], .float32), ([5, 300], .float16)] {
            let harness = RowNormHarness(.rmsNorm, shape: shape, normalizedShape: [shape[1]], elementType: type, offset: 0.3, seed: 7)
            try harness.check(on: backend, strategy: strategy)
            try harness.check(on: backend, strategy: strategy, tuning: .gpuStyle)
        }
    }

    @Test("eps nil is the element type's epsilon (PyTorch eps=None)")
    func defaultEps() throws {
        let backend = Backend.openCL(try #require(sharedRuntime))
        for type in ElementType.allCases {
            // Values so small that mean(x²) is below eps: the default decides the result.
            let scale = type == .float32 ? 1e-4 : 0.01
            var harness = RowNormHarness(.rmsNorm, shape: [4, 64], normalizedShape: [64], elementType: type, scale: scale, eps: nil)
            try harness.check(on: backend)
            let defaulted = try harness.run(on: backend).output
            harness.eps = type.epsilon
            #expect(try harness.run(on: backend).output == defaulted, "\(type)")
            harness.eps = 1e-5
            #expect(try harness.run(on: backend).output != defaulted, "eps matters for this data (\(type))")
        }
        #expect(ElementType.float32.epsilon == 0x1p-23 && ElementType.float16.epsilon == 0x1p-10)
    }

    @Test("large values and long rows: float32 sums of squares stay accurate")
    func largeValuesAndLongRows() throws {
        let backend = Backend.openCL(try #require(sharedRuntime))
        // Half storage of values near 1000: x² overflows half, not the float32 sums.
        let halfLarge = RowNormHarness(.rmsNorm, shape: [3, 1000], normalizedShape: [1000], elementType: .float16, offset: 1000, scale: 20)
        try halfLarge.check(on: backend)
        let large = RowNormHarness(.rmsNorm, shape: [3, 4099], normalizedShape: [4099], offset: 1e4, eps: 1e-6)
        try large.check(on: backend)
        let long = RowNormHarness(.rmsNorm, shape: [2, 131_072], normalizedShape: [131_072], offset: 1, eps: 1e-6, seed: 8)
        try long.check(on: backend)
        try long.check(on: backend, strategy: .fused(itemsPerRow: 1, rowsPerGroup: 1))
    }

    @Test("NaN and Inf poison only their own row")
    func nonFinite() throws {
        let backend = Backend.openCL(try #require(sharedRuntime))
        var harness = RowNormHarness(.rmsNorm, shape: [4, 200], normalizedShape: [200], eps: 1e-6, seed: 5)
        harness.x[1 * 200 + 3] = .nan
        harness.x[2 * 200 + 199] = -.infinity
        let expected = try harness.run(on: .reference)
        #expect(expected.output[200..<400].allSatisfy { $0.isNaN })
        #expect(expected.output[0..<200].allSatisfy { $0.isFinite } && expected.output[600..<800].allSatisfy { $0.isFinite })
        try harness.check(on: backend)
        try harness.check(on: backend, strategy: .splitRows(slices: 3, itemsPerSlice: 2))
    }

    @Test("layer struct and host-array entry point agree with the functional op")
    func layerAndHostArrays() throws {
        for backend in allBackends {
            let layer = try RMSNorm(normalizedShape: [6], eps: 1e-6, on: backend)
            #expect(try layer.weight?.toArray() == [Float](repeating: 1, count: 6))
            var rng = SeededGenerator(seed: 13)
            let values = rng.normals(18, offset: 1)
            let input = try Tensor(values, shape: [3, 6], on: backend)
            let plain = try rmsNorm(input, normalizedShape: [6], eps: 1e-6)
            #expect(try layer(input).toArray() == plain.output.toArray())
            #expect(try rmsNorm(values, shape: [3, 6], normalizedShape: [6], eps: 1e-6, on: backend) == plain.output.toArray())
            #expect(plain.saveInvRms.shape == [3])
            #expect(try RMSNorm(normalizedShape: [6], elementwiseAffine: false, on: backend).weight == nil)
            #expect(try RMSNorm(normalizedShape: [6], on: backend).eps == nil)
        }
    }
}
