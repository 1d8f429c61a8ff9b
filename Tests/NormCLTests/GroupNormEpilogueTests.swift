import Testing
@testable import NormCL

/// GroupNorm with a fused activation, `y = f(GN(x))` (#18): OpenCL against the float64
/// reference (the unfused sequence) for every activation, layout, element type and kernel
/// path, forward and backward; the reference backward against central differences; the
/// NaN rule; bit-identical reruns; the split of the diffusion U-Net's batch-1 NHWC shapes
/// over the device; typed errors.
@Suite("GroupNorm epilogue")
struct GroupNormEpilogueTests {
    static let activations: [Activation] = [.relu, .silu, .gelu, .geluTanh]

    @Test("forward and backward match the reference: every activation, layout, element type, strategy", arguments: activations)
    func matrix(activation: Activation) throws {
        let runtime = try #require(sharedRuntime)
        for layout in TensorLayout.allCases {
            for elementType in ElementType.allCases {
                let fused = FusedGroupNorm(
                    shape: [2, 8, 6, 6], groups: 4, layout: layout, elementType: elementType, activation: activation,
                    seed: 17)
                for strategy in fused.forwardStrategies { try fused.checkForward(runtime, strategy: strategy) }
                for strategy in fused.backwardStrategies { try fused.checkBackward(runtime, strategy: strategy) }
            }
        }
    }

    /// 1×1 spatial (rows of C/G values), primes, odd C/G, C % 4 != 0 (scalar column loads,
    /// SiLU only: one more program per activation), no affine parameters, and the
    /// GPU-style (interleaved) backward.
    @Test("awkward shapes, no affine parameters, GPU-style access", arguments: activations)
    func awkward(activation: Activation) throws {
        let runtime = try #require(sharedRuntime)
        var cases: [([Int], Int)] = [([3, 12, 1, 1], 4), ([2, 12, 17, 19], 4), ([1, 20, 13], 4), ([2, 8], 8)]
        if activation == .silu { cases.append(([2, 6, 5, 7], 3)) }
        for (shape, groups) in cases {
            for layout in TensorLayout.allCases {
                for affine in [true, false] {
                    let fused = FusedGroupNorm(
                        shape: shape, groups: groups, layout: layout, elementType: .float32, activation: activation,
                        affine: affine, seed: UInt64(shape.reduce(1, *)))
                    for strategy in fused.forwardStrategies { try fused.checkForward(runtime, strategy: strategy) }
                    for strategy in fused.backwardStrategies { try fused.checkBackward(runtime, strategy: strategy) }
                }
            }
        }
        if activation == .silu {
            for layout in TensorLayout.allCases {
                let fused = FusedGroupNorm(
                    shape: [2, 8, 6, 6], groups: 4, layout: layout, elementType: .float32, activation: .silu, seed: 5)
                for strategy in fused.backwardStrategies {
                    try fused.checkBackward(runtime, strategy: strategy, tuning: .gpuStyle)
                }
            }
        }
    }

    @Test("the reference backward matches central differences of f(GN(x))", arguments: activations)
    func gradientCheck(activation: Activation) throws {
        for (shape, groups) in [([2, 6, 5], 3), ([3, 6], 2), ([2, 4, 3, 2], 1)] {
            for layout in TensorLayout.allCases {
                var problem = try GroupNormBackwardGradientTests.problem(shape, groups: groups, layout: layout)
                problem.activation = activation
                var rng = SeededGenerator(seed: UInt64(problem.count) &+ UInt64(activation.kernelCode))
                let x = (0..<problem.count).map { _ in 1.5 + 2 * rng.normal() }
                let w = (0..<problem.count).map { _ in rng.normal() }
                let gamma = (0..<problem.channels).map { _ in 1 + 0.5 * rng.normal() }
                let beta = (0..<problem.channels).map { _ in 0.5 * rng.normal() }
                let eps = 1e-5
                func forward(_ x: [Double], _ gamma: [Double], _ beta: [Double]) -> [Double] {
                    GroupNormBackwardGradientTests.forward(problem, x: x, weight: gamma, bias: beta, eps: eps).y.map {
                        activation($0)
                    }
                }
                let stats = GroupNormBackwardGradientTests.forward(problem, x: x, weight: gamma, bias: beta, eps: eps)
                let analytic = ReferenceGroupNorm.backward(
                    problem, gradOutput: w, input: x, weight: gamma, bias: beta, mean: stats.mean, invstd: stats.invstd,
                    mask: .all)
                let label = "\(activation) \(shape) G=\(groups) \(layout)"
                GradientCheck.expectGradient(analytic.input ?? [], of: { forward($0, gamma, beta) }, weightedBy: w, at: x, "dx \(label)")
                GradientCheck.expectGradient(analytic.weight ?? [], of: { forward(x, $0, beta) }, weightedBy: w, at: gamma, "dγ \(label)")
                GradientCheck.expectGradient(analytic.bias ?? [], of: { forward(x, gamma, $0) }, weightedBy: w, at: beta, "dβ \(label)")
            }
        }
    }

