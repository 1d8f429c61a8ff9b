import Testing
@_spi(CAPI) @testable import NormCL

/// Sizes are kernel arguments: a program is specialised on what changes its code, never
/// on a shape. Each test runs one op over many shapes that share their specialisation
/// (the same layout, element type, flags and vector widths) in a runtime of its own
/// without a disk cache, and counts the programs built from source: if a size leaked
/// into the build options, the count would follow the number of shapes.
///
/// The shapes share their specialisation under the CPU tuning PoCL gets by default
/// (chunked access). GPU-style tuning (CI's second pass sets it with `NORMCL_TUNING`)
/// also specialises on work-group shapes and strategies that follow the row length or
/// the channel count — work-items per row — so there these shapes may rightly build
/// more, and the suite runs under the default tuning only (its GPU-tuning test sets
/// that tuning itself).
@Suite(
    "Program specialisation",
    .enabled(if: sharedRuntime?.tuning.chunkedAccess == true, "shapes share specialisations under the default CPU tuning"),
    .serialized)
struct ProgramSpecializationTests {
    /// A fresh runtime on the test device: an empty memory cache and no disk cache, so
    /// every program it gets is a source build it counts.
    func isolatedRuntime() throws -> OpenCLRuntime {
        try OpenCLRuntime(device: sharedRuntime!.device, programCache: ProgramCacheConfiguration(directory: nil))
    }

    /// Runs each call, in one fresh runtime, on an input of its shape, and returns the
    /// source builds each call caused.
    func buildsPerCall(_ calls: [(shape: [Int], op: (Tensor, Backend) throws -> Void)]) throws -> [Int] {
        let runtime = try isolatedRuntime()
        let backend = Backend.openCL(runtime)
        var builds: [Int] = []
        for (shape, op) in calls {
            let before = runtime.programStatistics.builtFromSource
            let count = shape.reduce(1, *)
            let x = try Tensor((0..<count).map { Float($0 % 13) * 0.25 - 1 }, shape: shape, on: backend)
            try op(x, backend)
            try runtime.finish()
            builds.append(runtime.programStatistics.builtFromSource - before)
        }
        return builds
    }

    /// Runs `op` on each shape and returns the source builds each shape caused.
    func buildsPerShape(_ shapes: [[Int]], _ op: @escaping (Tensor, Backend) throws -> Void) throws -> [Int] {
        try buildsPerCall(shapes.map { ($0, op) })
    }

    /// The shapes after the first build nothing new.
    func expectNoBuildsAfterFirst(_ builds: [Int], _ comment: Comment) {
        #expect(builds.first ?? 0 >= 1, comment)
        #expect(builds.dropFirst().allSatisfy { $0 == 0 }, "\(comment): builds per shape \(builds)")
    }

    @Test("LayerNorm and RMSNorm: one set of programs for every row length and row count")
    func rowNorms() throws {
        let shapes = [[8, 64], [3, 128], [17, 256], [2, 5, 512], [64, 96]]
        expectNoBuildsAfterFirst(
            try buildsPerShape(shapes) { x, backend in
                let d = x.shape.last!
                let w = try Tensor(repeating: 1, shape: [d], on: backend)
                let out = try layerNorm(x, normalizedShape: [d], weight: w, bias: w)
                _ = try layerNormBackward(x, forward: out)
            }, "LayerNorm")
        expectNoBuildsAfterFirst(
            try buildsPerShape(shapes) { x, backend in
                let d = x.shape.last!
                let out = try rmsNorm(x, normalizedShape: [d], weight: try Tensor(repeating: 1, shape: [d], on: backend))
                _ = try rmsNormBackward(x, forward: out)
            }, "RMSNorm")
    }

    @Test("BatchNorm training and backward: one set of programs for every NCHW shape")
    func batchNorm() throws {
        // Planes of 16, 64, 48 and 16 values: one vector width (16 on a CPU, 4 on a GPU),
        // which is part of a program's code (at most four program sets: 16, 8, 4, 1).
        let shapes = [[2, 3, 4, 4], [4, 8, 8, 8], [3, 5, 48], [8, 16, 4, 4]]
        expectNoBuildsAfterFirst(
            try buildsPerShape(shapes) { x, backend in
                let c = x.shape[1]
                var running = RunningStatistics(
                    mean: try Tensor(repeating: 0, shape: [c], on: backend),
                    variance: try Tensor(repeating: 1, shape: [c], on: backend))
                let out = try NormCL.batchNorm(x, runningStatistics: &running, training: true)
                _ = try batchNormBackward(x, forward: out)
            }, "BatchNorm")
    }

