import Testing
@testable import NormCL

/// Runs GroupNorm or InstanceNorm on a backend and on the float64 reference with the
/// same data, and checks every output against the reference within stated tolerances.
/// (Shared by the GroupNorm and InstanceNorm suites; its own sanity test is below.)
struct GroupNormHarness: ChannelDataHolder, ChannelsAndSpatial {
    enum Op {
        case group(Int)
        /// InstanceNorm with `useInputStats`.
        case instance(useInputStats: Bool)
    }

    var op: Op
    var shape: [Int]
    var layout: TensorLayout = .channelsFirst
    var elementType: ElementType = .float32
    /// x, γ, β and the running statistics.
    var data: ChannelData
    var numBatchesTracked = 0
    var momentum: Float? = 0.1
    var eps: Float = 1e-5

    var groups: Int {
        if case .group(let g) = op { g } else { channels }
    }

    /// Random data `offset + scale·N(0,1)` in memory order, random affine parameters
    /// and (for tracking) running statistics.
    init(op: Op, shape: [Int], offset: Double = 0, scale: Double = 1, affine: Bool = true, tracking: Bool = false, seed: UInt64 = 1) {
        self.op = op
        self.shape = shape
        data = ChannelData(shape: shape, offset: offset, scale: scale, affine: affine, tracking: tracking, seed: seed)
    }

    /// The reference's arrays, plus numBatchesTracked and the number of events.
    typealias Result = ReadBack<ReferenceInstanceNorm.Result>

