import Testing
@testable import NormCL

/// BatchNorm's fused epilogue, `y = f(BN(x) + z)` (issue #18 items 3 and 4): the
/// activations after BatchNorm, Batch Renorm and inference, with and without the addend z
/// (the ResNet block's `relu(BN(conv) + shortcut)`), forward and backward (dx, dγ, dβ,
/// dz), on OpenCL against the reference, which runs the unfused sequence; the
/// reference's own backward against finite differences; NaN isolation, typed errors,
/// run-to-run determinism and the layer. Synchronized BatchNorm's epilogue is tested in
/// SyncBatchNormTests.
@Suite("BatchNorm fused epilogue")
struct BatchNormEpilogueTests {
    /// The activations with a kernel of their own (``Activation/none`` with an addend is
    /// a cell of its own in ``cells``).
    static let activations: [Activation] = [.relu, .silu, .gelu, .geluTanh]

    /// Every activation in both layouts and both element types, each with and without
    /// the addend in each layout and on both vector types (float4 loads: `M % 4 == 0` in
    /// NCHW, `C % 4 == 0` in NHWC; scalar otherwise): a half fraction of activation ×
    /// layout × element type × addend × vector width that meets every pair of them per
    /// activation, since each cell is three programs (forward, backward, inference
    /// backward) compiled for it alone. Each cell runs training, Batch Renorm and inference,
    /// forward and backward, on every kernel path of its layout.
    static let cells: [EpilogueCell] = {
        var cells: [EpilogueCell] = []
        for (k, activation) in activations.enumerated() {
            for layout in TensorLayout.allCases {
                for elementType in ElementType.allCases {
                    let addend = (layout == .channelsLast) != (elementType == .float16)
                    let vectorized = ((layout == .channelsFirst) == (elementType == .float32)) == (k % 2 == 0)
                    cells.append(EpilogueCell(activation, addend: addend, layout, elementType, vectorized: vectorized))
                }
            }
        }
        // BN(x) + z alone: the addend without an activation.
        cells.append(EpilogueCell(.none, addend: true, .channelsFirst, .float32, vectorized: true))
        cells.append(EpilogueCell(.none, addend: true, .channelsLast, .float16, vectorized: false))
        return cells
    }()

    @Test("forward matches the unfused reference: training, Batch Renorm, inference, every path", arguments: cells)
    func forward(cell: EpilogueCell) throws {
        let runtime = try #require(sharedRuntime)
        let harness = EpilogueHarness(cell, seed: cell.seed)
        for mode in EpilogueHarness.Mode.allCases {
            for strategy in harness.forwardStrategies(mode) {
                try harness.checkForward(on: .openCL(runtime), mode: mode, strategy: strategy)
            }
        }
    }

    @Test("backward (dx, dγ, dβ, dz) matches the reference: every mode, path and mask", arguments: cells)
    func backward(cell: EpilogueCell) throws {
        let runtime = try #require(sharedRuntime)
        let harness = EpilogueHarness(cell, seed: cell.seed + 1)
        for mode in [EpilogueHarness.Mode.training, .renorm] {
            for strategy in harness.reducingStrategies {
                try harness.checkBackward(on: .openCL(runtime), mode: mode, mask: .all, strategy: strategy)
            }
        }
        // Inference (its own program) with sums on one reducing path, the cells taking
        // turns; without sums, one elementwise pass writes dx and dz.
        let turn = (cell.activation.kernelCode + (cell.layout == .channelsLast ? 1 : 0)) % 2
        try harness.checkBackward(
            on: .openCL(runtime), mode: .inference, mask: .all, strategy: harness.reducingStrategies[turn])
        try harness.checkBackward(on: .openCL(runtime), mode: .inference, mask: [.input, .addend], strategy: .elementwise)
        // dz alone (training takes a reducing path for it), dγ and dβ alone, dx alone.
        let strategy = harness.reducingStrategies[0]
        try harness.checkBackward(on: .openCL(runtime), mode: .training, mask: .addend, strategy: strategy)
        try harness.checkBackward(on: .openCL(runtime), mode: .renorm, mask: [.weight, .bias], strategy: strategy)
        try harness.checkBackward(on: .openCL(runtime), mode: .training, mask: .input, strategy: harness.reducingStrategies[1])
    }

    /// Shapes that hit each path's edges, on the programs of two cells above (scalar
    /// loads): (N, C) input (the column kernels in either layout), 1×1 spatial, two values
    /// per channel, primes, N·M not a multiple of a work-group or a tile.
    @Test(
        "awkward shapes: (N, C), 1×1, two values per channel, primes",
        arguments: [[2, 1], [5, 3], [4, 3, 1, 1], [1, 1, 2], [7, 3, 11], [2, 3, 11, 13], [1, 2, 257]])
    func awkwardShapes(shape: [Int]) throws {
        let runtime = try #require(sharedRuntime)
        // Cells above with scalar loads (GELU is k = 2: NCHW half and NHWC f32 with the addend).
        for layout in TensorLayout.allCases {
            let cell = EpilogueCell(
                .gelu, addend: true, layout, layout == .channelsFirst ? .float16 : .float32, vectorized: false,
                shape: shape)
            let harness = EpilogueHarness(cell, seed: UInt64(shape.reduce(1, *)))
            for mode in EpilogueHarness.Mode.allCases {
                try harness.checkForward(on: .openCL(runtime), mode: mode, strategy: nil)
                try harness.checkBackward(on: .openCL(runtime), mode: mode, mask: .all, strategy: nil)
            }
        }
    }

