import Testing
@testable import NormCL

/// Runs LayerNorm or RMSNorm on a backend and on the reference with the same data,
/// and checks every output against the reference within stated tolerances.
struct RowNormHarness: RowNormGeometry {
    var kind: RowNormProblem.Kind
    /// The input's shape, and its trailing dims that are normalised over.
    var shape, normalizedShape: [Int]
    var elementType: ElementType = .float32
    /// The input, already rounded to `elementType` (so both backends see the same values).
    var x: [Float]
    var weight: [Float]?
    var bias: [Float]?
    /// nil: the op's default (1e-5 for LayerNorm, the element type's epsilon for RMSNorm).
    var eps: Float?

    /// Random data `offset + scale·N(0,1)`, and random γ (and β for LayerNorm when
    /// `bias`) when `affine`.
    init(
        _ kind: RowNormProblem.Kind, shape: [Int], normalizedShape: [Int], elementType: ElementType = .float32,
        offset: Double = 0, scale: Double = 1, affine: Bool = true, bias: Bool = true, eps: Float? = nil, seed: UInt64 = 1
    ) {
        var rng = SeededGenerator(seed: seed)
        (self.kind, self.shape, self.normalizedShape, self.elementType, self.eps) = (kind, shape, normalizedShape, elementType, eps)
        x = rng.normals(shape.reduce(1, *), offset: offset, scale: scale).map { elementType.rounded($0) }
        let d = normalizedShape.reduce(1, *)
        if affine {
            weight = rng.normals(d, offset: 1, scale: 0.5)
            if bias && kind == .layerNorm { self.bias = rng.normals(d, scale: 0.5) }
        }
    }

    struct Result {
        var output: [Float]
        var outputShape: [Int]
        var outputType: ElementType
        var saveMean: [Float]?
        var saveScale: [Float]
        var statisticsShape: [Int]
    }

    func run(on backend: Backend, strategy: RowNormPlan.Strategy? = nil, tuning: DeviceTuning? = nil) throws -> Result {
        let input = try Tensor(x, shape: shape, elementType: elementType, on: backend)
        let w = try weight.map { try Tensor($0, shape: normalizedShape, on: backend) }
        let b = try bias.map { try Tensor($0, shape: normalizedShape, on: backend) }
        switch kind {
        case .layerNorm:
            let out = try layerNorm(
                input, normalizedShape: normalizedShape, weight: w, bias: b, eps: eps ?? 1e-5, strategy: strategy,
                tuning: tuning)
            return Result(
                output: try out.output.toArray(), outputShape: out.output.shape, outputType: out.output.elementType,
                saveMean: try out.saveMean.toArray(), saveScale: try out.saveInvstd.toArray(),
                statisticsShape: out.saveInvstd.shape)
        case .rmsNorm:
            let out = try rmsNorm(input, normalizedShape: normalizedShape, weight: w, eps: eps, strategy: strategy, tuning: tuning)
            return Result(
                output: try out.output.toArray(), outputShape: out.output.shape, outputType: out.output.elementType,
                saveMean: nil, saveScale: try out.saveInvRms.toArray(), statisticsShape: out.saveInvRms.shape)
        }
    }