    @Test("GroupNorm and InstanceNorm: one set of programs for every shape and group count")
    func groupNorms() throws {
        let shapes = [[2, 8, 4, 4], [3, 16, 8, 8], [1, 32, 4, 12], [4, 8, 16]]
        expectNoBuildsAfterFirst(
            try buildsPerShape(shapes) { x, _ in
                let out = try groupNorm(x, numGroups: x.shape[1] / 4)
                _ = try groupNormBackward(x, forward: out)
            }, "GroupNorm")
        expectNoBuildsAfterFirst(
            try buildsPerShape(shapes) { x, _ in
                let out = try instanceNorm(x)
                _ = try instanceNormBackward(x, forward: out)
            }, "InstanceNorm")
    }

    @Test("Switchable Norm: one set of programs for every shape")
    func switchableNorm() throws {
        let shapes = [[2, 4, 4, 4], [3, 8, 8, 8], [4, 12, 16]]
        expectNoBuildsAfterFirst(
            try buildsPerShape(shapes) { x, backend in
                let c = x.shape[1]
                let logits = try Tensor([0.1, -0.2, 0.3], on: backend)
                var running = RunningStatistics(
                    mean: try Tensor(repeating: 0, shape: [c], on: backend),
                    variance: try Tensor(repeating: 1, shape: [c], on: backend))
                let out = try NormCL.switchableNorm(
                    x, meanLogits: logits, varianceLogits: logits, runningStatistics: &running, training: true)
                _ = try switchableNormBackward(x, forward: out)
            }, "SwitchableNorm")
    }

    /// Runs each variant of an op on an input of `shape`, in one fresh runtime, and
    /// returns the source builds each variant caused.
    func buildsPerVariant(shape: [Int], _ variants: [(Tensor, Backend) throws -> Void]) throws -> [Int] {
        try buildsPerCall(variants.map { (shape, $0) })
    }

