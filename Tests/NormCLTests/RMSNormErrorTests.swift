import Testing
@testable import NormCL

/// Every bad RMSNorm input is a typed ``NormError`` on both backends.
@Suite("RMSNorm errors")
struct RMSNormErrorTests {
    @Test("shapes, weight, eps and layout", arguments: BackendChoice.allCases)
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

    @Test("weight on another backend")
    func backendMismatch() throws {
        let runtime = try #require(sharedRuntime)
        let input = try Tensor(repeating: 1, shape: [2, 4], on: .openCL(runtime))
        let error = #expect(throws: NormError.self) {
            try rmsNorm(input, normalizedShape: [4], weight: try Tensor(repeating: 1, shape: [4], on: .reference))
        }
        #expect(LayerNormErrorTests.caseAndArgument(error) == "backendMismatch(weight)")
    }
}
