import Testing
@testable import NormCL

/// Every bad RMSNorm backward argument is a typed ``NormError`` on both backends.
@Suite("RMSNorm backward errors")
struct RMSNormBackwardErrorTests {
    @Test("gradOutput, saved rstd, weight and input", arguments: BackendChoice.allCases)
    func errors(choice: BackendChoice) throws {
        let backend = try choice.backend()
        let x = try Tensor(repeating: 1.5, shape: [2, 3, 4], on: backend)
        let dy = try Tensor(repeating: 1, shape: [2, 3, 4], on: backend)
        let rstd = try Tensor(repeating: 1, shape: [2, 3], on: backend)
        #expect(try rmsNormBackward(dy, input: x, normalizedShape: [4], weight: nil, saveInvRms: rstd).input?.shape == [2, 3, 4])
        #expect(throws: NormError.shapeMismatch(argument: "gradOutput", expected: [2, 3, 4], actual: [6, 4])) {
            try rmsNormBackward(try Tensor(repeating: 1, shape: [6, 4], on: backend), input: x, normalizedShape: [4], weight: nil, saveInvRms: rstd)
        }
        let halfDy = try Tensor(repeating: 1, shape: [2, 3, 4], elementType: .float16, on: backend)
        let typeError = #expect(throws: NormError.self) { try rmsNormBackward(halfDy, input: x, normalizedShape: [4], weight: nil, saveInvRms: rstd) }
        #expect(LayerNormErrorTests.caseAndArgument(typeError) == "unsupported(gradOutput)")
        #expect(throws: NormError.shapeMismatch(argument: "saveInvRms", expected: [2, 3], actual: [6])) {
            try rmsNormBackward(dy, input: x, normalizedShape: [4], weight: nil, saveInvRms: try Tensor(repeating: 1, shape: [6], on: backend))
        }
        #expect(throws: NormError.shapeMismatch(argument: "weight", expected: [4], actual: [3])) {
            try rmsNormBackward(
                dy, input: x, normalizedShape: [4], weight: try Tensor(repeating: 1, shape: [3], on: backend), saveInvRms: rstd)
        }
        #expect(throws: NormError.shapeMismatch(argument: "input", expected: [3], actual: [4])) {
            try rmsNormBackward(dy, input: x, normalizedShape: [3], weight: nil, saveInvRms: rstd)
        }
        let last = try Tensor(repeating: 1, shape: [2, 3, 4], layout: .channelsLast, on: backend)
        let layoutError = #expect(throws: NormError.self) { try rmsNormBackward(last, input: last, normalizedShape: [4], weight: nil, saveInvRms: rstd) }
        #expect(LayerNormErrorTests.caseAndArgument(layoutError) == "unsupported(input)")
    }

    @Test("tensors on another backend")
    func backendMismatch() throws {
        let runtime = try #require(sharedRuntime)
        let x = try Tensor(repeating: 1, shape: [2, 4], on: .openCL(runtime))
        let hostRstd = try Tensor(repeating: 1, shape: [2], on: .reference)
        let error = #expect(throws: NormError.self) { try rmsNormBackward(x, input: x, normalizedShape: [4], weight: nil, saveInvRms: hostRstd) }
        #expect(LayerNormErrorTests.caseAndArgument(error) == "backendMismatch(saveInvRms)")
    }
}