    /// What the kernels use once per channel is a kernel argument (NULL when absent), not
    /// a build option: γ, β, the running update, Batch Renorm, the gradient mask, and
    /// Switchable Norm's variance estimator. A variant that built a program of its own
    /// would mean such a flag went back into the build options (each one doubled the
    /// programs a process can need: the test suite built 520 with them, 329 without).
    @Test("γ, β, running statistics, Batch Renorm, gradient masks and the variance estimator share one program")
    func perChannelOptionsShareAProgram() throws {
        func parameter(_ c: Int, _ value: Float, _ backend: Backend) throws -> Tensor {
            try Tensor(repeating: value, shape: [c], on: backend)
        }
        func running(_ c: Int, _ backend: Backend) throws -> RunningStatistics {
            RunningStatistics(mean: try parameter(c, 0, backend), variance: try parameter(c, 1, backend))
        }
        let masks: [NormGradientMask] = [.all, .input, [.weight, .bias], .weight, .bias]
        let batchNormVariants: [(Tensor, Backend) throws -> Void] =
            [
                { x, b in
                    var stats = try running(4, b)
                    let out = try NormCL.batchNorm(
                        x, weight: try parameter(4, 2, b), bias: try parameter(4, 1, b), runningStatistics: &stats,
                        training: true)
                    _ = try batchNormBackward(x, forward: out)
                },
                { x, _ in _ = try batchNormBackward(x, forward: try NormCL.batchNorm(x)) },
                { x, b in
                    var stats = try running(4, b)
                    let out = try batchRenorm(
                        x, weight: try parameter(4, 2, b), runningStatistics: &stats,
                        limits: BatchRenormLimits(rmax: 3, dmax: 5))
                    _ = try batchNormBackward(x, forward: out)
                },
            ]
            + masks.map { mask in
                { x, b in
                    let out = try NormCL.batchNorm(x, weight: try parameter(4, 2, b), bias: try parameter(4, 1, b))
                    _ = try batchNormBackward(x, forward: out, outputMask: mask)
                }
            }
        expectNoBuildsAfterFirst(try buildsPerVariant(shape: [2, 4, 3, 5], batchNormVariants), "BatchNorm")
        let groupNormVariants: [(Tensor, Backend) throws -> Void] =
            [
                { x, b in
                    let out = try groupNorm(x, numGroups: 2, weight: try parameter(4, 2, b), bias: try parameter(4, 1, b))
                    _ = try groupNormBackward(x, forward: out)
                },
                { x, b in _ = try groupNormBackward(x, forward: try groupNorm(x, numGroups: 2, weight: try parameter(4, 2, b))) },
                { x, _ in _ = try groupNormBackward(x, forward: try groupNorm(x, numGroups: 2)) },
            ]
            + masks.map { mask in
                { x, b in
                    let out = try groupNorm(x, numGroups: 2, weight: try parameter(4, 2, b), bias: try parameter(4, 1, b))
                    _ = try groupNormBackward(x, forward: out, outputMask: mask)
                }
            }
        expectNoBuildsAfterFirst(try buildsPerVariant(shape: [2, 4, 3, 5], groupNormVariants), "GroupNorm")
        let switchableVariants: [(Tensor, Backend) throws -> Void] = [
            (true, true, SwitchableNormOptions.VarianceEstimator.unbiased),
            (false, false, .unbiased), (true, false, .biased), (false, true, .biased),
        ].map { affine, tracks, estimator in
            { x, b in
                let logits = try Tensor([0.1, -0.2, 0.3], on: b)
                var stats: RunningStatistics? = tracks ? try running(4, b) : nil
                let out = try NormCL.switchableNorm(
                    x, meanLogits: logits, varianceLogits: logits, weight: affine ? try parameter(4, 2, b) : nil,
                    bias: affine ? try parameter(4, 1, b) : nil, runningStatistics: &stats, training: true,
                    options: SwitchableNormOptions(varianceEstimator: estimator))
                _ = try switchableNormBackward(x, forward: out)
            }
        }
        expectNoBuildsAfterFirst(try buildsPerVariant(shape: [2, 4, 3, 5], switchableVariants), "SwitchableNorm")
    }

    /// LayerNorm's and RMSNorm's backward form only the gradients asked for, from NULL
    /// outputs and a `parameters` argument, and Switchable Norm's forward takes training
    /// as an argument: a variant that built a program of its own would count here (each
    /// mask did with NEED_DGAMMA/NEED_DBETA/FUSED_DX/COLUMN_DX; inference did with TRAINING).
    @Test("LayerNorm and RMSNorm backward: every gradient mask shares one program; Switchable Norm: training and inference share one")
    func gradientMasksAndTrainingShareAProgram() throws {
        func parameter(_ c: Int, _ value: Float, _ backend: Backend) throws -> Tensor {
            try Tensor(repeating: value, shape: [c], on: backend)
        }
        let masks: [NormGradientMask] = [.all, .input, [.weight, .bias], .weight, .bias, [.input, .weight]]
        // Both strategies: fused rows (many rows) and split rows (two long rows).
        for shape in [[24, 64], [2, 1 << 16]] {
            let d = shape[1]
            let layerNormVariants: [(Tensor, Backend) throws -> Void] = masks.map { mask in
                { x, b in
                    let out = try layerNorm(
                        x, normalizedShape: [d], weight: try parameter(d, 2, b), bias: try parameter(d, 1, b))
                    _ = try layerNormBackward(x, forward: out, outputMask: mask)
                }
            }
            expectNoBuildsAfterFirst(try buildsPerVariant(shape: shape, layerNormVariants), "LayerNorm \(shape)")
            let rmsNormVariants: [(Tensor, Backend) throws -> Void] = masks.map { mask in
                { x, b in
                    let out = try rmsNorm(x, normalizedShape: [d], weight: try parameter(d, 2, b))
                    _ = try rmsNormBackward(x, forward: out, outputMask: mask)
                }
            }
            expectNoBuildsAfterFirst(try buildsPerVariant(shape: shape, rmsNormVariants), "RMSNorm \(shape)")
        }
        let switchableVariants: [(Tensor, Backend) throws -> Void] = [true, false].map { training in
            { x, b in
                let logits = try Tensor([0.1, -0.2, 0.3], on: b)
                var stats: RunningStatistics? = RunningStatistics(
                    mean: try parameter(4, 0.5, b), variance: try parameter(4, 2, b))
                _ = try NormCL.switchableNorm(
                    x, meanLogits: logits, varianceLogits: logits, runningStatistics: &stats, training: training)
            }
        }
        expectNoBuildsAfterFirst(try buildsPerVariant(shape: [2, 4, 3, 5], switchableVariants), "SwitchableNorm")
    }

