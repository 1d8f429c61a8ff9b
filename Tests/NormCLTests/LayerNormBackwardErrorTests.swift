import Testing
@testable import NormCL

/// Every bad LayerNorm backward argument is a typed ``NormError`` on both backends.
@Suite("LayerNorm backward errors")
struct LayerNormBackwardErrorTests {
    static func caseAndArgument(_ error: NormError?) -> String? { BatchNormErrorTests.caseAndArgument(error) }

    /// Calls layerNormBackward with good arguments on `backend`, replaced where given.
    static func call(
        on backend: Backend, gradOutput: Tensor? = nil, input: Tensor? = nil, normalizedShape: [Int] = [3, 4],
        weight: Tensor?? = nil, saveMean: Tensor? = nil, saveInvstd: Tensor? = nil
    ) throws -> NormGradients {
        let x = try input ?? Tensor(repeating: 1.5, shape: [2, 3, 4], on: backend)
        return try layerNormBackward(
            try gradOutput ?? Tensor(repeating: 1, shape: [2, 3, 4], on: backend), input: x,
            normalizedShape: normalizedShape, weight: try weight ?? Tensor(repeating: 1, shape: [3, 4], on: backend),
            saveMean: try saveMean ?? Tensor(repeating: 0, shape: [2], on: backend),
            saveInvstd: try saveInvstd ?? Tensor(repeating: 1, shape: [2], on: backend))
    }

    @Test("gradOutput of another shape, type or layout", arguments: BackendChoice.allCases)
    func gradOutput(choice: BackendChoice) throws {
        let backend = try choice.backend()
        #expect(try Self.call(on: backend).input?.shape == [2, 3, 4])
        #expect(throws: NormError.shapeMismatch(argument: "gradOutput", expected: [2, 3, 4], actual: [2, 12])) {
            try Self.call(on: backend, gradOutput: try Tensor(repeating: 1, shape: [2, 12], on: backend))
        }
        let half = try Tensor(repeating: 1, shape: [2, 3, 4], elementType: .float16, on: backend)
        let typeError = #expect(throws: NormError.self) { try Self.call(on: backend, gradOutput: half) }
        #expect(Self.caseAndArgument(typeError) == "unsupported(gradOutput)")
        // Rank 2: channels-last is the same memory, so the input is accepted, but dy must match its layout.
        let x = try Tensor(repeating: 1, shape: [2, 12], on: backend)
        let last = try Tensor(repeating: 1, shape: [2, 12], layout: .channelsLast, on: backend)
        let layoutError = #expect(throws: NormError.self) {
            try Self.call(on: backend, gradOutput: last, input: x, normalizedShape: [12], weight: .some(nil))
        }
        #expect(Self.caseAndArgument(layoutError) == "unsupported(gradOutput)")
    }

    @Test("saved statistics of the wrong shape or type; weight of the wrong shape", arguments: BackendChoice.allCases)
    func statistics(choice: BackendChoice) throws {
        let backend = try choice.backend()
        #expect(throws: NormError.shapeMismatch(argument: "saveMean", expected: [2], actual: [3])) {
            try Self.call(on: backend, saveMean: try Tensor(repeating: 0, shape: [3], on: backend))
        }
        #expect(throws: NormError.shapeMismatch(argument: "saveInvstd", expected: [2], actual: [2, 1])) {
            try Self.call(on: backend, saveInvstd: try Tensor(repeating: 1, shape: [2, 1], on: backend))
        }
        let half = try Tensor(repeating: 1, shape: [2], elementType: .float16, on: backend)
        let error = #expect(throws: NormError.self) { try Self.call(on: backend, saveInvstd: half) }
        #expect(Self.caseAndArgument(error) == "unsupported(saveInvstd)")
        #expect(throws: NormError.shapeMismatch(argument: "weight", expected: [3, 4], actual: [12])) {
            try Self.call(on: backend, weight: try Tensor(repeating: 1, shape: [12], on: backend))
        }
        #expect(throws: NormError.shapeMismatch(argument: "input", expected: [4, 3], actual: [3, 4])) {
            try Self.call(on: backend, normalizedShape: [4, 3], weight: .some(nil))
        }
        let empty = #expect(throws: NormError.self) { try Self.call(on: backend, normalizedShape: [], weight: .some(nil)) }
        #expect(Self.caseAndArgument(empty) == "invalidShape(normalizedShape)")
    }

    @Test("tensors on another backend or runtime")
    func backendMismatch() throws {
        let runtime = try #require(sharedRuntime)
        let device = Backend.openCL(runtime)
        let host = try Tensor(repeating: 1, shape: [2, 3, 4], on: .reference)
        let error = #expect(throws: NormError.self) { try Self.call(on: device, gradOutput: host) }
        #expect(Self.caseAndArgument(error) == "backendMismatch(gradOutput)")
        let hostMean = try Tensor(repeating: 0, shape: [2], on: .reference)
        let meanError = #expect(throws: NormError.self) { try Self.call(on: device, saveMean: hostMean) }
        #expect(Self.caseAndArgument(meanError) == "backendMismatch(saveMean)")
        let other = try OpenCLRuntime(device: runtime.device)
        let foreign = try Tensor(repeating: 1, shape: [2], on: .openCL(other))
        let scaleError = #expect(throws: NormError.self) { try Self.call(on: device, saveInvstd: foreign) }
        #expect(Self.caseAndArgument(scaleError) == "backendMismatch(saveInvstd)")
    }

    @Test("empty input: no error, zero parameter gradients (EmptyTensorTests covers more)")
    func emptyInput() throws {
        let empty = Tensor(shape: [0, 4], layout: .channelsFirst, storage: .host([]))
        let stats = Tensor(shape: [0], layout: .channelsFirst, storage: .host([]))
        let ln = try layerNormBackward(empty, input: empty, normalizedShape: [4], weight: nil, saveMean: stats, saveInvstd: stats)
        #expect(try ln.weight?.toArray() == [0, 0, 0, 0])
        let rms = try rmsNormBackward(empty, input: empty, normalizedShape: [4], weight: nil, saveInvRms: stats)
        #expect(try rms.weight?.toArray() == [0, 0, 0, 0])
    }
}
