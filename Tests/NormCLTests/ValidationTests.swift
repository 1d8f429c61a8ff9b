import Testing
@testable import NormCL

/// One bad call and the error it must throw, written `case(argument)`.
struct ValidationCase {
    let label: String
    let expected: String
    let call: () throws -> Any

    init(_ label: String, _ expected: String, _ call: @escaping () throws -> Any) {
        self.label = label
        self.expected = expected
        self.call = call
    }
}

/// Tensors of ones for one family's cases on one backend: the input `x`, vectors of 3
/// and 4 values (too short and right for x's channels or rows), `rows`, the shape
/// of its saved statistics, and running statistics with a short mean or variance.
struct ValidationTensors {
    let x, c3, c4, rows: Tensor
    let shortMean, shortVariance: RunningStatistics
    /// "from <backend>", for the labels of the cases that mix backends.
    let origin: String

    init(x: [Int], rows: [Int], on backend: Backend) throws {
        self.x = try Tensor(repeating: 1, shape: x, on: backend)
        c3 = try Tensor(repeating: 1, shape: [3], on: backend)
        c4 = try Tensor(repeating: 1, shape: [4], on: backend)
        self.rows = try Tensor(repeating: 1, shape: rows, on: backend)
        (shortMean, shortVariance) = (RunningStatistics(mean: c3, variance: c4), RunningStatistics(mean: c4, variance: c3))
        origin = "from \(backend.name)"
    }
}

/// A second runtime on the shared device: another OpenCL context, whose buffers
/// cannot be mixed with the shared runtime's.
let secondRuntime: OpenCLRuntime? = sharedRuntime.flatMap { try? OpenCLRuntime(device: $0.device) }

/// Every public entry point, called with each kind of bad argument on every backend,
/// throws the exact ``NormError`` case naming the argument (never traps, never
/// accepts). Validation fails before any kernel is built, so this is fast.
@Suite("Validation of every entry point")
struct ValidationTests {
    /// `case(argument)` of the thrown error; "none" when nothing was thrown.
    static func thrown(_ call: () throws -> Any) -> String {
        do { _ = try call() } catch let error as NormError {
            return BatchNormErrorTests.caseAndArgument(error) ?? "nil"
        } catch { return "other: \(error)" }
        return "none"
    }

    /// Backends whose tensors must be rejected next to `backend`'s: the reference path
    /// and a second runtime of the same device for OpenCL; OpenCL for the reference.
    static func foreignBackends(to backend: Backend) -> [Backend] {
        switch backend {
        case .openCL: [.reference] + (secondRuntime.map { [Backend.openCL($0)] } ?? [])
        case .reference: sharedRuntime.map { [Backend.openCL($0)] } ?? []
        }
    }

    /// The same tensors on each backend foreign to `backend`.
    static func foreign(to backend: Backend, x: [Int], rows: [Int]) throws -> [ValidationTensors] {
        try foreignBackends(to: backend).map { try ValidationTensors(x: x, rows: rows, on: $0) }
    }

    /// One case per bad value, labelled "`label` value".
    static func each<Value>(
        _ values: [Value], _ label: String, _ expected: String, _ call: @escaping (Value) throws -> Any
    ) -> [ValidationCase] {
        values.map { value in ValidationCase("\(label) \(value)", expected) { try call(value) } }
    }

    /// Checks one family's cases on every backend: `cases` gets the family's tensors on
    /// the backend (input of shape `x`, statistics of shape `rows`) and the same tensors
    /// on each backend foreign to it, for the backend-mismatch cases.
    static func checkFamily(
        x: [Int], rows: [Int],
        cases: (_ tensors: ValidationTensors, _ backend: Backend, _ foreign: [ValidationTensors]) throws -> [ValidationCase]
    ) throws {
        for backend in allBackends {
            let tensors = try ValidationTensors(x: x, rows: rows, on: backend)
            check(try cases(tensors, backend, try foreign(to: backend, x: x, rows: rows)), on: backend)
        }
    }

    static func check(_ cases: [ValidationCase], on backend: Backend) {
        for c in cases {
            #expect(thrown(c.call) == c.expected, "\(c.label) on \(backend.name)")
        }
    }

    static let badEps: [Float] = [-1e-5, .nan, .infinity, -.infinity]
    static let badMomentum: [Float] = [-0.1, 1.5, .nan, .infinity]

