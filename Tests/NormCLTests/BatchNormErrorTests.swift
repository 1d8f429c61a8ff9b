import Testing
@testable import NormCL

/// Every bad BatchNorm input is a typed ``NormError`` on both backends, and a failed
/// call changes nothing.
@Suite("BatchNorm errors")
struct BatchNormErrorTests {
    /// The case name and argument of a NormError, for errors whose `reason` text is
    /// prose (not worth pinning down word for word).
    static func caseAndArgument(_ error: NormError?) -> String? {
        switch error {
        case .invalidShape(let argument, _)?: "invalidShape(\(argument))"
        case .shapeMismatch(let argument, _, _)?: "shapeMismatch(\(argument))"
        case .emptyTensor(let argument, _)?: "emptyTensor(\(argument))"
        case .invalidArgument(let argument, _)?: "invalidArgument(\(argument))"
        case .tooFewValuesPerChannel?: "tooFewValuesPerChannel"
        case .backendMismatch(let argument, _, _)?: "backendMismatch(\(argument))"
        case .unsupported(let argument, _)?: "unsupported(\(argument))"
        case .forwardMismatch(let argument, _)?: "forwardMismatch(\(argument))"
        case nil: nil
        }
    }

    static func running(_ channels: Int, on backend: Backend, tracked: Int = 0) throws -> RunningStatistics? {
        RunningStatistics(
            mean: try Tensor((0..<channels).map { Float($0) + 0.5 }, on: backend),
            variance: try Tensor((0..<channels).map { Float($0) + 2 }, on: backend), numBatchesTracked: tracked)
    }

