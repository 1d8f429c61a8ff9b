import Testing
@testable import NormCL

/// Every misuse of the Switchable Norm backward is a typed ``NormError`` on both backends.
@Suite("SwitchableNorm backward errors")
struct SwitchableNormBackwardErrorTests {
    /// A valid backward call on [2, 3, 4] that each case changes one thing of.
    struct Call: Sendable {
        var shape = [2, 3, 4]
        var options = SwitchableNormOptions()
        var training = true
        var gradShape: [Int]? = nil
        var gradLayout = TensorLayout.channelsFirst
        var gradType = ElementType.float32
        /// dy on the other backend than the input's.
        var gradElsewhere = false
        var weight: [Float]? = [1, 2, 3]
        var meanLogits: [Float] = [1, 1, 1]
        var logitsType = ElementType.float32
        var passRunning = true
        /// Edits the forward output before the backward reads it.
        var editForward: (@Sendable (SwitchableNormOutput, Backend) throws -> SwitchableNormOutput)? = nil
        /// Runs the forward with these options instead (statistics of another variant).
        var forwardOptions: SwitchableNormOptions? = nil

        /// The other backend (nil without OpenCL).
        static func other(than backend: Backend) -> Backend? {
            if case .reference = backend { return sharedRuntime.map { .openCL($0) } }
            return .reference
        }

        func run(on backend: Backend) throws {
            let count = shape.reduce(1, *)
            let input = try Tensor((0..<count).map { Float($0 % 7) * 0.3 }, shape: shape, on: backend)
            let k = options.branches.count
            let logits = try Tensor([Float](repeating: 1, count: k), on: backend)
            let forwardOptions = forwardOptions ?? options
            let forwardLogits = try Tensor([Float](repeating: 1, count: forwardOptions.branches.count), on: backend)
            var running: RunningStatistics? =
                forwardOptions.branches.hasBatch ? try RunningStatistics(channels: shape[1], on: backend) : nil
            let savedRunning = running
            var forward = try switchableNorm(
                input, meanLogits: forwardLogits, varianceLogits: forwardLogits, runningStatistics: &running,
                training: training, options: forwardOptions)
            if let editForward { forward = try editForward(forward, backend) }
            let gradShape = gradShape ?? shape
            let dy = try Tensor(
                [Float](repeating: 0.5, count: gradShape.reduce(1, *)), shape: gradShape, layout: gradLayout,
                elementType: gradType, on: gradElsewhere ? try #require(Self.other(than: backend)) : backend)
            _ = try switchableNormBackward(
                dy, input: input,
                meanLogits: try Tensor(meanLogits, shape: [meanLogits.count], elementType: logitsType, on: backend),
                varianceLogits: logits, weight: try weight.map { try Tensor($0, shape: [$0.count], on: backend) },
                forward: forward, runningStatistics: passRunning ? savedRunning : nil, training: training,
                options: options)
        }
    }

    static let cases: [(String, Call, String)] = editedCases(of: Call()) { add in
        add("gradOutput of another shape", "shapeMismatch(gradOutput)") { $0.gradShape = [2, 3, 5] }
        add("gradOutput channels-last", "unsupported(gradOutput)") { $0.gradLayout = .channelsLast }
        add("gradOutput half", "unsupported(gradOutput)") { $0.gradType = .float16 }
        add("gradOutput on another backend", "backendMismatch(gradOutput)") { $0.gradElsewhere = true }
        add("weight of the wrong length", "shapeMismatch(weight)") { $0.weight = [1, 2] }
        add("mean logits too long", "shapeMismatch(meanLogits)") { $0.meanLogits = [1, 1, 1, 1] }
        add("half logits", "unsupported(meanLogits)") { $0.logitsType = .float16 }
        add("inference with BN, no running statistics", "invalidArgument(runningStatistics)") {
            $0.training = false
            $0.passRunning = false
        }
        add("saved mean of the wrong shape", "shapeMismatch(forward.saveMean)") {
            $0.editForward = { f, backend in
                SwitchableNormOutput(
                    output: f.output, saveMean: try Tensor([1, 2, 3], on: backend), saveInvstd: f.saveInvstd,
                    instanceMean: f.instanceMean, instanceVariance: f.instanceVariance, layerMean: f.layerMean,
                    layerVariance: f.layerVariance, batchMean: f.batchMean, batchVariance: f.batchVariance, events: [])
            }
        }
        add("saved invstd on another backend", "backendMismatch(forward.saveInvstd)") {
            $0.editForward = { f, backend in
                SwitchableNormOutput(
                    output: f.output, saveMean: f.saveMean,
                    saveInvstd: try Tensor([Float](repeating: 1, count: 6), shape: [2, 3], on: try #require(Call.other(than: backend))),
                    instanceMean: f.instanceMean, instanceVariance: f.instanceVariance, layerMean: f.layerMean,
                    layerVariance: f.layerVariance, batchMean: f.batchMean, batchVariance: f.batchVariance, events: [])
            }
        }
        add("statistics of a forward without IN", "invalidArgument(forward.instanceMean)") {
            $0.forwardOptions = SwitchableNormOptions(branches: .layerBatch)
            $0.options = SwitchableNormOptions(branches: .instanceLayer)
            $0.meanLogits = [1, 1]
        }
        add("statistics of a forward in inference", "invalidArgument(forward.batchMean)") {
            $0.editForward = { f, _ in
                SwitchableNormOutput(
                    output: f.output, saveMean: f.saveMean, saveInvstd: f.saveInvstd, instanceMean: f.instanceMean,
                    instanceVariance: f.instanceVariance, layerMean: f.layerMean, layerVariance: f.layerVariance,
                    batchMean: nil, batchVariance: nil, events: [])
            }
        }
    }

    @Test("each misuse throws the expected NormError", arguments: cases.indices)
    func misuse(index: Int) throws {
        let (name, call, expected) = Self.cases[index]
        for backend in allBackends {
            do {
                try call.run(on: backend)
                Issue.record("\(name) on \(backend.name): no error")
            } catch let error as NormError {
                #expect(Self.summary(error) == expected, "\(name) on \(backend.name): \(error)")
            }
        }
    }

    @Test("an empty input reaches the backward and gets zero gradients (EmptyTensorTests covers more)")
    func emptyInput() throws {
        let x = try Tensor([], shape: [0, 3, 4], on: .reference)
        var layer = try SwitchableNorm(numFeatures: 3, on: .reference)
        let forward = try layer.forward(x)
        let gradients = try switchableNormBackward(
            x, input: x, meanLogits: layer.meanLogits, varianceLogits: layer.varianceLogits, weight: layer.weight,
            forward: forward, training: true)
        #expect(try gradients.meanLogits.toArray() == [0, 0, 0])
    }

    /// `case(argument)`, for comparing without the reason texts.
    static func summary(_ error: NormError) -> String {
        switch error {
        case .invalidShape(let argument, _): "invalidShape(\(argument))"
        case .shapeMismatch(let argument, _, _): "shapeMismatch(\(argument))"
        case .emptyTensor(let argument, _): "emptyTensor(\(argument))"
        case .invalidArgument(let argument, _): "invalidArgument(\(argument))"
        case .tooFewValuesPerChannel: "tooFewValuesPerChannel"
        case .backendMismatch(let argument, _, _): "backendMismatch(\(argument))"
        case .unsupported(let argument, _): "unsupported(\(argument))"
        case .forwardMismatch(let argument, _): "forwardMismatch(\(argument))"
        }
    }
}