    @Test("BatchNorm, Batch Renorm: forward, backward, layer, running statistics, folding")
    func batchNormFamily() throws {
        try Self.checkFamily(x: [2, 4, 3], rows: [2, 2]) { t, backend, foreign in
            let (x, c3, c4) = (t.x, t.c3, t.c4)
            let half4 = try Tensor(repeating: 1, shape: [4], elementType: .float16, on: backend)
            let running = RunningStatistics(mean: c4, variance: c4)
            var cases: [ValidationCase] = [
                .init("rank-1 input", "invalidShape(input)") {
                    try batchNorm(try Tensor(repeating: 1, shape: [4], on: backend))
                },
                .init("short weight", "shapeMismatch(weight)") { try batchNorm(x, weight: c3) },
                .init("short bias", "shapeMismatch(bias)") { try batchNorm(x, bias: c3) },
                .init("half weight", "unsupported(weight)") { try batchNorm(x, weight: half4) },
                .init("short running mean", "shapeMismatch(runningMean)") {
                    var r: RunningStatistics? = t.shortMean
                    return try batchNorm(x, runningStatistics: &r, training: true)
                },
                .init("short running var", "shapeMismatch(runningVar)") {
                    var r: RunningStatistics? = t.shortVariance
                    return try batchNorm(x, runningStatistics: &r, training: false)
                },
                .init("inference without running statistics", "invalidArgument(runningStatistics)") {
                    var r: RunningStatistics? = nil
                    return try batchNorm(x, runningStatistics: &r, training: false)
                },
                .init("negative numBatchesTracked", "invalidArgument(numBatchesTracked)") {
                    var r: RunningStatistics? = RunningStatistics(mean: c4, variance: c4, numBatchesTracked: -1)
                    return try batchNorm(x, runningStatistics: &r, training: true, momentum: nil)
                },
                .init("one value per channel", "tooFewValuesPerChannel") {
                    try batchNorm(try Tensor(repeating: 1, shape: [1, 4], on: backend))
                },
                .init("renorm without running statistics in the layer", "invalidArgument(runningStatistics)") {
                    var layer = try BatchNorm(numFeatures: 4, trackRunningStats: false, on: backend)
                    layer.renorm = BatchRenormLimits(rmax: 2, dmax: 1)
                    return try layer(x)
                },
                .init("layer: zero features", "invalidArgument(numFeatures)") { try BatchNorm(numFeatures: 0, on: backend) },
                .init("layer: NaN eps", "invalidArgument(eps)") { try BatchNorm(numFeatures: 4, eps: .nan, on: backend) },
                .init("layer: momentum 2", "invalidArgument(momentum)") {
                    try BatchNorm(numFeatures: 4, momentum: 2, on: backend)
                },
                .init("layer without parameters: input channels", "shapeMismatch(input)") {
                    var layer = try BatchNorm(numFeatures: 5, affine: false, trackRunningStats: false, on: backend)
                    return try layer(x)
                },
                .init("layer: bad renorm limits", "invalidArgument(rmax)") {
                    var layer = try BatchNorm(numFeatures: 4, on: backend)
                    layer.renorm = BatchRenormLimits(rmax: 0.5, dmax: 1)
                    return try layer(x)
                },
                .init("running statistics of no channels", "invalidArgument(channels)") {
                    try RunningStatistics(channels: 0, on: backend)
                },
            ]
            cases += Self.each(Self.badEps, "eps", "invalidArgument(eps)") { try batchNorm(x, eps: $0) }
            cases += Self.each(Self.badEps, "inference backward eps", "invalidArgument(eps)") {
                try batchNormBackward(x, input: x, weight: nil, runningStatistics: running, eps: $0)
            }
            cases += Self.each(Self.badEps, "folding eps", "invalidArgument(eps)") {
                try BatchNormFolding(runningMean: [0], runningVar: [1], eps: $0)
            }
            cases += Self.each(Self.badMomentum, "momentum", "invalidArgument(momentum)") { momentum in
                var r: RunningStatistics? = running
                return try batchNorm(x, runningStatistics: &r, training: true, momentum: momentum)
            }
            for (rmax, dmax, argument) in [(0.5, 1, "rmax"), (.nan, 1, "rmax"), (2, -1, "dmax"), (2, .nan, "dmax")] as [(Float, Float, String)] {
                cases.append(
                    .init("renorm rmax \(rmax) dmax \(dmax)", "invalidArgument(\(argument))") {
                        var r = running
                        return try batchRenorm(x, runningStatistics: &r, limits: BatchRenormLimits(rmax: rmax, dmax: dmax))
                    })
            }
            // Backward, with a stand-in forward output (no kernel needs to run).
            let (mean, invstd) = (c4, c4)
            let forward = BatchNormOutput(output: x, saveMean: mean, saveInvstd: invstd, events: [])
            cases += [
                .init("gradOutput shape", "shapeMismatch(gradOutput)") {
                    try batchNormBackward(try Tensor(repeating: 1, shape: [2, 4, 2], on: backend), input: x, weight: nil, forward: forward)
                },
                .init("gradOutput layout", "unsupported(gradOutput)") {
                    let dy = try Tensor(repeating: 1, shape: [2, 4, 3], layout: .channelsLast, on: backend)
                    return try batchNormBackward(dy, input: x, weight: nil, forward: forward)
                },
                .init("gradOutput element type", "unsupported(gradOutput)") {
                    let dy = try Tensor(repeating: 1, shape: [2, 4, 3], elementType: .float16, on: backend)
                    return try batchNormBackward(dy, input: x, weight: nil, forward: forward)
                },
                .init("backward short weight", "shapeMismatch(weight)") {
                    try batchNormBackward(x, input: x, weight: c3, saveMean: mean, saveInvstd: invstd)
                },
                .init("short saveMean", "shapeMismatch(saveMean)") {
                    try batchNormBackward(x, input: x, weight: nil, saveMean: c3, saveInvstd: invstd)
                },
                .init("short saveInvstd", "shapeMismatch(saveInvstd)") {
                    try batchNormBackward(x, input: x, weight: nil, saveMean: mean, saveInvstd: c3)
                },
                .init("short runningVar (backward)", "shapeMismatch(runningVar)") {
                    try batchNormBackward(x, input: x, weight: nil, runningStatistics: t.shortVariance)
                },
                .init("short renormR", "shapeMismatch(renormR)") {
                    try batchRenormBackward(x, input: x, weight: nil, saveMean: mean, saveInvstd: invstd, renormR: c3, renormD: c4)
                },
                .init("short renormD", "shapeMismatch(renormD)") {
                    try batchRenormBackward(x, input: x, weight: nil, saveMean: mean, saveInvstd: invstd, renormR: c4, renormD: c3)
                },
                .init("backward of an inference output", "invalidArgument(forward)") {
                    let inference = BatchNormOutput(output: x, saveMean: nil, saveInvstd: nil, events: [])
                    return try batchNormBackward(x, input: x, weight: nil, forward: inference)
                },
                .init("renorm backward of a BatchNorm output", "invalidArgument(forward)") {
                    try batchRenormBackward(x, input: x, weight: nil, forward: forward)
                },
                .init("backward: one value per channel", "tooFewValuesPerChannel") {
                    let one = try Tensor(repeating: 1, shape: [1, 4], on: backend)
                    return try batchNormBackward(one, input: one, weight: nil, saveMean: c4, saveInvstd: c4)
                },
            ]
            // Folding.
            cases += [
                .init("folding: runningVar length", "shapeMismatch(runningVar)") {
                    try BatchNormFolding(runningMean: [0, 0], runningVar: [1])
                },
                .init("folding: weight length", "shapeMismatch(weight)") {
                    try BatchNormFolding(runningMean: [0, 0], runningVar: [1, 1], weight: [1])
                },
                .init("folding: bias length", "shapeMismatch(bias)") {
                    try BatchNormFolding(runningMean: [0, 0], runningVar: [1, 1], bias: [1, 2, 3])
                },
                .init("folding: no channels", "emptyTensor(runningMean)") { try BatchNormFolding(runningMean: [], runningVar: []) },
                .init("fold: weight not whole channels", "shapeMismatch(weight)") {
                    try BatchNormFolding(runningMean: [0, 0], runningVar: [1, 1]).fold(weight: [1, 2, 3], bias: nil)
                },
                .init("fold: bias length", "shapeMismatch(bias)") {
                    try BatchNormFolding(runningMean: [0, 0], runningVar: [1, 1]).fold(weight: [1, 2], bias: [1])
                },
                .init("folding a layer without running statistics", "invalidArgument(layer)") {
                    try BatchNormFolding(try BatchNorm(numFeatures: 2, trackRunningStats: false, on: backend))
                },
            ]
            // Tensors and statistics from elsewhere: another backend, another runtime.
            for other in foreign {
                let (other4, otherX, where_) = (other.c4, other.x, other.origin)
                cases += [
                    .init("weight \(where_)", "backendMismatch(weight)") { try batchNorm(x, weight: other4) },
                    .init("bias \(where_)", "backendMismatch(bias)") { try batchNorm(x, bias: other4) },
                    .init("running mean \(where_)", "backendMismatch(runningMean)") {
                        var r: RunningStatistics? = RunningStatistics(mean: other4, variance: c4)
                        return try batchNorm(x, runningStatistics: &r, training: true)
                    },
                    .init("running var \(where_)", "backendMismatch(runningVar)") {
                        var r = RunningStatistics(mean: c4, variance: other4)
                        return try batchRenorm(x, runningStatistics: &r, limits: .batchNorm)
                    },
                    .init("gradOutput \(where_)", "backendMismatch(gradOutput)") {
                        try batchNormBackward(otherX, input: x, weight: nil, forward: forward)
                    },
                    .init("saveInvstd \(where_)", "backendMismatch(saveInvstd)") {
                        try batchNormBackward(x, input: x, weight: nil, saveMean: mean, saveInvstd: other4)
                    },
                    .init("renormD \(where_)", "backendMismatch(renormD)") {
                        try batchRenormBackward(
                            x, input: x, weight: nil, saveMean: mean, saveInvstd: invstd, renormR: c4, renormD: other4)
                    },
                ]
            }
            return cases
        }
    }

