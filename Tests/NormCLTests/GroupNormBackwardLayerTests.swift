import Testing
@testable import NormCL

/// The `backward` methods of the GroupNorm and InstanceNorm layers: the functional
/// backward with the layer's parameters and mode.
@Suite("GroupNorm and InstanceNorm layer backward")
struct GroupNormBackwardLayerTests {
    @Test("GroupNorm layer: equals the functional form; no parameter gradients without affine", arguments: BackendChoice.allCases)
    func groupNormLayer(choice: BackendChoice) throws {
        let backend = try choice.backend()
        let harness = GroupNormBackwardHarness(op: .group(3), shape: [2, 6, 4, 3], seed: 12)
        let input = try Tensor(harness.x, shape: harness.shape, layout: .channelsLast, on: backend)
        let dy = try Tensor(harness.gradOutput, shape: harness.shape, layout: .channelsLast, on: backend)
        var layer = try GroupNorm(numGroups: 3, numChannels: 6, on: backend)
        layer.weight = try Tensor(try #require(harness.weight), on: backend)
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

    @Test("InstanceNorm layer: input statistics in training, running statistics in inference", arguments: BackendChoice.allCases)
    func instanceNormLayer(choice: BackendChoice) throws {
        let backend = try choice.backend()
        let harness = GroupNormBackwardHarness(op: .instance, shape: [2, 4, 5, 3], seed: 14)
        let input = try Tensor(harness.x, shape: harness.shape, on: backend)
        let dy = try Tensor(harness.gradOutput, shape: harness.shape, on: backend)
        var layer = try InstanceNorm(numFeatures: 4, affine: true, trackRunningStats: true, on: backend)
        layer.weight = try Tensor(try #require(harness.weight), on: backend)

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
}