    /// A NaN in one (n, g) row makes exactly that row's outputs and dx NaN, through every
    /// activation (ReLU keeps NaN), and only its channels' dγ and dβ, except ReLU's dβ:
    /// PyTorch's `threshold_backward` passes dy where its input is NaN, so e = dy stays
    /// finite and Σe with it (the reference agrees).
    @Test("a NaN stays in its (n, g) row, forward and backward", arguments: activations)
    func nonFinite(activation: Activation) throws {
        let runtime = try #require(sharedRuntime)
        let shape = [3, 8, 6, 6], spatial = 36
        for layout in TensorLayout.allCases {
            var fused = FusedGroupNorm(
                shape: shape, groups: 4, layout: layout, elementType: .float32, activation: activation, seed: 3)
            let poisoned = layout == .channelsFirst ? (1 * 8 + 2) * spatial + 5 : (1 * spatial + 5) * 8 + 2
            fused.x[poisoned] = .nan  // n = 1, group 1
            for strategy in fused.forwardStrategies {
                let out = try fused.forward(on: .openCL(runtime), strategy: strategy)
                for i in out.y.indices {
                    let (n, c) = fused.sampleAndChannel(ofElement: i)
                    #expect(out.y[i].isNaN == (n == 1 && c / 2 == 1), "y[\(i)] \(layout) \(String(describing: strategy))")
                }
            }
            let statistics = try fused.savedStatistics()
            for strategy in fused.backwardStrategies {
                let gradients = try fused.backward(on: .openCL(runtime), statistics: statistics, strategy: strategy)
                let dx = try #require(gradients.dx)
                for i in dx.indices {
                    let (n, c) = fused.sampleAndChannel(ofElement: i)
                    #expect(dx[i].isNaN == (n == 1 && c / 2 == 1), "dx[\(i)] \(layout) \(String(describing: strategy))")
                }
                for c in 0..<8 {
                    #expect((gradients.dWeight?[c] ?? 0).isNaN == (c / 2 == 1), "dγ[\(c)]")
                    #expect((gradients.dBias?[c] ?? 0).isNaN == (c / 2 == 1 && activation != .relu), "dβ[\(c)]")
                }
            }
        }
    }

    /// The same call, three times: the same bits (partials merged in a fixed order, no
    /// atomics), on the split paths the batch-1 diffusion shapes take.
    @Test("reruns are bit-identical (NHWC split columns, NCHW split rows and planes)")
    func bitIdentical() throws {
        let runtime = try #require(sharedRuntime)
        for (layout, forward, backward) in [
            (TensorLayout.channelsLast, GroupNormPlan.Strategy?.none, GroupNormBackwardPlan.Strategy?.none),
            (.channelsFirst, .splitRows(slicesPerRow: 8), .splitPlanes(slicesPerPlane: 4)),
        ] {
            let fused = FusedGroupNorm(
                shape: [1, 320, 32, 32], groups: 32, layout: layout, elementType: .float32, activation: .silu, seed: 11)
            let first = try fused.forward(on: .openCL(runtime), strategy: forward)
            let statistics = (mean: first.mean, invstd: first.invstd)
            let firstGradients = try fused.backward(on: .openCL(runtime), statistics: statistics, strategy: backward)
            for _ in 0..<2 {
                let again = try fused.forward(on: .openCL(runtime), strategy: forward)
                #expect(again.y.map(\.bitPattern) == first.y.map(\.bitPattern), "y \(layout)")
                #expect(again.mean.map(\.bitPattern) == first.mean.map(\.bitPattern), "saveMean \(layout)")
                #expect(again.invstd.map(\.bitPattern) == first.invstd.map(\.bitPattern), "saveInvstd \(layout)")
                let gradients = try fused.backward(on: .openCL(runtime), statistics: statistics, strategy: backward)
                #expect(gradients.dx?.map(\.bitPattern) == firstGradients.dx?.map(\.bitPattern), "dx \(layout)")
                #expect(gradients.dWeight?.map(\.bitPattern) == firstGradients.dWeight?.map(\.bitPattern), "dγ \(layout)")
                #expect(gradients.dBias?.map(\.bitPattern) == firstGradients.dBias?.map(\.bitPattern), "dβ \(layout)")
            }
        }
    }