    @Test("GroupNorm and InstanceNorm: forward, backward, layers")
    func groupNormFamily() throws {
        try Self.checkFamily(x: [2, 4, 3], rows: [2, 2]) { t, backend, foreign in
            let (x, c3, c4, rows) = (t.x, t.c3, t.c4, t.rows)
            let running = RunningStatistics(mean: c4, variance: c4)
            var cases: [ValidationCase] = [
                .init("rank-1 input", "invalidShape(input)") { try groupNorm(c4, numGroups: 1) },
                .init("short weight", "shapeMismatch(weight)") { try groupNorm(x, numGroups: 2, weight: c3) },
                .init("short bias", "shapeMismatch(bias)") { try groupNorm(x, numGroups: 2, bias: c3) },
                .init("backward: gradOutput layout", "unsupported(gradOutput)") {
                    let dy = try Tensor(repeating: 1, shape: [2, 4, 3], layout: .channelsLast, on: backend)
                    return try groupNormBackward(dy, input: x, numGroups: 2, weight: nil, saveMean: rows, saveInvstd: rows)
                },
                .init("backward: saveMean shape", "shapeMismatch(saveMean)") {
                    try groupNormBackward(x, input: x, numGroups: 2, weight: nil, saveMean: c4, saveInvstd: rows)
                },
                .init("backward: saveInvstd shape", "shapeMismatch(saveInvstd)") {
                    try groupNormBackward(x, input: x, numGroups: 2, weight: nil, saveMean: rows, saveInvstd: c4)
                },
                .init("backward: groups not dividing C", "invalidArgument(numGroups)") {
                    try groupNormBackward(x, input: x, numGroups: 3, weight: nil, saveMean: rows, saveInvstd: rows)
                },
                .init("layer: groups not dividing channels", "invalidArgument(numGroups)") {
                    try GroupNorm(numGroups: 3, numChannels: 4, on: backend)
                },
                .init("layer: input channels", "shapeMismatch(input)") {
                    try GroupNorm(numGroups: 2, numChannels: 6, on: backend)(x)
                },
                // InstanceNorm.
                .init("instance: (N, C) input", "invalidShape(input)") {
                    try instanceNorm(try Tensor(repeating: 1, shape: [2, 4], on: backend))
                },
                .init("instance: one spatial value", "tooFewValuesPerChannel") {
                    try instanceNorm(try Tensor(repeating: 1, shape: [2, 4, 1], on: backend))
                },
                .init("instance: short weight", "shapeMismatch(weight)") { try instanceNorm(x, weight: c3) },
                .init("instance: short running mean", "shapeMismatch(runningMean)") {
                    var r: RunningStatistics? = t.shortMean
                    return try instanceNorm(x, runningStatistics: &r)
                },
                .init("instance: running statistics required", "invalidArgument(runningStatistics)") {
                    var r: RunningStatistics? = nil
                    return try instanceNorm(x, runningStatistics: &r, useInputStats: false)
                },
                .init("instance: negative numBatchesTracked", "invalidArgument(numBatchesTracked)") {
                    var r: RunningStatistics? = RunningStatistics(mean: c4, variance: c4, numBatchesTracked: -3)
                    return try instanceNorm(x, runningStatistics: &r)
                },
                .init("instance backward: saveMean shape", "shapeMismatch(saveMean)") {
                    try instanceNormBackward(x, input: x, weight: nil, saveMean: rows, saveInvstd: rows)
                },
                .init("instance backward: short runningVar", "shapeMismatch(runningVar)") {
                    try instanceNormBackward(x, input: x, weight: nil, runningStatistics: t.shortVariance)
                },
                .init("instance backward of running-statistics output", "invalidArgument(forward)") {
                    let out = InstanceNormOutput(output: x, saveMean: nil, saveInvstd: nil, events: [])
                    return try instanceNormBackward(x, input: x, weight: nil, forward: out)
                },
                .init("instance layer: zero features", "invalidArgument(numFeatures)") {
                    try InstanceNorm(numFeatures: 0, on: backend)
                },
                .init("instance layer: input channels", "shapeMismatch(input)") {
                    var layer = try InstanceNorm(numFeatures: 5, on: backend)
                    return try layer(x)
                },
            ]
            cases += Self.each([0, -2, 3, 8], "numGroups", "invalidArgument(numGroups)") { try groupNorm(x, numGroups: $0) }
            cases += Self.each(Self.badEps, "eps", "invalidArgument(eps)") { try groupNorm(x, numGroups: 2, eps: $0) }
            cases += Self.each(Self.badEps, "instance eps", "invalidArgument(eps)") { try instanceNorm(x, eps: $0) }
            cases += Self.each(Self.badEps, "instance backward eps", "invalidArgument(eps)") {
                try instanceNormBackward(x, input: x, weight: nil, runningStatistics: running, eps: $0)
            }
            cases += Self.each(Self.badEps, "layer eps", "invalidArgument(eps)") {
                try GroupNorm(numGroups: 1, numChannels: 4, eps: $0, on: backend)
            }
            cases += Self.each(Self.badMomentum, "instance momentum", "invalidArgument(momentum)") { momentum in
                var r: RunningStatistics? = running
                return try instanceNorm(x, runningStatistics: &r, momentum: momentum)
            }
            cases += Self.each(Self.badMomentum, "instance layer momentum", "invalidArgument(momentum)") {
                try InstanceNorm(numFeatures: 4, momentum: $0, on: backend)
            }
            for other in foreign {
                let (other4, otherRows, otherX, where_) = (other.c4, other.rows, other.x, other.origin)
                cases += [
                    .init("weight \(where_)", "backendMismatch(weight)") { try groupNorm(x, numGroups: 2, weight: other4) },
                    .init("bias \(where_)", "backendMismatch(bias)") { try groupNorm(x, numGroups: 2, bias: other4) },
                    .init("gradOutput \(where_)", "backendMismatch(gradOutput)") {
                        try groupNormBackward(otherX, input: x, numGroups: 2, weight: nil, saveMean: rows, saveInvstd: rows)
                    },
                    .init("saveMean \(where_)", "backendMismatch(saveMean)") {
                        try groupNormBackward(x, input: x, numGroups: 2, weight: nil, saveMean: otherRows, saveInvstd: rows)
                    },
                    .init("instance running var \(where_)", "backendMismatch(runningVar)") {
                        var r: RunningStatistics? = RunningStatistics(mean: c4, variance: other4)
                        return try instanceNorm(x, runningStatistics: &r, useInputStats: false)
                    },
                ]
            }
            return cases
        }
    }

