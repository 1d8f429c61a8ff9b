import Testing
@testable import NormCL

/// The layer: running statistics over several steps, inference, lastGamma, defaults.
@Suite("SwitchableNorm layer")
struct SwitchableNormLayerTests {
    func steps(_ options: SwitchableNormOptions, shape: [Int], layout: TensorLayout, on backend: Backend) throws -> (outputs: [[Float]], layer: SwitchableNorm) {
        var layer = try SwitchableNorm(numFeatures: shape[1], options: options, on: backend)
        var outputs: [[Float]] = []
        for step in 0..<3 {
            let h = SwitchableNormHarness(shape: shape, layout: layout, offset: Double(step) * 3, scale: 1 + Double(step), seed: UInt64(step + 100))
            outputs.append(try layer(try Tensor(h.x, shape: shape, layout: layout, on: backend)).toArray())
        }
        layer.isTraining = false
        let h = SwitchableNormHarness(shape: shape, layout: layout, seed: 999)
        outputs.append(try layer(try Tensor(h.x, shape: shape, layout: layout, on: backend)).toArray())
        return (outputs, layer)
    }

    @Test("running statistics over three training steps, then inference", arguments: [Float(0.1), 0.003, nil] as [Float?])
    func runningStatistics(momentum: Float?) throws {
        let runtime = try #require(sharedRuntime)
        for (shape, layout) in [([4, 6, 5, 5], TensorLayout.channelsFirst), ([4, 8, 3, 3], .channelsLast), ([9, 6], .channelsFirst)] {
            var options = SwitchableNormOptions(momentum: momentum)
            if shape.count == 2 { options.branches = .layerBatch }
            let (a, layerA) = try steps(options, shape: shape, layout: layout, on: .openCL(runtime))
            let (e, layerE) = try steps(options, shape: shape, layout: layout, on: .reference)
            for (i, (x, y)) in zip(a, e).enumerated() {
                expectClose(x, y, "output step \(i) \(shape)") { j in 1e-5 * (1 + Swift.abs(Double(y[j]))) }
            }
            let ra = try #require(layerA.runningStatistics), re = try #require(layerE.runningStatistics)
            #expect(ra.numBatchesTracked == 3 && re.numBatchesTracked == 3)
            expectClose(try ra.mean.toArray(), try re.mean.toArray(), "running mean \(shape)", relative: 4e-6, absolute: 4e-6)
            expectClose(try ra.variance.toArray(), try re.variance.toArray(), "running var \(shape)", relative: 4e-6)
        }
    }

    @Test("defaults: logits 1, γ 1 (0 with lastGamma), β 0, running statistics only with BN")
    func defaults() throws {
        for backend in allBackends {
            let layer = try SwitchableNorm(numFeatures: 5, on: backend)
            #expect(try layer.meanLogits.toArray() == [1, 1, 1])
            #expect(try layer.varianceLogits.toArray() == [1, 1, 1])
            #expect(try layer.weight.toArray() == [1, 1, 1, 1, 1])
            #expect(try layer.bias.toArray() == [0, 0, 0, 0, 0])
            #expect(layer.options.varianceEstimator == .unbiased && layer.options.momentum == 0.1 && layer.options.eps == 1e-5)
            var last = try SwitchableNorm(numFeatures: 5, options: .init(branches: .instanceLayer), lastGamma: true, on: backend)
            #expect(last.runningStatistics == nil)
            #expect(try last.meanLogits.toArray() == [1, 1])
            #expect(try last.weight.toArray() == [0, 0, 0, 0, 0])
            let h = SwitchableNormHarness(shape: [2, 5, 4, 4], seed: 7)
            let y = try last(try Tensor(h.x, shape: h.shape, on: backend)).toArray()
            #expect(y.allSatisfy { $0 == 0 }, "γ = 0 and β = 0 give 0")
        }
    }

    @Test("layer with equal logits matches the plain mean of IN, LN and BN statistics")
    func equalLogitsMix() throws {
        let h = SwitchableNormHarness(shape: [3, 4, 6], seed: 13)
        var layer = try SwitchableNorm(numFeatures: 4, on: .reference)
        let out = try layer.forward(try Tensor(h.x, shape: h.shape, on: .reference))
        let im = try #require(out.instanceMean).toArray(), lm = try out.layerMean.toArray(), bm = try #require(out.batchMean).toArray()
        let mean = try out.saveMean.toArray()
        for n in 0..<3 {
            for c in 0..<4 {
                let expected = (Double(im[n * 4 + c]) + Double(lm[n]) + Double(bm[c])) / 3
                #expect(Swift.abs(Double(mean[n * 4 + c]) - expected) < 1e-6)
            }
        }
    }
}
