import Testing
@testable import NormCL

/// The reference backward passes of BatchNorm, Batch Renorm and BatchNorm inference
/// against float64 central differences of a float64 forward, `L = Σ y·w` with random
/// `w` (= dy): through the batch statistics in training, with r and d held constant
/// for Batch Renorm, with constant running statistics in inference.
@Suite("BatchNorm backward gradient check")
struct BatchNormBackwardGradientCheckTests {
    /// Small shapes: primes, 1-element spatial, (N, C), 3-d.
    static let shapes: [[Int]] = [[3, 2, 5], [4, 3, 1], [5, 3], [2, 3, 2, 3], [2, 2, 7], [3, 2, 2, 2, 2]]

    enum Forward {
        case training
        /// Batch Renorm with r and d fixed (computed once from the unperturbed x).
        case renorm(r: [Double], d: [Double])
        case inference(mean: [Double], invstd: [Double])
    }

    /// The float64 forward `y = ((x − mean_c)·invstd_c·r_c + d_c)·γ_c + β_c`, with the
    /// batch statistics recomputed from `x` in training and renorm.
    static func forward(
        _ x: [Double], gamma: [Double], beta: [Double], index: ReferenceBatchNorm.Indexing, mode: Forward, eps: Double
    ) -> (y: [Double], mean: [Double], invstd: [Double]) {
        let channels = index.channels
        let n = Double(index.batch * index.spatial)
        var mean = [Double](repeating: 0, count: channels), invstd = [Double](repeating: 0, count: channels)
        var r = [Double](repeating: 1, count: channels), d = [Double](repeating: 0, count: channels)
        switch mode {
        case .inference(let m, let s):
            mean = m
            invstd = s
        case .training, .renorm:
            for c in 0..<channels {
                var sum = 0.0
                for b in 0..<index.batch { for m in 0..<index.spatial { sum += x[index(b, c, m)] } }
                mean[c] = sum / n
                var squares = 0.0
                for b in 0..<index.batch {
                    for m in 0..<index.spatial { squares += (x[index(b, c, m)] - mean[c]) * (x[index(b, c, m)] - mean[c]) }
                }
                invstd[c] = 1 / (squares / n + eps).squareRoot()
            }
            if case .renorm(let rr, let dd) = mode {
                r = rr
                d = dd
            }
        }
        var y = [Double](repeating: 0, count: x.count)
        for b in 0..<index.batch {
            for c in 0..<channels {
                for m in 0..<index.spatial {
                    let i = index(b, c, m)
                    y[i] = ((x[i] - mean[c]) * invstd[c] * r[c] + d[c]) * gamma[c] + beta[c]
                }
            }
        }
        return (y, mean, invstd)
    }

    /// Numerical gradients w.r.t. x, γ and β vs the reference backward fed the float64
    /// statistics of the unperturbed forward.
    static func check(shape: [Int], layout: TensorLayout, mode: Forward, affine: Bool, seed: UInt64) {
        var rng = SeededGenerator(seed: seed)
        let channels = shape[1], count = shape.reduce(1, *)
        let index = ReferenceBatchNorm.Indexing(
            batch: shape[0], channels: channels, spatial: shape.dropFirst(2).reduce(1, *), layout: layout)
        let x = rng.normals(count, offset: 0.5, scale: 2).map(Double.init)
        let w = rng.normals(count).map(Double.init)
        let gamma = affine ? rng.normals(channels, offset: 1, scale: 0.5).map(Double.init) : [Double](repeating: 1, count: channels)
        let beta = rng.normals(channels, scale: 0.5).map(Double.init)
        let eps = 1e-5
        let base = forward(x, gamma: gamma, beta: beta, index: index, mode: mode, eps: eps)

        var renorm: (r: [Double], d: [Double])? = nil
        if case .renorm(let r, let d) = mode { renorm = (r, d) }
        let isInference: Bool
        if case .inference = mode { isInference = true } else { isInference = false }
        let analytic = ReferenceBatchNorm.backward(
            dy: w, x: x, index: index, weight: affine ? gamma : nil, mean: base.mean, invstd: base.invstd, renorm: renorm,
            mode: isInference ? .inference : .training, mask: .all)

        let label = "\(shape) \(layout) \(mode) affine=\(affine)"
        GradientCheck.expectGradient(analytic.gradInput ?? [], of: { forward($0, gamma: gamma, beta: beta, index: index, mode: mode, eps: eps).y }, weightedBy: w, at: x, "dx \(label)")
        GradientCheck.expectGradient(analytic.gradWeight ?? [], of: { forward(x, gamma: $0, beta: beta, index: index, mode: mode, eps: eps).y }, weightedBy: w, at: gamma, "dγ \(label)")
        GradientCheck.expectGradient(analytic.gradBias ?? [], of: { forward(x, gamma: gamma, beta: $0, index: index, mode: mode, eps: eps).y }, weightedBy: w, at: beta, "dβ \(label)")
    }

