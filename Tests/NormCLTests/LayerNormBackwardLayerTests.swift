import Testing
@testable import NormCL

/// The layers' `backward` methods agree with the functional backward and leave out
/// the gradients of parameters the layer does not have.
@Suite("LayerNorm and RMSNorm layer backward")
struct LayerNormBackwardLayerTests {
    @Test("LayerNorm layer: γ and β, no bias, no affine", arguments: BackendChoice.allCases)
    func layerNormLayer(choice: BackendChoice) throws {
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

    @Test("RMSNorm layer: γ, no affine", arguments: BackendChoice.allCases)
    func rmsNormLayer(choice: BackendChoice) throws {
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