    @Test("the reference backward matches finite differences of the float64 forward", arguments: activations)
    func gradientCheck(activation: Activation) {
        for (shape, layout) in [([3, 2, 5], TensorLayout.channelsFirst), ([4, 3, 2], .channelsLast)] {
            for addend in [false, true] {
                for mode in EpilogueHarness.Mode.allCases {
                    Self.checkGradients(shape: shape, layout: layout, activation: activation, addend: addend, mode: mode)
                }
            }
        }
    }

    /// `L = Σ f(BN(x) + z)·w` in float64 with the batch statistics recomputed from x
    /// (training, Batch Renorm with r and d held) or constant (inference), against the
    /// reference's epilogue gradient followed by its BatchNorm backward.
    static func checkGradients(
        shape: [Int], layout: TensorLayout, activation: Activation, addend: Bool, mode: EpilogueHarness.Mode
    ) {
        var rng = SeededGenerator(seed: UInt64(shape.reduce(1, *)) + (addend ? 7 : 0))
        let channels = shape[1], count = shape.reduce(1, *)
        let index = ReferenceBatchNorm.Indexing(
            batch: shape[0], channels: channels, spatial: shape.dropFirst(2).reduce(1, *), layout: layout)
        let x = rng.normals(count, offset: 0.5, scale: 2).map(Double.init)
        let w = rng.normals(count).map(Double.init)
        let z = addend ? rng.normals(count).map(Double.init) : nil
        let gamma = rng.normals(channels, offset: 1, scale: 0.5).map(Double.init)
        let beta = rng.normals(channels, scale: 0.5).map(Double.init)
        let forwardMode: BatchNormBackwardGradientCheckTests.Forward
        switch mode {
        case .training: forwardMode = .training
        case .renorm:
            forwardMode = .renorm(
                r: (0..<channels).map { [0.5, 1.7, 1.0][$0 % 3] }, d: (0..<channels).map { [0.3, -1.2, 0.0][$0 % 3] })
        case .inference:
            forwardMode = .inference(
                mean: (0..<channels).map { Double($0) * 0.3 - 0.2 },
                invstd: (0..<channels).map { 1 / (0.5 + Double($0)).squareRoot() })
        }
        func forward(_ x: [Double], _ gamma: [Double], _ beta: [Double], _ z: [Double]?) -> [Double] {
            let y = BatchNormBackwardGradientCheckTests.forward(
                x, gamma: gamma, beta: beta, index: index, mode: forwardMode, eps: 1e-5
            ).y
            return y.indices.map { activation(y[$0] + (z?[$0] ?? 0)) }
        }
        let base = BatchNormBackwardGradientCheckTests.forward(
            x, gamma: gamma, beta: beta, index: index, mode: forwardMode, eps: 1e-5)
        var renorm: (r: [Double], d: [Double])? = nil
        if case .renorm(let r, let d) = forwardMode { renorm = (r, d) }
        let g = ReferenceBatchNorm.epilogueGradient(
            dy: w, x: x, index: index, weight: gamma, bias: beta, mean: base.mean, invstd: base.invstd, renorm: renorm,
            activation: activation, addend: z)
        let analytic = ReferenceBatchNorm.backward(
            dy: g, x: x, index: index, weight: gamma, mean: base.mean, invstd: base.invstd, renorm: renorm,
            mode: mode == .inference ? .inference : .training, mask: .all)
        let label = "\(activation) \(shape) \(layout) \(mode) addend=\(addend)"
        GradientCheck.expectGradient(
            analytic.gradInput ?? [], of: { forward($0, gamma, beta, z) }, weightedBy: w, at: x, "dx \(label)")
        GradientCheck.expectGradient(
            analytic.gradWeight ?? [], of: { forward(x, $0, beta, z) }, weightedBy: w, at: gamma, "dγ \(label)")
        GradientCheck.expectGradient(
            analytic.gradBias ?? [], of: { forward(x, gamma, $0, z) }, weightedBy: w, at: beta, "dβ \(label)")
        if let z {
            GradientCheck.expectGradient(g, of: { forward(x, gamma, beta, $0) }, weightedBy: w, at: z, "dz \(label)")
        }
    }

