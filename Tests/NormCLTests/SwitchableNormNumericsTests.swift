import Testing
@testable import NormCL

/// Switchable Norm numerics: large-mean data, the derived LN/BN statistics against
/// directly computed ones, layout equivalence, constant instances.
@Suite("SwitchableNorm numerics")
struct SwitchableNormNumericsTests {
    /// Biased mean and variance of the sample's (LN) or channel's (BN) values, two passes in float64.
    static func direct(_ h: SwitchableNormHarness) -> (layerMean: [Double], layerVar: [Double], batchMean: [Double], batchVar: [Double], instanceVar: [Double]) {
        let (batch, channels, spatial) = (h.batch, h.channels, h.spatial)
        func value(_ n: Int, _ c: Int, _ m: Int) -> Double {
            Double(h.x[h.layout == .channelsFirst ? (n * channels + c) * spatial + m : (n * spatial + m) * channels + c])
        }
        func moments(_ v: [Double]) -> (Double, Double) {
            let mean = v.reduce(0, +) / Double(v.count)
            return (mean, v.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(v.count))
        }
        var lm: [Double] = [], lv: [Double] = [], bm: [Double] = [], bv: [Double] = [], iv: [Double] = []
        for n in 0..<batch {
            let (m, v) = moments((0..<channels).flatMap { c in (0..<spatial).map { value(n, c, $0) } })
            lm.append(m)
            lv.append(v)
            for c in 0..<channels { iv.append(moments((0..<spatial).map { value(n, c, $0) }).1) }
        }
        for c in 0..<channels {
            let (m, v) = moments((0..<batch).flatMap { n in (0..<spatial).map { value(n, c, $0) } })
            bm.append(m)
            bv.append(v)
        }
        return (lm, lv, bm, bv, iv)
    }

    @Test("large-mean data (1e4 + N(0,1)): every output and statistic stays accurate")
    func largeMean() throws {
        let runtime = try #require(sharedRuntime)
        for layout in [TensorLayout.channelsFirst, .channelsLast] {
            for elementType in ElementType.allCases {
                for estimator in [SwitchableNormOptions.VarianceEstimator.biased, .unbiased] {
                    var harness = SwitchableNormHarness(
                        shape: [4, 8, 9, 9], layout: layout, elementType: elementType, offset: 1e4, seed: 17)
                    harness.options.varianceEstimator = estimator
                    try harness.check(on: .openCL(runtime), training: true)
                    try harness.check(on: .openCL(runtime), training: false)
                }
            }
        }
        var oneD = SwitchableNormHarness(shape: [33, 20], offset: 1e4, seed: 18)
        oneD.options.branches = .layerBatch
        try oneD.check(on: .openCL(runtime), training: true)
    }

    @Test("biased σ²_in: derived LN/BN statistics equal directly computed ones", arguments: [0.0, 1e4])
    func derivedEqualsDirect(offset: Double) throws {
        for backend in allBackends {
            for layout in [TensorLayout.channelsFirst, .channelsLast] {
                var h = SwitchableNormHarness(shape: [5, 6, 7, 3], layout: layout, offset: offset, seed: 23)
                h.options.varianceEstimator = .biased
                let r = try h.run(on: backend, training: true)
                let d = Self.direct(h)
                let label = "\(backend.name) \(layout) offset \(offset)"
                // Spread-scaled bounds: the statistics are float32, the offset is not rounded into them.
                expectClose(r.layerMean, d.layerMean.map(Float.init), "layerMean \(label)") { i in 4e-6 + 2 * 0x1p-24 * Swift.abs(d.layerMean[i]) }
                expectClose(r.batchMean ?? [], d.batchMean.map(Float.init), "batchMean \(label)") { i in 4e-6 + 2 * 0x1p-24 * Swift.abs(d.batchMean[i]) }
                expectClose(r.layerVariance, d.layerVar.map(Float.init), "layerVariance \(label)", relative: 4e-6)
                expectClose(r.batchVariance ?? [], d.batchVar.map(Float.init), "batchVariance \(label)", relative: 4e-6)
            }
        }
    }

