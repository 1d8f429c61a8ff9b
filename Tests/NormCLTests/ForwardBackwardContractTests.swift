import Testing
@testable import NormCL

/// The public backward of every op takes only dy and the forward's output: its input,
/// parameters, eps, shape arguments, options and statistics come from the forward, so
/// backward cannot disagree with it. Each op here:
/// - runs its forward with non-default hyper-parameters (eps, options, G, inference
///   statistics) and γ, β on each backend, then `xBackward(dy, forward:)`, and compares
///   with the reference's gradients computed from every argument passed explicitly
///   (the form the op suites test against float64 central differences);
/// - shows that a layer whose γ or β was replaced after the forward gets a typed
///   ``NormError/forwardMismatch(argument:reason:)`` from backward, never a gradient;
/// - returns no dγ (dβ) for a forward without γ (β), as PyTorch's None.
@Suite("Backward from the forward's output")
struct ForwardBackwardContractTests {
    static let shape = [3, 6, 5, 7]  // primes: no size a multiple of a work-group
    static let channels = 6

    struct Data {
        var x: [Float], dy: [Float], weight: [Float], bias: [Float], runningMean: [Float], runningVar: [Float]
        init(count: Int, parameters: Int, seed: UInt64 = 11) {
            var rng = SeededGenerator(seed: seed)
            x = rng.normals(count, offset: 3, scale: 2)
            dy = rng.normals(count)
            weight = rng.normals(parameters, offset: 1, scale: 0.3)
            bias = rng.normals(parameters, scale: 0.5)
            runningMean = rng.normals(parameters, offset: 3, scale: 0.5)
            runningVar = (0..<parameters).map { 2 + Float($0) * 0.5 }
        }
    }

    /// Gradients as host arrays, nil where the backward returned none.
    typealias HostGradients = (input: [Float]?, weight: [Float]?, bias: [Float]?)

    static func host(_ g: NormGradients) throws -> HostGradients {
        (try g.input?.toArray(), try g.weight?.toArray(), try g.bias?.toArray())
    }

    static func expectMatches(
        _ actual: HostGradients, _ expected: HostGradients, _ label: String, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        for (name, a, e) in [("dx", actual.input, expected.input), ("dγ", actual.weight, expected.weight), ("dβ", actual.bias, expected.bias)] {
            #expect((a == nil) == (e == nil), "\(label) \(name): present \(a != nil), expected \(e != nil)", sourceLocation: sourceLocation)
            if let a, let e {
                // dγ, dβ sum ~100 terms: an absolute floor in units of the largest value.
                let scale = e.map { Swift.abs(Double($0)) }.max() ?? 1
                expectClose(a, e, "\(label) \(name)", sourceLocation: sourceLocation) { i in
                    2e-5 * scale + 1e-4 * Swift.abs(Double(e[i]))
                }
            }
        }
    }

    // MARK: - BatchNorm (training, Batch Renorm, inference)

    enum BatchMode: CaseIterable, Sendable { case training, renorm, inference }

    @Test("BatchNorm: backward(dy, forward:) equals the reference", arguments: BatchMode.allCases, [TensorLayout.channelsFirst, .channelsLast])
    func batchNorm(mode: BatchMode, layout: TensorLayout) throws {
        let d = Data(count: Self.shape.reduce(1, *), parameters: Self.channels)
        let eps: Float = 0.25  // far from the default: a forgotten eps shows
        let limits = BatchRenormLimits(rmax: 1.5, dmax: 0.5)
        // The reference gradients, every argument passed explicitly.
        let rx = try Tensor(d.x, shape: Self.shape, layout: layout, on: .reference)
        let rdy = try Tensor(d.dy, shape: Self.shape, layout: layout, on: .reference)
        let rw = try Tensor(d.weight, on: .reference)
        var rrunning: RunningStatistics? = RunningStatistics(
            mean: try Tensor(d.runningMean, on: .reference), variance: try Tensor(d.runningVar, on: .reference))
        let statistics: BatchNormBackwardProblem.Statistics
        switch mode {
        case .training:
            let f = try NormCL.batchNorm(rx, weight: rw, bias: nil, runningStatistics: &rrunning, training: true, momentum: 0.1, eps: eps, strategy: nil)
            statistics = .batch(mean: f.saveMean!, invstd: f.saveInvstd!)
        case .renorm:
            let f = try NormCL.batchNorm(
                rx, weight: rw, bias: nil, runningStatistics: &rrunning, training: true, momentum: 0.1, eps: eps, strategy: nil,
                renorm: limits)
            statistics = .renorm(mean: f.saveMean!, invstd: f.saveInvstd!, r: f.renormR!, d: f.renormD!)
        case .inference:
            statistics = .running(mean: rrunning!.mean, variance: rrunning!.variance, eps: eps)
        }
        let expected = try Self.host(
            NormCL.batchNormBackward(rdy, input: rx, weight: rw, statistics: statistics, outputMask: .all, strategy: nil))

        for backend in allBackends {
            let x = try Tensor(d.x, shape: Self.shape, layout: layout, on: backend)
            let dy = try Tensor(d.dy, shape: Self.shape, layout: layout, on: backend)
            let w = try Tensor(d.weight, on: backend), b = try Tensor(d.bias, on: backend)
            var running = RunningStatistics(mean: try Tensor(d.runningMean, on: backend), variance: try Tensor(d.runningVar, on: backend))
            let forward: BatchNormOutput
            switch mode {
            case .training: forward = try NormCL.batchNorm(x, weight: w, bias: b, runningStatistics: &running, training: true, eps: eps)
            case .renorm: forward = try batchRenorm(x, weight: w, bias: b, runningStatistics: &running, limits: limits, eps: eps)
            case .inference: forward = try NormCL.batchNorm(x, weight: w, bias: b, runningStatistics: &running, training: false, eps: eps)
            }
            let gradients = try Self.host(batchNormBackward(dy, forward: forward))
            Self.expectMatches(gradients, expected, "BatchNorm \(mode) \(layout) on \(backend.name)")

            // No γ in the forward: no dγ, whatever the mask asks.
            let bare = try NormCL.batchNorm(x, bias: b, eps: eps)
            let bareGradients = try batchNormBackward(dy, forward: bare)
            #expect(bareGradients.weight == nil && bareGradients.bias != nil && bareGradients.input != nil)
        }
    }

