import Testing
@testable import NormCL

/// Every bad Switchable Norm input is a typed ``NormError`` on both backends, and a
/// failed call leaves the running statistics unchanged.
@Suite("SwitchableNorm errors")
struct SwitchableNormErrorTests {
    struct Call {
        var shape = [2, 3, 4]
        var elementType = ElementType.float32
        var options = SwitchableNormOptions()
        var meanLogits: [Float] = [1, 1, 1]
        var varianceLogits: [Float] = [1, 1, 1]
        var logitsType = ElementType.float32
        var weight: [Float]? = nil
        var weightType = ElementType.float32
        var running = true
        var training = true
        var logitsOnReference = false

        func run(on backend: Backend) throws -> RunningStatistics? {
            let count = shape.reduce(1, *)
            let input = try Tensor((0..<count).map { Float($0 % 7) }, shape: shape, elementType: elementType, on: backend)
            let logitsBackend: Backend = logitsOnReference ? .reference : backend
            let wm = try Tensor(meanLogits, shape: [meanLogits.count], elementType: logitsType, on: logitsBackend)
            let wv = try Tensor(varianceLogits, shape: [varianceLogits.count], on: backend)
            let w = try weight.map { try Tensor($0, shape: [$0.count], elementType: weightType, on: backend) }
            var statistics: RunningStatistics? =
                running ? try RunningStatistics(channels: shape.count > 1 ? shape[1] : 1, on: backend) : nil
            _ = try switchableNorm(
                input, meanLogits: wm, varianceLogits: wv, weight: w, runningStatistics: &statistics, training: training,
                options: options)
            return statistics
        }
    }

    static let cases: [(String, Call, String)] = editedCases(of: Call()) { add in
        add("rank 1", "invalidShape(input)") { $0.shape = [6] }
        add("(N, C) with an IN branch", "invalidShape(input)") { $0.shape = [4, 3] }
        add("unbiased IN with L = 1", "invalidShape(input)") { $0.shape = [4, 3, 1, 1] }
        add("unbiased LN without IN, C·L = 1", "invalidShape(input)") {
            $0.shape = [4, 1]
            $0.options.branches = .layerBatch
            $0.meanLogits = [1, 1]
            $0.varianceLogits = [1, 1]
        }
        add("mean logits too long", "shapeMismatch(meanLogits)") { $0.meanLogits = [1, 1, 1, 1] }
        add("variance logits too short", "shapeMismatch(varianceLogits)") { $0.varianceLogits = [1, 1] }
        add("3 logits without BN", "shapeMismatch(meanLogits)") {
            $0.options.branches = .instanceLayer
            $0.running = false
        }
        add("weight of the wrong length", "shapeMismatch(weight)") { $0.weight = [1, 1] }
        add("half weight", "unsupported(weight)") {
            $0.weight = [1, 1, 1]
            $0.weightType = .float16
        }
        add("half logits", "unsupported(meanLogits)") { $0.logitsType = .float16 }
        add("negative eps", "invalidArgument(eps)") { $0.options.eps = -1 }
        add("NaN eps", "invalidArgument(eps)") { $0.options.eps = .nan }
        add("momentum above 1", "invalidArgument(momentum)") { $0.options.momentum = 1.5 }
        add("running statistics without BN", "invalidArgument(runningStatistics)") {
            $0.options.branches = .instanceLayer
            $0.meanLogits = [1, 1]
            $0.varianceLogits = [1, 1]
        }
        add("inference with BN and no running statistics", "invalidArgument(runningStatistics)") {
            $0.running = false
            $0.training = false
        }
        add("N·L = 1 with BN in training", "tooFewValuesPerChannel") {
            $0.shape = [1, 3]
            $0.options.branches = .layerBatch
            $0.meanLogits = [1, 1]
            $0.varianceLogits = [1, 1]
        }
    }

    @Test("each bad argument throws the documented NormError", arguments: BackendChoice.allCases)
    func typedErrors(choice: BackendChoice) throws {
        let backend = try choice.backend()
        for (name, call, expected) in Self.cases {
            let error = #expect(throws: NormError.self, "\(name)") { _ = try call.run(on: backend) }
            #expect(BatchNormErrorTests.caseAndArgument(error) == expected, "\(name): \(String(describing: error))")
        }
    }

    @Test("what stays legal: N·L = 1 in inference, biased IN with L = 1, IN + LN with one sample", arguments: BackendChoice.allCases)
    func legalEdges(choice: BackendChoice) throws {
        let backend = try choice.backend()
        var call = Call()
        call.shape = [1, 3]
        call.options.branches = .layerBatch
        call.meanLogits = [1, 1]
        call.varianceLogits = [1, 1]
        call.training = false
        _ = try call.run(on: backend)
        call = Call()
        call.shape = [4, 3, 1]
        call.options.varianceEstimator = .biased
        _ = try call.run(on: backend)
        call = Call()
        call.shape = [1, 3, 5]
        call.options.branches = .instanceLayer
        call.meanLogits = [1, 1]
        call.varianceLogits = [1, 1]
        call.running = false
        _ = try call.run(on: backend)
    }

    @Test("a tensor on another backend")
    func backendMismatch() throws {
        _ = try #require(sharedRuntime)
        var call = Call()
        call.logitsOnReference = true
        let error = #expect(throws: NormError.self) { _ = try call.run(on: .openCL(sharedRuntime!)) }
        #expect(BatchNormErrorTests.caseAndArgument(error) == "backendMismatch(meanLogits)")
    }

    @Test("empty input, and a bad layer", arguments: BackendChoice.allCases)
    func emptyAndLayer(choice: BackendChoice) throws {
        let backend = try choice.backend()
        #expect(throws: NormError.self) { _ = try SwitchableNorm(numFeatures: 0, on: backend) }
        #expect(throws: NormError.self) { _ = try SwitchableNorm(numFeatures: 3, options: .init(eps: -1), on: backend) }
        #expect(throws: NormError.self) { _ = try SwitchableNorm(numFeatures: 3, options: .init(momentum: 2), on: backend) }
        // An empty input is no error (EmptyTensorTests checks what it returns).
        let zero = Tensor(shape: [0, 3, 4], layout: .channelsFirst, storage: .host([]))
        var none: RunningStatistics? = nil
        let logits = try Tensor([1, 1, 1], on: .reference)
        let output = try switchableNorm(zero, meanLogits: logits, varianceLogits: logits, runningStatistics: &none, training: true)
        #expect(output.output.isEmpty)
    }

    @Test("a failed call leaves the running statistics unchanged")
    func failureChangesNothing() throws {
        for backend in allBackends {
            let layerInput = try Tensor([Float](repeating: 1, count: 12), shape: [2, 3, 2], on: backend)
            var layer = try SwitchableNorm(numFeatures: 3, on: backend)
            layer.meanLogits = try Tensor([1, 1], on: backend)
            #expect(throws: NormError.self) { _ = try layer(layerInput) }
            #expect(layer.runningStatistics?.numBatchesTracked == 0)
            #expect(try layer.runningStatistics?.mean.toArray() == [0, 0, 0])
        }
    }
}
