import Testing
@testable import NormCL

/// LayerNorm backward on OpenCL against the float64 reference (both fed the same saved
/// statistics): a shape sweep with awkward sizes, both element types, γ on/off, every
/// mask, every strategy forced with and without the fused parameter reduction, the
/// GPU-style kernels, large-mean rows, and bit-identical repeats.
@Suite("LayerNorm backward")
struct LayerNormBackwardTests {
    /// (input shape, normalizedShape): D = 1, 2, 3, primes, non-multiples of 4, 1023,
    /// 4096+; rows = 1, primes, more than a work-group; rank 1 and rank 4 input.
    static let shapes: [([Int], [Int])] = [
        ([3, 1], [1]), ([1, 2], [2]), ([5, 3], [3]), ([7], [7]), ([17, 13], [13]), ([33, 100], [100]),
        ([2, 3, 4], [3, 4]), ([2, 2, 5, 6], [5, 6]), ([6, 257], [257]), ([3, 1023], [1023]), ([4, 4100], [4100]),
        ([131, 64], [64]), ([1, 4096], [4096]),
    ]

    /// Each shape in float32 with γ, and in half storage with γ on every other shape
    /// (every kernel variant compiles once per shape: keeping the cases few keeps the
    /// suite's PoCL compile time down).
    @Test("matches the reference: shapes × element types, γ on/off", arguments: shapes.indices)
    func sweep(index: Int) throws {
        try RowNormBackwardHarness.checkSweep(.layerNorm, shape: Self.shapes[index], index: index)
    }

