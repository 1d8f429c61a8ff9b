import Testing
@testable import NormCL

/// Zero-sized dimensions behave as in PyTorch 2.13 (checked with `torch==2.13.0+cpu`):
/// every op takes an empty input and returns an empty output of the same shape,
/// layout, element type and backend, with saved statistics of their usual shape
/// (the statistics of no values: mean 0, invstd NaN, as torch's group_norm and
/// layer_norm save them); backward passes return an empty dx and zero dγ, dβ (and
/// logit gradients); running statistics are left unchanged. Nothing is launched
/// (no events), and an empty OpenCL tensor holds no device buffer.
@Suite("Empty tensors")
struct EmptyTensorTests {
    /// Checks that `tensor` is the empty result of `shape` on `backend`.
    static func expectEmpty(
        _ tensor: Tensor?, _ shape: [Int], on backend: Backend, layout: TensorLayout = .channelsFirst,
        _ label: String, sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let tensor = try #require(tensor, "\(label)", sourceLocation: sourceLocation)
        #expect(tensor.shape == shape, "\(label)", sourceLocation: sourceLocation)
        #expect(tensor.layout == layout, "\(label)", sourceLocation: sourceLocation)
        #expect(tensor.isEmpty && tensor.backend.isSame(as: backend), "\(label)", sourceLocation: sourceLocation)
        #expect(tensor.deviceBuffer == nil, "\(label): an empty tensor holds no buffer", sourceLocation: sourceLocation)
        #expect(try tensor.toArray().isEmpty, "\(label)", sourceLocation: sourceLocation)
    }