    /// Compares `backend` (with `strategy`, `tuning`) against the reference.
    ///
    /// Tolerances, and why they can be this tight:
    /// - LayerNorm statistics are accumulated relative to a per-row pilot, so float32
    ///   rounds quantities of the size of the row's spread, never of its offset; RMSNorm
    ///   sums squares (no cancellation) in blocks with a compensated total. Either way
    ///   invstd/rstd agree with float64 to 1e-6 relative (about 17 float32 ulps).
    /// - Outputs are `((x − pilot) − (mean − pilot))·invstd·γ + β` (or `x·rstd·γ`), so
    ///   they carry no error proportional to |mean|: `2e-6·(1 + |y| + |β|)` covers the
    ///   invstd error times |x̂·γ| (≤ |y| + |β|) plus the final roundings.
    /// - Half outputs are rounded by the device and the reference alike, but may round
    ///   to neighbouring halves: one half ulp, ≤ 2^-10·|y|, more.
    /// - The mean: `2e-6` of the spread (1/invstd) plus 2 ulps of its own value.
    func check(
        on backend: Backend, strategy: RowNormPlan.Strategy? = nil, tuning: DeviceTuning? = nil,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let expected = try run(on: .reference)
        let actual = try run(on: backend, strategy: strategy, tuning: tuning)
        let label = "\(kind) \(shape)/\(normalizedShape) \(elementType) \(backend.name) strategy=\(strategy.map { "\($0)" } ?? "auto") chunked=\(tuning?.chunkedAccess ?? true) affine=\(weight != nil)/\(bias != nil)"
        #expect(actual.outputShape == shape, "output shape \(label)", sourceLocation: sourceLocation)
        #expect(actual.outputType == elementType, "output type \(label)", sourceLocation: sourceLocation)
        #expect(actual.statisticsShape == statisticsShape, "statistics shape \(label)", sourceLocation: sourceLocation)
        let halfUlp = elementType == .float16 ? 0x1p-10 : 0
        let d = rowLength
        expectClose(actual.output, expected.output, "output \(label)", sourceLocation: sourceLocation) { i in
            let beta = Swift.abs(Double(bias?[i % d] ?? 0))
            let y = Swift.abs(Double(expected.output[i]))
            return 2e-6 * (1 + y + beta) + halfUlp * y + 0x1p-24
        }
        expectClose(actual.saveScale, expected.saveScale, "saveScale \(label)", relative: 1e-6, sourceLocation: sourceLocation)
        if kind == .layerNorm {
            if let m = actual.saveMean, let e = expected.saveMean {
                // A row holding ±Inf has that infinite mean, as in float64 (expectClose
                // wants infinities exactly).
                expectClose(m, e, "saveMean \(label)", sourceLocation: sourceLocation) { r in
                    2e-6 / Double(expected.saveScale[r]) + 2 * 0x1p-24 * Swift.abs(Double(e[r]))
                }
            } else {
                Issue.record("saveMean missing \(label)", sourceLocation: sourceLocation)
            }
        }
    }
}

/// The rows of a LayerNorm or RMSNorm input: its trailing `normalizedShape` dims are a row.
protocol RowNormGeometry {
    /// The input's shape, and its trailing dims that are normalised over.
    var shape: [Int] { get }
    var normalizedShape: [Int] { get }
}

extension RowNormGeometry {
    var rowLength: Int { normalizedShape.reduce(1, *) }
    var rows: Int { shape.reduce(1, *) / rowLength }
    /// The saved statistics' shape: one value per row.
    var statisticsShape: [Int] { Array(shape.dropLast(normalizedShape.count)) }
}

extension DeviceTuning {
    /// The GPU defaults (wide interleaved work-groups), to run the GPU kernels on any device.
    static var gpuStyle: DeviceTuning {
        DeviceTuning(
            reductionWorkGroupSize: 256, elementwiseWorkGroupSize: 256, workGroupsPerComputeUnit: 8,
            minimumVectorsPerWorkGroup: 2048, chunkedAccess: false, columnTile: 1)
    }
}

extension RowNormPlan.Strategy {
    /// Every strategy in several geometries, for the LayerNorm suites that force each:
    /// one and many items per row, one and many rows per group, few and many slices.
    static let everyGeometry: [RowNormPlan.Strategy] = [
        .fused(itemsPerRow: 1, rowsPerGroup: 1), .fused(itemsPerRow: 1, rowsPerGroup: 16),
        .fused(itemsPerRow: 4, rowsPerGroup: 4), .fused(itemsPerRow: 16, rowsPerGroup: 1),
        .fused(itemsPerRow: 64, rowsPerGroup: 2), .splitRows(slices: 3, itemsPerSlice: 1),
        .splitRows(slices: 7, itemsPerSlice: 4), .splitRows(slices: 2, itemsPerSlice: 16),
    ]
}

extension ElementType {
    /// `offset + scale·N(0,1)` for the large-mean row tests: 1e4 + N(0,1), except in
    /// half, which cannot hold 1e4 + N(0,1) finely (ulp 8): 1e3 + 30·N(0,1) there.
    var largeMeanData: (offset: Double, scale: Double) { self == .float32 ? (1e4, 1.0) : (1e3, 30.0) }
}