    @Test("LayerNorm and RMSNorm: normalizedShape, parameters, backward, layers")
    func rowNormFamily() throws {
        try Self.checkFamily(x: [2, 3, 4], rows: [2, 3]) { t, backend, foreign in
            let (x, d3, d4, rows) = (t.x, t.c3, t.c4, t.rows)
            var cases: [ValidationCase] = [
                .init("empty normalizedShape", "invalidShape(normalizedShape)") { try layerNorm(x, normalizedShape: []) },
                .init("negative normalizedShape", "invalidShape(normalizedShape)") { try layerNorm(x, normalizedShape: [-4]) },
                .init("normalizedShape not a suffix", "shapeMismatch(input)") { try layerNorm(x, normalizedShape: [3]) },
                .init("normalizedShape longer than input", "shapeMismatch(input)") {
                    try layerNorm(x, normalizedShape: [1, 2, 3, 4])
                },
                .init("short weight", "shapeMismatch(weight)") { try layerNorm(x, normalizedShape: [4], weight: d3) },
                .init("short bias", "shapeMismatch(bias)") { try layerNorm(x, normalizedShape: [4], bias: d3) },
                .init("channels-last rank-3 input", "unsupported(input)") {
                    let nhwc = try Tensor(repeating: 1, shape: [2, 3, 4], layout: .channelsLast, on: backend)
                    return try layerNorm(nhwc, normalizedShape: [4])
                },
                .init("channels-last rank-3 weight", "unsupported(weight)") {
                    let w = try Tensor(repeating: 1, shape: [2, 3, 4], layout: .channelsLast, on: backend)
                    return try layerNorm(try Tensor(repeating: 1, shape: [5, 2, 3, 4], on: backend), normalizedShape: [2, 3, 4], weight: w)
                },
                .init("channels-last rank-3 saveMean", "unsupported(saveMean)") {
                    let input = try Tensor(repeating: 1, shape: [2, 3, 5, 4], on: backend)
                    let stats = try Tensor(repeating: 1, shape: [2, 3, 5], layout: .channelsLast, on: backend)
                    let fine = try Tensor(repeating: 1, shape: [2, 3, 5], on: backend)
                    return try layerNormBackward(input, input: input, normalizedShape: [4], weight: nil, saveMean: stats, saveInvstd: fine)
                },
                .init("backward: gradOutput shape", "shapeMismatch(gradOutput)") {
                    try layerNormBackward(rows, input: x, normalizedShape: [4], weight: nil, saveMean: rows, saveInvstd: rows)
                },
                .init("backward: saveMean shape", "shapeMismatch(saveMean)") {
                    try layerNormBackward(x, input: x, normalizedShape: [4], weight: nil, saveMean: d3, saveInvstd: rows)
                },
                .init("backward: saveInvstd shape", "shapeMismatch(saveInvstd)") {
                    try layerNormBackward(x, input: x, normalizedShape: [4], weight: nil, saveMean: rows, saveInvstd: d4)
                },
                .init("layer: empty normalizedShape", "invalidShape(normalizedShape)") {
                    try LayerNorm(normalizedShape: [], on: backend)
                },
                .init("layer: input shape", "shapeMismatch(input)") { try LayerNorm(normalizedShape: [5], on: backend)(x) },
                // RMSNorm.
                .init("rms: empty normalizedShape", "invalidShape(normalizedShape)") { try rmsNorm(x, normalizedShape: []) },
                .init("rms: not a suffix", "shapeMismatch(input)") { try rmsNorm(x, normalizedShape: [2, 4]) },
                .init("rms: short weight", "shapeMismatch(weight)") { try rmsNorm(x, normalizedShape: [4], weight: d3) },
                .init("rms: half weight", "unsupported(weight)") {
                    try rmsNorm(x, normalizedShape: [4], weight: try Tensor(repeating: 1, shape: [4], elementType: .float16, on: backend))
                },
                .init("rms backward: saveInvRms shape", "shapeMismatch(saveInvRms)") {
                    try rmsNormBackward(x, input: x, normalizedShape: [4], weight: nil, saveInvRms: d4)
                },
                .init("rms backward: gradOutput type", "unsupported(gradOutput)") {
                    let dy = try Tensor(repeating: 1, shape: [2, 3, 4], elementType: .float16, on: backend)
                    return try rmsNormBackward(dy, input: x, normalizedShape: [4], weight: nil, saveInvRms: rows)
                },
                .init("rms layer: negative dim", "invalidShape(normalizedShape)") {
                    try RMSNorm(normalizedShape: [4, -1], on: backend)
                },
            ]
            cases += Self.each(Self.badEps, "eps", "invalidArgument(eps)") { try layerNorm(x, normalizedShape: [4], eps: $0) }
            cases += Self.each(Self.badEps, "rms eps", "invalidArgument(eps)") { try rmsNorm(x, normalizedShape: [4], eps: $0) }
            cases += Self.each(Self.badEps, "layer eps", "invalidArgument(eps)") { try LayerNorm(normalizedShape: [4], eps: $0, on: backend) }
            cases += Self.each(Self.badEps, "rms layer eps", "invalidArgument(eps)") { try RMSNorm(normalizedShape: [4], eps: $0, on: backend) }
            for other in foreign {
                let (other4, otherRows, otherX, where_) = (other.c4, other.rows, other.x, other.origin)
                cases += [
                    .init("weight \(where_)", "backendMismatch(weight)") { try layerNorm(x, normalizedShape: [4], weight: other4) },
                    .init("bias \(where_)", "backendMismatch(bias)") { try layerNorm(x, normalizedShape: [4], bias: other4) },
                    .init("rms weight \(where_)", "backendMismatch(weight)") { try rmsNorm(x, normalizedShape: [4], weight: other4) },
                    .init("gradOutput \(where_)", "backendMismatch(gradOutput)") {
                        try layerNormBackward(otherX, input: x, normalizedShape: [4], weight: nil, saveMean: rows, saveInvstd: rows)
                    },
                    .init("saveInvstd \(where_)", "backendMismatch(saveInvstd)") {
                        try layerNormBackward(x, input: x, normalizedShape: [4], weight: nil, saveMean: rows, saveInvstd: otherRows)
                    },
                    .init("saveInvRms \(where_)", "backendMismatch(saveInvRms)") {
                        try rmsNormBackward(x, input: x, normalizedShape: [4], weight: nil, saveInvRms: otherRows)
                    },
                ]
            }
            return cases
        }
    }

