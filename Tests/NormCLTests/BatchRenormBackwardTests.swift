import Testing
@testable import NormCL

/// Batch Renorm's backward pass (r and d constant) on OpenCL against the reference,
/// and the public entry points taking a forward's output.
@Suite("Batch Renorm backward")
struct BatchRenormBackwardTests {
    @Test(
        "matches the reference on every strategy, layout and element type, with r and d clipped",
        arguments: [[6, 8, 5, 5], [3, 5, 7], [40, 12], [1, 3, 1031]], ElementType.allCases)
    func matchesReference(shape: [Int], elementType: ElementType) throws {
        let runtime = try #require(sharedRuntime)
        for layout in TensorLayout.allCases {
            var harness = BatchNormBackwardHarness(shape: shape, offset: 0.5, scale: 2, seed: UInt64(shape.reduce(1, *)) + 40)
                .stored(as: elementType, layout)
            harness.mode = .renorm(BatchRenormLimits(rmax: 1.5, dmax: 0.3))
            let s = try harness.statistics()
            // The data clips r and d for some channels, not all.
            if shape == [6, 8, 5, 5] {
                let r = try #require(s.r), d = try #require(s.d)
                #expect(r.contains { $0 == 1.5 || $0 == Float(1 / 1.5) } && r.contains { $0 != 1.5 && $0 != Float(1 / 1.5) })
                #expect(d.contains { Swift.abs($0) == 0.3 } && d.contains { Swift.abs($0) < 0.3 })
            }
            for strategy in harness.strategies(mask: .all) {
                try harness.check(on: .openCL(runtime), strategy: strategy)
            }
        }
    }

    @Test("the forward-output overloads: BatchNorm, Batch Renorm, inference")
    func forwardOverloads() throws {
        for backend in allBackends {
            let harness = BatchNormBackwardHarness(shape: [4, 3, 6], seed: 30)
            let (input, gradOutput) = try harness.inputAndGradient(on: backend)
            let weight = try Tensor(harness.weight!, on: backend)
            var running = RunningStatistics(
                mean: try Tensor(harness.runningMean, on: backend), variance: try Tensor(harness.runningVar, on: backend))
            let before = running

            // Batch Renorm: the forward output carries r and d; both overloads use them.
            let renormed = try batchRenorm(
                input, weight: weight, runningStatistics: &running, limits: BatchRenormLimits(rmax: 1.2, dmax: 0.5))
            let viaRenorm = try batchRenormBackward(gradOutput, input: input, weight: weight, forward: renormed)
            let viaBatchNorm = try batchNormBackward(gradOutput, input: input, weight: weight, forward: renormed)
            let explicit = try batchRenormBackward(
                gradOutput, input: input, weight: weight, saveMean: renormed.saveMean!, saveInvstd: renormed.saveInvstd!,
                renormR: renormed.renormR!, renormD: renormed.renormD!)
            #expect(try viaRenorm.input!.toArray() == explicit.input!.toArray())
            #expect(try viaBatchNorm.input!.toArray() == explicit.input!.toArray())
            #expect(try viaRenorm.weight!.toArray() == explicit.weight!.toArray())

            // Plain training.
            let trained = try batchNorm(input, weight: weight)
            let plain = try batchNormBackward(gradOutput, input: input, weight: weight, forward: trained)
            let plainExplicit = try batchNormBackward(
                gradOutput, input: input, weight: weight, saveMean: trained.saveMean!, saveInvstd: trained.saveInvstd!)
            #expect(try plain.input!.toArray() == plainExplicit.input!.toArray())
            #expect(try plain.bias!.toArray() == plainExplicit.bias!.toArray())
            #expect(throws: NormError.self) { try batchRenormBackward(gradOutput, input: input, weight: weight, forward: trained) }

            // Inference: no saved statistics in the output, so the forward overloads refuse it.
            var frozen: RunningStatistics? = before
            let inferred = try batchNorm(input, weight: weight, runningStatistics: &frozen, training: false)
            #expect(throws: NormError.self) { try batchNormBackward(gradOutput, input: input, weight: weight, forward: inferred) }
            #expect(throws: NormError.self) { try batchRenormBackward(gradOutput, input: input, weight: weight, forward: inferred) }
            let grads = try batchNormBackward(gradOutput, input: input, weight: weight, runningStatistics: before, outputMask: .input)
            #expect(grads.weight == nil && grads.bias == nil)
            // dx = dy·γ·invstd: compare with the reference's formula directly.
            let w = harness.weight!
            let expected = harness.dy.indices.map { i in
                let c = (i / 6) % 3
                return Float(Double(harness.dy[i]) * Double(w[c]) / (Double(harness.runningVar[c]) + 1e-5).squareRoot())
            }
            expectClose(try grads.input!.toArray(), expected, "inference dx \(backend.name)", relative: 1e-6)
        }
    }

    @Test("the layer's backward: training, Batch Renorm, inference, non-affine")
    func layer() throws {
        for backend in allBackends {
            let harness = BatchNormBackwardHarness(shape: [5, 3, 4], seed: 31)
            let (input, gradOutput) = try harness.inputAndGradient(on: backend)
            var layer = try BatchNorm(numFeatures: 3, on: backend)
            layer.weight = try Tensor(harness.weight!, on: backend)

            let trained = try layer.forward(input)
            let grads = try layer.backward(gradOutput, forward: trained)
            let direct = try batchNormBackward(gradOutput, input: input, weight: layer.weight, forward: trained)
            #expect(try grads.input!.toArray() == direct.input!.toArray())
            #expect(try grads.weight!.toArray() == direct.weight!.toArray() && grads.bias != nil)

            layer.renorm = BatchRenormLimits(rmax: 1.1, dmax: 0.1)
            let renormed = try layer.forward(input)
            let renormGrads = try layer.backward(gradOutput, forward: renormed)
            let renormDirect = try batchRenormBackward(gradOutput, input: input, weight: layer.weight, forward: renormed)
            #expect(try renormGrads.input!.toArray() == renormDirect.input!.toArray())

            layer.isTraining = false
            let inferred = try layer.forward(input)
            let inferenceGrads = try layer.backward(gradOutput, forward: inferred)
            let inferenceDirect = try batchNormBackward(
                gradOutput, input: input, weight: layer.weight, runningStatistics: layer.runningStatistics!)
            #expect(try inferenceGrads.input!.toArray() == inferenceDirect.input!.toArray())
            #expect(try inferenceGrads.weight!.toArray() == inferenceDirect.weight!.toArray())

            var plain = try BatchNorm(numFeatures: 3, affine: false, on: backend)
            let out = try plain.forward(input)
            let plainGrads = try plain.backward(gradOutput, forward: out)
            #expect(plainGrads.input != nil && plainGrads.weight == nil && plainGrads.bias == nil)

            var untracked = try BatchNorm(numFeatures: 3, trackRunningStats: false, on: backend)
            untracked.isTraining = false
            // Without running statistics the layer uses batch statistics even in inference mode.
            let batchOut = try untracked.forward(input)
            #expect(batchOut.saveMean != nil)
            #expect(try untracked.backward(gradOutput, forward: batchOut).input != nil)
        }
    }
}
