import Testing
import NormCL

/// The README's usage example, compiled and run (without @testable: public API only).
@Suite("README usage example")
struct UsageExampleTests {
    @Test("runs on the default backend and folds into a convolution")
    func readmeExample() throws {
        var rng = SeededGenerator(seed: 42)
        let values = rng.normals(4 * 8 * 5 * 5, offset: 3, scale: 2)
        let backend = try Backend.default
        let x = try Tensor(values, shape: [4, 8, 5, 5], on: backend)

        var bn = try BatchNorm(numFeatures: 8, on: backend)
        let y = try bn(x)
        bn.isTraining = false
        let z = try bn(x)
        let host: [Float] = try z.toArray()
        #expect(host.count == values.count)

        // Training output with γ = 1, β = 0 has zero mean per channel.
        let trained = try y.toArray()
        for c in 0..<8 {
            var sum = 0.0
            for n in 0..<4 { for m in 0..<25 { sum += Double(trained[(n * 8 + c) * 25 + m]) } }
            #expect(abs(sum / 100) < 1e-5)
        }

        var running: RunningStatistics? = try RunningStatistics(channels: 8, on: backend)
        let out = try batchNorm(x, runningStatistics: &running, training: true, momentum: 0.1, eps: 1e-5)
        #expect(out.saveMean != nil && out.saveInvstd != nil)
        #expect(running?.numBatchesTracked == 1)

        // Folding: conv output channels = 8, each with a [3, 1, 1] slice.
        let convWeight: [Float] = (0..<24).map { Float($0) * 0.1 }
        let convBias: [Float] = (0..<8).map { Float($0) }
        let folding = try BatchNormFolding(bn)
        let (foldedWeight, foldedBias) = try folding.fold(weight: convWeight, bias: convBias)
        #expect(foldedWeight.count == 24 && foldedBias.count == 8)
        // The folded bias is the BN inference map applied to the conv bias.
        for o in 0..<8 {
            let expected = Double(convBias[o]) * Double(folding.scale[o]) + Double(folding.shift[o])
            #expect(abs(Double(foldedBias[o]) - expected) < 1e-5)
        }
    }

    @Test("one-shot batchNorm on [Float] matches the tensor API")
    func oneShot() throws {
        var rng = SeededGenerator(seed: 7)
        let values = rng.normals(6 * 3 * 4)
        let backend = try Backend.default
        let direct = try batchNorm(values, shape: [6, 3, 4], on: backend)
        let viaTensor = try batchNorm(try Tensor(values, shape: [6, 3, 4], on: backend)).output.toArray()
        #expect(direct == viaTensor)
    }

    @Test("the README's lines for the other ops run as written")
    func otherOps() throws {
        let backend = try Backend.default
        var rng = SeededGenerator(seed: 7)
        let x = try Tensor(rng.normals(2 * 64 * 3 * 3), shape: [2, 64, 3, 3], on: backend)
        let gn = try groupNorm(x, numGroups: 8)
        #expect(gn.saveMean?.shape == [2, 8])
        let inorm = try instanceNorm(x)
        #expect(inorm.output.shape == x.shape)
        let tokens = try Tensor(repeating: 0.5, shape: [8, 128, 1024], elementType: .float16, on: backend)
        let ln = try layerNorm(tokens, normalizedShape: [1024])
        #expect(ln.output.elementType == .float16 && ln.saveMean.elementType == .float32)
        let rms = try rmsNorm(tokens, normalizedShape: [1024])
        // A constant row: RMS normalisation gives 0.5 / sqrt(0.25 + eps) ≈ 1.
        #expect(try rms.output.toArray().allSatisfy { abs($0 - 1) < 2e-3 })
        var renormed = try BatchNorm(numFeatures: 64, on: backend)
        renormed.renorm = BatchRenormLimits(rmax: 3, dmax: 5)
        #expect(try renormed.forward(x).renormR != nil)

        var layer = try BatchNorm(numFeatures: 64, on: backend)
        let step = try layer.forward(x)
        let dy = try Tensor(repeating: 0.01, shape: x.shape, on: backend)
        let grads = try layer.backward(dy, input: x, forward: step)
        // A constant dy has no component along x̂ or the mean: dx = 0, dβ = Σdy = 0.01·N·M.
        #expect(try grads.input!.toArray().allSatisfy { abs($0) < 1e-5 })
        #expect(try grads.bias!.toArray().allSatisfy { abs($0 - 0.01 * 18) < 1e-5 })
        let dTokens = try layerNormBackward(
            tokens, input: tokens, normalizedShape: [1024], weight: nil, forward: ln, outputMask: .input)
        #expect(dTokens.input?.elementType == .float16 && dTokens.weight == nil && dTokens.bias == nil)
    }
}