    @Test("the reference forward is the unfused sequence: BN rounded to storage, + z, f, rounded")
    func referenceIsUnfused() throws {
        for elementType in ElementType.allCases {
            let cell = EpilogueCell(.gelu, addend: true, .channelsLast, elementType, vectorized: false)
            let h = EpilogueHarness(cell, seed: 5)
            var running = try runningStatistics(h.runningMean, h.runningVar, on: .reference)
            let bn = try batchNorm(
                h.tensor(h.x, on: .reference), weight: Tensor(h.weight, on: .reference), bias: Tensor(h.bias, on: .reference),
                runningStatistics: &running, training: true, momentum: 0.1, eps: 1e-5, strategy: nil)
            let bnValues = try bn.output.toArray()
            let expected = bnValues.indices.map { i in
                elementType.rounded(Float(Activation.gelu(Double(bnValues[i]) + Double(h.z[i]))))
            }
            #expect(try h.forward(on: .reference, mode: .training, strategy: nil).y == expected)
        }
    }

    @Test("a NaN stays in its channel (x, dy) or element (z), +Inf in z in its element, forward and backward, on every backend")
    func nanIsolation() throws {
        for backend in allBackends {
            for layout in TensorLayout.allCases {
                // SiLU's cells with the addend (NCHW half, NHWC f32): their programs.
                let cell = try #require(Self.cells.first { $0.activation == .silu && $0.addend && $0.layout == layout })
                let shape = cell.shape, channels = shape[1], spatial = shape.dropFirst(2).reduce(1, *)
                let index = ReferenceBatchNorm.Indexing(batch: shape[0], channels: channels, spatial: spatial, layout: layout)
                var h = EpilogueHarness(cell, seed: 3)
                h.x[index(1, 2, 1)] = .nan
                h.z[index(0, 0, 2)] = .nan
                // SiLU(+Inf) = +Inf; its gradient there is dy·(1 + Inf·0) = NaN (PyTorch's formula).
                h.z[index(2, 4, 3)] = .infinity
                let y = try h.forward(on: backend, mode: .training, strategy: nil).y
                h.dy[index(2, 3, 0)] = .nan
                let grads = try h.backward(on: backend, mode: .training, statistics: h.statistics(.training), mask: .all, strategy: nil)
                let dx = try #require(grads.dx), dz = try #require(grads.dz), dw = try #require(grads.dWeight)
                for b in 0..<shape[0] {
                    for c in 0..<channels {
                        for m in 0..<spatial {
                            let i = index(b, c, m)
                            let poisonedElement = i == index(0, 0, 2) || i == index(2, 4, 3)
                            let where_ = "\(backend) \(layout) (\(b), \(c), \(m))"
                            #expect(y[i].isNaN == (c == 2 || i == index(0, 0, 2)), "y \(where_)")
                            #expect((y[i] == .infinity) == (i == index(2, 4, 3)), "y \(where_)")
                            // dz = dy·f′(a): NaN where dy, x's channel (its statistics) or z is.
                            #expect(dz[i].isNaN == (c == 2 || poisonedElement || i == index(2, 3, 0)), "dz \(where_)")
                            // dx: the channels whose sums hold a NaN (x's, dy's and z's channels).
                            #expect(dx[i].isNaN == [0, 2, 3, 4].contains(c), "dx \(where_)")
                        }
                    }
                }
                #expect(dw.enumerated().allSatisfy { $0.element.isNaN == [0, 2, 3, 4].contains($0.offset) })
            }
        }
    }

    @Test("the same input twice gives bit-identical results, forward and backward, on every path")
    func deterministic() throws {
        let runtime = try #require(sharedRuntime)
        for cell in Self.cells where cell.activation == .gelu {
            let harness = EpilogueHarness(cell, seed: 17)
            for strategy in harness.reducingStrategies {
                let first = try harness.forward(on: .openCL(runtime), mode: .training, strategy: strategy)
                let second = try harness.forward(on: .openCL(runtime), mode: .training, strategy: strategy)
                #expect(first.y.map(\.bitPattern) == second.y.map(\.bitPattern))
                let statistics = try harness.statistics(.training)
                let a = try harness.backward(on: .openCL(runtime), mode: .training, statistics: statistics, mask: .all, strategy: strategy)
                let b = try harness.backward(on: .openCL(runtime), mode: .training, statistics: statistics, mask: .all, strategy: strategy)
                #expect(a.dx?.map(\.bitPattern) == b.dx?.map(\.bitPattern) && a.dz?.map(\.bitPattern) == b.dz?.map(\.bitPattern))
                #expect(a.dWeight?.map(\.bitPattern) == b.dWeight?.map(\.bitPattern))
                #expect(a.dBias?.map(\.bitPattern) == b.dBias?.map(\.bitPattern))
            }
        }
    }

    @Test("GPU-style tuning: interleaved access, column tile 1, wide work-groups")
    func interleavedTuning() throws {
        let runtime = try #require(sharedRuntime)
        for layout in TensorLayout.allCases {
            var harness = EpilogueHarness(
                EpilogueCell(.geluTanh, addend: true, layout, .float32, vectorized: layout == .channelsFirst), seed: 29)
            harness.tuning = .gpuStyle64
            for mode in EpilogueHarness.Mode.allCases {
                for strategy in harness.forwardStrategies(mode) {
                    try harness.checkForward(on: .openCL(runtime), mode: mode, strategy: strategy)
                }
                for strategy in mode == .inference ? [.elementwise] : harness.reducingStrategies {
                    let mask: NormGradientMask = mode == .inference ? [.input, .addend] : .all
                    try harness.checkBackward(on: .openCL(runtime), mode: mode, mask: mask, strategy: strategy)
                }
            }
        }
    }

