import Testing
@testable import NormCL

/// LayerNorm on OpenCL against the float64 reference: a shape sweep with awkward
/// sizes, every affine variant, both element types, large-mean data, every plan
/// strategy forced, and the GPU-style interleaved kernels.
@Suite("LayerNorm forward")
struct LayerNormTests {
    /// (input shape, normalizedShape): 1-element rows, primes, D not a multiple of 4,
    /// rows not a multiple of a work-group, rank 1 and rank 4 input, several
    /// normalized dims.
    static let shapes: [([Int], [Int])] = [
        ([3, 1], [1]), ([5, 7], [7]), ([4, 16], [16]), ([17, 13], [13]), ([33, 100], [100]),
        ([6, 257], [257]), ([2, 3, 4], [3, 4]), ([7], [7]), ([2, 2, 5, 6], [5, 6]), ([19, 2048], [2048]),
    ]

    static let cases: [(shape: [Int], normalized: [Int], type: ElementType)] =
        shapes.flatMap { s in ElementType.allCases.map { (s.0, s.1, $0) } }

    @Test("matches the reference: shapes × element types × affine variants", arguments: cases)
    func sweep(shape: [Int], normalized: [Int], type: ElementType) throws {
        let backend = Backend.openCL(try #require(sharedRuntime))
        for (affine, bias) in [(true, true), (true, false), (false, false)] {
            let harness = RowNormHarness(
                .layerNorm, shape: shape, normalizedShape: normalized, elementType: type, affine: affine, bias: bias)
            try harness.check(on: backend)
        }
    }

    @Test("every strategy and geometry, forced", arguments: RowNormPlan.Strategy.everyGeometry)
    func strategies(strategy: RowNormPlan.Strategy) throws {
        let backend = Backend.openCL(try #require(sharedRuntime))
        // Rows not a multiple of rowsPerGroup; D prime (scalar loads) and D % 4 == 0.
        for (shape, type) in [([37, 1000], ElementType.float32), ([5, 4099], .float32), ([9, 300], .float16)] {
            let harness = RowNormHarness(.layerNorm, shape: shape, normalizedShape: [shape[1]], elementType: type, seed: 3)
            try harness.check(on: backend, strategy: strategy)
        }
    }

    @Test("GPU-style interleaved kernels (chunkedAccess == false)")
    func interleaved() throws {
        let backend = Backend.openCL(try #require(sharedRuntime))
        for (shape, type) in [([37, 1000], ElementType.float32), ([4, 4099], .float16), ([64, 12], .float32)] {
            let harness = RowNormHarness(.layerNorm, shape: shape, normalizedShape: [shape[1]], elementType: type, seed: 4)
            try harness.check(on: backend, tuning: .gpuStyle)
            try harness.check(on: backend, strategy: .splitRows(slices: 5, itemsPerSlice: 32), tuning: .gpuStyle)
        }
    }

    @Test("large-mean data (1e4 + N(0,1)) keeps full precision on every path")
    func largeMean() throws {
        let backend = Backend.openCL(try #require(sharedRuntime))
        for type in ElementType.allCases {
            let (offset, scale) = type.largeMeanData
            let harness = RowNormHarness(
                .layerNorm, shape: [6, 4099], normalizedShape: [4099], elementType: type, offset: offset, scale: scale)
            try harness.check(on: backend)
            try harness.check(on: backend, strategy: .fused(itemsPerRow: 8, rowsPerGroup: 2))
            try harness.check(on: backend, strategy: .splitRows(slices: 4, itemsPerSlice: 2))
        }
        let long = RowNormHarness(.layerNorm, shape: [2, 131_072], normalizedShape: [131_072], offset: -1e4, seed: 9)
        try long.check(on: backend)
    }

    @Test("constant rows at a large magnitude normalise to exactly β")
    func constantRows() throws {
        let runtime = try #require(sharedRuntime)
        let d = 1000
        let x = (0..<4 * d).map { i in Float(1e4) + Float(i / d) * 0.5 }
        let bias = (0..<d).map { Float($0 % 7) - 3 }
        let weight = [Float](repeating: 2, count: d)
        for strategy in [RowNormPlan.Strategy.fused(itemsPerRow: 1, rowsPerGroup: 2), .splitRows(slices: 3, itemsPerSlice: 4)] {
            let out = try layerNorm(
                try Tensor(x, shape: [4, d], on: .openCL(runtime)), normalizedShape: [d],
                weight: try Tensor(weight, on: .openCL(runtime)), bias: try Tensor(bias, on: .openCL(runtime)), eps: 1e-5,
                strategy: strategy, tuning: nil)
            #expect(try out.output.toArray() == (0..<4).flatMap { _ in bias }, "\(strategy)")
            #expect(try out.saveMean.toArray() == [1e4, 1e4 + 0.5, 1e4 + 1, 1e4 + 1.5])
            #expect(try out.saveInvstd.toArray().allSatisfy { $0 == 1 / Float(1e-5).squareRoot() })
        }
    }

    @Test("NaN and Inf poison only their own row")
    func nonFinite() throws {
        let backend = Backend.openCL(try #require(sharedRuntime))
        var harness = RowNormHarness(.layerNorm, shape: [5, 300], normalizedShape: [300], seed: 5)
        harness.x[1 * 300 + 17] = .nan
        harness.x[3 * 300 + 299] = .infinity
        let expected = try harness.run(on: .reference)
        #expect(expected.output[300..<600].allSatisfy(\.isNaN) && expected.output[900..<1200].allSatisfy(\.isNaN))
        try harness.check(on: backend)
        try harness.check(on: backend, strategy: .fused(itemsPerRow: 4, rowsPerGroup: 2))
        try harness.check(on: backend, strategy: .splitRows(slices: 3, itemsPerSlice: 2))
    }

    @Test("the plan: fused for many rows, split for few long rows; GPU tuning widens the groups")
    func planChoice() throws {
        let runtime = try #require(sharedRuntime)
        func plan(_ shape: [Int], tuning: DeviceTuning? = nil) throws -> RowNormPlan {
            let input = Tensor(shape: shape, layout: .channelsFirst, storage: .host([0]))
            let problem = try RowNormProblem.validated(
                .layerNorm, input: input, normalizedShape: [shape.last!], weight: nil, bias: nil, eps: 1e-5)
            return RowNormPlan(problem: problem, device: runtime.device, tuning: tuning ?? runtime.tuning)
        }
        let cpu = DeviceTuning.cpuLike
        guard case .fused(1, let rowsPerGroup) = try plan([8192, 1024], tuning: cpu).strategy else {
            Issue.record("CPU tuning, many rows: expected a fused plan with one work-item per row")
            return
        }
        #expect(rowsPerGroup >= 1 && rowsPerGroup <= 16)
        guard case .splitRows(let slices, 1) = try plan([2, 1 << 20], tuning: cpu).strategy else {
            Issue.record("CPU tuning, 2 long rows: expected a split plan")
            return
        }
        #expect(slices > 1)
        #expect(try plan([2, 1000], tuning: cpu).strategy == .fused(itemsPerRow: 1, rowsPerGroup: 1))
        #expect(try plan([4096, 4096], tuning: .gpuStyle).strategy == .fused(itemsPerRow: 256, rowsPerGroup: 1))
        #expect(try plan([4096, 64], tuning: .gpuStyle).strategy == .fused(itemsPerRow: 4, rowsPerGroup: 64))
        #expect(try plan([3, 32], tuning: cpu).vectorWidth == 4)
        #expect(try plan([3, 30], tuning: cpu).vectorWidth == 1)
    }

    @Test("layer struct and host-array entry point agree with the functional op")
    func layerAndHostArrays() throws {
        for backend in allBackends {
            var layer = try LayerNorm(normalizedShape: [3, 4], on: backend)
            #expect(try layer.weight?.toArray() == [Float](repeating: 1, count: 12))
            #expect(try layer.bias?.toArray() == [Float](repeating: 0, count: 12))
            var rng = SeededGenerator(seed: 11)
            let values = rng.normals(24, offset: 2)
            let input = try Tensor(values, shape: [2, 3, 4], on: backend)
            let plain = try layerNorm(input, normalizedShape: [3, 4]).output.toArray()
            #expect(try layer(input).toArray() == plain)
            #expect(try layerNorm(values, shape: [2, 3, 4], normalizedShape: [3, 4], on: backend) == plain)
            layer.weight = try Tensor([Float](repeating: 2, count: 12), shape: [3, 4], on: backend)
            let doubled = try layer(input).toArray()
            expectClose(doubled, plain.map { 2 * $0 }, "γ = 2 doubles \(backend.name)", relative: 1e-6, absolute: 1e-6)
            let bare = try LayerNorm(normalizedShape: [4], elementwiseAffine: false, on: backend)
            #expect(bare.weight == nil && bare.bias == nil)
            let noBias = try LayerNorm(normalizedShape: [4], bias: false, on: backend)
            #expect(noBias.weight != nil && noBias.bias == nil)
        }
    }

    @Test("rank-2 channels-last input is the same memory as channels-first")
    func rankTwoChannelsLast() throws {
        for backend in allBackends {
            var rng = SeededGenerator(seed: 12)
            let values = rng.normals(40)
            let first = try layerNorm(try Tensor(values, shape: [5, 8], on: backend), normalizedShape: [8])
            let last = try layerNorm(try Tensor(values, shape: [5, 8], layout: .channelsLast, on: backend), normalizedShape: [8])
            #expect(last.output.layout == .channelsLast)
            #expect(try last.output.toArray() == first.output.toArray())
        }
    }
}
