import Testing
@testable import NormCL

/// Runs LayerNorm or RMSNorm backward on a backend and on the reference with the same
/// data and the same saved statistics, and checks every gradient against the reference
/// within stated tolerances.
struct RowNormBackwardHarness: RowNormGeometry {
    var kind: RowNormProblem.Kind
    /// The input's shape, and its trailing dims that are normalised over.
    var shape, normalizedShape: [Int]
    var elementType: ElementType = .float32
    /// The input and dy, already rounded to `elementType`.
    var x: [Float]
    var dy: [Float]
    var weight: [Float]?
    /// The saved statistics both backends get: the reference forward's float32 values.
    var saveMean, saveScale: [Float]

    /// Random x = `offset + scale·N(0,1)`, dy = N(0,1), and γ = 1 + N(0, 0.5²) when
    /// `affine`; the statistics from the reference forward (eps 1e-5).
    init(
        _ kind: RowNormProblem.Kind, shape: [Int], normalizedShape: [Int], elementType: ElementType = .float32,
        offset: Double = 0, scale: Double = 1, affine: Bool = true, seed: UInt64 = 1
    ) throws {
        var rng = SeededGenerator(seed: seed)
        (self.kind, self.shape, self.normalizedShape, self.elementType) = (kind, shape, normalizedShape, elementType)
        let count = shape.reduce(1, *)
        x = rng.normals(count, offset: offset, scale: scale).map { elementType.rounded($0) }
        dy = rng.normals(count).map { elementType.rounded($0) }
        let d = normalizedShape.reduce(1, *)
        if affine { weight = rng.normals(d, offset: 1, scale: 0.5) }
        let rows = count / d
        switch kind {
        case .layerNorm:
            let forward = ReferenceLayerNorm.forward(rows: rows, rowLength: d, x: x, weight: nil, bias: nil, eps: 1e-5)
            saveMean = forward.saveMean
            saveScale = forward.saveInvstd
        case .rmsNorm:
            saveMean = []
            saveScale = ReferenceRMSNorm.forward(rows: rows, rowLength: d, x: x, weight: nil, eps: 1e-5).saveInvRms
        }
    }

    struct Result {
        var dx: Tensor?
        var dWeight: Tensor?
        var dBias: Tensor?
    }

    func run(
        on backend: Backend, mask: NormGradientMask = .all, strategy: RowNormPlan.Strategy? = nil,
        fuseParameters: Bool? = nil, tuning: DeviceTuning? = nil
    ) throws -> Result {
        let input = try Tensor(x, shape: shape, elementType: elementType, on: backend)
        let gradOutput = try Tensor(dy, shape: shape, elementType: elementType, on: backend)
        let w = try weight.map { try Tensor($0, shape: normalizedShape, on: backend) }
        let scale = try Tensor(saveScale, shape: statisticsShape, on: backend)
        let gradients: NormGradients
        switch kind {
        case .layerNorm:
            gradients = try layerNormBackward(
                gradOutput, input: input, normalizedShape: normalizedShape, weight: w,
                saveMean: try Tensor(saveMean, shape: statisticsShape, on: backend), saveInvstd: scale, outputMask: mask,
                strategy: strategy, fuseParameters: fuseParameters, tuning: tuning)
        case .rmsNorm:
            gradients = try rmsNormBackward(
                gradOutput, input: input, normalizedShape: normalizedShape, weight: w, saveInvRms: scale,
                outputMask: mask, strategy: strategy, fuseParameters: fuseParameters, tuning: tuning)
        }
        return Result(dx: gradients.input, dWeight: gradients.weight, dBias: gradients.bias)
    }