    @Test("Switchable Norm: logits, options, statistics, backward, layer")
    func switchableNormFamily() throws {
        try Self.checkFamily(x: [2, 4, 3], rows: [2, 4]) { t, backend, foreign in
            let (x, c3, c4, k3) = (t.x, t.c3, t.c4, t.c3)
            let k2 = try Tensor(repeating: 1, shape: [2], on: backend)
            func sn(
                _ input: Tensor? = nil, meanLogits: Tensor? = nil, varianceLogits: Tensor? = nil, weight: Tensor? = nil,
                running: RunningStatistics? = nil, training: Bool = true, options: SwitchableNormOptions = .init()
            ) throws -> SwitchableNormOutput {
                var r = running
                return try switchableNorm(
                    input ?? x, meanLogits: meanLogits ?? k3, varianceLogits: varianceLogits ?? k3, weight: weight,
                    runningStatistics: &r, training: training, options: options)
            }
            // A stand-in forward output of the layer + batch branches (no kernel runs).
            let (nc, n) = (t.rows, k2)
            let forward = SwitchableNormOutput(
                output: x, saveMean: nc, saveInvstd: nc, instanceMean: nil, instanceVariance: nil, layerMean: n, layerVariance: n,
                batchMean: c4, batchVariance: c4, events: [])
            var cases: [ValidationCase] = [
                .init("rank-1 input", "invalidShape(input)") { try sn(c4) },
                .init("(N, C) input with an instance branch", "invalidShape(input)") {
                    try sn(try Tensor(repeating: 1, shape: [2, 4], on: backend))
                },
                .init("unbiased instance variance of one value", "invalidShape(input)") {
                    try sn(try Tensor(repeating: 1, shape: [2, 4, 1], on: backend))
                },
                .init("mean logits length", "shapeMismatch(meanLogits)") { try sn(meanLogits: k2) },
                .init("variance logits length", "shapeMismatch(varianceLogits)") { try sn(varianceLogits: k2) },
                .init("short weight", "shapeMismatch(weight)") { try sn(weight: c3) },
                .init("short running mean", "shapeMismatch(runningMean)") {
                    try sn(running: t.shortMean)
                },
                .init("running statistics without a BN branch", "invalidArgument(runningStatistics)") {
                    try sn(meanLogits: k2, varianceLogits: k2, running: RunningStatistics(mean: c4, variance: c4), options: .init(branches: .instanceLayer))
                },
                .init("inference without running statistics", "invalidArgument(runningStatistics)") { try sn(training: false) },
                .init("one value per channel", "tooFewValuesPerChannel") {
                    try sn(
                        try Tensor(repeating: 1, shape: [1, 4], on: backend), meanLogits: k2, varianceLogits: k2,
                        options: .init(branches: .layerBatch, varianceEstimator: .biased))
                },
                .init("backward: gradOutput layout", "unsupported(gradOutput)") {
                    let dy = try Tensor(repeating: 1, shape: [2, 4, 3], layout: .channelsLast, on: backend)
                    return try switchableNormBackward(dy, input: x, meanLogits: k3, varianceLogits: k3, weight: nil, forward: forward, training: true)
                },
                .init("backward of a forward with other branches", "invalidArgument(forward.instanceMean)") {
                    return try switchableNormBackward(x, input: x, meanLogits: k3, varianceLogits: k3, weight: nil, forward: forward, training: true)
                },
                .init("layer: zero features", "invalidArgument(numFeatures)") { try SwitchableNorm(numFeatures: 0, on: backend) },
                .init("layer: input channels", "shapeMismatch(input)") {
                    var layer = try SwitchableNorm(numFeatures: 5, on: backend)
                    return try layer(x)
                },
            ]
            cases += Self.each(Self.badEps, "eps", "invalidArgument(eps)") { try sn(options: .init(eps: $0)) }
            cases += Self.each(Self.badEps, "layer eps", "invalidArgument(eps)") {
                try SwitchableNorm(numFeatures: 4, options: .init(eps: $0), on: backend)
            }
            cases += Self.each(Self.badMomentum, "momentum", "invalidArgument(momentum)") { try sn(options: .init(momentum: $0)) }
            for other in foreign {
                let (other3, other4, otherX, where_) = (other.c3, other.c4, other.x, other.origin)
                cases += [
                    .init("mean logits \(where_)", "backendMismatch(meanLogits)") { try sn(meanLogits: other3) },
                    .init("weight \(where_)", "backendMismatch(weight)") { try sn(weight: other4) },
                    .init("running var \(where_)", "backendMismatch(runningVar)") {
                        try sn(running: RunningStatistics(mean: c4, variance: other4))
                    },
                    .init("gradOutput \(where_)", "backendMismatch(gradOutput)") {
                        try switchableNormBackward(otherX, input: x, meanLogits: k3, varianceLogits: k3, weight: nil, forward: forward, training: true)
                    },
                ]
            }
            return cases
        }
    }

