import Testing
@testable import NormCL

/// Runs BatchNorm's backward pass on a backend and on the reference, fed the same
/// saved (or running) statistics, and checks every gradient against the reference
/// within stated tolerances.
struct BatchNormBackwardHarness: ChannelsAndSpatial {
    enum Mode {
        /// Batch statistics, saved by a reference forward.
        case training
        /// Batch Renorm with these limits against `runningMean`/`runningVar`.
        case renorm(BatchRenormLimits)
        /// Running statistics `runningMean`/`runningVar`.
        case inference
    }

    var shape: [Int]
    var layout: TensorLayout = .channelsFirst
    var elementType: ElementType = .float32
    var mode: Mode = .training
    var x: [Float]
    var dy: [Float]
    var weight: [Float]?
    /// The running statistics: what inference normalises with, and Batch Renorm's
    /// reference for r and d.
    var runningMean, runningVar: [Float]
    var eps: Float = 1e-5
    /// Replaces the runtime's tuning on OpenCL (e.g. GPU-style launches on a CPU device).
    var tuning: DeviceTuning?


    /// x = `offset + scale·N(0,1)`, dy = N(0,1), γ = `1 + 0.5·N(0,1)` (when affine),
    /// running statistics away from the batch's (so Batch Renorm clips some channels).
    init(shape: [Int], offset: Double = 0, scale: Double = 1, affine: Bool = true, seed: UInt64 = 1) {
        var rng = SeededGenerator(seed: seed)
        self.shape = shape
        let count = shape.reduce(1, *), channels = shape[1]
        x = rng.normals(count, offset: offset, scale: scale)
        dy = rng.normals(count)
        if affine { weight = rng.normals(channels, offset: 1, scale: 0.5) }
        runningMean = (0..<channels).map { Float(offset) + Float($0 % 5) * 0.4 * Float(scale) - 0.8 * Float(scale) }
        runningVar = (0..<channels).map { Float(scale * scale) * [0.1, 0.6, 1.5, 9][$0 % 4] }
    }

    /// The statistics the backward pass reads, as host values from a reference forward
    /// on the same (half-rounded) x: (mean, second, r, d), second = invstd or running var.
    func statistics() throws -> (mean: [Float], second: [Float], r: [Float]?, d: [Float]?) {
        switch mode {
        case .inference:
            return (runningMean, runningVar, nil, nil)
        case .training, .renorm:
            let input = try Tensor(x, shape: shape, layout: layout, elementType: elementType, on: .reference)
            var running: RunningStatistics? = RunningStatistics(
                mean: try Tensor(runningMean, on: .reference), variance: try Tensor(runningVar, on: .reference))
            var limits: BatchRenormLimits? = nil
            if case .renorm(let l) = mode { limits = l }
            let out = try batchNorm(
                input, weight: nil, bias: nil, runningStatistics: &running, training: true, momentum: 0.1, eps: eps,
                strategy: nil, renorm: limits)
            return (
                try out.saveMean!.toArray(), try out.saveInvstd!.toArray(), try out.renormR?.toArray(),
                try out.renormD?.toArray()
            )
        }
    }

    struct Result {
        var dx: [Float]?
        var dWeight: [Float]?
        var dBias: [Float]?
        var kernels: [String]
    }

    func run(
        on backend: Backend, mask: NormGradientMask = .all, strategy: BatchNormPlan.Strategy? = nil,
        statistics given: (mean: [Float], second: [Float], r: [Float]?, d: [Float]?)? = nil
    ) throws -> Result {
        let s = try given ?? statistics()
        let input = try Tensor(x, shape: shape, layout: layout, elementType: elementType, on: backend)
        let gradOutput = try Tensor(dy, shape: shape, layout: layout, elementType: elementType, on: backend)
        let w = try weight.map { try Tensor($0, on: backend) }
        let mean = try Tensor(s.mean, on: backend), second = try Tensor(s.second, on: backend)
        let stats: BatchNormBackwardProblem.Statistics
        switch mode {
        case .training: stats = .batch(mean: mean, invstd: second)
        case .renorm: stats = .renorm(mean: mean, invstd: second, r: try Tensor(s.r!, on: backend), d: try Tensor(s.d!, on: backend))
        case .inference: stats = .running(mean: mean, variance: second, eps: eps)
        }
        let grads = try batchNormBackward(
            gradOutput, input: input, weight: w, statistics: stats, outputMask: mask, strategy: strategy, tuning: tuning)
        if let dx = grads.input {
            #expect(dx.elementType == elementType && dx.layout == layout && dx.shape == shape)
        }
        return Result(
            dx: try grads.input?.toArray(), dWeight: try grads.weight?.toArray(), dBias: try grads.bias?.toArray(),
            kernels: grads.events.map(\.name))
    }

    /// Every strategy that applies to the harness's shape, layout and mask.
    func strategies(mask: NormGradientMask) -> [BatchNormPlan.Strategy?] {
        if case .inference = mode, !mask.contains(.weight), !mask.contains(.bias) { return [nil, .elementwise] }
        return layout == .channelsLast || spatial == 1
            ? [nil, .columns, .splitColumns(rowGroups: 3)]
            : [nil, .fusedPerChannel, .channelItems, .splitReduction(groupsPerChannel: 3)]
    }

