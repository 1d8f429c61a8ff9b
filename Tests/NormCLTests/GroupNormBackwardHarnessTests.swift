import Testing
@testable import NormCL

/// Runs the GroupNorm or InstanceNorm backward pass on a backend and on the float64
/// reference with the same `dy`, `x`, γ and statistics, and checks dx, dγ and dβ
/// against the reference within stated tolerances. (Shared by the GroupNorm and
/// InstanceNorm backward suites; its own sanity test is below.)
struct GroupNormBackwardHarness: ChannelsAndSpatial {
    enum Op: CustomStringConvertible {
        case group(Int)
        /// InstanceNorm with the input's statistics.
        case instance
        /// InstanceNorm in inference mode, with running statistics.
        case instanceRunning

        var description: String {
            switch self {
            case .group(let g): "GroupNorm G=\(g)"
            case .instance: "InstanceNorm"
            case .instanceRunning: "InstanceNorm running"
            }
        }
    }

    var op: Op
    var shape: [Int]
    var layout: TensorLayout = .channelsFirst
    var elementType: ElementType = .float32
    var x: [Float]
    var gradOutput: [Float]
    var weight: [Float]?
    /// The running statistics `.instanceRunning` normalises with.
    var runningMean, runningVar: [Float]
    var eps: Float = 1e-5
    var mask: NormGradientMask = .all

    var groups: Int {
        if case .group(let g) = op { g } else { channels }
    }

    /// Random `x = offset + scale·N(0,1)` and `dy = N(0,1)` in memory order (the
    /// layout only changes how they are indexed), random γ and running statistics.
    init(op: Op, shape: [Int], offset: Double = 0, scale: Double = 1, affine: Bool = true, seed: UInt64 = 1) {
        var rng = SeededGenerator(seed: seed)
        self.op = op
        self.shape = shape
        let count = shape.reduce(1, *)
        x = rng.normals(count, offset: offset, scale: scale)
        gradOutput = rng.normals(count)
        if affine { weight = rng.normals(shape[1], offset: 1, scale: 0.5) }
        runningMean = rng.normals(shape[1], offset: offset, scale: scale)
        runningVar = (0..<shape[1]).map { _ in Float.random(in: 0.5...2, using: &rng) * Float(scale * scale) }
    }

    /// The saved statistics the forward pass gives for `x` (from the reference, so
    /// both backends are fed the same float32 values), per (n, g); nil for running mode.
    func savedStatistics() throws -> (mean: [Float], invstd: [Float])? {
        let input = try Tensor(x, shape: shape, layout: layout, elementType: elementType, on: .reference)
        let out: GroupNormOutput
        switch op {
        case .group(let g): out = try groupNorm(input, numGroups: g, eps: eps)
        case .instance: out = GroupNormOutput(try instanceNorm(input, eps: eps))
        case .instanceRunning: return nil
        }
        return (try out.saveMean?.toArray() ?? [], try out.saveInvstd?.toArray() ?? [])
    }

    /// x, dy and γ (nil without affine) as tensors on `backend`, x and dy stored in the
    /// harness's layout and element type: for the tests that call the public API
    /// directly instead of ``run(on:statistics:strategy:tuning:)``.
    func tensors(on backend: Backend) throws -> (input: Tensor, gradOutput: Tensor, weight: Tensor?) {
        (
            try Tensor(x, shape: shape, layout: layout, elementType: elementType, on: backend),
            try Tensor(gradOutput, shape: shape, layout: layout, elementType: elementType, on: backend),
            try weight.map { try Tensor($0, on: backend) }
        )
    }

    struct Result {
        var input: [Float]?
        var weight: [Float]?
        var bias: [Float]?
        var events: Int
    }