    @Test("BatchNorm layer: a γ or β replaced after the forward is a typed error", arguments: allBackends)
    func batchNormLayerMismatch(backend: Backend) throws {
        let (d, x, dy) = try Self.layerOperands(on: backend)
        var layer = try BatchNorm(numFeatures: Self.channels, on: backend)
        let step = try layer.forward(x)
        _ = try layer.backward(dy, forward: step)  // unchanged: fine
        layer.weight = try Tensor(d.weight, on: backend)
        #expect(Self.mismatch(try layer.backward(dy, forward: step)) == "weight")
        var unbiased = try BatchNorm(numFeatures: Self.channels, on: backend)
        let unbiasedStep = try unbiased.forward(x)
        unbiased.bias = nil
        #expect(Self.mismatch(try unbiased.backward(dy, forward: unbiasedStep)) == "bias")
    }

    /// The data, x and dy (`shape`, channels first) of the layer tests on `backend`.
    static func layerOperands(on backend: Backend) throws -> (data: Data, x: Tensor, dy: Tensor) {
        let d = Data(count: shape.reduce(1, *), parameters: channels)
        return (d, try Tensor(d.x, shape: shape, on: backend), try Tensor(d.dy, shape: shape, on: backend))
    }

    /// The argument of a `forwardMismatch` thrown by `body`, nil when it threw nothing or another error.
    static func mismatch<T>(_ body: @autoclosure () throws -> T) -> String? {
        do {
            _ = try body()
            return nil
        } catch let NormError.forwardMismatch(argument, _) {
            return argument
        } catch {
            return "other error: \(error)"
        }
    }

    // MARK: - LayerNorm, RMSNorm

    @Test("LayerNorm and RMSNorm: backward(dy, forward:) equals the reference", arguments: allBackends)
    func rowNorms(backend: Backend) throws {
        let shape = [5, 3, 37], normalized = [3, 37]
        let d = Data(count: shape.reduce(1, *), parameters: 3 * 37)
        let eps: Float = 0.5
        let rx = try Tensor(d.x, shape: shape, on: .reference), rdy = try Tensor(d.dy, shape: shape, on: .reference)
        let rw = try Tensor(d.weight, shape: normalized, on: .reference)
        let x = try Tensor(d.x, shape: shape, on: backend), dy = try Tensor(d.dy, shape: shape, on: backend)
        let w = try Tensor(d.weight, shape: normalized, on: backend), b = try Tensor(d.bias, shape: normalized, on: backend)

        let rf = try layerNorm(rx, normalizedShape: normalized, weight: rw, eps: eps)
        let expected = try Self.host(
            layerNormBackward(rdy, input: rx, normalizedShape: normalized, weight: rw, saveMean: rf.saveMean, saveInvstd: rf.saveInvstd))
        let forward = try layerNorm(x, normalizedShape: normalized, weight: w, bias: b, eps: eps)
        Self.expectMatches(try Self.host(layerNormBackward(dy, forward: forward)), expected, "LayerNorm on \(backend.name)")
        let noBias = try layerNormBackward(dy, forward: try layerNorm(x, normalizedShape: normalized, weight: w, eps: eps))
        #expect(noBias.bias == nil && noBias.weight != nil)

        let rr = try rmsNorm(rx, normalizedShape: normalized, weight: rw, eps: eps)
        var rmsExpected = try Self.host(
            rmsNormBackward(rdy, input: rx, normalizedShape: normalized, weight: rw, saveInvRms: rr.saveInvRms))
        rmsExpected.bias = nil
        let rms = try rmsNorm(x, normalizedShape: normalized, weight: w, eps: eps)
        Self.expectMatches(try Self.host(rmsNormBackward(dy, forward: rms)), rmsExpected, "RMSNorm on \(backend.name)")
        let rmsBare = try rmsNormBackward(dy, forward: try rmsNorm(x, normalizedShape: normalized, eps: eps))
        #expect(rmsBare.weight == nil && rmsBare.input != nil)
    }