    @Test("backward from the forward's output, and the layer, apply the saved activation and addend")
    func savedEpilogue() throws {
        for backend in allBackends {
            for cell in [Self.cells[2], Self.cells[4]] {
                let h = EpilogueHarness(cell, seed: 23)
                let x = try h.tensor(h.x, on: backend), z = try h.tensor(h.z, on: backend), dy = try h.tensor(h.dy, on: backend)
                var layer = try BatchNorm(numFeatures: cell.shape[1], on: backend)
                layer.activation = cell.activation
                layer.weight = try Tensor(h.weight, on: backend)
                layer.bias = try Tensor(h.bias, on: backend)
                let out = try layer.forward(x, addend: cell.addend ? z : nil)
                let viaLayer = try layer.backward(dy, forward: out)
                let explicit = try batchNormBackward(
                    dy, input: x, weight: layer.weight, bias: layer.bias, saveMean: #require(out.saveMean),
                    saveInvstd: #require(out.saveInvstd), activation: cell.activation, addend: cell.addend ? z : nil)
                try expectIdentical(viaLayer, explicit)
                #expect(try viaLayer.addend?.toArray() == explicit.addend?.toArray())
                #expect((viaLayer.addend != nil) == cell.addend)
                // Left out by the mask, or absent without an addend.
                #expect(try layer.backward(dy, forward: out, outputMask: [.input, .weight, .bias]).addend == nil)
                // Inference: the running statistics the forward normalised with.
                layer.isTraining = false
                let inference = try layer.forward(x, addend: cell.addend ? z : nil)
                let inferenceGradients = try layer.backward(dy, forward: inference)
                let explicitInference = try batchNormBackward(
                    dy, input: x, weight: layer.weight, bias: layer.bias, runningStatistics: #require(layer.runningStatistics),
                    activation: cell.activation, addend: cell.addend ? z : nil)
                try expectIdentical(inferenceGradients, explicitInference)
                #expect(try inferenceGradients.addend?.toArray() == explicitInference.addend?.toArray())
                #expect(try layer(x, addend: z).toArray() == layer.forward(x, addend: z).output.toArray())
            }
        }
    }

    @Test("an addend of another shape, layout, element type or backend, or overlapping a result, is a typed error")
    func badAddend() throws {
        for backend in allBackends {
            // Half [2, 3, 5, 5] with ReLU and an addend: a cell's programs (NCHW half, scalar loads).
            let shape = [2, 3, 5, 5]
            let x = try Tensor(repeating: 1.5, shape: shape, elementType: .float16, on: backend)
            let good = try Tensor(zerosLike: x)
            func forwardError(_ addend: Tensor) -> String? {
                thrown { try batchNorm(x, activation: .relu, addend: addend) }
            }
            #expect(forwardError(try Tensor(repeating: 0, shape: [2, 3, 5, 4], elementType: .float16, on: backend))
                == "shapeMismatch(addend)")
            #expect(forwardError(
                try Tensor(repeating: 0, shape: shape, layout: .channelsLast, elementType: .float16, on: backend))
                == "unsupported(addend)")
            #expect(forwardError(try Tensor(repeating: 0, shape: shape, on: backend)) == "unsupported(addend)")
            let isReference: Bool
            if case .reference = backend { isReference = true } else { isReference = false }
            if let runtime = sharedRuntime {
                let other: Backend = isReference ? .openCL(runtime) : .reference
                #expect(forwardError(try Tensor(repeating: 0, shape: shape, elementType: .float16, on: other))
                    == "backendMismatch(addend)")
            }
            // The backward forms check it too, and β as a parameter.
            let mean = try Tensor(repeating: 0, shape: [3], on: backend), invstd = try Tensor(repeating: 1, shape: [3], on: backend)
            #expect(thrown {
                try batchNormBackward(
                    x, input: x, weight: nil, saveMean: mean, saveInvstd: invstd, activation: .silu,
                    addend: try Tensor(repeating: 0, shape: [2, 3, 25], elementType: .float16, on: backend))
            } == "shapeMismatch(addend)")
            #expect(thrown {
                try batchNormBackward(
                    x, input: x, weight: nil, bias: try Tensor(repeating: 0, shape: [4], on: backend), saveMean: mean,
                    saveInvstd: invstd, activation: .silu)
            } == "shapeMismatch(bias)")
            guard !isReference else { continue }
            // A destination over the addend: the kernels read z while they write y (dx, dz).
            #expect(thrown {
                try batchNorm(x, activation: .relu, addend: good, into: ForwardDestinations(output: good))
            } == "invalidArgument(destinations.output)")
            #expect(thrown {
                try batchNormBackward(
                    x, input: x, weight: nil, saveMean: mean, saveInvstd: invstd, activation: .relu, addend: good,
                    into: BackwardDestinations(gradAddend: good))
            } == "invalidArgument(destinations.gradAddend)")
            let dz = try Tensor(zerosLike: x)
            #expect(thrown {
                try batchNormBackward(
                    x, input: x, weight: nil, saveMean: mean, saveInvstd: invstd, activation: .relu, addend: good,
                    into: BackwardDestinations(gradInput: dz, gradAddend: dz))
            } == "invalidArgument(destinations.gradInput)")
            #expect(thrown {
                try batchNormBackward(
                    x, input: x, weight: nil, saveMean: mean, saveInvstd: invstd, activation: .relu, addend: good,
                    into: BackwardDestinations(
                    gradAddend: try Tensor(repeating: 0, shape: [2, 3, 25], elementType: .float16, on: backend)))
            } == "shapeMismatch(destinations.gradAddend)")
        }
    }

    @Test("empty input: empty output and empty dz, no kernel")
    func emptyInput() throws {
        for backend in allBackends {
            let x = try Tensor([], shape: [0, 3, 4], on: backend)
            let out = try batchNorm(x, activation: .relu, addend: x)
            #expect(out.output.shape == [0, 3, 4] && out.events.isEmpty)
            let grads = try batchNormBackward(x, forward: out)
            #expect(grads.addend?.shape == [0, 3, 4] && grads.input?.shape == [0, 3, 4] && grads.events.isEmpty)
        }
    }

    @Test(
        "fused programs do not follow shapes",
        .enabled(if: sharedRuntime?.tuning.chunkedAccess == true, "shapes share specialisations under the CPU tuning"))
    func programsShareShapes() throws {
        let shared = try #require(sharedRuntime)
        // A runtime of its own without a disk cache: every program it gets is a source build.
        let runtime = try OpenCLRuntime(device: shared.device, programCache: ProgramCacheConfiguration(directory: nil))
        var builds: [Int] = []
        // NCHW with M % 4 != 0: ReLU with the addend in half is a cell's specialisation.
        for shape in [[3, 5, 7], [2, 5, 11], [4, 3, 13, 3]] {
            let before = runtime.programStatistics.builtFromSource
            let h = EpilogueHarness(
                EpilogueCell(.relu, addend: true, .channelsFirst, .float16, vectorized: false, shape: shape), seed: 1)
            _ = try h.forward(on: .openCL(runtime), mode: .training, strategy: .fusedPerChannel)
            _ = try h.backward(
                on: .openCL(runtime), mode: .training, statistics: h.statistics(.training), mask: .all,
                strategy: .fusedPerChannel)
            try runtime.finish()
            builds.append(runtime.programStatistics.builtFromSource - before)
        }
        #expect(builds == [2, 0, 0], "forward and backward programs built per shape")
    }

    @Test("unfused programs keep their build options; the epilogue adds ACTIVATION and HAS_ADDEND only when present")
    func buildOptions() throws {
        let runtime = try #require(sharedRuntime)
        for activation in [Activation.none] + Self.activations {
            for addend in [false, true] {
                let problem = BatchNormProblem(
                    shape: [2, 3, 8], layout: .channelsFirst, elementType: .float32,
                    mode: .training(updatesRunningStatistics: false), renorm: false, hasWeight: true, hasBias: true,
                    activation: activation, hasAddend: addend)
                let plan = BatchNormPlan(problem: problem, device: runtime.device, tuning: runtime.tuning)
                let options = plan.specialization(for: problem).text
                #expect(options.contains("ACTIVATION") == (activation != .none), "\(options)")
                if activation != .none { #expect(options.contains("-D ACTIVATION=\(activation.kernelCode)")) }
                #expect(options.contains("HAS_ADDEND") == addend, "\(options)")
            }
        }
    }
}

