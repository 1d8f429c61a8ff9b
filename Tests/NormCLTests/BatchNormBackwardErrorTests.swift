import Testing
@testable import NormCL

/// Every misuse of BatchNorm's backward entry points is a typed ``NormError`` on both
/// backends.
@Suite("BatchNorm backward errors")
struct BatchNormBackwardErrorTests {
    /// Valid arguments on `backend` for an input of `shape`, to be spoilt one at a time.
    struct Arguments {
        var gradOutput, input: Tensor
        var weight: Tensor?
        /// The saved statistics of a training forward.
        var mean, invstd: Tensor
        /// Batch Renorm's saved r and d.
        var r, d: Tensor
        var running: RunningStatistics

        init(shape: [Int] = [2, 3, 4], on backend: Backend) throws {
            let count = shape.reduce(1, *), channels = shape[1]
            input = try Tensor((0..<count).map { Float($0 % 7) }, shape: shape, on: backend)
            gradOutput = try Tensor((0..<count).map { Float($0 % 5) - 2 }, shape: shape, on: backend)
            weight = try Tensor(repeating: 1, shape: [channels], on: backend)
            mean = try Tensor(repeating: 3, shape: [channels], on: backend)
            invstd = try Tensor(repeating: 0.5, shape: [channels], on: backend)
            r = try Tensor(repeating: 1, shape: [channels], on: backend)
            d = try Tensor(repeating: 0, shape: [channels], on: backend)
            running = RunningStatistics(mean: mean, variance: invstd)
        }

        func training() throws -> NormGradients {
            try batchNormBackward(gradOutput, input: input, weight: weight, saveMean: mean, saveInvstd: invstd)
        }
        func renorm() throws -> NormGradients {
            try batchRenormBackward(
                gradOutput, input: input, weight: weight, saveMean: mean, saveInvstd: invstd, renormR: r, renormD: d)
        }
        func inference(eps: Float = 1e-5) throws -> NormGradients {
            try batchNormBackward(gradOutput, input: input, weight: weight, runningStatistics: running, eps: eps)
        }
        /// All three entry points.
        func all() -> [() throws -> NormGradients] { [training, renorm, { try inference() }] }
    }

    static func expectError(
        _ expected: NormError, _ call: () throws -> NormGradients, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(throws: expected, sourceLocation: sourceLocation) { _ = try call() }
    }

    @Test("gradOutput: shape, layout, element type, backend", arguments: allBackends)
    func gradOutput(backend: Backend) throws {
        var a = try Arguments(on: backend)
        a.gradOutput = try Tensor(repeating: 1, shape: [2, 3, 5], on: backend)
        for call in a.all() { Self.expectError(.shapeMismatch(argument: "gradOutput", expected: [2, 3, 4], actual: [2, 3, 5]), call) }
        a.gradOutput = try Tensor(repeating: 1, shape: [2, 3, 4], layout: .channelsLast, on: backend)
        for call in a.all() { #expect(throws: NormError.self) { _ = try call() } }
        a.gradOutput = try Tensor(repeating: 1, shape: [2, 3, 4], elementType: .float16, on: backend)
        for call in a.all() { #expect(throws: NormError.self) { _ = try call() } }
        if case .openCL = backend {
            a.gradOutput = try Tensor(repeating: 1, shape: [2, 3, 4], on: .reference)
            for call in a.all() {
                Self.expectError(.backendMismatch(argument: "gradOutput", expected: backend.name, actual: Backend.reference.name), call)
            }
        }
    }

    @Test("weight and statistics: shape, element type, backend", arguments: allBackends)
    func parameters(backend: Backend) throws {
        let good = try Arguments(on: backend)
        let wrong = try Tensor(repeating: 1, shape: [4], on: backend)
        let half = try Tensor(repeating: 1, shape: [3], elementType: .float16, on: backend)
        var a = good
        a.weight = wrong
        for call in a.all() { Self.expectError(.shapeMismatch(argument: "weight", expected: [3], actual: [4]), call) }
        a = good
        a.mean = wrong
        Self.expectError(.shapeMismatch(argument: "saveMean", expected: [3], actual: [4]), a.training)
        Self.expectError(.shapeMismatch(argument: "saveMean", expected: [3], actual: [4]), a.renorm)
        a = good
        a.invstd = half
        Self.expectError(.unsupported(argument: "saveInvstd", reason: "parameters and statistics are float32 (got float16)"), a.training)
        a = good
        a.r = wrong
        Self.expectError(.shapeMismatch(argument: "renormR", expected: [3], actual: [4]), a.renorm)
        a = good
        a.d = half
        #expect(throws: NormError.self) { _ = try a.renorm() }
        a = good
        a.running.mean = wrong
        Self.expectError(.shapeMismatch(argument: "runningMean", expected: [3], actual: [4]), { try a.inference() })
        a = good
        a.running.variance = wrong
        Self.expectError(.shapeMismatch(argument: "runningVar", expected: [3], actual: [4]), { try a.inference() })
        a = good
        for eps: Float in [-1, .nan, .infinity] { #expect(throws: NormError.self) { _ = try a.inference(eps: eps) } }
        if case .openCL = backend {
            a.weight = try Tensor(repeating: 1, shape: [3], on: .reference)
            for call in a.all() {
                Self.expectError(.backendMismatch(argument: "weight", expected: backend.name, actual: Backend.reference.name), call)
            }
            a = good
            a.invstd = try Tensor(repeating: 1, shape: [3], on: .reference)
            Self.expectError(.backendMismatch(argument: "saveInvstd", expected: backend.name, actual: Backend.reference.name), a.training)
        }
    }

    @Test("input shapes the forward rejects", arguments: allBackends)
    func shapes(backend: Backend) throws {
        var a = try Arguments(on: backend)
        a.input = try Tensor(repeating: 1, shape: [6], on: backend)
        a.gradOutput = a.input
        for call in a.all() { #expect(throws: NormError.self) { _ = try call() } }
        // One value per channel: training rejects it as the forward does; inference is fine.
        a = try Arguments(shape: [1, 3], on: backend)
        Self.expectError(.tooFewValuesPerChannel(valuesPerChannel: 1, shape: [1, 3]), a.training)
        Self.expectError(.tooFewValuesPerChannel(valuesPerChannel: 1, shape: [1, 3]), a.renorm)
        #expect(try a.inference().input != nil)
    }

    @Test("nothing is returned or changed by a failing call; a valid call after it works", arguments: allBackends)
    func recovers(backend: Backend) throws {
        var a = try Arguments(on: backend)
        let before = try a.training()
        a.weight = try Tensor(repeating: 1, shape: [2], on: backend)
        #expect(throws: NormError.self) { _ = try a.training() }
        a.weight = try Tensor(repeating: 1, shape: [3], on: backend)
        let after = try a.training()
        #expect(try before.input!.toArray() == after.input!.toArray())
    }
}