    @Test("LayerNorm and RMSNorm layers: a replaced γ or β is a typed error", arguments: allBackends)
    func rowNormLayerMismatch(backend: Backend) throws {
        let d = Data(count: 4 * 10, parameters: 10)
        let x = try Tensor(d.x, shape: [4, 10], on: backend), dy = try Tensor(d.dy, shape: [4, 10], on: backend)
        var ln = try LayerNorm(normalizedShape: [10], on: backend)
        let f = try ln.forward(x)
        _ = try ln.backward(dy, forward: f)
        ln.bias = try Tensor(d.bias, on: backend)
        #expect(Self.mismatch(try ln.backward(dy, forward: f)) == "bias")
        ln.bias = nil
        #expect(Self.mismatch(try ln.backward(dy, forward: f)) == "bias")
        var rms = try RMSNorm(normalizedShape: [10], on: backend)
        let rf = try rms.forward(x)
        rms.weight = try Tensor(d.weight, on: backend)
        #expect(Self.mismatch(try rms.backward(dy, forward: rf)) == "weight")
    }

    // MARK: - GroupNorm, InstanceNorm

    @Test("GroupNorm and InstanceNorm: backward(dy, forward:) equals the reference", arguments: allBackends, [TensorLayout.channelsFirst, .channelsLast])
    func groupedNorms(backend: Backend, layout: TensorLayout) throws {
        let d = Data(count: Self.shape.reduce(1, *), parameters: Self.channels)
        let eps: Float = 0.3, groups = 3
        let rx = try Tensor(d.x, shape: Self.shape, layout: layout, on: .reference)
        let rdy = try Tensor(d.dy, shape: Self.shape, layout: layout, on: .reference)
        let rw = try Tensor(d.weight, on: .reference)
        let x = try Tensor(d.x, shape: Self.shape, layout: layout, on: backend)
        let dy = try Tensor(d.dy, shape: Self.shape, layout: layout, on: backend)
        let w = try Tensor(d.weight, on: backend), b = try Tensor(d.bias, on: backend)

        let rg = try groupNorm(rx, numGroups: groups, weight: rw, eps: eps)
        var expected = try Self.host(
            groupNormBackward(rdy, input: rx, numGroups: groups, weight: rw, saveMean: rg.saveMean!, saveInvstd: rg.saveInvstd!))
        expected.bias = nil  // the forward below has no β
        let g = try groupNorm(x, numGroups: groups, weight: w, eps: eps)
        Self.expectMatches(try Self.host(groupNormBackward(dy, forward: g)), expected, "GroupNorm \(layout) on \(backend.name)")

        // InstanceNorm with input statistics, then inference with running statistics.
        let ri = try instanceNorm(rx, weight: rw, eps: eps)
        let instanceExpected = try Self.host(
            instanceNormBackward(rdy, input: rx, weight: rw, saveMean: ri.saveMean!, saveInvstd: ri.saveInvstd!))
        let i = try instanceNorm(x, weight: w, bias: b, eps: eps)
        Self.expectMatches(try Self.host(instanceNormBackward(dy, forward: i)), instanceExpected, "InstanceNorm \(layout) on \(backend.name)")

        let rrunning = RunningStatistics(mean: try Tensor(d.runningMean, on: .reference), variance: try Tensor(d.runningVar, on: .reference))
        let inferenceExpected = try Self.host(
            instanceNormBackward(rdy, input: rx, weight: rw, runningStatistics: rrunning, eps: eps))
        var running = RunningStatistics(mean: try Tensor(d.runningMean, on: backend), variance: try Tensor(d.runningVar, on: backend))
        let inference = try instanceNorm(x, weight: w, bias: b, runningStatistics: &running, useInputStatistics: false, eps: eps)
        Self.expectMatches(
            try Self.host(instanceNormBackward(dy, forward: inference)), inferenceExpected,
            "InstanceNorm inference \(layout) on \(backend.name)")
    }