/// One configuration of the epilogue: activation, addend or not, layout, element type,
/// and a shape whose loads are float4 (`vectorized`) or scalar.
struct EpilogueCell: Sendable, CustomTestStringConvertible {
    var activation: Activation
    var addend: Bool
    var layout: TensorLayout
    var elementType: ElementType
    var shape: [Int]

    init(
        _ activation: Activation, addend: Bool, _ layout: TensorLayout, _ elementType: ElementType, vectorized: Bool,
        shape: [Int]? = nil
    ) {
        self.activation = activation
        self.addend = addend
        self.layout = layout
        self.elementType = elementType
        // NCHW loads float4 when M % 4 == 0, the column kernels when C % 4 == 0.
        switch (layout, vectorized) {
        case (.channelsFirst, true): self.shape = shape ?? [3, 5, 4, 3]
        case (.channelsFirst, false): self.shape = shape ?? [3, 5, 7]
        case (.channelsLast, true): self.shape = shape ?? [3, 8, 5]
        case (.channelsLast, false): self.shape = shape ?? [3, 6, 5]
        }
    }

    var seed: UInt64 { UInt64(activation.kernelCode * 16 + (addend ? 8 : 0) + shape.reduce(1, *)) }
    var testDescription: String {
        "\(activation)\(addend ? "+z" : "") \(shape) \(layout) \(elementType)"
    }
}