    /// Batch 1 (or 2) with 32 groups NHWC: the column plans split the spatial rows so
    /// that the launch has at least two work-groups per compute unit, forward and backward
    /// (a CPU driver runs a work-group on one thread; `(1, 640, 32, 32)` was one
    /// work-group on PoCL before the split counted work-groups).
    @Test("the diffusion U-Net's NHWC shapes split over the device", arguments: [[1, 320, 64, 64], [2, 640, 32, 32], [1, 640, 32, 32]])
    func diffusionSplit(shape: [Int]) throws {
        let runtime = try #require(sharedRuntime)
        let input = try Tensor(repeating: 0, shape: shape, layout: .channelsLast, on: .reference)
        let problem = try GroupNormProblem.validated(
            input: input, groups: 32, weight: nil, bias: nil, statistics: .input(savesVariance: false), eps: 1e-5,
            op: "GroupNorm", activation: .silu)
        let units = runtime.device.computeUnits
        let forward = GroupNormPlan(problem: problem, device: runtime.device, tuning: runtime.tuning)
        let backward = GroupNormBackwardPlan(problem: problem, mask: .all, device: runtime.device, tuning: runtime.tuning)
        for (name, slices, geometry) in [
            ("forward", forward.strategySlices, forward.geometry), ("backward", backward.strategySlices, backward.geometry),
        ] {
            #expect(slices > 1, "\(name) \(shape): \(slices) spatial slices")
            let launch = geometry.columnLaunch(batch: problem.batch, slices: max(slices, 1))
            let workGroups = launch.global.indices.map { launch.global[$0] / launch.local[$0] }.reduce(1, *)
            #expect(workGroups >= 2 * units, "\(name) \(shape): \(workGroups) work-groups on \(units) compute units")
        }
        #expect(forward.specialization(for: problem).text.contains("-D ACTIVATION=2"))
    }

