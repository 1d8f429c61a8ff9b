import Testing
@testable import NormCL

/// Every bad LayerNorm input is a typed ``NormError`` on both backends.
@Suite("LayerNorm errors")
struct LayerNormErrorTests {
    /// The case name and argument of a NormError.
    static func caseAndArgument(_ error: NormError?) -> String? {
        BatchNormErrorTests.caseAndArgument(error)
    }

    @Test("normalizedShape empty, non-positive, or not the trailing dims", arguments: BackendChoice.allCases)
    func normalizedShape(choice: BackendChoice) throws {
        let backend = try choice.backend()
        let input = try Tensor(repeating: 1.5, shape: [2, 3, 4], on: backend)
        for bad in [[], [-4], [3, -1]] {
            let error = #expect(throws: NormError.self) { try layerNorm(input, normalizedShape: bad) }
            #expect(Self.caseAndArgument(error) == "invalidShape(normalizedShape)", "\(bad)")
        }
        // Zero dims are allowed (an empty input, as in PyTorch), so these only fail to match.
        for bad in [[0], [3, 0]] {
            let error = #expect(throws: NormError.self) { try layerNorm(input, normalizedShape: bad) }
            #expect(Self.caseAndArgument(error) == "shapeMismatch(input)", "\(bad)")
        }
        #expect(throws: NormError.shapeMismatch(argument: "input", expected: [3], actual: [4])) {
            try layerNorm(input, normalizedShape: [3])
        }
        #expect(throws: NormError.shapeMismatch(argument: "input", expected: [2, 4], actual: [3, 4])) {
            try layerNorm(input, normalizedShape: [2, 4])
        }
        #expect(throws: NormError.shapeMismatch(argument: "input", expected: [1, 2, 3, 4], actual: [2, 3, 4])) {
            try layerNorm(input, normalizedShape: [1, 2, 3, 4])
        }
    }

    @Test("weight and bias of the wrong shape, type", arguments: BackendChoice.allCases)
    func parameters(choice: BackendChoice) throws {
        let backend = try choice.backend()
        let input = try Tensor(repeating: 1.5, shape: [2, 3, 4], on: backend)
        let good = try Tensor(repeating: 1, shape: [3, 4], on: backend)
        let flat = try Tensor(repeating: 1, shape: [12], on: backend)
        #expect(throws: NormError.shapeMismatch(argument: "weight", expected: [3, 4], actual: [12])) {
            try layerNorm(input, normalizedShape: [3, 4], weight: flat, bias: good)
        }
        #expect(throws: NormError.shapeMismatch(argument: "bias", expected: [3, 4], actual: [12])) {
            try layerNorm(input, normalizedShape: [3, 4], weight: good, bias: flat)
        }
        let half = try Tensor(repeating: 1, shape: [3, 4], elementType: .float16, on: backend)
        let error = #expect(throws: NormError.self) { try layerNorm(input, normalizedShape: [3, 4], bias: half) }
        #expect(Self.caseAndArgument(error) == "unsupported(bias)")
    }

    @Test("eps non-finite or negative; layer arguments", arguments: BackendChoice.allCases)
    func eps(choice: BackendChoice) throws {
        let backend = try choice.backend()
        let input = try Tensor(repeating: 1.5, shape: [2, 4], on: backend)
        for eps: Float in [-1e-5, .nan, .infinity, -.infinity] {
            let error = #expect(throws: NormError.self) { try layerNorm(input, normalizedShape: [4], eps: eps) }
            #expect(Self.caseAndArgument(error) == "invalidArgument(eps)", "\(eps)")
        }
        #expect(try layerNorm(input, normalizedShape: [4], eps: 0).output.shape == [2, 4])
        #expect(throws: NormError.self) { try LayerNorm(normalizedShape: [], on: backend) }
        #expect(throws: NormError.self) { try LayerNorm(normalizedShape: [4, 0], on: backend) }
        #expect(throws: NormError.self) { try LayerNorm(normalizedShape: [4], eps: .nan, on: backend) }
    }

    @Test("channels-last input of rank ≥ 3 is unsupported", arguments: BackendChoice.allCases)
    func channelsLast(choice: BackendChoice) throws {
        let backend = try choice.backend()
        let input = try Tensor(repeating: 1.5, shape: [2, 3, 4], layout: .channelsLast, on: backend)
        let error = #expect(throws: NormError.self) { try layerNorm(input, normalizedShape: [3, 4]) }
        #expect(Self.caseAndArgument(error) == "unsupported(input)")
    }

    @Test("parameters on another backend or runtime")
    func backendMismatch() throws {
        let runtime = try #require(sharedRuntime)
        let deviceName = runtime.device.name
        let input = try Tensor(repeating: 1, shape: [2, 4], on: .openCL(runtime))
        let host = try Tensor(repeating: 1, shape: [4], on: .reference)
        #expect(throws: NormError.backendMismatch(argument: "weight", expected: deviceName, actual: "CPU reference")) {
            try layerNorm(input, normalizedShape: [4], weight: host)
        }
        let hostInput = try Tensor(repeating: 1, shape: [2, 4], on: .reference)
        let device = try Tensor(repeating: 1, shape: [4], on: .openCL(runtime))
        #expect(throws: NormError.backendMismatch(argument: "bias", expected: "CPU reference", actual: deviceName)) {
            try layerNorm(hostInput, normalizedShape: [4], bias: device)
        }
        let other = try OpenCLRuntime(device: runtime.device)
        let foreign = try Tensor(repeating: 1, shape: [4], on: .openCL(other))
        let error = #expect(throws: NormError.self) { try layerNorm(input, normalizedShape: [4], weight: foreign) }
        #expect(Self.caseAndArgument(error) == "backendMismatch(weight)")
    }

    @Test("empty input and sizes beyond 32 bits")
    func emptyAndHuge() throws {
        // An empty input is no error (EmptyTensorTests checks what it returns).
        let empty = Tensor(shape: [0, 4], layout: .channelsFirst, storage: .host([]))
        #expect(try layerNorm(empty, normalizedShape: [4]).output.isEmpty)
        for shape in [[1 << 32, 1], [2, 1 << 32], [1 << 40, 1 << 40]] {
            let huge = Tensor(shape: shape, layout: .channelsFirst, storage: .host([0]))
            let error = #expect(throws: NormError.self) { try layerNorm(huge, normalizedShape: [shape[1]]) }
            #expect(Self.caseAndArgument(error) == "invalidShape(input)", "\(shape)")
            let rmsError = #expect(throws: NormError.self) { try rmsNorm(huge, normalizedShape: [shape[1]]) }
            #expect(Self.caseAndArgument(rmsError) == "invalidShape(input)", "\(shape)")
        }
        // Just below the limit is accepted by validation (nothing runs here).
        let edge = Tensor(shape: [Int(UInt32.max), 1], layout: .channelsFirst, storage: .host([0]))
        #expect(throws: Never.self) {
            _ = try RowNormProblem.validated(.layerNorm, input: edge, normalizedShape: [1], weight: nil, bias: nil, eps: 1e-5)
        }
    }
}
