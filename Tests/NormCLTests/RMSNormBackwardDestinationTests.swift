import Testing
@testable import NormCL

/// `rmsNormBackward(_:forward:gradResidualSum:outputMask:into:waitingFor:)` writes dx and dγ into the
/// destinations given (it once dropped them, and its wait list, and returned new tensors).
@Suite("RMSNorm backward destinations")
struct RMSNormBackwardDestinationTests {
    @Test("dx and dγ go into the caller's tensors, equal to a run without destinations")
    func destinations() throws {
        let runtime = try #require(sharedRuntime)
        let backend = Backend.openCL(runtime)
        let x = try Tensor((0..<24).map { Float($0 % 7) - 3 }, shape: [4, 6], on: backend)
        let dy = try Tensor((0..<24).map { Float($0 % 5) - 2 }, shape: [4, 6], on: backend)
        let weight = try Tensor((0..<6).map { 1 + Float($0) / 10 }, shape: [6], on: backend)
        let forward = try rmsNorm(x, normalizedShape: [6], weight: weight)
        let expected = try rmsNormBackward(dy, forward: forward)
        let dx = try Tensor(uninitializedShape: [4, 6], on: runtime)
        let dWeight = try Tensor(uninitializedShape: [6], on: runtime)
        let gradients = try rmsNormBackward(
            dy, forward: forward, into: BackwardDestinations(gradInput: dx, gradWeight: dWeight))
        #expect(gradients.input?.isSameMemory(as: dx) == true)
        #expect(gradients.weight?.isSameMemory(as: dWeight) == true)
        #expect(try dx.toArray() == expected.input?.toArray())
        #expect(try dWeight.toArray() == expected.weight?.toArray())
    }
}
