import NormCL

extension BenchmarkCase {
    /// Switchable Norm (IN + LN + BN, the official defaults) on a ResNet-50 stage-1 shape
    /// (a smaller one with `quick`), NCHW and NHWC, float32 and half: training and
    /// inference forward, and the training backward.
    static func switchableNormCases(quick: Bool) -> [BenchmarkCase] {
        let shape = quick ? [8, 64, 28, 28] : [8, 64, 56, 56]
        return [TensorLayout.channelsFirst, .channelsLast].flatMap { layout in
            ElementType.allCases.flatMap { elementType in
                [true, false].map { switchableNorm(training: $0, shape: shape, layout: layout, elementType: elementType) }
                    + [switchableNormBackward(shape: shape, layout: layout, elementType: elementType)]
            }
        }
    }

    /// The training backward (dx, dγ, dβ and both logit gradients); the forward runs in
    /// `prepare`, untimed.
    static func switchableNormBackward(shape: [Int], layout: TensorLayout, elementType: ElementType) -> BenchmarkCase {
        let batch = shape[0], channels = shape[1]
        // Triton's backward convention: read x and dy, write dx; plus γ read, dγ and dβ
        // written, the per-(n, c) mixed mean, invstd, instance mean and variance read, the
        // LN and BN statistics and the logits.
        return backwardCase(
            op: "SwitchableNorm train backward", shape: shape, layout: layout, elementType: elementType,
            parameterBytes: 4 * (3 * channels + 4 * batch * channels + 2 * batch + 2 * channels + 12),
            gradOutput: { values in values.indices.map { Float(($0 &* 7919) % 17) * 0.1 - 0.8 } }
        ) { input, gradOutput, backend in
            let (weight, bias) = try affineParameters(channels, on: backend)
            let meanLogits = try Tensor([1.2, 0.8, 1], on: backend)
            let varianceLogits = try Tensor([0.7, 1.1, 1], on: backend)
            let forward = try NormCL.switchableNorm(
                input, meanLogits: meanLogits, varianceLogits: varianceLogits, weight: weight, bias: bias, training: true)
            _ = try forward.saveInvstd.toArray()  // the forward finishes before the timed runs
            return steadyBackward(on: backend) { try NormCL.switchableNormBackward(gradOutput, forward: forward, into: $0, waitingFor: $1) }
        }
    }

    static func switchableNorm(training: Bool, shape: [Int], layout: TensorLayout, elementType: ElementType) -> BenchmarkCase {
        let batch = shape[0], channels = shape[1]
        // γ, β, running mean/var read (and written in training); per (n, c) mixed mean,
        // invstd, instance mean and variance written; LN and BN statistics; logits.
        return forwardCase(
            op: training ? "SwitchableNorm train" : "SwitchableNorm eval", shape: shape, layout: layout,
            elementType: elementType, parameterBytes: 4 * (channels * (training ? 8 : 4) + 4 * batch * channels + 2 * batch + 6)
        ) { input, backend in
            let (weight, bias) = try affineParameters(channels, on: backend)
            let meanLogits = try Tensor([1.2, 0.8, 1], on: backend)
            let varianceLogits = try Tensor([0.7, 1.1, 1], on: backend)
            let statistics = try runningStatistics(channels, on: backend)
            return steadyForward(on: backend, { destinations, waitList in
                var running = statistics
                return try NormCL.switchableNorm(
                    input, meanLogits: meanLogits, varianceLogits: varianceLogits, weight: weight, bias: bias,
                    runningStatistics: &running, training: training, into: destinations, waitingFor: waitList)
            }, events: \.events)
        }
    }
}