/// Runs the fused forward and backward on a backend and on the reference with the same
/// data (held at the storage type's values), and checks every result.
struct EpilogueHarness {
    enum Mode: CaseIterable, CustomStringConvertible {
        case training, renorm, inference
        var description: String {
            switch self {
            case .training: "training"
            case .renorm: "renorm"
            case .inference: "inference"
            }
        }
    }

    let cell: EpilogueCell
    var x, z, dy: [Float]
    let weight, bias, runningMean, runningVar: [Float]
    let limits = BatchRenormLimits(rmax: 2, dmax: 1)
    /// Replaces the runtime's tuning on OpenCL (GPU-style launches on a CPU device).
    var tuning: DeviceTuning?
    var shape: [Int] { cell.shape }
    var channels: Int { cell.shape[1] }
    var index: ReferenceBatchNorm.Indexing {
        ReferenceBatchNorm.Indexing(
            batch: shape[0], channels: channels, spatial: shape.dropFirst(2).reduce(1, *), layout: cell.layout)
    }

    /// x = `0.5 + 2·N(0,1)`, z, dy = N(0,1), γ = `1 + 0.5·N(0,1)`, β = `0.5·N(0,1)`: the
    /// activation's input spreads over both sides of 0. Running statistics away from the
    /// batch's, so that Batch Renorm clips r and d on some channels.
    init(_ cell: EpilogueCell, seed: UInt64) {
        self.cell = cell
        var rng = SeededGenerator(seed: seed)
        let count = cell.shape.reduce(1, *), channels = cell.shape[1]
        let stored = { (values: [Float]) in values.map { cell.elementType.rounded($0) } }
        x = stored(rng.normals(count, offset: 0.5, scale: 2))
        z = stored(rng.normals(count))
        dy = stored(rng.normals(count))
        weight = rng.normals(channels, offset: 1, scale: 0.5)
        bias = rng.normals(channels, scale: 0.5)
        runningMean = (0..<channels).map { Float($0 % 5) * 0.8 - 1.1 }
        runningVar = (0..<channels).map { [0.3, 2.5, 6, 1][$0 % 4] }
    }

    func tensor(_ values: [Float], on backend: Backend) throws -> Tensor {
        try Tensor(values, shape: shape, layout: cell.layout, elementType: cell.elementType, on: backend)
    }

    var reducingStrategies: [BatchNormPlan.Strategy] {
        cell.layout == .channelsLast || shape.dropFirst(2).reduce(1, *) == 1
            ? [.columns, .splitColumns(rowGroups: 3)]
            : [.fusedPerChannel, .channelItems, .splitReduction(groupsPerChannel: 3)]
    }

    func forwardStrategies(_ mode: Mode) -> [BatchNormPlan.Strategy?] {
        mode == .inference ? [nil] : reducingStrategies
    }

    struct Forward {
        var y: [Float]
        var saveMean, saveInvstd, r, d: [Float]?
    }