    /// Checks that `tensor` holds `shape` elements all equal to `value` (NaN matches NaN).
    static func expectFilled(
        _ tensor: Tensor?, _ value: Float, _ shape: [Int], _ label: String, sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let tensor = try #require(tensor, "\(label)", sourceLocation: sourceLocation)
        #expect(tensor.shape == shape, "\(label)", sourceLocation: sourceLocation)
        let values = try tensor.toArray()
        #expect(values.count == shape.reduce(1, *), "\(label)", sourceLocation: sourceLocation)
        #expect(
            values.allSatisfy { value.isNaN ? $0.isNaN : $0 == value }, "\(label): \(values)", sourceLocation: sourceLocation)
    }

    static func empty(_ shape: [Int], layout: TensorLayout = .channelsFirst, on backend: Backend) throws -> Tensor {
        try Tensor([], shape: shape, layout: layout, on: backend)
    }

    @Test("empty tensors are created on every backend, without a device buffer")
    func creation() throws {
        for backend in allBackends {
            for shape in [[0], [0, 3], [2, 0, 4], [2, 3, 0, 5]] {
                let tensor = try Self.empty(shape, on: backend)
                try Self.expectEmpty(tensor, shape, on: backend, "\(shape) on \(backend.name)")
                try Self.expectEmpty(
                    try Tensor(repeating: 2, shape: shape, elementType: .float16, on: backend), shape, on: backend,
                    "repeating \(shape)")
            }
        }
    }

    @Test("BatchNorm and Batch Renorm: forward, backward and the layer")
    func batchNorm() throws {
        for backend in allBackends {
            for (shape, layout) in [([0, 3, 4], TensorLayout.channelsFirst), ([2, 3, 0], .channelsLast), ([0, 3], .channelsFirst), ([2, 0, 4], .channelsFirst)] {
                let label = "\(shape) \(layout) on \(backend.name)"
                let channels = shape[1]
                let x = try Self.empty(shape, layout: layout, on: backend)
                let ones = try Tensor(repeating: 1, shape: [channels], on: backend)
                let running = RunningStatistics(mean: ones, variance: ones, numBatchesTracked: 2)
                // Training with running statistics: unchanged statistics, the step counted (as torch.nn.BatchNorm).
                var tracked: RunningStatistics? = running
                let out = try NormCL.batchNorm(x, weight: ones, bias: ones, runningStatistics: &tracked, training: true, momentum: nil)
                try Self.expectEmpty(out.output, shape, on: backend, layout: layout, label)
                #expect(out.events.isEmpty, "\(label)")
                try Self.expectFilled(out.saveMean, 0, [channels], "\(label) saveMean")
                try Self.expectFilled(out.saveInvstd, .nan, [channels], "\(label) saveInvstd")
                try Self.expectFilled(tracked?.mean, 1, [channels], "\(label) running mean")
                try Self.expectFilled(tracked?.variance, 1, [channels], "\(label) running var")
                #expect(tracked?.numBatchesTracked == 3, "\(label)")
                // Inference.
                var fixed: RunningStatistics? = running
                let inference = try NormCL.batchNorm(x, weight: ones, runningStatistics: &fixed, training: false)
                try Self.expectEmpty(inference.output, shape, on: backend, layout: layout, label)
                #expect(inference.saveMean == nil && inference.events.isEmpty, "\(label)")
                // Batch Renorm.
                var renormRunning = running
                let renorm = try batchRenorm(x, runningStatistics: &renormRunning, limits: BatchRenormLimits(rmax: 3, dmax: 5))
                try Self.expectEmpty(renorm.output, shape, on: backend, layout: layout, "\(label) renorm")
                try Self.expectFilled(renorm.renormR, 1, [channels], "\(label) r")
                try Self.expectFilled(renorm.renormD, 0, [channels], "\(label) d")
                // Backward: empty dx, zero dγ and dβ of shape [C].
                let dy = try Self.empty(shape, layout: layout, on: backend)
                for gradients in [
                    try batchNormBackward(dy, input: x, weight: ones, forward: out),
                    try batchNormBackward(dy, input: x, weight: ones, runningStatistics: running),
                    try batchRenormBackward(dy, input: x, weight: ones, forward: renorm),
                ] {
                    try Self.expectEmpty(gradients.input, shape, on: backend, layout: layout, "\(label) dx")
                    try Self.expectFilled(gradients.weight, 0, [channels], "\(label) dγ")
                    try Self.expectFilled(gradients.bias, 0, [channels], "\(label) dβ")
                    #expect(gradients.events.isEmpty)
                }
                let dxOnly = try batchNormBackward(dy, input: x, weight: nil, forward: out, outputMask: .input)
                #expect(dxOnly.weight == nil && dxOnly.bias == nil && dxOnly.input != nil, "\(label)")
            }
            // The layer counts the step and leaves the statistics alone.
            var layer = try BatchNorm(numFeatures: 3, on: backend)
            try Self.expectEmpty(try layer(try Self.empty([0, 3, 5], on: backend)), [0, 3, 5], on: backend, "layer")
            #expect(layer.runningStatistics?.numBatchesTracked == 1)
            try Self.expectFilled(layer.runningStatistics?.mean, 0, [3], "layer running mean")
            // Where PyTorch raises, NormCL throws: one value per channel (N·M = 1) with C = 0.
            #expect(throws: NormError.tooFewValuesPerChannel(valuesPerChannel: 1, shape: [1, 0])) {
                try NormCL.batchNorm(try Self.empty([1, 0], on: backend))
            }
        }
    }

    @Test("GroupNorm and InstanceNorm: forward, backward and running statistics")
    func groupNorm() throws {
        for backend in allBackends {
            for (shape, groups) in [([0, 4, 3], 2), ([2, 4, 0], 2), ([2, 0, 3], 1), ([0, 4], 4)] {
                let label = "\(shape) G=\(groups) on \(backend.name)"
                let channels = shape[1]
                let x = try Self.empty(shape, on: backend)
                let ones = try Tensor(repeating: 1, shape: [channels], on: backend)
                let out = try NormCL.groupNorm(x, numGroups: groups, weight: ones, bias: ones)
                try Self.expectEmpty(out.output, shape, on: backend, label)
                #expect(out.events.isEmpty)
                try Self.expectFilled(out.saveMean, 0, [shape[0], groups], "\(label) saveMean")
                try Self.expectFilled(out.saveInvstd, .nan, [shape[0], groups], "\(label) saveInvstd")
                let gradients = try groupNormBackward(x, input: x, numGroups: groups, weight: ones, forward: out)
                try Self.expectEmpty(gradients.input, shape, on: backend, "\(label) dx")
                try Self.expectFilled(gradients.weight, 0, [channels], "\(label) dγ")
                try Self.expectFilled(gradients.bias, 0, [channels], "\(label) dβ")
            }
            for shape in [[0, 3, 4], [2, 3, 0], [2, 0, 4]] {
                let label = "instance \(shape) on \(backend.name)"
                let channels = shape[1]
                let x = try Self.empty(shape, layout: .channelsLast, on: backend)
                let ones = try Tensor(repeating: 1, shape: [channels], on: backend)
                let running = RunningStatistics(mean: ones, variance: ones)
                var tracked: RunningStatistics? = running
                let out = try instanceNorm(x, runningStatistics: &tracked, weight: ones, bias: ones)
                try Self.expectEmpty(out.output, shape, on: backend, layout: .channelsLast, label)
                try Self.expectFilled(out.saveMean, 0, [shape[0], channels], "\(label) saveMean")
                try Self.expectFilled(tracked?.mean, 1, [channels], "\(label) running mean")
                try Self.expectFilled(tracked?.variance, 1, [channels], "\(label) running var")
                var fixed: RunningStatistics? = running
                let inference = try instanceNorm(x, runningStatistics: &fixed, useInputStats: false)
                try Self.expectEmpty(inference.output, shape, on: backend, layout: .channelsLast, label)
                for gradients in [
                    try instanceNormBackward(x, input: x, weight: ones, forward: out),
                    try instanceNormBackward(x, input: x, weight: ones, runningStatistics: running),
                ] {
                    try Self.expectEmpty(gradients.input, shape, on: backend, layout: .channelsLast, "\(label) dx")
                    try Self.expectFilled(gradients.weight, 0, [channels], "\(label) dγ")
                    try Self.expectFilled(gradients.bias, 0, [channels], "\(label) dβ")
                }
            }
        }
    }

    @Test("LayerNorm and RMSNorm: rows = 0 and D = 0, forward and backward")
    func rowNorm() throws {
        for backend in allBackends {
            for (shape, normalized) in [([0, 8], [8]), ([2, 0], [0]), ([3, 0, 4], [0, 4]), ([0, 3, 4], [3, 4]), ([0], [0])] {
                let label = "\(shape) over \(normalized) on \(backend.name)"
                let statistics = Array(shape.dropLast(normalized.count))
                let x = try Self.empty(shape, on: backend)
                let gamma = try Tensor(repeating: 1, shape: normalized, on: backend)
                let ln = try layerNorm(x, normalizedShape: normalized, weight: gamma, bias: gamma)
                try Self.expectEmpty(ln.output, shape, on: backend, label)
                #expect(ln.events.isEmpty)
                try Self.expectFilled(ln.saveMean, 0, statistics, "\(label) saveMean")
                try Self.expectFilled(ln.saveInvstd, .nan, statistics, "\(label) saveInvstd")
                let lnGradients = try layerNormBackward(x, input: x, normalizedShape: normalized, weight: gamma, forward: ln)
                try Self.expectEmpty(lnGradients.input, shape, on: backend, "\(label) dx")
                try Self.expectFilled(lnGradients.weight, 0, normalized, "\(label) dγ")
                try Self.expectFilled(lnGradients.bias, 0, normalized, "\(label) dβ")

                let rms = try rmsNorm(x, normalizedShape: normalized, weight: gamma)
                try Self.expectEmpty(rms.output, shape, on: backend, "rms \(label)")
                try Self.expectFilled(rms.saveInvRms, .nan, statistics, "rms \(label) saveInvRms")
                let rmsGradients = try rmsNormBackward(x, input: x, normalizedShape: normalized, weight: gamma, forward: rms)
                try Self.expectEmpty(rmsGradients.input, shape, on: backend, "rms \(label) dx")
                try Self.expectFilled(rmsGradients.weight, 0, normalized, "rms \(label) dγ")
                #expect(rmsGradients.bias == nil)
            }
            let layer = try LayerNorm(normalizedShape: [4], on: backend)
            try Self.expectEmpty(try layer(try Self.empty([0, 4], on: backend)), [0, 4], on: backend, "layer")
        }
    }

    @Test("Switchable Norm: forward, backward (zero logit gradients), running statistics unchanged")
    func switchableNorm() throws {
        for backend in allBackends {
            for shape in [[0, 4, 3], [2, 4, 0]] {
                let label = "\(shape) on \(backend.name)"
                let x = try Self.empty(shape, on: backend)
                var layer = try SwitchableNorm(numFeatures: 4, on: backend)
                let out = try layer.forward(x)
                try Self.expectEmpty(out.output, shape, on: backend, label)
                #expect(out.events.isEmpty)
                try Self.expectFilled(out.saveMean, 0, [shape[0], 4], "\(label) mean")
                try Self.expectFilled(out.layerVariance, .nan, [shape[0]], "\(label) layer variance")
                try Self.expectFilled(out.batchMean, 0, [4], "\(label) batch mean")
                try Self.expectFilled(layer.runningStatistics?.mean, 0, [4], "\(label) running mean")
                try Self.expectFilled(layer.runningStatistics?.variance, 1, [4], "\(label) running var")
                let gradients = try switchableNormBackward(
                    x, input: x, meanLogits: layer.meanLogits, varianceLogits: layer.varianceLogits, weight: layer.weight,
                    forward: out, training: true)
                try Self.expectEmpty(gradients.input, shape, on: backend, "\(label) dx")
                try Self.expectFilled(gradients.weight, 0, [4], "\(label) dγ")
                try Self.expectFilled(gradients.bias, 0, [4], "\(label) dβ")
                try Self.expectFilled(gradients.meanLogits, 0, [3], "\(label) d mean logits")
                try Self.expectFilled(gradients.varianceLogits, 0, [3], "\(label) d variance logits")
            }
        }
    }
}