    @Test("every strategy and geometry, fused and unfused parameter reduction", arguments: RowNormPlan.Strategy.everyGeometry)
    func strategies(strategy: RowNormPlan.Strategy) throws {
        let backend = Backend.openCL(try #require(sharedRuntime))
        // Rows not a multiple of rowsPerGroup and more than a lane's block; D prime
        // (scalar loads) and D % 4 == 0; the unfused parameter pass where it differs.
        let isFused = if case .fused = strategy { true } else { false }
        for (shape, type) in [([37, 1000], ElementType.float32), ([300, 13], .float16)] {
            let harness = try RowNormBackwardHarness(.layerNorm, shape: shape, normalizedShape: [shape[1]], elementType: type, seed: 3)
            try harness.check(on: backend, strategy: strategy)
            if isFused && type == .float32 { try harness.check(on: backend, strategy: strategy, fuseParameters: false) }
        }
    }

    @Test("each output mask skips what it leaves out", arguments: [
        NormGradientMask.input, [.weight], [.bias], [.weight, .bias], [.input, .weight], [.input, .bias], [],
    ])
    func masks(mask: NormGradientMask) throws {
        let backend = Backend.openCL(try #require(sharedRuntime))
        let harness = try RowNormBackwardHarness(.layerNorm, shape: [37, 100], normalizedShape: [100], seed: 5)
        try harness.check(on: backend, mask: mask)
        if mask == .input || mask == [.weight, .bias] {
            try harness.check(on: backend, mask: mask, strategy: .splitRows(slices: 3, itemsPerSlice: 4))
            try harness.check(on: backend, mask: mask, fuseParameters: false)
        }
    }

    @Test("GPU-style interleaved kernels (chunkedAccess == false)")
    func interleaved() throws {
        let backend = Backend.openCL(try #require(sharedRuntime))
        // Registers hold the column partials (≤ 8 vectors per work-item), global memory
        // when a work-item has more (4099 with 1 work-item per row), D = 1, split rows.
        for (shape, type) in [([37, 1000], ElementType.float32), ([4, 4099], .float16), ([600, 12], .float32), ([3, 1], .float32)] {
            let harness = try RowNormBackwardHarness(.layerNorm, shape: shape, normalizedShape: [shape[1]], elementType: type, seed: 4)
            try harness.check(on: backend, tuning: .gpuStyle)
        }
        let harness = try RowNormBackwardHarness(.layerNorm, shape: [37, 1000], normalizedShape: [1000], seed: 4)
        try harness.check(on: backend, strategy: .fused(itemsPerRow: 1, rowsPerGroup: 4), tuning: .gpuStyle)
        try harness.check(on: backend, fuseParameters: false, tuning: .gpuStyle)
        try harness.check(on: backend, strategy: .splitRows(slices: 5, itemsPerSlice: 32), tuning: .gpuStyle)
    }

    @Test("large-mean rows (1e4 + N(0,1)) on every path")
    func largeMean() throws {
        let backend = Backend.openCL(try #require(sharedRuntime))
        for type in ElementType.allCases {
            let (offset, scale) = type.largeMeanData
            let harness = try RowNormBackwardHarness(
                .layerNorm, shape: [6, 4099], normalizedShape: [4099], elementType: type, offset: offset, scale: scale)
            try harness.check(on: backend)
            if type == .float32 {
                try harness.check(on: backend, strategy: .fused(itemsPerRow: 8, rowsPerGroup: 2))
                try harness.check(on: backend, strategy: .splitRows(slices: 4, itemsPerSlice: 2))
            }
        }
        let long = try RowNormBackwardHarness(.layerNorm, shape: [2, 131_072], normalizedShape: [131_072], offset: -1e4, seed: 9)
        try long.check(on: backend)
    }

    @Test("NaN in a row poisons that row's dx and every column's dγ, dβ, as in the reference")
    func nonFinite() throws {
        let backend = Backend.openCL(try #require(sharedRuntime))
        var harness = try RowNormBackwardHarness(.layerNorm, shape: [40, 100], normalizedShape: [100], seed: 7)
        // What the forward saves for a row holding NaN.
        harness.x[3 * 100 + 17] = .nan
        harness.saveMean[3] = .nan
        harness.saveScale[3] = .nan
        let expected = try harness.run(on: .reference)
        let dx = try #require(expected.dx).toArray()
        #expect(dx[300..<400].allSatisfy(\.isNaN) && !dx[0..<300].contains(where: \.isNaN) && !dx[400...].contains(where: \.isNaN))
        try harness.check(on: backend)
        try harness.check(on: backend, strategy: .splitRows(slices: 3, itemsPerSlice: 4))
        try harness.check(on: backend, tuning: .gpuStyle)
    }

    @Test("bit-identical gradients when run twice (many rows, every path)")
    func deterministic() throws {
        let backend = Backend.openCL(try #require(sharedRuntime))
        let harness = try RowNormBackwardHarness(.layerNorm, shape: [2000, 72], normalizedShape: [72], seed: 6)
        for (strategy, tuning) in [(nil, nil), (RowNormPlan.Strategy.splitRows(slices: 3, itemsPerSlice: 4), nil), (nil, DeviceTuning.gpuStyle)] {
            for fuse in [true, false] {
                let first = try harness.run(on: backend, strategy: strategy, fuseParameters: fuse, tuning: tuning)
                let second = try harness.run(on: backend, strategy: strategy, fuseParameters: fuse, tuning: tuning)
                for (a, b, name) in [(first.dx, second.dx, "dx"), (first.dWeight, second.dWeight, "dγ"), (first.dBias, second.dBias, "dβ")] {
                    let bitsA = try #require(a).toArray().map(\.bitPattern), bitsB = try #require(b).toArray().map(\.bitPattern)
                    #expect(bitsA == bitsB, "\(name) strategy=\(String(describing: strategy)) fuse=\(fuse)")
                }
            }
        }
    }
}

/// The backward plan's geometry, without running kernels.
@Suite("LayerNorm backward plan")
struct LayerNormBackwardPlanTests {
    static func plan(_ shape: [Int], mask: NormGradientMask = .all, tuning: DeviceTuning) throws -> RowNormBackwardPlan {
        let runtime = try #require(sharedRuntime)
        let input = Tensor(shape: shape, layout: .channelsFirst, storage: .host([0]))
        let stats = Tensor(shape: [shape[0]], layout: .channelsFirst, storage: .host([0]))
        let problem = try RowNormBackwardProblem.validated(
            .layerNorm, gradOutput: input, input: input, normalizedShape: [shape[1]], weight: nil, saveMean: stats,
            saveScale: stats, outputMask: mask)
        return RowNormBackwardPlan(problem: problem, device: runtime.device, tuning: tuning)
    }

    @Test("lanes cover every row in blocks of 8 to 256 rows; registers hold GPU partials; split for few long rows")
    func geometry() throws {
        let cpu = DeviceTuning.cpuLike
        for shape in [[8192, 1024], [100, 4096], [1_000_000, 16], [9, 64]] {
            for tuning in [cpu, .gpuStyle] {
                let plan = try Self.plan(shape, tuning: tuning)
                guard case .fused(let items, _) = plan.strategy else { continue }
                #expect(plan.lanes * plan.rowsPerLane >= shape[0] && (plan.lanes - 1) * plan.rowsPerLane < shape[0], "\(shape)")
                #expect(plan.rowsPerLane <= RowNormBackwardPlan.maximumRowsPerLane, "\(shape)")
                #expect(plan.rowsPerLane >= min(shape[0], RowNormBackwardPlan.minimumRowsPerLane), "\(shape)")
                let perItem = (shape[1] / plan.vectorWidth).ceilingDivided(by: items)
                #expect(plan.privatePartials == (tuning.chunkedAccess || perItem > 8 ? 0 : perItem), "\(shape)")
            }
        }
        guard case .splitRows = try Self.plan([2, 1 << 20], tuning: cpu).strategy else {
            Issue.record("2 long rows: expected the split strategy")
            return
        }
        // dx alone needs no partials: lanes are not held to 8 rows.
        #expect(try Self.plan([100, 4096], mask: .input, tuning: cpu).rowsPerLane < RowNormBackwardPlan.minimumRowsPerLane)
    }
}
