import Testing
@testable import NormCL

/// The GroupNorm, InstanceNorm, LayerNorm and RMSNorm layers are their functional
/// forms with the layer's parameters and mode: the GroupNorm layer's forward, and each
/// layer's `backward`, which leaves out the gradients of parameters the layer does not
/// have.
@Suite("GroupNorm, InstanceNorm, LayerNorm and RMSNorm layers")
struct NormLayerTests {
    @Test("GroupNorm layer forward: equals the functional form with γ = 1, β = 0; host one-shot form", arguments: BackendChoice.allCases)
    func groupNormLayerForward(choice: BackendChoice) throws {
        let backend = try choice.backend()
        let values = GroupNormHarness(op: .group(3), shape: [2, 6, 5, 5], seed: 4).x
        let input = try Tensor(values, shape: [2, 6, 5, 5], layout: .channelsLast, on: backend)
        let layer = try GroupNorm(numGroups: 3, numChannels: 6, on: backend)
        #expect(try layer.weight?.toArray() == [Float](repeating: 1, count: 6))
        let out = try layer.forward(input)
        #expect(out.saveMean?.shape == [2, 3] && out.output.layout == .channelsLast)
        #expect(try out.output.toArray() == groupNorm(input, numGroups: 3).output.toArray())
        let unaffine = try GroupNorm(numGroups: 3, numChannels: 6, affine: false, on: backend)
        #expect(unaffine.weight == nil && unaffine.bias == nil)
        let host = try groupNorm(
            values, shape: [2, 6, 5, 5],
            numGroups: 3, on: backend)
        let expected = try groupNorm(try Tensor(values, shape: [2, 6, 5, 5], on: .reference), numGroups: 3).output.toArray()
        expectClose(host, expected, "one-shot", relative: 2e-6, absolute: 2e-6)
    }