    @Test("training: through the batch mean and variance", arguments: shapes, TensorLayout.allCases)
    func training(shape: [Int], layout: TensorLayout) {
        Self.check(shape: shape, layout: layout, mode: .training, affine: true, seed: UInt64(shape.reduce(1, *)))
        Self.check(shape: shape, layout: layout, mode: .training, affine: false, seed: 7)
    }

    @Test("Batch Renorm: r and d held constant, some clipped", arguments: shapes, TensorLayout.allCases)
    func renorm(shape: [Int], layout: TensorLayout) {
        let channels = shape[1]
        // Constants as a forward would clip them: r in [1/rmax, rmax], d in [−dmax, dmax].
        let r = (0..<channels).map { [0.5, 1.7, 1.0][$0 % 3] }
        let d = (0..<channels).map { [0.3, -1.2, 0.0][$0 % 3] }
        Self.check(shape: shape, layout: layout, mode: .renorm(r: r, d: d), affine: true, seed: UInt64(shape.reduce(1, *)) + 3)
    }

    @Test("inference: constant running statistics", arguments: shapes, TensorLayout.allCases)
    func inference(shape: [Int], layout: TensorLayout) {
        let channels = shape[1]
        let mean = (0..<channels).map { Double($0) * 0.3 - 0.2 }
        let invstd = (0..<channels).map { 1 / (0.5 + Double($0)).squareRoot() }
        Self.check(shape: shape, layout: layout, mode: .inference(mean: mean, invstd: invstd), affine: true, seed: 11)
    }

    @Test("Batch Renorm with rmax = 1, dmax = 0 is BatchNorm's backward, on every backend")
    func renormIdentity() throws {
        for backend in allBackends {
            for layout in TensorLayout.allCases {
                var harness = BatchNormBackwardHarness(shape: [4, 6, 5, 3], seed: 21)
                harness.layout = layout
                harness.mode = .renorm(.batchNorm)
                let renormed = try harness.run(on: backend)
                harness.mode = .training
                let plain = try harness.run(on: backend)
                #expect(renormed.dx == plain.dx && renormed.dWeight == plain.dWeight && renormed.dBias == plain.dBias)
            }
        }
    }

    @Test("the mask leaves gradients out on the reference")
    func referenceMask() throws {
        let harness = BatchNormBackwardHarness(shape: [3, 4, 5], seed: 2)
        let all = try harness.run(on: .reference)
        for mask: NormGradientMask in [.input, .weight, .bias, [.weight, .bias], []] {
            let some = try harness.run(on: .reference, mask: mask)
            #expect(some.dx == (mask.contains(.input) ? all.dx : nil))
            #expect(some.dWeight == (mask.contains(.weight) ? all.dWeight : nil))
            #expect(some.dBias == (mask.contains(.bias) ? all.dBias : nil))
        }
    }
}