    @Test("input of rank < 2", arguments: BackendChoice.allCases)
    func rankBelowTwo(choice: BackendChoice) throws {
        let backend = try choice.backend()
        let input = try Tensor([1, 2, 3], shape: [3], on: backend)
        var none: RunningStatistics? = nil
        for training in [true, false] {
            let error = #expect(throws: NormError.self) {
                try batchNorm(input, runningStatistics: &none, training: training)
            }
            #expect(Self.caseAndArgument(error) == "invalidShape(input)", "\(String(describing: error))")
        }
        var running = try Self.running(3, on: backend)
        let error = #expect(throws: NormError.self) { try batchNorm(input, runningStatistics: &running, training: false) }
        #expect(Self.caseAndArgument(error) == "invalidShape(input)")
    }

    @Test("per-channel tensors of the wrong length", arguments: BackendChoice.allCases)
    func wrongLengths(choice: BackendChoice) throws {
        let backend = try choice.backend()
        let input = try Tensor(repeating: 1.5, shape: [2, 3, 4], on: backend)
        let good = try Tensor([1, 2, 3], on: backend)
        let short = try Tensor([1, 2], on: backend)
        let long = try Tensor([1, 2, 3, 4], on: backend)
        let matrix = try Tensor([1, 2, 3], shape: [1, 3], on: backend)
        var none: RunningStatistics? = nil
        for training in [true, false] {
            #expect(throws: NormError.shapeMismatch(argument: "weight", expected: [3], actual: [2])) {
                try batchNorm(input, weight: short, bias: good, runningStatistics: &none, training: training)
            }
            #expect(throws: NormError.shapeMismatch(argument: "bias", expected: [3], actual: [4])) {
                try batchNorm(input, weight: good, bias: long, runningStatistics: &none, training: training)
            }
            #expect(throws: NormError.shapeMismatch(argument: "weight", expected: [3], actual: [1, 3])) {
                try batchNorm(input, weight: matrix, runningStatistics: &none, training: training)
            }
            var badMean: RunningStatistics? = RunningStatistics(mean: short, variance: good)
            #expect(throws: NormError.shapeMismatch(argument: "runningMean", expected: [3], actual: [2])) {
                try batchNorm(input, runningStatistics: &badMean, training: training)
            }
            var badVar: RunningStatistics? = RunningStatistics(mean: good, variance: long)
            #expect(throws: NormError.shapeMismatch(argument: "runningVar", expected: [3], actual: [4])) {
                try batchNorm(input, runningStatistics: &badVar, training: training)
            }
        }
        // The convenience form without running statistics checks too.
        #expect(throws: NormError.shapeMismatch(argument: "bias", expected: [3], actual: [2])) {
            try batchNorm(input, bias: short)
        }
    }

    @Test("one value per channel in training", arguments: BackendChoice.allCases)
    func singleValueTraining(choice: BackendChoice) throws {
        let backend = try choice.backend()
        for shape in [[1, 3], [1, 3, 1, 1]] {
            let input = try Tensor([1, 2, 3], shape: shape, on: backend)
            var running = try Self.running(3, on: backend)
            #expect(throws: NormError.tooFewValuesPerChannel(valuesPerChannel: 1, shape: shape)) {
                try batchNorm(input, runningStatistics: &running, training: true)
            }
            #expect(running?.numBatchesTracked == 0)
            #expect(throws: NormError.tooFewValuesPerChannel(valuesPerChannel: 1, shape: shape)) {
                try batchNorm(input)
            }
            var layer = try BatchNorm(numFeatures: 3, on: backend)
            #expect(throws: NormError.tooFewValuesPerChannel(valuesPerChannel: 1, shape: shape)) { try layer(input) }
            #expect(layer.runningStatistics?.numBatchesTracked == 0)
            // A layer without running statistics uses batch statistics in inference too.
            var untracked = try BatchNorm(numFeatures: 3, trackRunningStats: false, on: backend)
            untracked.isTraining = false
            #expect(throws: NormError.tooFewValuesPerChannel(valuesPerChannel: 1, shape: shape)) { try untracked(input) }

            // Inference with running statistics is fine: y = (x − μ)/sqrt(σ² + eps).
            let y = try batchNorm(input, runningStatistics: &running, training: false).output.toArray()
            for c in 0..<3 {
                let expected = (Double(c + 1) - (Double(c) + 0.5)) / (Double(c) + 2 + 1e-5).squareRoot()
                // 1e-6 relative: a few float32 roundings.
                #expect(Swift.abs(Double(y[c]) - expected) <= 1e-6 * Swift.abs(expected), "\(shape) channel \(c)")
            }
            layer.isTraining = false
            #expect(try layer(input).toArray().allSatisfy(\.isFinite))
        }
    }

    @Test("empty, negative and inconsistent shapes", arguments: BackendChoice.allCases)
    func badTensorShapes(choice: BackendChoice) throws {
        let backend = try choice.backend()
        // Zero dims give empty tensors (EmptyTensorTests covers the ops on them).
        #expect(try Tensor([], shape: [2, 0, 4], on: backend).isEmpty)
        #expect(throws: NormError.shapeMismatch(argument: "values", expected: [2, 0, 4], actual: [1])) {
            try Tensor([1], shape: [2, 0, 4], on: backend)
        }
        for shape in [[-1, 3], [2, -3], [-2, -3]] {
            let error = #expect(throws: NormError.self) { try Tensor([1, 2, 3, 4, 5, 6], shape: shape, on: backend) }
            #expect(Self.caseAndArgument(error) == "invalidShape(shape)", "\(shape): \(String(describing: error))")
        }
        #expect(throws: NormError.shapeMismatch(argument: "values", expected: [2, 2], actual: [3])) {
            try Tensor([1, 2, 3], shape: [2, 2], on: backend)
        }
        #expect(throws: NormError.shapeMismatch(argument: "values", expected: [2, 3, 2], actual: [13])) {
            try Tensor([Float](repeating: 0, count: 13), shape: [2, 3, 2], on: backend)
        }
        // The one-shot host form reports the same errors.
        #expect(throws: NormError.shapeMismatch(argument: "values", expected: [2, 3], actual: [5])) {
            try batchNorm([1, 2, 3, 4, 5], shape: [2, 3], on: backend)
        }
    }

    @Test("eps negative, NaN or infinite", arguments: BackendChoice.allCases)
    func badEps(choice: BackendChoice) throws {
        let backend = try choice.backend()
        let input = try Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3], on: backend)
        for eps: Float in [-1e-5, -.infinity, .nan, .infinity, .signalingNaN] {
            for training in [true, false] {
                var running = try Self.running(3, on: backend, tracked: 2)
                let error = #expect(throws: NormError.self) {
                    try batchNorm(input, runningStatistics: &running, training: training, eps: eps)
                }
                #expect(Self.caseAndArgument(error) == "invalidArgument(eps)", "eps \(eps): \(String(describing: error))")
                #expect(running?.numBatchesTracked == 2)
            }
        }
        // The boundary eps = 0 is valid.
        var none: RunningStatistics? = nil
        #expect(try batchNorm(input, runningStatistics: &none, training: true, eps: 0).output.toArray().allSatisfy(\.isFinite))
    }

    @Test("momentum outside [0, 1] or NaN", arguments: BackendChoice.allCases)
    func badMomentum(choice: BackendChoice) throws {
        let backend = try choice.backend()
        let input = try Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3], on: backend)
        for momentum: Float in [-0.1, 1.5, .nan, -.infinity, .infinity, 1.0000001] {
            var running = try Self.running(3, on: backend, tracked: 5)
            let error = #expect(throws: NormError.self) {
                try batchNorm(input, runningStatistics: &running, training: true, momentum: momentum)
            }
            #expect(Self.caseAndArgument(error) == "invalidArgument(momentum)", "momentum \(momentum): \(String(describing: error))")
            #expect(running?.numBatchesTracked == 5)
            #expect(try running!.mean.toArray() == [0.5, 1.5, 2.5])
        }
        // The boundaries 0 and 1 are valid.
        for momentum: Float in [0, 1] {
            var running = try Self.running(3, on: backend)
            _ = try batchNorm(input, runningStatistics: &running, training: true, momentum: momentum)
            #expect(running?.numBatchesTracked == 1)
        }
    }

    @Test("a negative numBatchesTracked", arguments: BackendChoice.allCases)
    func negativeBatchesTracked(choice: BackendChoice) throws {
        let backend = try choice.backend()
        let input = try Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3], on: backend)
        var running = try Self.running(3, on: backend, tracked: -1)
        let error = #expect(throws: NormError.self) {
            try batchNorm(input, runningStatistics: &running, training: true, momentum: nil)
        }
        #expect(Self.caseAndArgument(error) == "invalidArgument(numBatchesTracked)")
    }

    /// Parameters on another backend than the input: both directions, and running
    /// statistics too.
    @Test("tensors on different backends")
    func backendMismatch() throws {
        let runtime = try #require(sharedRuntime)
        let gpu = Backend.openCL(runtime)
        let deviceName = runtime.device.name
        let gpuInput = try Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3], on: gpu)
        let cpuInput = try Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3], on: .reference)
        var none: RunningStatistics? = nil
        #expect(throws: NormError.backendMismatch(argument: "weight", expected: deviceName, actual: "CPU reference")) {
            try batchNorm(gpuInput, weight: try Tensor([1, 1, 1], on: .reference), runningStatistics: &none, training: true)
        }
        #expect(throws: NormError.backendMismatch(argument: "bias", expected: "CPU reference", actual: deviceName)) {
            try batchNorm(cpuInput, bias: try Tensor([0, 0, 0], on: gpu), runningStatistics: &none, training: true)
        }
        var cpuRunning = try Self.running(3, on: .reference, tracked: 4)
        #expect(throws: NormError.backendMismatch(argument: "runningMean", expected: deviceName, actual: "CPU reference")) {
            try batchNorm(gpuInput, runningStatistics: &cpuRunning, training: true)
        }
        #expect(cpuRunning?.numBatchesTracked == 4)
        var mixed: RunningStatistics? = RunningStatistics(mean: try Tensor([0, 0, 0], on: gpu), variance: try Tensor([1, 1, 1], on: .reference))
        #expect(throws: NormError.backendMismatch(argument: "runningVar", expected: deviceName, actual: "CPU reference")) {
            try batchNorm(gpuInput, runningStatistics: &mixed, training: false)
        }
        // A second runtime on the same device is another context: its buffers do not mix.
        let other = try OpenCLRuntime(device: runtime.device)
        let error = #expect(throws: NormError.self) {
            try batchNorm(gpuInput, weight: try Tensor([1, 1, 1], on: .openCL(other)), runningStatistics: &none, training: true)
        }
        #expect(Self.caseAndArgument(error) == "backendMismatch(weight)")
    }

    @Test("BatchNorm layer init arguments", arguments: BackendChoice.allCases)
    func layerInit(choice: BackendChoice) throws {
        let backend = try choice.backend()
        for features in [0, -1] {
            let error = #expect(throws: NormError.self) { try BatchNorm(numFeatures: features, on: backend) }
            #expect(Self.caseAndArgument(error) == "invalidArgument(numFeatures)")
        }
        for eps: Float in [-1, .nan, .infinity] {
            let error = #expect(throws: NormError.self) { try BatchNorm(numFeatures: 3, eps: eps, on: backend) }
            #expect(Self.caseAndArgument(error) == "invalidArgument(eps)", "eps \(eps)")
        }
        for momentum: Float in [-0.1, 1.5, .nan] {
            let error = #expect(throws: NormError.self) { try BatchNorm(numFeatures: 3, momentum: momentum, on: backend) }
            #expect(Self.caseAndArgument(error) == "invalidArgument(momentum)", "momentum \(momentum)")
        }
        // Valid edges.
        _ = try BatchNorm(numFeatures: 1, eps: 0, momentum: 0, on: backend)
        _ = try BatchNorm(numFeatures: 1, momentum: 1, on: backend)
        _ = try BatchNorm(numFeatures: 1, momentum: nil, on: backend)
        let error = #expect(throws: NormError.self) { try RunningStatistics(channels: 0, on: backend) }
        #expect(Self.caseAndArgument(error) == "invalidArgument(channels)")
    }

    /// A failed call (here: a bad argument found after the running statistics were
    /// accepted) leaves the caller's statistics exactly as they were.
    @Test("a failed call leaves running statistics untouched", arguments: BackendChoice.allCases)
    func failureLeavesStatistics(choice: BackendChoice) throws {
        let backend = try choice.backend()
        var layer = try BatchNorm(numFeatures: 3, momentum: nil, on: backend)
        let input = try Tensor((0..<24).map { Float($0) }, shape: [4, 3, 2], on: backend)
        _ = try layer(input)
        let before = try #require(layer.runningStatistics)
        let (mean, variance) = (try before.mean.toArray(), try before.variance.toArray())
        #expect(before.numBatchesTracked == 1)

        func expectUnchanged(_ label: String) throws {
            let after = try #require(layer.runningStatistics)
            #expect(after.numBatchesTracked == 1, "\(label)")
            #expect(try after.mean.toArray() == mean, "\(label)")
            #expect(try after.variance.toArray() == variance, "\(label)")
        }
        layer.eps = -1
        #expect(throws: NormError.self) { try layer(input) }
        try expectUnchanged("bad eps")
        layer.eps = 1e-5
        layer.momentum = 2
        #expect(throws: NormError.self) { try layer(input) }
        try expectUnchanged("bad momentum")
        layer.momentum = nil
        let savedWeight = layer.weight
        layer.weight = try Tensor([1, 2], on: backend)
        #expect(throws: NormError.shapeMismatch(argument: "weight", expected: [3], actual: [2])) { try layer(input) }
        try expectUnchanged("bad weight")
        layer.weight = savedWeight
        #expect(throws: NormError.tooFewValuesPerChannel(valuesPerChannel: 1, shape: [1, 3])) {
            try layer(try Tensor([1, 2, 3], shape: [1, 3], on: backend))
        }
        try expectUnchanged("one value per channel")
        // And the layer still works afterwards.
        _ = try layer(input)
        #expect(layer.runningStatistics?.numBatchesTracked == 2)
    }
}

