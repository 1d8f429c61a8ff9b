import NormCL

extension BenchmarkCase {
    /// Real shapes from CNNs (ResNet-50 stages) and a BatchNorm1d, in NCHW, and the
    /// 4-d ones in channels-last (NHWC) too; training and inference; float32, and
    /// half storage for the first shape. The backward passes (training and inference)
    /// on the same shapes, layouts and element types.
    static func batchNormCases(quick: Bool) -> [BenchmarkCase] {
        let shapes: [[Int]] = quick ? [[8, 64, 28, 28], [64, 512]] : [[32, 64, 56, 56], [8, 128, 28, 28], [256, 2048]]
        let layouts: [(shape: [Int], layout: TensorLayout)] =
            shapes.map { ($0, .channelsFirst) } + shapes.filter { $0.count == 4 }.map { ($0, .channelsLast) }
        let float32 = layouts.flatMap { shape, layout in
            [true, false].map { batchNorm(training: $0, shape: shape, layout: layout, elementType: .float32) }
        }
        let half = [true, false].map { batchNorm(training: $0, shape: shapes[0], layout: .channelsFirst, elementType: .float16) }
        let backward32 = layouts.flatMap { shape, layout in
            [true, false].map { batchNormBackward(training: $0, shape: shape, layout: layout, elementType: .float32) }
        }
        let backward16 = [true, false].map {
            batchNormBackward(training: $0, shape: shapes[0], layout: .channelsFirst, elementType: .float16)
        }
        return float32 + half + backward32 + backward16
    }

    /// dx, dγ and dβ of a forward run in `prepare` (untimed); dy is the input reversed.
    static func batchNormBackward(training: Bool, shape: [Int], layout: TensorLayout, elementType: ElementType) -> BenchmarkCase {
        let channels = shape[1]
        // Triton's backward convention: x and dy read, dx written; plus γ, the two
        // statistics read and dγ, dβ written.
        return backwardCase(
            op: training ? "BatchNorm train backward" : "BatchNorm eval backward", shape: shape, layout: layout,
            elementType: elementType, parameterBytes: channels * 4 * 5, gradOutput: { $0.reversed() }
        ) { input, gradOutput, backend in
            let weight = try affineParameters(channels, on: backend).weight
            let statistics = try runningStatistics(channels, on: backend)
            if training {
                let forward = try NormCL.batchNorm(input, weight: weight)
                return steadyBackward(on: backend) { try NormCL.batchNormBackward(gradOutput, forward: forward, into: $0, waitingFor: $1) }
            }
            var running = statistics
            let forward = try NormCL.batchNorm(input, weight: weight, runningStatistics: &running, training: false)
            return steadyBackward(on: backend) {
                try NormCL.batchNormBackward(gradOutput, forward: forward, outputMask: .input, into: $0, waitingFor: $1)
            }
        }
    }

    static func batchNorm(training: Bool, shape: [Int], layout: TensorLayout, elementType: ElementType) -> BenchmarkCase {
        let channels = shape[1]
        // γ, β, running mean/var read; in training also running in/out and save mean/invstd written.
        return forwardCase(
            op: training ? "BatchNorm train" : "BatchNorm eval", shape: shape, layout: layout, elementType: elementType,
            parameterBytes: channels * 4 * (training ? 8 : 4)
        ) { input, backend in
            let (weight, bias) = try affineParameters(channels, on: backend)
            let statistics = try runningStatistics(channels, on: backend)
            let steady = SteadyState<BatchNormOutput>(on: backend)
            return {
                // A fresh copy of the running statistics each call, so every call does the same work
                // (in the steady state, updated in place).
                var running = statistics
                let out = try steady.call({ previous, waitList in
                    var destinations = previous?.destinations ?? .init()
                    if previous != nil, training { (destinations.runningMean, destinations.runningVar) = (running.mean, running.variance) }
                    return try NormCL.batchNorm(
                        input, weight: weight, bias: bias, runningStatistics: &running, training: training,
                        into: destinations, waitingFor: waitList)
                }, events: \.events)
                return (out.output, out.events)
            }
        }
    }
}