    /// PoCL compiles a kernel once per work-group size: the row norms' fused kernels take
    /// rows per work-group from a few powers of two, so row counts share the compiled
    /// kernels (before, every row count below a full group had a size of its own: 3, 6,
    /// 15 rows per group …).
    @Test("LayerNorm and RMSNorm: rows per work-group are a power of two for every row count, both directions and tunings")
    func rowsPerGroupArePowersOfTwo() throws {
        let device = try #require(sharedRuntime).device
        for tuning in [DeviceTuning.gpuStyle, DeviceTuning(for: device)] {
            var sizes: Set<Int> = []
            for rows in [1, 3, 5, 6, 7, 12, 15, 24, 40, 60, 100, 200, 248, 1000, 3000] {
                let input = Tensor(shape: [rows, 256], layout: .channelsFirst, storage: .host([0]))
                let statistics = Tensor(shape: [rows], layout: .channelsFirst, storage: .host([0]))
                let problem = try RowNormBackwardProblem.validated(
                    .layerNorm, gradOutput: input, input: input, normalizedShape: [256], weight: nil,
                    saveMean: statistics, saveScale: statistics, outputMask: .all)
                let forward = RowNormPlan(problem: problem.forward, device: device, tuning: tuning)
                let backward = RowNormBackwardPlan(problem: problem, device: device, tuning: tuning)
                for plan in [forward, backward.forward] {
                    guard case .fused(let items, let rowsPerGroup) = plan.strategy else { continue }
                    #expect(rowsPerGroup.nonzeroBitCount == 1, "rows \(rows): \(plan.strategy)")
                    sizes.insert(items * rowsPerGroup)
                }
            }
            #expect(sizes.allSatisfy { $0.nonzeroBitCount == 1 }, "work-group sizes \(sizes.sorted())")
        }
    }

    /// Under GPU-style tuning several work-items share a row and a work-group takes
    /// several rows, as many as the row count allows. The rows per group come from the
    /// launch and the local scratch is sized for the device's widest group, so the row
    /// count changes no build option (it did, through ROWS_PER_GROUP: 1, 2 and 4 here).
    @Test("LayerNorm and RMSNorm under GPU-style tuning: the row count changes no build option")
    func rowCountUnderGPUTuning() throws {
        let device = try #require(sharedRuntime).device
        for kind in [RowNormProblem.Kind.layerNorm, .rmsNorm] {
            var options: Set<String> = []
            for rows in [1, 3, 8, 40, 200, 1000, 3000] {
                let input = try Tensor(repeating: 0, shape: [rows, 1024], on: .reference)
                let problem = try RowNormProblem.validated(
                    kind, input: input, normalizedShape: [1024], weight: nil, bias: nil, eps: 1e-5)
                let plan = RowNormPlan(problem: problem, device: device, tuning: .gpuStyle)
                #expect(plan.itemsPerReduction > 1, "rows \(rows): \(plan.strategy)")
                options.insert(plan.buildOptions(for: problem).text)
            }
            #expect(options.count == 1, "\(kind): \(options.sorted())")
        }
    }