    func forward(on backend: Backend, mode: Mode, strategy: BatchNormPlan.Strategy?, fused: Bool = true) throws -> Forward {
        var running = try runningStatistics(runningMean, runningVar, on: backend)
        let out = try batchNorm(
            tensor(x, on: backend), weight: Tensor(weight, on: backend), bias: Tensor(bias, on: backend),
            runningStatistics: &running, training: mode != .inference, momentum: 0.1, eps: 1e-5, strategy: strategy,
            renorm: mode == .renorm ? limits : nil, activation: fused ? cell.activation : .none,
            addend: fused && cell.addend ? tensor(z, on: backend) : nil, tuning: tuning)
        #expect(out.output.elementType == cell.elementType && out.output.layout == cell.layout)
        if case .openCL = backend { #expect(!out.events.isEmpty) }
        return Forward(
            y: try out.output.toArray(), saveMean: try out.saveMean?.toArray(), saveInvstd: try out.saveInvstd?.toArray(),
            r: try out.renormR?.toArray(), d: try out.renormD?.toArray())
    }

    /// Compares `backend`'s fused forward with the reference's unfused sequence.
    ///
    /// Tolerance per element, with `bn` the reference's BatchNorm output and z the
    /// addend: `4e-6·(1 + |bn| + |z|)` (8e-6 for Batch Renorm, whose `γ·d` carries the
    /// mean's error): the norm's float32 bound of ``BatchNormHarness`` carried through
    /// activations whose slope is at most 1.13, plus their float32 `exp`/`erf`/`tanh` (a
    /// few ulps). Half storage: the reference rounds `bn` to half before adding z (the
    /// unfused sequence) and the kernel does not, and both round y: `2^-10·(|bn| + |y|)`
    /// and the smallest half step on top.
    func checkForward(on backend: Backend, mode: Mode, strategy: BatchNormPlan.Strategy?) throws {
        let expected = try forward(on: .reference, mode: mode, strategy: nil)
        let bn = try forward(on: .reference, mode: mode, strategy: nil, fused: false).y
        let actual = try forward(on: backend, mode: mode, strategy: strategy)
        let label = "\(cell.testDescription) \(mode) strategy=\(strategy.map { "\($0)" } ?? "auto")"
        let base = mode == .renorm ? 8e-6 : 4e-6
        expectClose(actual.y, expected.y, "y \(label)") { i in
            Self.outputTolerance(
                bn: bn[i], addend: cell.addend ? z[i] : nil, expected: expected.y[i], elementType: cell.elementType,
                base: base)
        }
        if mode != .inference, let m = actual.saveMean, let e = expected.saveMean {
            expectClose(m, e, "saveMean \(label)", relative: 1e-5, absolute: 1e-5)
            expectClose(actual.saveInvstd ?? [], expected.saveInvstd ?? [], "saveInvstd \(label)", relative: 1e-5)
        }
        #expect((actual.r == nil) == (mode != .renorm), "r \(label)")
    }

    /// The tolerance of one element of a fused y against the reference's unfused one (see
    /// ``checkForward(on:mode:strategy:)``): `base·(1 + |bn| + |z|)`, and in half storage
    /// `2^-10·(|bn| + |y|)` and the smallest half step on top.
    static func outputTolerance(
        bn: Float, addend: Float?, expected: Float, elementType: ElementType, base: Double = 4e-6
    ) -> Double {
        let z = addend.map { Swift.abs(Double($0)) } ?? 0
        let half = elementType == .float16
        return base * (1 + Swift.abs(Double(bn)) + z)
            + (half ? 0x1p-10 * (Swift.abs(Double(bn)) + Swift.abs(Double(expected))) + 0x1p-24 : 0)
    }

    /// The statistics the backward reads, from a reference forward on the same x: (mean,
    /// saved invstd or running variance, r, d).
    func statistics(_ mode: Mode) throws -> (mean: [Float], second: [Float], r: [Float]?, d: [Float]?) {
        if mode == .inference { return (runningMean, runningVar, nil, nil) }
        let out = try forward(on: .reference, mode: mode, strategy: nil)
        return (out.saveMean!, out.saveInvstd!, out.r, out.d)
    }

    struct Gradients {
        var dx, dWeight, dBias, dz: [Float]?
    }

    func backward(
        on backend: Backend, mode: Mode, statistics s: (mean: [Float], second: [Float], r: [Float]?, d: [Float]?),
        mask: NormGradientMask, strategy: BatchNormPlan.Strategy?
    ) throws -> Gradients {
        let mean = try Tensor(s.mean, on: backend), second = try Tensor(s.second, on: backend)
        let statistics: BatchNormBackwardProblem.Statistics
        switch mode {
        case .training: statistics = .batch(mean: mean, invstd: second)
        case .renorm:
            statistics = .renorm(mean: mean, invstd: second, r: try Tensor(s.r!, on: backend), d: try Tensor(s.d!, on: backend))
        case .inference: statistics = .running(mean: mean, variance: second, eps: 1e-5)
        }
        let grads = try batchNormBackward(
            tensor(dy, on: backend), input: tensor(x, on: backend), weight: Tensor(weight, on: backend),
            statistics: statistics, outputMask: mask, strategy: strategy, tuning: tuning, bias: Tensor(bias, on: backend),
            activation: cell.activation, addend: cell.addend ? tensor(z, on: backend) : nil)
        if let dz = grads.addend {
            #expect(dz.shape == shape && dz.layout == cell.layout && dz.elementType == cell.elementType)
        }
        return Gradients(
            dx: try grads.input?.toArray(), dWeight: try grads.weight?.toArray(), dBias: try grads.bias?.toArray(),
            dz: try grads.addend?.toArray())
    }

    /// Compares `backend` with the reference, fed the same statistics, within
    /// ``EpilogueGradientTolerance``.
    func checkBackward(
        on backend: Backend, mode: Mode, mask: NormGradientMask, strategy: BatchNormPlan.Strategy?,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let s = try statistics(mode)
        let expected = try backward(on: .reference, mode: mode, statistics: s, mask: mask, strategy: nil)
        let actual = try backward(on: backend, mode: mode, statistics: s, mask: mask, strategy: strategy)
        let label = "\(cell.testDescription) \(mode) mask=\(mask.rawValue) strategy=\(strategy.map { "\($0)" } ?? "auto")"
        #expect((actual.dx != nil) == mask.contains(.input), "dx presence \(label)", sourceLocation: sourceLocation)
        #expect((actual.dWeight != nil) == mask.contains(.weight), "dγ presence \(label)", sourceLocation: sourceLocation)
        #expect((actual.dBias != nil) == mask.contains(.bias), "dβ presence \(label)", sourceLocation: sourceLocation)
        #expect(
            (actual.dz != nil) == (mask.contains(.addend) && cell.addend), "dz presence \(label)",
            sourceLocation: sourceLocation)

        let invstd = (0..<channels).map { c in
            mode == .inference ? 1 / (Double(s.second[c]) + 1e-5).squareRoot() : Double(s.second[c])
        }
        let bounds = EpilogueGradientTolerance(
            x: x, dy: dy, addend: cell.addend ? z : nil, weight: weight, bias: bias, mean: s.mean, invstd: invstd,
            r: s.r, d: s.d, index: index, elementType: cell.elementType)
        if let a = actual.dx, let e = expected.dx {
            expectClose(a, e, "dx \(label)", sourceLocation: sourceLocation) { bounds.dx($0, expected: e[$0]) }
        }
        if let a = actual.dWeight, let e = expected.dWeight {
            expectClose(a, e, "dγ \(label)", sourceLocation: sourceLocation) { bounds.dWeight($0) }
        }
        if let a = actual.dBias, let e = expected.dBias {
            expectClose(a, e, "dβ \(label)", sourceLocation: sourceLocation) { bounds.dBias($0) }
        }
        if let a = actual.dz, let e = expected.dz {
            expectClose(a, e, "dz \(label)", sourceLocation: sourceLocation) { bounds.dz($0, expected: e[$0]) }
        }
    }
}