    @Test("GroupNorm and InstanceNorm layers: a replaced γ or β is a typed error", arguments: allBackends)
    func groupedLayerMismatch(backend: Backend) throws {
        let (d, x, dy) = try Self.layerOperands(on: backend)
        var gn = try GroupNorm(numGroups: 2, numChannels: Self.channels, on: backend)
        let f = try gn.forward(x)
        _ = try gn.backward(dy, forward: f)
        gn.weight = try Tensor(d.weight, on: backend)
        #expect(Self.mismatch(try gn.backward(dy, forward: f)) == "weight")
        var inorm = try InstanceNorm(numFeatures: Self.channels, affine: true, on: backend)
        let i = try inorm.forward(x)
        inorm.bias = try Tensor(d.bias, on: backend)
        #expect(Self.mismatch(try inorm.backward(dy, forward: i)) == "bias")
    }

    // MARK: - Switchable Norm

    /// The finding that started this: a backward called with default options after a
    /// forward with others returned gradients 0.66% off. Now the options travel with
    /// the forward.
    @Test("SwitchableNorm: backward(dy, forward:) uses the forward's options, mode and statistics", arguments: allBackends, [true, false])
    func switchableNorm(backend: Backend, training: Bool) throws {
        let d = Data(count: Self.shape.reduce(1, *), parameters: Self.channels)
        let options = SwitchableNormOptions(varianceEstimator: .biased, eps: 0.2, momentum: 0.3)
        let logits: ([Float], [Float]) = ([0.3, -0.2, 0.5], [-0.4, 0.1, 0.6])
        func run(on backend: Backend) throws -> (SwitchableNormOutput, Tensor, Tensor, Tensor, RunningStatistics) {
            let x = try Tensor(d.x, shape: Self.shape, on: backend)
            var running = RunningStatistics(mean: try Tensor(d.runningMean, on: backend), variance: try Tensor(d.runningVar, on: backend))
            let initial = running
            let wm = try Tensor(logits.0, on: backend), wv = try Tensor(logits.1, on: backend)
            let w = try Tensor(d.weight, on: backend)
            let f = try NormCL.switchableNorm(
                x, meanLogits: wm, varianceLogits: wv, weight: w, bias: try Tensor(d.bias, on: backend),
                runningStatistics: &running, training: training, options: options)
            return (f, x, wm, wv, initial)
        }
        let (rf, rx, rwm, rwv, rinitial) = try run(on: .reference)
        let rdy = try Tensor(d.dy, shape: Self.shape, on: .reference)
        let r = try NormCL.switchableNormBackward(
            rdy, input: rx, meanLogits: rwm, varianceLogits: rwv, weight: try Tensor(d.weight, on: .reference), forward: rf,
            runningStatistics: rinitial, training: training, options: options)
        let (f, _, _, _, _) = try run(on: backend)
        let g = try switchableNormBackward(try Tensor(d.dy, shape: Self.shape, on: backend), forward: f)
        let label = "SwitchableNorm training=\(training) on \(backend.name)"
        Self.expectMatches(
            (try g.input?.toArray(), try g.weight?.toArray(), try g.bias?.toArray()),
            (try r.input?.toArray(), try r.weight?.toArray(), try r.bias?.toArray()), label)
        expectClose(try g.meanLogits.toArray(), try r.meanLogits.toArray(), "\(label) dwμ", relative: 1e-3, absolute: 1e-4)
        expectClose(try g.varianceLogits.toArray(), try r.varianceLogits.toArray(), "\(label) dwσ", relative: 1e-3, absolute: 1e-4)

        // The default options give other gradients: the test above can tell them apart.
        let defaults = try NormCL.switchableNormBackward(
            rdy, input: rx, meanLogits: rwm, varianceLogits: rwv, weight: try Tensor(d.weight, on: .reference), forward: rf,
            runningStatistics: rinitial, training: training, options: SwitchableNormOptions())
        #expect(try defaults.input!.toArray() != r.input!.toArray())
    }

    @Test("SwitchableNorm layer: replaced γ or logits are a typed error", arguments: allBackends)
    func switchableLayerMismatch(backend: Backend) throws {
        let (d, x, dy) = try Self.layerOperands(on: backend)
        var layer = try SwitchableNorm(numFeatures: Self.channels, on: backend)
        let f = try layer.forward(x)
        _ = try layer.backward(dy, forward: f)
        layer.meanLogits = try Tensor([2, 0, 1], on: backend)
        #expect(Self.mismatch(try layer.backward(dy, forward: f)) == "meanLogits")
        var other = try SwitchableNorm(numFeatures: Self.channels, on: backend)
        let g = try other.forward(x)
        other.weight = try Tensor(d.weight, on: backend)
        #expect(Self.mismatch(try other.backward(dy, forward: g)) == "weight")
    }
}
