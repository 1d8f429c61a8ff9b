import Testing
@testable import NormCL

/// Streaming stores (``DeviceTuning/streamingStoreBytes``, `STREAM_BYTES` in
/// `Kernels/common.cl`) change how a kernel writes its output, never what it writes:
/// every op, with every kernel that streams, must give the same bits with a threshold of
/// one byte (every store that can stream does) as without streaming.
///
/// The shapes are small but wide enough for the widest vectors (spatial and row lengths
/// of 16s, 32 channels for channels-last), so the non-temporal path is the one taken, at
/// the start of every row, plane and column run. With a GPU-style `NORMCL_TUNING` the
/// same checks cover float4 stores.
@Suite("Streaming stores", .enabled(if: hasOpenCL))
struct StreamingStoreTests {
    /// The shared runtime's tuning, streaming every store or none.
    static func tuning(streaming: Bool) -> DeviceTuning {
        var tuning = sharedRuntime!.tuning
        tuning.streamingStoreBytes = streaming ? 1 : 0
        return tuning
    }

    /// Runs `op` on a runtime that never streams and on one that streams every store,
    /// and expects every tensor it returns to hold the same bits in both.
    func expectSameBits(_ name: String, _ op: (Backend, inout SeededGenerator) throws -> [Tensor?]) throws {
        let device = sharedRuntime!.device
        var results: [[[UInt32]?]] = []
        for streaming in [false, true] {
            let runtime = try OpenCLRuntime(device: device, tuning: Self.tuning(streaming: streaming))
            var rng = SeededGenerator(seed: 17)
            results.append(try op(.openCL(runtime), &rng).map { try $0?.toArray().map(\.bitPattern) })
        }
        #expect(results[0].count == results[1].count)
        for (index, (plain, streamed)) in zip(results[0], results[1]).enumerated() {
            #expect(plain != nil && plain == streamed, "\(name): result \(index) differs with streaming stores")
        }
    }

    /// x (mean 1) and dy of `shape` in `layout`.
    static func inputAndGradient(
        _ shape: [Int], _ layout: TensorLayout, _ backend: Backend, _ rng: inout SeededGenerator
    ) throws -> (Tensor, Tensor) {
        let count = shape.reduce(1, *)
        return try (
            Tensor(rng.normals(count, offset: 1), shape: shape, layout: layout, on: backend),
            Tensor(rng.normals(count), shape: shape, layout: layout, on: backend)
        )
    }

