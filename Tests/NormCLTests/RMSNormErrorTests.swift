import Testing
@testable import NormCL

/// Every bad RMSNorm input, forward and backward, is a typed ``NormError`` on both
/// backends.
@Suite("RMSNorm errors")
struct RMSNormErrorTests {
    @Test("forward: shapes, weight, eps and layout", arguments: BackendChoice.allCases)
    func errors(choice: BackendChoice) throws {
        let backend = try choice.backend()
        let input = try Tensor(repeating: 1.5, shape: [2, 3, 4], on: backend)
        #expect(throws: NormError.self) { try rmsNorm(input, normalizedShape: []) }
        #expect(throws: NormError.shapeMismatch(argument: "input", expected: [3], actual: [4])) {
            try rmsNorm(input, normalizedShape: [3])
        }
        #expect(throws: NormError.shapeMismatch(argument: "weight", expected: [3, 4], actual: [12])) {
            try rmsNorm(input, normalizedShape: [3, 4], weight: try Tensor(repeating: 1, shape: [12], on: backend))
        }
        let halfWeight = try Tensor(repeating: 1, shape: [4], elementType: .float16, on: backend)
        let error = #expect(throws: NormError.self) { try rmsNorm(input, normalizedShape: [4], weight: halfWeight) }
        #expect(LayerNormErrorTests.caseAndArgument(error) == "unsupported(weight)")
        for eps: Float in [-1, .nan, .infinity] {
            let error = #expect(throws: NormError.self) { try rmsNorm(input, normalizedShape: [4], eps: eps) }
            #expect(LayerNormErrorTests.caseAndArgument(error) == "invalidArgument(eps)")
        }
        let channelsLast = try Tensor(repeating: 1, shape: [2, 3, 4], layout: .channelsLast, on: backend)
        let layoutError = #expect(throws: NormError.self) { try rmsNorm(channelsLast, normalizedShape: [4]) }
        #expect(LayerNormErrorTests.caseAndArgument(layoutError) == "unsupported(input)")
        #expect(throws: NormError.self) { try RMSNorm(normalizedShape: [], on: backend) }
        #expect(throws: NormError.self) { try RMSNorm(normalizedShape: [4], eps: -1, on: backend) }
    }

    @Test("forward: weight on another backend")
    func backendMismatch() throws {
        let runtime = try #require(sharedRuntime)
        let input = try Tensor(repeating: 1, shape: [2, 4], on: .openCL(runtime))
        let error = #expect(throws: NormError.self) {
            try rmsNorm(input, normalizedShape: [4], weight: try Tensor(repeating: 1, shape: [4], on: .reference))
        }
        #expect(LayerNormErrorTests.caseAndArgument(error) == "backendMismatch(weight)")
    }

    @Test("backward: gradOutput, saved rstd, weight and input", arguments: BackendChoice.allCases)
    func backwardErrors(choice: BackendChoice) throws {
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

    @Test("backward: tensors on another backend")
    func backwardBackendMismatch() throws {
        let runtime = try #require(sharedRuntime)
        let x = try Tensor(repeating: 1, shape: [2, 4], on: .openCL(runtime))
        let hostRstd = try Tensor(repeating: 1, shape: [2], on: .reference)
        let error = #expect(throws: NormError.self) { try rmsNormBackward(x, input: x, normalizedShape: [4], weight: nil, saveInvRms: hostRstd) }
        #expect(LayerNormErrorTests.caseAndArgument(error) == "backendMismatch(saveInvRms)")
    }
}