    /// Compares `backend` against the reference for `mask`.
    ///
    /// Tolerances, and why:
    /// - dx = s·(g − Σg/D − x̂·Σ(g·x̂)/D) (s = invstd or rstd) is a difference of
    ///   terms that may nearly cancel, so its error scales with the terms, not with dx:
    ///   the row sums are float32 (blocks of 16 vectors in registers, Kahan across
    ///   blocks: ≲ 20 ulps of Σ|·|), plus a few roundings of each term, so
    ///   `4e-6·s·(|g| + mean|g| + |x̂|·mean|g·x̂|)` (≈ 60 ulps of the terms). x − mean is
    ///   exact in float32 for large-mean rows (Sterbenz), so no |mean| term appears.
    /// - Half dx: the device and the reference each round to half, possibly to
    ///   neighbouring halves: 2^-10·|dx| more.
    /// - dγ, dβ: float32 sums over rows — recursive within a block of ≤ 256 rows, then
    ///   Kahan-compensated across blocks — so `(min(rows, 256) + 8)·2^-24·Σ_rows|term|`
    ///   (the worst-case bound of recursive summation).
    func check(
        on backend: Backend, mask: NormGradientMask = .all, strategy: RowNormPlan.Strategy? = nil,
        fuseParameters: Bool? = nil, tuning: DeviceTuning? = nil, sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let expected = try run(on: .reference, mask: mask)
        let actual = try run(on: backend, mask: mask, strategy: strategy, fuseParameters: fuseParameters, tuning: tuning)
        let label =
            "\(kind) \(shape)/\(normalizedShape) \(elementType) \(backend.name) mask=\(mask.rawValue) strategy=\(strategy.map { "\($0)" } ?? "auto") fuse=\(fuseParameters.map { "\($0)" } ?? "auto") chunked=\(tuning?.chunkedAccess ?? true) affine=\(weight != nil)"
        let d = rowLength
        // Per-row magnitudes of the dx terms, and per-column sums of |dγ|, |dβ| terms (float64).
        var meanG = [Double](repeating: 0, count: rows), meanGXhat = [Double](repeating: 0, count: rows)
        var xhat = [Double](repeating: 0, count: x.count)
        var sumW = [Double](repeating: 0, count: d), sumB = [Double](repeating: 0, count: d)
        for r in 0..<rows {
            for j in 0..<d {
                let i = r * d + j
                let centered = kind == .layerNorm ? Double(x[i]) - Double(saveMean[r]) : Double(x[i])
                xhat[i] = centered * Double(saveScale[r])
                let g = Double(dy[i]) * Double(weight?[j] ?? 1)
                meanG[r] += Swift.abs(g) / Double(d)
                meanGXhat[r] += Swift.abs(g * xhat[i]) / Double(d)
                sumW[j] += Swift.abs(Double(dy[i]) * xhat[i])
                sumB[j] += Swift.abs(Double(dy[i]))
            }
        }
        let halfUlp = elementType == .float16 ? 0x1p-10 : 0
        let sumBound = Double(Swift.min(rows, 256) + 8) * 0x1p-24

        #expect((actual.dx != nil) == mask.contains(.input), "dx presence \(label)", sourceLocation: sourceLocation)
        #expect((actual.dWeight != nil) == mask.contains(.weight), "dγ presence \(label)", sourceLocation: sourceLocation)
        let wantsBias = kind == .layerNorm && mask.contains(.bias)
        #expect((actual.dBias != nil) == wantsBias, "dβ presence \(label)", sourceLocation: sourceLocation)
        if let dx = actual.dx, let reference = expected.dx {
            #expect(dx.shape == shape && dx.elementType == elementType, "dx shape/type \(label)", sourceLocation: sourceLocation)
            let e = try reference.toArray()
            expectClose(try dx.toArray(), e, "dx \(label)", sourceLocation: sourceLocation) { i in
                let r = i / d, j = i % d
                let g = Swift.abs(Double(dy[i]) * Double(weight?[j] ?? 1))
                let terms = Double(saveScale[r]) * (g + meanG[r] + Swift.abs(xhat[i]) * meanGXhat[r])
                return 4e-6 * terms + halfUlp * Swift.abs(Double(e[i])) + 1e-30
            }
        }
        if let dWeight = actual.dWeight, let reference = expected.dWeight {
            #expect(dWeight.shape == normalizedShape && dWeight.elementType == .float32, "dγ shape \(label)", sourceLocation: sourceLocation)
            expectClose(try dWeight.toArray(), try reference.toArray(), "dγ \(label)", sourceLocation: sourceLocation) { j in
                sumBound * sumW[j] + 1e-30
            }
        }
        if let dBias = actual.dBias, let reference = expected.dBias {
            #expect(dBias.shape == normalizedShape && dBias.elementType == .float32, "dβ shape \(label)", sourceLocation: sourceLocation)
            expectClose(try dBias.toArray(), try reference.toArray(), "dβ \(label)", sourceLocation: sourceLocation) { j in
                sumBound * sumB[j] + 1e-30
            }
        }
    }
}

extension RowNormBackwardHarness {
    /// One case of the LayerNorm and RMSNorm backward sweeps: shape number `index`
    /// (and its normalizedShape) in float32 with γ, and in half storage with γ on every
    /// other shape, on OpenCL.
    static func checkSweep(_ kind: RowNormProblem.Kind, shape: ([Int], [Int]), index: Int) throws {
        let backend = Backend.openCL(try #require(sharedRuntime))
        for (type, affine) in [(ElementType.float32, true), (.float16, index % 2 == 0)] {
            let harness = try RowNormBackwardHarness(
                kind, shape: shape.0, normalizedShape: shape.1, elementType: type, affine: affine, seed: UInt64(index))
            try harness.check(on: backend)
        }
    }
}