    @Test("BatchNorm, every training strategy and inference, with addend and ReLU, and their backward")
    func batchNormStrategies() throws {
        let runtime = sharedRuntime!
        let cases: [(shape: [Int], layout: TensorLayout, strategies: [BatchNormPlan.Strategy])] = [
            ([3, 5, 8, 32], .channelsFirst, [.fusedPerChannel, .channelItems, .splitReduction(groupsPerChannel: 3)]),
            ([4, 32, 6, 10], .channelsLast, [.columns, .splitColumns(rowGroups: 3)]),
        ]
        for (shape, layout, strategies) in cases {
            let count = shape.reduce(1, *), channels = shape[1]
            var rng = SeededGenerator(seed: 5)
            let (x, z, dy) = (rng.normals(count, offset: 2), rng.normals(count), rng.normals(count))
            let (w, b) = (rng.normals(channels, offset: 1), rng.normals(channels))
            let backend = Backend.openCL(runtime)
            func tensor(_ values: [Float]) throws -> Tensor {
                try Tensor(values, shape: values.count == count ? shape : [channels], layout: values.count == count ? layout : .channelsFirst, on: backend)
            }
            for strategy in strategies {
                var bits: [[[UInt32]]] = []
                for streaming in [false, true] {
                    let tuning = Self.tuning(streaming: streaming)
                    var running: RunningStatistics? = try RunningStatistics(channels: channels, on: backend)
                    var results: [Tensor?] = []
                    for training in [true, false] {
                        let out = try batchNorm(
                            tensor(x), weight: tensor(w), bias: tensor(b), runningStatistics: &running, training: training,
                            momentum: 0.1, eps: 1e-5, strategy: training ? strategy : nil, activation: .relu,
                            addend: tensor(z), tuning: tuning)
                        let statistics: BatchNormBackwardProblem.Statistics =
                            training
                            ? .batch(mean: out.saveMean!, invstd: out.saveInvstd!)
                            : .running(mean: running!.mean, variance: running!.variance, eps: 1e-5)
                        let gradients = try batchNormBackward(
                            tensor(dy), input: tensor(x), weight: tensor(w), statistics: statistics, outputMask: .all,
                            strategy: training ? strategy : nil, tuning: tuning, bias: tensor(b), activation: .relu,
                            addend: tensor(z))
                        results += [out.output, gradients.input, gradients.weight, gradients.addend]
                    }
                    results += [running?.mean, running?.variance]
                    bits.append(try results.map { try #require($0).toArray().map(\.bitPattern) })
                }
                #expect(bits[0] == bits[1], "BatchNorm \(shape) \(layout) \(strategy)")
            }
        }
    }

    @Test("LayerNorm and RMSNorm with a residual, forward and backward")
    func rowNorms() throws {
        for rms in [false, true] {
            try expectSameBits(rms ? "RMSNorm" : "LayerNorm") { backend, rng in
                let shape = [12, 256]
                let (x, residual, dy, dh) = try (
                    Tensor(rng.normals(3072, offset: 3), shape: shape, on: backend),
                    Tensor(rng.normals(3072), shape: shape, on: backend),
                    Tensor(rng.normals(3072), shape: shape, on: backend),
                    Tensor(rng.normals(3072), shape: shape, on: backend))
                let weight = try Tensor(rng.normals(256, offset: 1), shape: [256], on: backend)
                if rms {
                    let out = try rmsNorm(
                        x, normalizedShape: [256], weight: weight, eps: 1e-6, residual: residual, returnsResidualSum: true,
                        activation: .silu)
                    let g = try rmsNormBackward(dy, forward: out, gradResidualSum: dh)
                    return [out.output, out.residualSum, out.saveInvRms, g.input, g.weight]
                }
                let out = try layerNorm(
                    x, normalizedShape: [256], weight: weight, residual: residual, returnsResidualSum: true)
                let g = try layerNormBackward(dy, forward: out, gradResidualSum: dh)
                return [out.output, out.residualSum, out.saveMean, g.input, g.weight]
            }
        }
    }

    @Test("GroupNorm with SiLU and InstanceNorm, both layouts, forward and backward")
    func groupNorms() throws {
        for layout in [TensorLayout.channelsFirst, .channelsLast] {
            try expectSameBits("GroupNorm/InstanceNorm \(layout)") { backend, rng in
                let (x, dy) = try Self.inputAndGradient([2, 32, 8, 16], layout, backend, &rng)
                let weight = try Tensor(rng.normals(32, offset: 1), shape: [32], on: backend)
                let bias = try Tensor(rng.normals(32), shape: [32], on: backend)
                let group = try groupNorm(x, numGroups: 4, weight: weight, bias: bias, activation: .silu)
                let groupGradients = try groupNormBackward(dy, forward: group)
                var running = try RunningStatistics(channels: 32, on: backend)
                let instance = try instanceNorm(x, weight: weight, bias: bias, runningStatistics: &running)
                let instanceGradients = try instanceNormBackward(dy, forward: instance)
                return [
                    group.output, groupGradients.input, groupGradients.weight, instance.output, instanceGradients.input,
                    running.mean,
                ]
            }
        }
    }

    @Test("Switchable Norm, both layouts, forward and backward")
    func switchableNorms() throws {
        for layout in [TensorLayout.channelsFirst, .channelsLast] {
            try expectSameBits("SwitchableNorm \(layout)") { backend, rng in
                let (x, dy) = try Self.inputAndGradient([2, 32, 4, 16], layout, backend, &rng)
                let logits = try Tensor(rng.normals(3), shape: [3], on: backend)
                let out = try switchableNorm(x, meanLogits: logits, varianceLogits: logits, training: true)
                let g = try switchableNormBackward(dy, forward: out)
                return [out.output, g.input, g.meanLogits]
            }
        }
    }

    @Test("Elementwise passes: the residual sum and an activation with an addend")
    func elementwise() throws {
        try expectSameBits("elementwise") { backend, rng in
            let shape = [4, 1024]
            let x = try Tensor(rng.normals(4096), shape: shape, on: backend)
            let z = try Tensor(rng.normals(4096), shape: shape, on: backend)
            return [try residualSum(x, z).output, try activate(x, .gelu, adding: z).output]
        }
    }
}