    @Test("GroupNorm layer backward: equals the functional form; no parameter gradients without affine", arguments: BackendChoice.allCases)
    func groupNormLayerBackward(choice: BackendChoice) throws {
        let backend = try choice.backend()
        let harness = GroupNormBackwardHarness(op: .group(3), shape: [2, 6, 4, 3], seed: 12).stored(as: .float32, .channelsLast)
        let (input, dy, weight) = try harness.tensors(on: backend)
        var layer = try GroupNorm(numGroups: 3, numChannels: 6, on: backend)
        layer.weight = try #require(weight) as Tensor
        let out = try layer.forward(input)
        let gradients = try layer.backward(dy, forward: out)
        let functional = try groupNormBackward(dy, input: input, numGroups: 3, weight: layer.weight, forward: out)
        try expectIdentical(gradients, functional)

        let plain = try GroupNorm(numGroups: 3, numChannels: 6, affine: false, on: backend)
        let plainOut = try plain.forward(input)
        let plainGradients = try plain.backward(dy, forward: plainOut)
        #expect(plainGradients.input != nil && plainGradients.weight == nil && plainGradients.bias == nil)
        let wrong = try Tensor(repeating: 0, shape: [2, 4, 3], on: backend)
        // dy of another shape than the forward's input.
        #expect(throws: NormError.shapeMismatch(argument: "gradOutput", expected: [2, 6, 4, 3], actual: [2, 4, 3])) {
            try layer.backward(wrong, forward: out)
        }
    }

    @Test("InstanceNorm layer backward: input statistics in training, running statistics in inference", arguments: BackendChoice.allCases)
    func instanceNormLayerBackward(choice: BackendChoice) throws {
        let backend = try choice.backend()
        let harness = GroupNormBackwardHarness(op: .instance, shape: [2, 4, 5, 3], seed: 14)
        let (input, dy, weight) = try harness.tensors(on: backend)
        var layer = try InstanceNorm(numFeatures: 4, affine: true, trackRunningStats: true, on: backend)
        layer.weight = try #require(weight) as Tensor

        let training = try layer.forward(input)
        let trained = try layer.backward(dy, forward: training)
        let expected = try instanceNormBackward(dy, input: input, weight: layer.weight, forward: training)
        #expect(try trained.input?.toArray() == expected.input?.toArray())
        #expect(try trained.weight?.toArray() == expected.weight?.toArray())

        layer.isTraining = false
        let inference = try layer.forward(input)
        #expect(inference.saveMean == nil)
        let inferred = try layer.backward(dy, forward: inference, outputMask: [.input, .weight])
        let running = try #require(layer.runningStatistics)
        let constant = try instanceNormBackward(
            dy, input: input, weight: layer.weight, runningStatistics: running, eps: layer.eps, outputMask: [.input, .weight])
        #expect(try inferred.input?.toArray() == constant.input?.toArray())
        #expect(try inferred.weight?.toArray() == constant.weight?.toArray())
        #expect(inferred.bias == nil)

        // The forward kept the running statistics it normalised with: the layer's own
        // may change (or go) afterwards without changing this backward pass.
        layer.runningStatistics = nil
        let again = try layer.backward(dy, forward: inference, outputMask: [.input, .weight])
        #expect(try again.input?.toArray() == constant.input?.toArray())
    }

    @Test("LayerNorm layer backward: γ and β, no bias, no affine", arguments: BackendChoice.allCases)
    func layerNormLayerBackward(choice: BackendChoice) throws {
        let backend = try choice.backend()
        var rng = SeededGenerator(seed: 21)
        let x = try Tensor(rng.normals(24, offset: 1), shape: [2, 3, 4], on: backend)
        let dy = try Tensor(rng.normals(24), shape: [2, 3, 4], on: backend)
        var layer = try LayerNorm(normalizedShape: [3, 4], on: backend)
        layer.weight = try Tensor(rng.normals(12, offset: 1), shape: [3, 4], on: backend)
        let forward = try layer.forward(x)
        let gradients = try layer.backward(dy, forward: forward)
        let functional = try layerNormBackward(
            dy, input: x, normalizedShape: [3, 4], weight: layer.weight, saveMean: forward.saveMean,
            saveInvstd: forward.saveInvstd)
        try expectIdentical(gradients, functional)
        let noBias = try LayerNorm(normalizedShape: [3, 4], bias: false, on: backend)
        let noBiasGradients = try noBias.backward(dy, forward: try noBias.forward(x))
        #expect(noBiasGradients.input != nil && noBiasGradients.weight != nil && noBiasGradients.bias == nil)
        let bare = try LayerNorm(normalizedShape: [3, 4], elementwiseAffine: false, on: backend)
        let bareGradients = try bare.backward(dy, forward: try bare.forward(x), outputMask: .all)
        #expect(bareGradients.input != nil && bareGradients.weight == nil && bareGradients.bias == nil)
    }

    @Test("RMSNorm layer backward: γ, no affine", arguments: BackendChoice.allCases)
    func rmsNormLayerBackward(choice: BackendChoice) throws {
        let backend = try choice.backend()
        var rng = SeededGenerator(seed: 22)
        let x = try Tensor(rng.normals(24), shape: [2, 12], on: backend)
        let dy = try Tensor(rng.normals(24), shape: [2, 12], on: backend)
        let layer = try RMSNorm(normalizedShape: [12], eps: 1e-6, on: backend)
        let forward = try layer.forward(x)
        let gradients = try layer.backward(dy, forward: forward)
        let functional = try rmsNormBackward(dy, input: x, normalizedShape: [12], weight: layer.weight, saveInvRms: forward.saveInvRms)
        #expect(try gradients.input?.toArray() == functional.input?.toArray())
        #expect(try gradients.weight?.toArray() == functional.weight?.toArray())
        #expect(gradients.bias == nil)
        let bare = try RMSNorm(normalizedShape: [12], elementwiseAffine: false, on: backend)
        let bareGradients = try bare.backward(dy, forward: try bare.forward(x))
        #expect(bareGradients.input != nil && bareGradients.weight == nil)
    }
}