    func run(
        on backend: Backend, statistics: (mean: [Float], invstd: [Float])?, strategy: GroupNormBackwardPlan.Strategy? = nil,
        tuning: DeviceTuning? = nil
    ) throws -> Result {
        let dy = try Tensor(gradOutput, shape: shape, layout: layout, elementType: elementType, on: backend)
        let input = try Tensor(x, shape: shape, layout: layout, elementType: elementType, on: backend)
        let w = try weight.map { try Tensor($0, on: backend) }
        let rowShape = [shape[0], groups]
        let gradients: NormGradients
        switch op {
        case .group(let g):
            let (mean, invstd) = try #require(statistics)
            gradients = try groupNormBackward(
                dy, input: input, numGroups: g, weight: w, saveMean: try Tensor(mean, shape: rowShape, on: backend),
                saveInvstd: try Tensor(invstd, shape: rowShape, on: backend), outputMask: mask, strategy: strategy,
                tuning: tuning)
        case .instance:
            let (mean, invstd) = try #require(statistics)
            gradients = try instanceNormBackward(
                dy, input: input, weight: w,
                statistics: .saved(
                    mean: try Tensor(mean, shape: rowShape, on: backend),
                    invstd: try Tensor(invstd, shape: rowShape, on: backend)),
                outputMask: mask, strategy: strategy, tuning: tuning)
        case .instanceRunning:
            let running = RunningStatistics(
                mean: try Tensor(runningMean, on: backend), variance: try Tensor(runningVar, on: backend))
            gradients = try instanceNormBackward(
                dy, input: input, weight: w, statistics: .running(running, eps: eps), outputMask: mask,
                strategy: strategy, tuning: tuning)
        }
        if let dx = gradients.input {
            #expect(dx.shape == shape && dx.layout == layout && dx.elementType == elementType)
        }
        for parameter in [gradients.weight, gradients.bias] {
            if let parameter { #expect(parameter.shape == [channels] && parameter.elementType == .float32) }
        }
        return Result(
            input: try gradients.input?.toArray(), weight: try gradients.weight?.toArray(),
            bias: try gradients.bias?.toArray(), events: gradients.events.count)
    }

    /// The (n, c, m) of element `i` in memory order.
    func coordinates(ofElement i: Int) -> (n: Int, c: Int, m: Int) {
        switch layout {
        case .channelsFirst: (i / (channels * spatial), (i / spatial) % channels, i % spatial)
        case .channelsLast: (i / (channels * spatial), i % channels, (i / channels) % spatial)
        }
    }

    /// Compares `backend` (with `strategy` and `tuning`) against the reference.
    ///
    /// Tolerances. dx of a norm is a difference of nearly equal terms, so its error is
    /// measured against the size of the terms, not of dx: per element of row r
    /// (`x̂ = (x − mean)·invstd`, `g = dy·γ`, K values per row)
    ///
    ///     terms_i = invstd_r · (|γ_c·dy_i| + (Σ_r |g| + |x̂_i|·Σ_r |g·x̂|) / K)
    ///
    /// and dx must agree to `1e-5·terms_i`: the float32 sums (Kahan-compensated block
    /// sums, then trees) are good to a few 1e-7 of Σ|·|, and the coefficients round
    /// once or twice. (x − mean) is exact in float32 for x near the mean, so large-mean
    /// data needs no more. dγ and dβ: `1e-5` of `Σ|dy·x̂|` and `Σ|dy|` of their channel.
    /// Half dx may round to the neighbouring half: plus one half ulp, `2^-10·|dx|`.
    func check(
        on backend: Backend, strategy: GroupNormBackwardPlan.Strategy? = nil, tuning: DeviceTuning? = nil,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let statistics = try savedStatistics()
        let expected = try run(on: .reference, statistics: statistics)
        let actual = try run(on: backend, statistics: statistics, strategy: strategy, tuning: tuning)
        let label =
            "\(op) \(shape) \(layout) \(elementType) \(backend.name) strategy=\(strategy.map { "\($0)" } ?? "auto") "
            + "gpuStyle=\(tuning != nil) affine=\(weight != nil) mask=\(mask.rawValue)"
        #expect((actual.input == nil) == !mask.contains(.input), "dx presence \(label)", sourceLocation: sourceLocation)
        #expect((actual.weight == nil) == !mask.contains(.weight), "dγ presence \(label)", sourceLocation: sourceLocation)
        #expect((actual.bias == nil) == !mask.contains(.bias), "dβ presence \(label)", sourceLocation: sourceLocation)

        // The sizes of the terms, from the same (storage-rounded) values both backends saw.
        let type = elementType
        let xs = x.map { Double(type.rounded($0)) }
        let dys = gradOutput.map { Double(type.rounded($0)) }
        let perGroup = channels / groups
        func rowAndStatistics(_ n: Int, _ c: Int) -> (row: Int, mean: Double, invstd: Double) {
            if let statistics {
                let r = n * groups + c / perGroup
                return (r, Double(statistics.mean[r]), Double(statistics.invstd[r]))
            }
            return (n * channels + c, Double(runningMean[c]), 1 / (Double(runningVar[c]) + Double(eps)).squareRoot())
        }
        var sumG = [Double](repeating: 0, count: shape[0] * channels)
        var sumGXhat = sumG
        var absDy = [Double](repeating: 0, count: channels)
        var absDyXhat = absDy
        var xhat = xs
        for i in xs.indices {
            let (n, c, _) = coordinates(ofElement: i)
            let (r, mean, invstd) = rowAndStatistics(n, c)
            xhat[i] = (xs[i] - mean) * invstd
            let g = Swift.abs(dys[i] * Double(weight?[c] ?? 1))
            sumG[r] += g
            sumGXhat[r] += g * Swift.abs(xhat[i])
            absDy[c] += Swift.abs(dys[i])
            absDyXhat[c] += Swift.abs(dys[i] * xhat[i])
        }
        let constant = statistics == nil
        let count = Double(constant ? 1 : perGroup * spatial)
        if let e = expected.input, let a = actual.input {
            let halfUlp = elementType == .float16 ? 0x1p-10 : 0
            expectClose(a, e, "dx \(label)", sourceLocation: sourceLocation) { i in
                let (n, c, _) = coordinates(ofElement: i)
                let (r, _, invstd) = rowAndStatistics(n, c)
                let own = Swift.abs(dys[i] * Double(weight?[c] ?? 1))
                let terms = constant ? invstd * own : invstd * (own + (sumG[r] + Swift.abs(xhat[i]) * sumGXhat[r]) / count)
                return 1e-5 * terms + halfUlp * Swift.abs(Double(e[i])) + 0x1p-24
            }
        }
        if let e = expected.weight, let a = actual.weight {
            expectClose(a, e, "dγ \(label)", sourceLocation: sourceLocation) { c in 1e-5 * absDyXhat[c] + 1e-30 }
        }
        if let e = expected.bias, let a = actual.bias {
            expectClose(a, e, "dβ \(label)", sourceLocation: sourceLocation) { c in 1e-5 * absDy[c] + 1e-30 }
        }
    }

    /// The strategies that apply to this harness's shape and layout, the heuristic's
    /// choice first.
    var strategies: [GroupNormBackwardPlan.Strategy?] {
        var all: [GroupNormBackwardPlan.Strategy?] = [nil]
        if layout == .channelsFirst || spatial == 1 {
            all += [.fusedRows, .splitPlanes(slicesPerPlane: 1), .splitPlanes(slicesPerPlane: 3)]
        }
        if layout == .channelsLast || spatial == 1 {
            all += [.columns(spatialSlices: 1), .columns(spatialSlices: min(spatial, 5))]
        }
        return all
    }
}

/// GroupNorm backward through the overload that takes the saved statistics, given
/// those `forward` saved (a GroupNorm forward, or an InstanceNorm one as G = C): what
/// the tests compare the forward-output overload and InstanceNorm's backward with.
func groupNormBackward(
    _ gradOutput: Tensor, input: Tensor, numGroups: Int, weight: Tensor?, savedStatisticsOf forward: GroupNormOutput
) throws -> NormGradients {
    try NormCL.groupNormBackward(
        gradOutput, input: input, numGroups: numGroups, weight: weight, saveMean: try #require(forward.saveMean),
        saveInvstd: try #require(forward.saveInvstd))
}

@Suite("GroupNorm backward harness")
struct GroupNormBackwardHarnessTests {
    /// The harness must notice a wrong gradient (so the suites that use it can fail).
    @Test("the tolerance catches a perturbed dx, dγ and dβ")
    func detectsDifferences() throws {
        let harness = GroupNormBackwardHarness(op: .group(2), shape: [2, 4, 3, 3])
        let statistics = try harness.savedStatistics()
        let reference = try harness.run(on: .reference, statistics: statistics)
        let dx = try #require(reference.input)
        var perturbed = dx
        perturbed[5] += 1e-3
        #expect(firstMismatch(perturbed, dx) { _ in 1e-5 } != nil)
        // dβ is Σdy per channel; dγ is Σdy·x̂ (x̂ from the saved statistics).
        let dBeta = try #require(reference.bias)
        for c in 0..<4 {
            var sum = 0.0
            for n in 0..<2 { for m in 0..<9 { sum += Double(harness.gradOutput[(n * 4 + c) * 9 + m]) } }
            #expect(Swift.abs(Double(dBeta[c]) - sum) < 1e-5)
        }
    }
}