    @Test("ACTIVATION is defined only for a fused activation")
    func specialization() throws {
        let runtime = try #require(sharedRuntime)
        for layout in TensorLayout.allCases {
            let input = try Tensor(repeating: 0, shape: [2, 8, 4, 4], layout: layout, on: .reference)
            for activation in [Activation.none] + Self.activations {
                let problem = try GroupNormProblem.validated(
                    input: input, groups: 4, weight: nil, bias: nil, statistics: .input(savesVariance: false), eps: 1e-5,
                    op: "GroupNorm", activation: activation)
                let forward = GroupNormPlan(problem: problem, device: runtime.device, tuning: runtime.tuning)
                let backward = GroupNormBackwardPlan(
                    problem: problem, mask: .all, device: runtime.device, tuning: runtime.tuning)
                for text in [forward.specialization(for: problem).text, backward.specialization(for: problem).text] {
                    #expect(text.contains("ACTIVATION") == (activation != .none), "\(activation): \(text)")
                    if activation != .none { #expect(text.contains("-D ACTIVATION=\(activation.kernelCode)")) }
                }
            }
        }
    }

    /// The layer, the forward-output backward and the one-shot entry point carry the
    /// activation; they agree with the explicit calls.
    @Test("the layer and every entry point carry the activation", arguments: BackendChoice.allCases)
    func entryPoints(choice: BackendChoice) throws {
        let backend = try choice.backend()
        let shape = [2, 8, 3, 5]
        var rng = SeededGenerator(seed: 23)
        let values = rng.normals(shape.reduce(1, *), offset: 1, scale: 2)
        let input = try Tensor(values, shape: shape, on: backend)
        let dy = try Tensor(rng.normals(values.count), shape: shape, on: backend)
        var layer = try GroupNorm(numGroups: 4, numChannels: 8, activation: .silu, on: backend)
        layer.weight = try Tensor(rng.normals(8, offset: 1, scale: 0.5), on: backend)
        layer.bias = try Tensor(rng.normals(8, scale: 0.5), on: backend)
        let out = try layer.forward(input)
        let explicit = try groupNorm(input, numGroups: 4, weight: layer.weight, bias: layer.bias, activation: .silu)
        #expect(try out.output.toArray() == explicit.output.toArray())
        let plain = try groupNorm(input, numGroups: 4, weight: layer.weight, bias: layer.bias)
        #expect(try out.output.toArray() != plain.output.toArray())
        #expect(try out.saveInvstd?.toArray() == plain.saveInvstd?.toArray())
        let oneShot = try groupNorm(
            values, shape: shape, numGroups: 4, weight: try layer.weight?.toArray(), bias: try layer.bias?.toArray(),
            activation: .silu, on: backend)
        #expect(oneShot == (try out.output.toArray()))

        let viaLayer = try layer.backward(dy, forward: out)
        let viaForward = try groupNormBackward(dy, forward: out)
        let viaStatistics = try groupNormBackward(
            dy, input: input, numGroups: 4, weight: layer.weight, saveMean: try #require(out.saveMean),
            saveInvstd: try #require(out.saveInvstd), bias: layer.bias, activation: .silu)
        try expectIdentical(viaLayer, viaForward)
        try expectIdentical(viaLayer, viaStatistics)
        let unfused = try groupNormBackward(dy, forward: plain)
        #expect(try viaLayer.input?.toArray() != unfused.input?.toArray())

        // A layer whose activation changed since the forward pass.
        var changed = layer
        changed.activation = .relu
        #expect(thrown { try changed.backward(dy, forward: out) } == "forwardMismatch(activation)")
    }

    @Test("bad input gives typed errors with an activation", arguments: BackendChoice.allCases)
    func errors(choice: BackendChoice) throws {
        let backend = try choice.backend()
        let (input, dy, mean, invstd) = try GroupNormErrorTests.arguments(
            [2, 6, 4], period: 7, statistics: [2, 3], on: backend)
        #expect(thrown { try groupNorm(input, numGroups: 4, activation: .silu) } == "invalidArgument(numGroups)")
        let short = try Tensor([1, 2], on: backend)
        #expect(thrown { try groupNorm(input, numGroups: 3, bias: short, activation: .gelu) } == "shapeMismatch(bias)")
        func backward(bias: Tensor?, groups: Int = 3, gradOutput: Tensor? = nil) -> String? {
            thrown {
                try groupNormBackward(
                    gradOutput ?? dy, input: input, numGroups: groups, weight: nil, saveMean: mean, saveInvstd: invstd,
                    bias: bias, activation: .relu)
            }
        }
        #expect(backward(bias: nil) == nil)
        #expect(backward(bias: try Tensor(repeating: 0, shape: [6], on: backend)) == nil)
        #expect(backward(bias: short) == "shapeMismatch(bias)")
        #expect(backward(bias: try Tensor(repeating: 0, shape: [6], elementType: .float16, on: backend)) == "unsupported(bias)")
        #expect(backward(bias: nil, groups: 4) == "invalidArgument(numGroups)")
        #expect(backward(bias: nil, gradOutput: try Tensor(repeating: 0, shape: [2, 6, 3], on: backend)) == "shapeMismatch(gradOutput)")
        if case .openCL = backend {
            let elsewhere = try Tensor(repeating: 0, shape: [6], on: .reference)
            #expect(backward(bias: elsewhere) == "backendMismatch(bias)")
        }
    }
}

extension GroupNormPlan {
    /// The spatial slices of a column plan (0 for the other strategies).
    var strategySlices: Int {
        if case .columns(let slices) = strategy { slices } else { 0 }
    }
}

extension GroupNormBackwardPlan {
    /// The spatial slices of a column plan (0 for the other strategies).
    var strategySlices: Int {
        if case .columns(let slices) = strategy { slices } else { 0 }
    }
}

/// One GroupNorm + activation problem with its data: runs it on a backend, forward and
/// backward, and checks OpenCL against the reference.
struct FusedGroupNorm: ChannelsAndSpatial {
    var shape: [Int]
    var groups: Int
    var layout: TensorLayout
    var elementType: ElementType
    var activation: Activation
    /// x and dy in memory order (the layout only changes how they are indexed).
    var x: [Float]
    var dy: [Float]
    var weight: [Float]?
    var bias: [Float]?
    var eps: Float = 1e-5


    /// x = 0.5 + 1.5·N(0, 1), dy = N(0, 1), γ = 1 + 0.5·N(0, 1), β = 0.5·N(0, 1): the
    /// activations' inputs spread over their bends.
    init(
        shape: [Int], groups: Int, layout: TensorLayout, elementType: ElementType, activation: Activation,
        affine: Bool = true, seed: UInt64
    ) {
        var rng = SeededGenerator(seed: seed)
        (self.shape, self.groups, self.layout, self.elementType, self.activation) =
            (shape, groups, layout, elementType, activation)
        let count = shape.reduce(1, *)
        x = rng.normals(count, offset: 0.5, scale: 1.5)
        dy = rng.normals(count)
        if affine {
            weight = rng.normals(shape[1], offset: 1, scale: 0.5)
            bias = rng.normals(shape[1], scale: 0.5)
        }
    }

    var forwardStrategies: [GroupNormPlan.Strategy?] {
        layout == .channelsFirst || spatial == 1
            ? [nil, .fusedRows, .splitRows(slicesPerRow: 3)] : [nil, .columns(spatialSlices: 1), .columns(spatialSlices: 3)]
    }

    var backwardStrategies: [GroupNormBackwardPlan.Strategy?] {
        layout == .channelsFirst || spatial == 1
            ? [nil, .fusedRows, .splitPlanes(slicesPerPlane: 3)]
            : [nil, .columns(spatialSlices: 1), .columns(spatialSlices: 3)]
    }

    /// The (n, c) of element `i` in memory order.
    func sampleAndChannel(ofElement i: Int) -> (n: Int, c: Int) {
        switch layout {
        case .channelsFirst: (i / (channels * spatial), (i / spatial) % channels)
        case .channelsLast: (i / (channels * spatial), i % channels)
        }
    }

    struct Forward {
        var y: [Float]
        var mean: [Float]
        var invstd: [Float]
    }

    func forward(on backend: Backend, activation: Activation? = nil, strategy: GroupNormPlan.Strategy? = nil) throws -> Forward {
        let input = try Tensor(x, shape: shape, layout: layout, elementType: elementType, on: backend)
        let out = try groupNorm(
            input, numGroups: groups, weight: try weight.map { try Tensor($0, on: backend) },
            bias: try bias.map { try Tensor($0, on: backend) }, eps: eps, activation: activation ?? self.activation,
            strategy: strategy)
        return Forward(
            y: try out.output.toArray(), mean: try #require(out.saveMean).toArray(),
            invstd: try #require(out.saveInvstd).toArray())
    }

    /// OpenCL with `strategy` against the reference. The reference applies f to GroupNorm's
    /// output rounded to storage (the unfused sequence); the kernels to the float32 value.
    /// With `a` the reference's GroupNorm output: `4e-6·(1 + |a|)` (GroupNorm's own
    /// tolerance, carried through |f′| ≤ 1.13, and the float32 exp/erf/tanh), and for half
    /// storage a half rounding of `a` through f (`1.2·2^-11·|a|`) and one of y each side
    /// (`2^-10·|y|`, and subnormals' 2^-24). The statistics are GroupNorm's, bit for bit.
    func checkForward(_ runtime: OpenCLRuntime, strategy: GroupNormPlan.Strategy?, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let label = "\(activation) \(shape) G=\(groups) \(layout) \(elementType) strategy=\(strategy.map { "\($0)" } ?? "auto")"
        let actual = try forward(on: .openCL(runtime), strategy: strategy)
        let expected = try forward(on: .reference)
        let a = try forward(on: .reference, activation: Activation.none).y
        let half = elementType == .float16
        expectClose(actual.y, expected.y, "y \(label)", sourceLocation: sourceLocation) { i in
            let (y, pre) = (Swift.abs(Double(expected.y[i])), Swift.abs(Double(a[i])))
            return 4e-6 * (1 + pre) + (half ? 0x1p-10 * y + 1.2 * 0x1p-11 * pre + 0x1p-24 : 0)
        }
        let plain = try forward(on: .openCL(runtime), activation: Activation.none, strategy: strategy)
        #expect(actual.mean.map(\.bitPattern) == plain.mean.map(\.bitPattern), "saveMean \(label)", sourceLocation: sourceLocation)
        #expect(actual.invstd.map(\.bitPattern) == plain.invstd.map(\.bitPattern), "saveInvstd \(label)", sourceLocation: sourceLocation)
    }

    /// The saved statistics of the reference forward (both backends' backward get them).
    func savedStatistics() throws -> (mean: [Float], invstd: [Float]) {
        let out = try forward(on: .reference)
        return (out.mean, out.invstd)
    }

    struct Gradients {
        var dx: [Float]?
        var dWeight: [Float]?
        var dBias: [Float]?
    }

    func backward(
        on backend: Backend, statistics: (mean: [Float], invstd: [Float]), strategy: GroupNormBackwardPlan.Strategy? = nil,
        tuning: DeviceTuning? = nil
    ) throws -> Gradients {
        let rowShape = [shape[0], groups]
        let gradients = try groupNormBackward(
            try Tensor(dy, shape: shape, layout: layout, elementType: elementType, on: backend),
            input: try Tensor(x, shape: shape, layout: layout, elementType: elementType, on: backend), numGroups: groups,
            weight: try weight.map { try Tensor($0, on: backend) }, bias: try bias.map { try Tensor($0, on: backend) },
            saveMean: try Tensor(statistics.mean, shape: rowShape, on: backend),
            saveInvstd: try Tensor(statistics.invstd, shape: rowShape, on: backend), activation: activation,
            outputMask: .all, strategy: strategy, tuning: tuning)
        return Gradients(
            dx: try gradients.input?.toArray(), dWeight: try gradients.weight?.toArray(), dBias: try gradients.bias?.toArray())
    }

    /// OpenCL with `strategy` (and `tuning`) against the reference, both from the same
    /// saved statistics. GroupNorm backward's tolerances (GroupNormBackwardHarness.check)
    /// with its dy replaced by the gradient at GroupNorm's output, `e = dy·f′(a)`, widened
    /// for the float32 recomputation of `a` and f′: `|e| + 0.1·(1 + |a|)·|dy|` stands for
    /// |e| in every term (`a` is good to a few ulps of `1 + |a|`, |f″| ≤ 0.8).
    func checkBackward(
        _ runtime: OpenCLRuntime, strategy: GroupNormBackwardPlan.Strategy?, tuning: DeviceTuning? = nil,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let statistics = try savedStatistics()
        let expected = try backward(on: .reference, statistics: statistics)
        let actual = try backward(on: .openCL(runtime), statistics: statistics, strategy: strategy, tuning: tuning)
        let label =
            "\(activation) \(shape) G=\(groups) \(layout) \(elementType) strategy=\(strategy.map { "\($0)" } ?? "auto") "
            + "gpuStyle=\(tuning != nil) affine=\(weight != nil)"
        let xs = x.map { Double(elementType.rounded($0)) }, dys = dy.map { Double(elementType.rounded($0)) }
        let perGroup = channels / groups
        let count = Double(perGroup * spatial)
        var sumE = [Double](repeating: 0, count: shape[0] * groups), sumEXhat = sumE
        var absE = [Double](repeating: 0, count: channels), absEXhat = absE
        var bound = xs, xhat = xs
        for i in xs.indices {
            let (n, c) = sampleAndChannel(ofElement: i)
            let r = n * groups + c / perGroup
            xhat[i] = (xs[i] - Double(statistics.mean[r])) * Double(statistics.invstd[r])
            let gamma = Double(weight?[c] ?? 1)
            let a = xhat[i] * gamma + Double(bias?[c] ?? 0)
            bound[i] = Swift.abs(activation.gradient(dys[i], at: a)) + 0.1 * (1 + Swift.abs(a)) * Swift.abs(dys[i])
            sumE[r] += Swift.abs(gamma) * bound[i]
            sumEXhat[r] += Swift.abs(gamma) * bound[i] * Swift.abs(xhat[i])
            absE[c] += bound[i]
            absEXhat[c] += bound[i] * Swift.abs(xhat[i])
        }
        let halfUlp = elementType == .float16 ? 0x1p-10 : 0
        if let e = expected.dx, let a = actual.dx {
            expectClose(a, e, "dx \(label)", sourceLocation: sourceLocation) { i in
                let (n, c) = sampleAndChannel(ofElement: i)
                let r = n * groups + c / perGroup
                let own = Swift.abs(Double(weight?[c] ?? 1)) * bound[i]
                let terms = Double(statistics.invstd[r]) * (own + (sumE[r] + Swift.abs(xhat[i]) * sumEXhat[r]) / count)
                return 1e-5 * terms + halfUlp * Swift.abs(Double(e[i])) + 0x1p-24
            }
        } else {
            Issue.record("dx missing \(label)", sourceLocation: sourceLocation)
        }
        if let e = expected.dWeight, let a = actual.dWeight {
            expectClose(a, e, "dγ \(label)", sourceLocation: sourceLocation) { c in 1e-5 * absEXhat[c] + 1e-30 }
        }
        if let e = expected.dBias, let a = actual.dBias {
            expectClose(a, e, "dβ \(label)", sourceLocation: sourceLocation) { c in 1e-5 * absE[c] + 1e-30 }
        }
    }
}