    @Test("warmUp builds what a problem needs: its first call, and another shape's, build nothing")
    func warmUp() throws {
        let runtime = try isolatedRuntime()
        let backend = Backend.openCL(runtime)
        try runtime.warmUp([
            NormalizationProblem(.layerNorm(normalizedShape: [64]), direction: .backward, shape: [8, 64]),
            NormalizationProblem(.groupNorm(groups: 2), shape: [2, 8, 4, 4], layout: .channelsLast, affine: false),
        ])
        let built = runtime.programStatistics.builtFromSource
        #expect(built >= 2)
        for (rows, d) in [(8, 64), (5, 128)] {
            let x = try Tensor((0..<rows * d).map { Float($0 % 7) }, shape: [rows, d], on: backend)
            let out = try layerNorm(x, normalizedShape: [d], weight: try Tensor(repeating: 1, shape: [d], on: backend), bias: try Tensor(repeating: 0, shape: [d], on: backend))
            _ = try layerNormBackward(x, forward: out).input!.toArray()
        }
        let y = try Tensor(repeating: 1, shape: [3, 8, 4, 4], layout: .channelsLast, on: backend)
        _ = try groupNorm(y, numGroups: 2).output.toArray()
        #expect(runtime.programStatistics.builtFromSource == built, "calls after warmUp built programs")
    }

    /// Fused problems (one per op that fuses), forward and backward, and the real fused
    /// calls they stand for.
    static var fusedProblems: [(problem: NormalizationProblem, call: (Backend) throws -> Void)] {
        [
        (
            NormalizationProblem(
                .rmsNorm(normalizedShape: [64]), direction: .backward, shape: [8, 64], elementType: .float16,
                epilogue: .init(
                    activation: .silu, residual: .init(elementType: .float32, inputBias: true, returnsSum: true),
                    weightOffset: 1, rmsNormBias: true)),
            { backend in
                let x = try Tensor(repeating: 0.5, shape: [8, 64], elementType: .float16, on: backend)
                let residual = try Tensor(repeating: 1, shape: [8, 64], on: backend)
                let (w, b) = (try Tensor(repeating: 0.1, shape: [64], on: backend), try Tensor(repeating: 0, shape: [64], on: backend))
                let out = try NormCL.rmsNorm(
                    x, normalizedShape: [64], weight: w, bias: b, eps: 1e-6, residual: residual, inputBias: w,
                    returnsResidualSum: true, weightOffset: 1, activation: .silu)
                _ = try NormCL.rmsNormBackward(x, forward: out, gradResidualSum: residual).input!.toArray()
            }
        ),
        (
            NormalizationProblem(
                .layerNorm(normalizedShape: [64]), direction: .backward, shape: [8, 64],
                epilogue: .init(activation: .gelu, residual: .init(returnsSum: true))),
            { backend in
                let x = try Tensor(repeating: 0.5, shape: [8, 64], on: backend)
                let (w, b) = (try Tensor(repeating: 1, shape: [64], on: backend), try Tensor(repeating: 0, shape: [64], on: backend))
                let out = try NormCL.layerNorm(
                    x, normalizedShape: [64], weight: w, bias: b, residual: x, returnsResidualSum: true, activation: .gelu)
                _ = try NormCL.layerNormBackward(x, forward: out).input!.toArray()
            }
        ),
        (
            NormalizationProblem(
                .batchNorm(training: true), direction: .backward, shape: [4, 8, 4, 4],
                epilogue: .init(activation: .relu, addend: true)),
            { backend in
                let x = try Tensor(repeating: 0.5, shape: [4, 8, 4, 4], on: backend)
                var running = try RunningStatistics(channels: 8, on: backend)
                let (w, b) = (try Tensor(repeating: 1, shape: [8], on: backend), try Tensor(repeating: 0, shape: [8], on: backend))
                let out = try NormCL.batchNorm(
                    x, weight: w, bias: b, runningStatistics: &running, training: true, activation: .relu, addend: x)
                _ = try NormCL.batchNormBackward(x, forward: out).addend!.toArray()
            }
        ),
        (
            NormalizationProblem(
                .groupNorm(groups: 2), direction: .backward, shape: [2, 8, 4, 4], layout: .channelsLast,
                epilogue: .init(activation: .silu)),
            { backend in
                let x = try Tensor(repeating: 0.5, shape: [2, 8, 4, 4], layout: .channelsLast, on: backend)
                let (w, b) = (try Tensor(repeating: 1, shape: [8], on: backend), try Tensor(repeating: 0, shape: [8], on: backend))
                let out = try NormCL.groupNorm(x, numGroups: 2, weight: w, bias: b, activation: .silu)
                _ = try NormCL.groupNormBackward(x, forward: out).input!.toArray()
            }
        ),
        ]
    }