    @Test("unbiased σ²_in: derived variances are the biased set variance + mean σ²_in(biased) / (L − 1)")
    func derivedUnbiased() throws {
        for backend in allBackends {
            let h = SwitchableNormHarness(shape: [4, 5, 6], offset: 1e4, seed: 29)
            let r = try h.run(on: backend, training: true)
            let d = Self.direct(h)
            let L = Double(h.spatial)
            let layer = (0..<h.batch).map { n in
                d.layerVar[n] + (0..<h.channels).reduce(0) { $0 + d.instanceVar[n * h.channels + $1] } / Double(h.channels) / (L - 1)
            }
            let batch = (0..<h.channels).map { c in
                d.batchVar[c] + (0..<h.batch).reduce(0) { $0 + d.instanceVar[$1 * h.channels + c] } / Double(h.batch) / (L - 1)
            }
            expectClose(r.layerVariance, layer.map(Float.init), "layerVariance \(backend.name)", relative: 4e-6)
            expectClose(r.batchVariance ?? [], batch.map(Float.init), "batchVariance \(backend.name)", relative: 4e-6)
            expectClose(r.instanceVariance ?? [], d.instanceVar.map { Float($0 * L / (L - 1)) }, "instanceVariance \(backend.name)", relative: 4e-6)
        }
    }

    @Test("NHWC equals NCHW on permuted data, both element types")
    func layoutsAgree() throws {
        let runtime = try #require(sharedRuntime)
        let shape = [3, 12, 5, 7]
        let (batch, channels, spatial) = (3, 12, 35)
        for elementType in ElementType.allCases {
            let first = SwitchableNormHarness(shape: shape, elementType: elementType, seed: 31)
            var last = first
            last.layout = .channelsLast
            for n in 0..<batch {
                for c in 0..<channels {
                    for m in 0..<spatial { last.x[(n * spatial + m) * channels + c] = first.x[(n * channels + c) * spatial + m] }
                }
            }
            let a = try first.run(on: .openCL(runtime), training: true)
            let b = try last.run(on: .openCL(runtime), training: true)
            var permuted = [Float](repeating: 0, count: b.output.count)
            for n in 0..<batch {
                for c in 0..<channels {
                    for m in 0..<spatial { permuted[(n * channels + c) * spatial + m] = b.output[(n * spatial + m) * channels + c] }
                }
            }
            expectOutputClose(permuted, a.output, "output \(elementType)", base: 4e-6, half: elementType == .float16, halfFloor: 0x1p-14)
            expectClose(b.invstd, a.invstd, "invstd \(elementType)", relative: 2e-6)
            expectClose(b.batchVariance ?? [], a.batchVariance ?? [1], "batchVariance \(elementType)", relative: 4e-6)
        }
    }

    @Test("constant instances at a large magnitude normalise to β exactly")
    func constantInstances() throws {
        for backend in allBackends {
            for layout in [TensorLayout.channelsFirst, .channelsLast] {
                var h = SwitchableNormHarness(shape: [3, 4, 5, 5], layout: layout, seed: 37)
                h.x = [Float](repeating: 12345.678, count: h.x.count)
                let r = try h.run(on: backend, training: true)
                let beta = h.bias ?? []
                expectClose(r.output, (0..<h.x.count).map { i in beta[layout == .channelsFirst ? (i / 25) % 4 : i % 4] }, "\(backend.name) \(layout)") { _ in 1e-6 }
            }
        }
    }

    @Test("NaN or Inf in one instance reach exactly the outputs the reference's do", arguments: [Float.nan, .infinity])
    func nonFinitePropagation(value: Float) throws {
        let runtime = try #require(sharedRuntime)
        for layout in [TensorLayout.channelsFirst, .channelsLast] {
            for branches in SwitchableNormOptions.Branches.allCases where branches != .layerBatch {
                var h = SwitchableNormHarness(shape: [3, 4, 6], layout: layout, seed: 41)
                h.options.branches = branches
                if !branches.hasBatch { h.runningMean = nil; h.runningVar = nil }
                // Sample 1, channel 2, position 3.
                h.x[layout == .channelsFirst ? (1 * 4 + 2) * 6 + 3 : (1 * 6 + 3) * 4 + 2] = value
                let a = try h.run(on: .openCL(runtime), training: true)
                let e = try h.run(on: .reference, training: true)
                // Element by element, NaN must meet NaN: LN spreads it over sample 1, BN over channel 2.
                expectClose(a.output, e.output, "output \(value) \(layout) \(branches)") { i in 4e-6 * (1 + Swift.abs(Double(e.output[i]))) }
                #expect(a.output[0].isFinite, "sample 0, channel 0 untouched")
            }
        }
    }
}