/// Inputs that would overflow an integer must be errors, not traps.
@Suite("BatchNorm overflow guards")
struct BatchNormOverflowTests {
    @Test("numBatchesTracked at Int.max cannot be incremented", arguments: BackendChoice.allCases)
    func trackedAtMaximum(choice: BackendChoice) throws {
        let backend = try choice.backend()
        let input = try Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3], on: backend)
        var running: RunningStatistics? = try RunningStatistics(channels: 3, on: backend)
        running?.numBatchesTracked = Int.max
        #expect(throws: NormError.invalidArgument(argument: "numBatchesTracked", reason: "must lie in [0, Int.max), got \(Int.max)")) {
            try batchNorm(input, runningStatistics: &running, training: true, momentum: nil)
        }
        #expect(running?.numBatchesTracked == Int.max)
    }

    @Test("a shape whose element count overflows Int")
    func overflowingShape() {
        let shape = [1 << 40, 1 << 40, 4]
        #expect(throws: NormError.invalidShape(argument: "shape", reason: "\(shape) has more elements than Int can count")) {
            try Tensor(repeating: 0, shape: shape, on: .reference)
        }
        #expect(throws: NormError.invalidShape(argument: "shape", reason: "\(shape) has more elements than Int can count")) {
            try Tensor([1], shape: shape, on: .reference)
        }
    }
}

extension BatchNormOverflowTests {
    /// Kernels take the N·M rows of channels-last input as a 32-bit count: a shape with
    /// more rows is rejected by validation, which reads only the shape (the stand-in
    /// tensor below has the shape but a single stored value, so nothing is allocated).
    @Test("N·M rows beyond 32 bits are rejected")
    func rowsBeyond32Bits() throws {
        let shape = [1 << 17, 1, 1 << 16]  // 2^33 rows of one channel
        let input = Tensor(shape: shape, layout: .channelsLast, storage: .host([0]))
        #expect(throws: NormError.invalidShape(argument: "input", reason: "N·M = \(1 << 33) must be below 2^32 (a 32-bit kernel argument), got shape \(shape)")) {
            try BatchNormProblem.validated(
                input: input, weight: nil, bias: nil, running: nil, mode: .training(updatesRunningStatistics: false),
                momentum: 0.1, eps: 1e-5)
        }
    }
}