    @Test("warmUp of fused problems builds their fused programs: the fused calls build nothing")
    func warmUpFused() throws {
        let runtime = try isolatedRuntime()
        try runtime.warmUp(Self.fusedProblems.map(\.problem))
        let built = runtime.programStatistics.builtFromSource
        #expect(built >= Self.fusedProblems.count * 2)
        for (problem, call) in Self.fusedProblems {
            try call(.openCL(runtime))
            #expect(runtime.programStatistics.builtFromSource == built, "\(problem.operation) built after warmUp")
        }
        // The C API's fused LayerNorm, its backward reading the stored sum: the same programs.
        let c = CArguments(runtime), backend = Backend.openCL(runtime)
        let x = try Tensor(repeating: 0.5, shape: [8, 64], on: backend)
        let (y, h, dx) = (try Tensor(zerosLike: x), try Tensor(zerosLike: x), try Tensor(zerosLike: x))
        let (mean, invstd) = (try Tensor(repeating: 0, shape: [8], on: backend), try Tensor(repeating: 0, shape: [8], on: backend))
        let (w, b) = (try Tensor(repeating: 1, shape: [64], on: backend), try Tensor(repeating: 0, shape: [64], on: backend))
        let (dw, db) = (try Tensor(zerosLike: w), try Tensor(zerosLike: b))
        let gelu = c.epilogue(3)
        try c.expectSuccess {
            normcl_layer_norm_forward_fused(
                c.runtime, c(x), c(x), nil, 1, c(w), c(b), 1e-5, gelu, c(y), c(mean), c(invstd), c(h), 0, nil, $0)
        }
        try c.expectSuccess {
            normcl_layer_norm_backward_fused(
                c.runtime, c(x), c(x), c(x), nil, c(h), 1, c(w), c(b), c(mean), c(invstd), gelu, nil, c(dx), c(dw), c(db), nil, 0,
                nil, $0)
        }
        #expect(runtime.programStatistics.builtFromSource == built, "the C API's fused LayerNorm built after warmUp")
    }

    @Test("warmUp of the plain problems does not build the fused calls' programs")
    func warmUpPlainIsNotFused() throws {
        let runtime = try isolatedRuntime()
        try runtime.warmUp(Self.fusedProblems.map { var plain = $0.problem; plain.epilogue = .none; return plain })
        for (problem, call) in Self.fusedProblems {
            let before = runtime.programStatistics.builtFromSource
            try call(.openCL(runtime))
            #expect(runtime.programStatistics.builtFromSource > before, "\(problem.operation): no fused program of its own")
        }
    }

    @Test("warmUp rejects an epilogue part the op does not fuse")
    func warmUpUnsupportedEpilogue() throws {
        let runtime = try isolatedRuntime()
        let cases: [(NormalizationProblem.Operation, NormalizationProblem.Epilogue, String)] = [
            (.instanceNorm, .init(activation: .relu), "epilogue.activation"),
            (.batchNorm(training: false), .init(residual: .init()), "epilogue.residual"),
            (.groupNorm(groups: 2), .init(addend: true), "epilogue.addend"),
            (.layerNorm(normalizedShape: [16]), .init(rmsNormBias: true), "epilogue.rmsNormBias"),
            (.groupNorm(groups: 2), .init(weightOffset: 1), "epilogue.weightOffset"),
        ]
        for (operation, epilogue, argument) in cases {
            let problem = NormalizationProblem(operation, shape: [2, 4, 16], epilogue: epilogue)
            #expect(throws: NormError.unsupported(argument: argument, reason: "\(operation) does not fuse it")) {
                try runtime.warmUp([problem])
            }
        }
        #expect(runtime.programStatistics.builtFromSource == 0)
    }

    @Test("warmUp rejects a problem the op rejects, with the op's error")
    func warmUpInvalid() throws {
        let runtime = try isolatedRuntime()
        #expect(throws: NormError.self) {
            try runtime.warmUp([NormalizationProblem(.groupNorm(groups: 3), shape: [2, 8, 4, 4])])
        }
    }
}