    @Test("Tensor initialisers")
    func tensors() throws {
        for backend in allBackends {
            let huge = [1 << 40, 1 << 40, 4]
            Self.check(
                [
                    .init("negative dim", "invalidShape(shape)") { try Tensor([1, 2], shape: [2, -1], on: backend) },
                    .init("negative dim, repeating", "invalidShape(shape)") { try Tensor(repeating: 1, shape: [-2, 3], on: backend) },
                    .init("values count", "shapeMismatch(values)") { try Tensor([1, 2, 3], shape: [2, 2], on: backend) },
                    .init("values for an empty shape", "shapeMismatch(values)") { try Tensor([1], shape: [0, 2], on: backend) },
                    .init("Int overflow", "invalidShape(shape)") { try Tensor(repeating: 1, shape: huge, on: backend) },
                    .init("Int overflow hidden by a zero dim", "invalidShape(input)") {
                        try batchNorm(Tensor(shape: [0, 2, 1 << 40, 1 << 40], layout: .channelsFirst, storage: .host([])))
                    },
                ], on: backend)
        }
    }

    @Test("a tensor of a second runtime on the same device is named as such", .enabled(if: hasOpenCL))
    func secondRuntimeMessage() throws {
        let runtime = try #require(sharedRuntime), other = try #require(secondRuntime)
        let x = try Tensor(repeating: 1, shape: [2, 4, 3], on: .openCL(runtime))
        let weight = try Tensor(repeating: 1, shape: [4], on: .openCL(other))
        let error = #expect(throws: NormError.self) { try groupNorm(x, numGroups: 2, weight: weight) }
        #expect(error?.description.contains("another OpenCLRuntime") == true, "\(String(describing: error))")
    }
}
