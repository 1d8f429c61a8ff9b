import Testing
@testable import NormCL

/// Every bad GroupNorm input is a typed ``NormError`` on both backends; the layer
/// checks its construction and the input's channels.
@Suite("GroupNorm errors and layer")
struct GroupNormErrorTests {
    @Test("bad groups, shapes, parameters and eps", arguments: BackendChoice.allCases)
    func errors(choice: BackendChoice) throws {
        let backend = try choice.backend()
        let input = try Tensor(repeating: 1.5, shape: [2, 6, 4], on: backend)
        #expect(thrown { try groupNorm(input, numGroups: 0) } == "invalidArgument(numGroups)")
        #expect(thrown { try groupNorm(input, numGroups: -2) } == "invalidArgument(numGroups)")
        #expect(thrown { try groupNorm(input, numGroups: 4) } == "invalidArgument(numGroups)")  // 6 % 4 != 0
        #expect(thrown { try groupNorm(input, numGroups: 12) } == "invalidArgument(numGroups)")
        let vector = try Tensor([1, 2, 3], on: backend)
        #expect(thrown { try groupNorm(vector, numGroups: 1) } == "invalidShape(input)")
        let short = try Tensor([1, 2], on: backend)
        #expect(throws: NormError.shapeMismatch(argument: "weight", expected: [6], actual: [2])) {
            try groupNorm(input, numGroups: 3, weight: short)
        }
        #expect(throws: NormError.shapeMismatch(argument: "bias", expected: [6], actual: [2])) {
            try groupNorm(input, numGroups: 3, bias: short)
        }
        let halfWeight = try Tensor(repeating: 1, shape: [6], elementType: .float16, on: backend)
        #expect(thrown { try groupNorm(input, numGroups: 3, weight: halfWeight) } == "unsupported(weight)")
        for eps: Float in [-1e-5, .nan, .infinity] {
            #expect(thrown { try groupNorm(input, numGroups: 3, eps: eps) } == "invalidArgument(eps)")
        }
        #expect(throws: NormError.shapeMismatch(argument: "values", expected: [2, 3], actual: [5])) {
            try groupNorm([1, 2, 3, 4, 5], shape: [2, 3], numGroups: 1, on: backend)
        }
        if case .openCL = backend {
            let elsewhere = try Tensor(repeating: 1, shape: [6], on: .reference)
            #expect(thrown { try groupNorm(input, numGroups: 3, bias: elsewhere) } == "backendMismatch(bias)")
        }
        // The layer.
        #expect(thrown { try GroupNorm(numGroups: 4, numChannels: 6, on: backend) } == "invalidArgument(numGroups)")
        #expect(thrown { try GroupNorm(numGroups: 0, numChannels: 6, on: backend) } == "invalidArgument(numGroups)")
        #expect(thrown { try GroupNorm(numGroups: 1, numChannels: 0, on: backend) } == "invalidArgument(numChannels)")
        #expect(thrown { try GroupNorm(numGroups: 1, numChannels: 6, eps: .nan, on: backend) } == "invalidArgument(eps)")
        let layer = try GroupNorm(numGroups: 2, numChannels: 4, on: backend)
        #expect(throws: NormError.shapeMismatch(argument: "input", expected: [2, 4, 4], actual: [2, 6, 4])) { try layer(input) }
    }

    @Test("the layer equals the functional form with γ = 1, β = 0; host one-shot form", arguments: BackendChoice.allCases)
    func layer(choice: BackendChoice) throws {
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
}