    func run(on backend: Backend, strategy: GroupNormPlan.Strategy? = nil) throws -> Result {
        let input = try Tensor(data.x, shape: shape, layout: layout, elementType: elementType, on: backend)
        let w = try data.weight.map { try Tensor($0, on: backend) }
        let b = try data.bias.map { try Tensor($0, on: backend) }
        var running = try runningStatistics(data.runningMean, data.runningVar, numBatchesTracked: numBatchesTracked, on: backend)
        let out: GroupNormOutput
        switch op {
        case .group(let g):
            out = try groupNorm(input, numGroups: g, weight: w, bias: b, eps: eps, strategy: strategy)
        case .instance(let useInputStats):
            out = GroupNormOutput(
                try instanceNorm(
                    input, runningStatistics: &running, weight: w, bias: b, useInputStats: useInputStats, momentum: momentum,
                    eps: eps, strategy: strategy))
        }
        #expect(out.output.shape == shape && out.output.layout == layout && out.output.elementType == elementType)
        if let mean = out.saveMean { #expect(mean.shape == [shape[0], groups] && mean.elementType == .float32) }
        return Result(
            arrays: ReferenceInstanceNorm.Result(
                output: try out.output.toArray(), saveMean: try out.saveMean?.toArray(), saveInvstd: try out.saveInvstd?.toArray(),
                runningMean: try running?.mean.toArray(), runningVar: try running?.variance.toArray()),
            numBatchesTracked: running?.numBatchesTracked, events: out.events.count)
    }

    /// The (n, c) of element `i` in memory order.
    func sampleAndChannel(ofElement i: Int) -> (n: Int, c: Int) {
        switch layout {
        case .channelsFirst: (i / (channels * spatial), (i / spatial) % channels)
        case .channelsLast: (i / (channels * spatial), i % channels)
        }
    }

    /// Compares `backend` (with `strategy`) against the reference.
    ///
    /// Tolerances (as BatchNorm's harness, for the same reasons): every statistic is
    /// accumulated relative to a per-(n, g) pilot, so float32 rounds quantities of the
    /// size of the data's spread, never of its offset: invstd to 1e-6 relative; the
    /// mean to 2e-6 of the spread plus 4 ulps of itself; outputs, formed as
    /// `((x − pilot) − (mean − pilot))·scale + β`, to `2e-6·(1 + |y|)`. Half outputs
    /// may round to the neighbouring half value: plus 2^-10·|y| (one half ulp, and
    /// subnormals' 2^-24).
    func check(on backend: Backend, strategy: GroupNormPlan.Strategy? = nil, sourceLocation: SourceLocation = #_sourceLocation)
        throws
    {
        let expected = try run(on: .reference)
        let actual = try run(on: backend, strategy: strategy)
        let label =
            "\(op) \(shape) \(layout) \(elementType) \(backend.name) strategy=\(strategy.map { "\($0)" } ?? "auto")"
        expectOutputClose(
            actual.output, expected.output, "output \(label)", base: 2e-6, half: elementType == .float16, halfFloor: 0x1p-24,
            sourceLocation: sourceLocation)
        if let e = expected.saveMean, let s = expected.saveInvstd {
            if let m = actual.saveMean {
                expectClose(m, e, "saveMean \(label)", sourceLocation: sourceLocation) { r in
                    2e-6 / Double(s[r]) + 4 * 0x1p-24 * Swift.abs(Double(e[r]))
                }
            } else {
                Issue.record("saveMean missing \(label)", sourceLocation: sourceLocation)
            }
            expectClose(actual.saveInvstd ?? [], s, "saveInvstd \(label)", relative: 1e-6, sourceLocation: sourceLocation)
        } else {
            #expect(actual.saveMean == nil && actual.saveInvstd == nil, "no saved statistics \(label)", sourceLocation: sourceLocation)
        }
        if let e = expected.runningMean, let a = actual.runningMean {
            // The batch average of per-instance means: 2e-6 of the largest spread plus 8 ulps.
            let spread = (expected.saveInvstd ?? [1]).map { 1 / Double($0) }.max() ?? 1
            expectClose(a, e, "runningMean \(label)", sourceLocation: sourceLocation) { c in
                2e-6 * spread + 8 * 0x1p-24 * (Swift.abs(Double(e[c])) + 1)
            }
            expectClose(
                actual.runningVar ?? [], expected.runningVar ?? [], "runningVar \(label)", relative: 4e-6, absolute: 1e-7,
                sourceLocation: sourceLocation)
            #expect(actual.numBatchesTracked == expected.numBatchesTracked, sourceLocation: sourceLocation)
        } else {
            #expect(actual.runningMean == expected.runningMean, "running statistics presence \(label)", sourceLocation: sourceLocation)
        }
    }

    /// The strategies that apply to this harness's shape and layout in training, the
    /// heuristic's choice first.
    var strategies: [GroupNormPlan.Strategy?] {
        if case .instance(useInputStats: false) = op { return [nil, .runningStatistics] }
        if layout == .channelsFirst || spatial == 1 {
            return [nil, .fusedRows, .splitRows(slicesPerRow: 3), .splitRows(slicesPerRow: 64)]
        }
        return [nil, .columns(spatialSlices: 1), .columns(spatialSlices: 3), .columns(spatialSlices: min(spatial, 64))]
    }

    /// `values` (NCHW memory order) permuted to NHWC memory order.
    static func toChannelsLast(_ values: [Float], shape: [Int]) -> [Float] {
        let (n, c, m) = (shape[0], shape[1], shape.dropFirst(2).reduce(1, *))
        var out = values
        for b in 0..<n {
            for ch in 0..<c {
                for s in 0..<m { out[(b * m + s) * c + ch] = values[(b * c + ch) * m + s] }
            }
        }
        return out
    }
}

@Suite("GroupNorm harness")
struct GroupNormHarnessTests {
    /// The harness must notice a wrong output (so the suites that use it can fail).
    @Test("the reference disagrees with a perturbed copy")
    func detectsDifferences() throws {
        let harness = GroupNormHarness(op: .group(2), shape: [2, 4, 3, 3])
        let reference = try harness.run(on: .reference)
        var perturbed = reference.output
        perturbed[5] += 1e-4
        #expect(firstMismatch(perturbed, reference.output) { i in 2e-6 * (1 + Swift.abs(Double(reference.output[i]))) } != nil)
        // And the reference itself normalises: each (n, g) has mean β-free 0 and variance 1.
        var plain = GroupNormHarness(op: .group(2), shape: [2, 4, 3, 3], affine: false)
        plain.eps = 0
        let y = try plain.run(on: .reference).output
        for row in 0..<4 {
            let values = y[(row * 18)..<((row + 1) * 18)].map(Double.init)
            let mean = values.reduce(0, +) / 18
            let variance = values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 18
            #expect(Swift.abs(mean) < 1e-6 && Swift.abs(variance - 1) < 1e-5, "row \(row): \(mean), \(variance)")
        }
    }
}