    /// Compares `backend` (with `strategy`) against the reference.
    ///
    /// Tolerances. dx of a norm is a difference of nearly equal terms, so its error is
    /// measured against the size of the terms, not of dx: per channel, with
    /// `A = mean|dy|` and `B = mean|dy·x̂|` (float64 over the channel),
    /// `|dx − ref| ≤ 4e-6·|γ·r·invstd|·(|dy| + A + |x̂|·B)`. Why: the float32 sums
    /// `Σdy` and `Σdy·(x − mean)` have a worst-case error of about `(BLOCK·VEC/2 +
    /// log2(WG) + 4)·ε ≈ 3e-6` of `n·A` and `n·B/invstd` (plain sums inside a block of
    /// 64 values, Kahan across blocks and slices, a pairwise tree across work-items);
    /// rounding errors of random sign grow like the square root of that, and the
    /// largest seen over this suite's data is 1.5e-7 on dx and 1.1e-7 on dγ. The
    /// per-element `dy − Σdy/n − (x − mean)·xcoef` and the scale add a few ulps of each
    /// term; `x − mean` itself is exact for data near the mean. dγ, dβ: `2e-6` of
    /// `Σ|dy·(x̂·r + d)|` and `Σ|dy|`. Half storage: x and
    /// dy are the same halves on both sides; dx rounds to half once on each side and may
    /// land on neighbouring halves: `2^-10·|dx|` on top. Inference dx is one product
    /// rounded once: the same bound holds with A = B = 0.
    func check(
        on backend: Backend, mask: NormGradientMask = .all, strategy: BatchNormPlan.Strategy? = nil,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let s = try statistics()
        let expected = try run(on: .reference, mask: mask, statistics: s)
        let actual = try run(on: backend, mask: mask, strategy: strategy, statistics: s)
        let label = "\(shape) \(layout) \(elementType) \(mode) mask=\(mask.rawValue) strategy=\(strategy.map { "\($0)" } ?? "auto")"
        #expect((actual.dx == nil) == !mask.contains(.input), "dx presence \(label)", sourceLocation: sourceLocation)
        #expect((actual.dWeight == nil) == !mask.contains(.weight), "dγ presence \(label)", sourceLocation: sourceLocation)
        #expect((actual.dBias == nil) == !mask.contains(.bias), "dβ presence \(label)", sourceLocation: sourceLocation)

        // Per-channel term sizes in float64, from the values both sides read.
        let index = ReferenceBatchNorm.Indexing(batch: shape[0], channels: channels, spatial: spatial, layout: layout)
        let halfX = try Tensor(x, shape: shape, layout: layout, elementType: elementType, on: .reference).toArray()
        let halfDy = try Tensor(dy, shape: shape, layout: layout, elementType: elementType, on: .reference).toArray()
        let isInference: Bool
        if case .inference = mode { isInference = true } else { isInference = false }
        let invstd = (0..<channels).map { c in
            isInference ? 1 / (Double(s.second[c]) + Double(eps)).squareRoot() : Double(s.second[c])
        }
        var channelOf = [Int](repeating: 0, count: halfX.count)
        var xhat = [Double](repeating: 0, count: halfX.count)
        var sumAbsDy = [Double](repeating: 0, count: channels), sumAbsDyXhat = [Double](repeating: 0, count: channels)
        for b in 0..<shape[0] {
            for c in 0..<channels {
                for m in 0..<spatial {
                    let i = index(b, c, m)
                    channelOf[i] = c
                    xhat[i] = (Double(halfX[i]) - Double(s.mean[c])) * invstd[c]
                    sumAbsDy[c] += Swift.abs(Double(halfDy[i]))
                    sumAbsDyXhat[c] += Swift.abs(Double(halfDy[i]) * xhat[i])
                }
            }
        }
        let n = Double(shape[0] * spatial)
        let r = s.r.map { $0.map(Double.init) } ?? [Double](repeating: 1, count: channels)
        let d = s.d.map { $0.map(Double.init) } ?? [Double](repeating: 0, count: channels)
        let halfRounding = elementType == .float16 ? 0x1p-10 : 0
        if let a = actual.dx, let e = expected.dx {
            expectClose(a, e, "dx \(label)", sourceLocation: sourceLocation) { i in
                let c = channelOf[i]
                let scale = Swift.abs(Double(weight?[c] ?? 1) * r[c] * invstd[c])
                let terms =
                    isInference
                    ? Swift.abs(Double(halfDy[i]))
                    : Swift.abs(Double(halfDy[i])) + sumAbsDy[c] / n + Swift.abs(xhat[i]) * sumAbsDyXhat[c] / n
                return 4e-6 * scale * terms + halfRounding * Swift.abs(Double(e[i]))
            }
        }
        if let a = actual.dWeight, let e = expected.dWeight {
            expectClose(a, e, "dγ \(label)", sourceLocation: sourceLocation) { c in
                2e-6 * (r[c] * sumAbsDyXhat[c] + Swift.abs(d[c]) * sumAbsDy[c]) + 1e-30
            }
        }
        if let a = actual.dBias, let e = expected.dBias {
            expectClose(a, e, "dβ \(label)", sourceLocation: sourceLocation) { c in 2e-6 * sumAbsDy[c] + 1e-30 }
        }
    }
}

extension BatchNormBackwardHarness {
    /// x and dy on `backend` as float32 channels-first tensors (for the tests that call
    /// the entry points themselves).
    func inputAndGradient(on backend: Backend) throws -> (input: Tensor, gradOutput: Tensor) {
        (try Tensor(x, shape: shape, on: backend), try Tensor(dy, shape: shape, on: backend))
    }
}