/// The tolerances of a fused BatchNorm backward against the reference's, both fed the
/// same statistics: ``BatchNormBackwardHarness``'s with dy replaced by the gradient at the
/// norm's output, `g = dy·f′(a)`, bounded by `G = |dy|·(1 + |a|)` (|f′| ≤ 1.13, and the
/// kernel's float32 `a` and `f′` err by a few ulps of `|a|` and of 1), and `1e-5` for
/// `4e-6`: per channel `A = mean G`, `B = mean G·|x̂|`, dx within
/// `1e-5·|γ·r·invstd|·(G + A + |x̂|·B)`, dγ within `1e-5·Σ G·(|x̂|·r + |d|)`, dβ within
/// `1e-5·Σ G`, dz within `1e-5·G`; half storage rounds dx and dz once more on each side:
/// `2^-10` of them on top. Element indices are the whole tensor's memory order.
struct EpilogueGradientTolerance {
    private var channelOf: [Int], xhat: [Double], bound: [Double]
    private var sumBound: [Double], sumBoundXhat: [Double], scale: [Double]
    private let r: [Double], d: [Double], n: Double, halfRounding: Double

    /// - Parameters:
    ///   - invstd: per channel, the saved invstd (training) or `1/sqrt(running_var + eps)`.
    ///   - r, d: Batch Renorm's, or nil (1 and 0).
    init(
        x: [Float], dy: [Float], addend z: [Float]?, weight: [Float], bias: [Float], mean: [Float], invstd: [Double],
        r: [Float]?, d: [Float]?, index: ReferenceBatchNorm.Indexing, elementType: ElementType
    ) {
        let channels = index.channels
        self.r = r.map { $0.map(Double.init) } ?? [Double](repeating: 1, count: channels)
        self.d = d.map { $0.map(Double.init) } ?? [Double](repeating: 0, count: channels)
        channelOf = [Int](repeating: 0, count: x.count)
        xhat = [Double](repeating: 0, count: x.count)
        bound = xhat
        sumBound = [Double](repeating: 0, count: channels)
        sumBoundXhat = sumBound
        scale = (0..<channels).map { c in Swift.abs(Double(weight[c]) * (r.map { Double($0[c]) } ?? 1) * invstd[c]) }
        for b in 0..<index.batch {
            for c in 0..<channels {
                for m in 0..<index.spatial {
                    let i = index(b, c, m)
                    channelOf[i] = c
                    xhat[i] = (Double(x[i]) - Double(mean[c])) * invstd[c]
                    let a =
                        (xhat[i] * self.r[c] + self.d[c]) * Double(weight[c]) + Double(bias[c]) + Double(z?[i] ?? 0)
                    bound[i] = Swift.abs(Double(dy[i])) * (1 + Swift.abs(a))
                    sumBound[c] += bound[i]
                    sumBoundXhat[c] += bound[i] * Swift.abs(xhat[i])
                }
            }
        }
        n = Double(index.batch * index.spatial)
        halfRounding = elementType == .float16 ? 0x1p-10 : 0
    }

    func dx(_ i: Int, expected: Float) -> Double {
        let c = channelOf[i]
        return 1e-5 * scale[c] * (bound[i] + sumBound[c] / n + Swift.abs(xhat[i]) * sumBoundXhat[c] / n)
            + halfRounding * Swift.abs(Double(expected)) + 1e-30
    }

    func dWeight(_ c: Int) -> Double { 1e-5 * (r[c] * sumBoundXhat[c] + Swift.abs(d[c]) * sumBound[c]) + 1e-30 }

    func dBias(_ c: Int) -> Double { 1e-5 * sumBound[c] + 1e-30 }

    func dz(_ i: Int, expected: Float) -> Double { 1e-5 * bound[i] + halfRounding * Swift.abs(Double(expected)) + 1e-30 }
}
