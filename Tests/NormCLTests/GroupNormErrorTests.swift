import Testing
@testable import NormCL

/// Every bad GroupNorm input, and every bad GroupNorm or InstanceNorm backward call, is
/// a typed ``NormError`` on both backends; the GroupNorm layer checks its construction
/// and the input's channels.
@Suite("GroupNorm and InstanceNorm errors")
struct GroupNormErrorTests {
    /// Valid arguments on `backend`: x = i mod `period` of `shape`, dy = 0.5, and saved
    /// statistics (mean 0, invstd 1) of shape `statistics`.
    static func arguments(_ shape: [Int], period: Int, statistics: [Int], on backend: Backend) throws
        -> (input: Tensor, dy: Tensor, mean: Tensor, invstd: Tensor)
    {
        (
            try Tensor((0..<shape.reduce(1, *)).map { Float($0 % period) }, shape: shape, on: backend),
            try Tensor(repeating: 0.5, shape: shape, on: backend), try Tensor(repeating: 0, shape: statistics, on: backend),
            try Tensor(repeating: 1, shape: statistics, on: backend)
        )
    }

    @Test("GroupNorm forward: bad groups, shapes, parameters and eps; the layer", arguments: BackendChoice.allCases)
    func groupNormForwardErrors(choice: BackendChoice) throws {
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

    @Test("GroupNorm backward: groups, gradOutput, saved statistics, weight", arguments: BackendChoice.allCases)
    func groupNormErrors(choice: BackendChoice) throws {
        let backend = try choice.backend()
        let (input, dy, mean, invstd) = try Self.arguments([2, 6, 4], period: 7, statistics: [2, 3], on: backend)
        func backward(
            _ gradOutput: Tensor, input other: Tensor? = nil, groups: Int = 3, weight: Tensor? = nil,
            mean otherMean: Tensor? = nil, invstd otherInvstd: Tensor? = nil
        ) -> String? {
            thrown {
                try groupNormBackward(
                    gradOutput, input: other ?? input, numGroups: groups, weight: weight, saveMean: otherMean ?? mean,
                    saveInvstd: otherInvstd ?? invstd)
            }
        }
        #expect(backward(dy) == nil)
        // numGroups not dividing C, or not positive.
        #expect(backward(dy, groups: 4) == "invalidArgument(numGroups)")
        #expect(backward(dy, groups: 0) == "invalidArgument(numGroups)")
        // gradOutput: shape, layout, element type, backend.
        #expect(backward(try Tensor(repeating: 0, shape: [2, 6, 3], on: backend)) == "shapeMismatch(gradOutput)")
        #expect(
            backward(try Tensor(repeating: 0, shape: [2, 6, 4], layout: .channelsLast, on: backend))
                == "unsupported(gradOutput)")
        #expect(
            backward(try Tensor(repeating: 0, shape: [2, 6, 4], elementType: .float16, on: backend))
                == "unsupported(gradOutput)")
        // Saved statistics: (N, G) float32.
        #expect(backward(dy, mean: try Tensor(repeating: 0, shape: [2, 6], on: backend)) == "shapeMismatch(saveMean)")
        #expect(backward(dy, invstd: try Tensor(repeating: 1, shape: [6], on: backend)) == "shapeMismatch(saveInvstd)")
        #expect(
            backward(dy, invstd: try Tensor(repeating: 1, shape: [2, 3], elementType: .float16, on: backend))
                == "unsupported(saveInvstd)")
        // Weight.
        #expect(backward(dy, weight: try Tensor([1, 2], on: backend)) == "shapeMismatch(weight)")
        // Input.
        let vector = try Tensor([1, 2, 3], on: backend)
        #expect(backward(vector, input: vector) == "invalidShape(input)")
        if case .openCL = backend {
            let elsewhere = try Tensor(repeating: 0, shape: [2, 6, 4], on: .reference)
            #expect(backward(elsewhere) == "backendMismatch(gradOutput)")
            #expect(backward(dy, mean: try Tensor(repeating: 0, shape: [2, 3], on: .reference)) == "backendMismatch(saveMean)")
            #expect(backward(dy, weight: try Tensor(repeating: 1, shape: [6], on: .reference)) == "backendMismatch(weight)")
        }
    }

    @Test("InstanceNorm backward: rank, spatial size, saved and running statistics", arguments: BackendChoice.allCases)
    func instanceNormErrors(choice: BackendChoice) throws {
        let backend = try choice.backend()
        let (input, dy, mean, invstd) = try Self.arguments([2, 3, 4], period: 5, statistics: [2, 3], on: backend)
        #expect(thrown { try instanceNormBackward(dy, input: input, weight: nil, saveMean: mean, saveInvstd: invstd) } == nil)
        let flat = try Tensor(repeating: 1, shape: [2, 3], on: backend)
        #expect(thrown { try instanceNormBackward(flat, input: flat, weight: nil, saveMean: mean, saveInvstd: invstd) } == "invalidShape(input)")
        let single = try Tensor(repeating: 1, shape: [2, 3, 1], on: backend)
        #expect(
            thrown { try instanceNormBackward(single, input: single, weight: nil, saveMean: mean, saveInvstd: invstd) }
                == "tooFewValuesPerChannel")
        let wrongRows = try Tensor(repeating: 0, shape: [2, 1], on: backend)
        #expect(
            thrown { try instanceNormBackward(dy, input: input, weight: nil, saveMean: wrongRows, saveInvstd: invstd) }
                == "shapeMismatch(saveMean)")
        let wrongDy = try Tensor(repeating: 0, shape: [2, 3, 5], on: backend)
        #expect(
            thrown { try instanceNormBackward(wrongDy, input: input, weight: nil, saveMean: mean, saveInvstd: invstd) }
                == "shapeMismatch(gradOutput)")
        // Running statistics.
        let running = try RunningStatistics(channels: 3, on: backend)
        #expect(thrown { try instanceNormBackward(dy, input: input, weight: nil, runningStatistics: running) } == nil)
        #expect(thrown { try instanceNormBackward(single, input: single, weight: nil, runningStatistics: running) } == nil)
        let short = try RunningStatistics(channels: 2, on: backend)
        #expect(thrown { try instanceNormBackward(dy, input: input, weight: nil, runningStatistics: short) } == "shapeMismatch(runningMean)")
        let badVariance = RunningStatistics(mean: running.mean, variance: try Tensor([1, 1], on: backend))
        #expect(
            thrown { try instanceNormBackward(dy, input: input, weight: nil, runningStatistics: badVariance) }
                == "shapeMismatch(runningVar)")
        #expect(
            thrown { try instanceNormBackward(dy, input: input, weight: nil, runningStatistics: running, eps: -1) }
                == "invalidArgument(eps)")
        #expect(
            thrown { try instanceNormBackward(wrongDy, input: input, weight: nil, runningStatistics: running) }
                == "shapeMismatch(gradOutput)")
        // The forward overload refuses an inference output.
        var tracked: RunningStatistics? = running
        let inference = try instanceNorm(input, runningStatistics: &tracked, useInputStats: false)
        #expect(thrown { try instanceNormBackward(dy, input: input, weight: nil, forward: inference) } == "invalidArgument(forward)")
        if case .openCL = backend {
            let elsewhere = try RunningStatistics(channels: 3, on: .reference)
            #expect(
                thrown { try instanceNormBackward(dy, input: input, weight: nil, runningStatistics: elsewhere) }
                    == "backendMismatch(runningMean)")
        }
    }
}
