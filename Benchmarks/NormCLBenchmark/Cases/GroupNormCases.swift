import NormCL

extension BenchmarkCase {
    /// GroupNorm (8, 512, 32, 32) with G = 32 (a diffusion U-Net block) and
    /// InstanceNorm (8, 64, 128, 128) (style transfer), forward and backward, NCHW and
    /// NHWC, float32 and half storage; quick mode uses smaller shapes.
    static func groupNormCases(quick: Bool) -> [BenchmarkCase] {
        let groupShape = quick ? [4, 128, 16, 16] : [8, 512, 32, 32]
        let instanceShape = quick ? [4, 32, 32, 32] : [8, 64, 128, 128]
        return ElementType.allCases.flatMap { elementType in
            TensorLayout.allCases.flatMap { layout in
                [
                    groupNorm(shape: groupShape, groups: 32, layout: layout, elementType: elementType),
                    instanceNorm(shape: instanceShape, layout: layout, elementType: elementType),
                    groupNormBackward(shape: groupShape, groups: 32, layout: layout, elementType: elementType),
                    instanceNormBackward(shape: instanceShape, layout: layout, elementType: elementType),
                ]
            }
        }
    }

    static func groupNorm(shape: [Int], groups: Int, layout: TensorLayout, elementType: ElementType) -> BenchmarkCase {
        let channels = shape[1]
        // γ, β read; save mean/invstd written per (n, g).
        return forwardCase(
            op: "GroupNorm G=\(groups)", shape: shape, layout: layout, elementType: elementType,
            parameterBytes: channels * 4 * 2 + shape[0] * groups * 4 * 2
        ) { input, backend in
            let (weight, bias) = try affineParameters(channels, on: backend)
            return steadyForward(on: backend, {
                try NormCL.groupNorm(input, numGroups: groups, weight: weight, bias: bias, into: $0, waitingFor: $1)
            }, events: \.events)
        }
    }

    /// InstanceNorm as `torch.nn.InstanceNorm2d(C)` trains by default: instance
    /// statistics, no affine, no running statistics.
    static func instanceNorm(shape: [Int], layout: TensorLayout, elementType: ElementType) -> BenchmarkCase {
        // save mean/invstd written per (n, c).
        forwardCase(
            op: "InstanceNorm", shape: shape, layout: layout, elementType: elementType,
            parameterBytes: shape[0] * shape[1] * 4 * 2
        ) { input, backend in
            steadyForward(on: backend, { try NormCL.instanceNorm(input, into: $0, waitingFor: $1) }, events: \.events)
        }
    }

    /// A gradient for the backward cases, a fixed function of the input values.
    static func gradOutput(for values: [Float]) -> [Float] {
        values.indices.map { i in values[values.count - 1 - i] - 0.5 }
    }

    /// GroupNorm backward, all three gradients (affine), after an untimed forward pass.
    static func groupNormBackward(shape: [Int], groups: Int, layout: TensorLayout, elementType: ElementType) -> BenchmarkCase {
        let channels = shape[1]
        // γ read, dγ and dβ written per channel; saved mean/invstd read per (n, g).
        return backwardCase(
            op: "GroupNorm backward G=\(groups)", shape: shape, layout: layout, elementType: elementType,
            parameterBytes: channels * 4 * 3 + shape[0] * groups * 4 * 2, gradOutput: { gradOutput(for: $0) }
        ) { input, gradOutput, backend in
            let (weight, bias) = try affineParameters(channels, on: backend)
            let forward = try NormCL.groupNorm(input, numGroups: groups, weight: weight, bias: bias)
            return steadyBackward(on: backend) { try NormCL.groupNormBackward(gradOutput, forward: forward, into: $0, waitingFor: $1) }
        }
    }

    /// InstanceNorm backward as `torch.nn.InstanceNorm2d(C)` trains by default (no
    /// affine: dx only), after an untimed forward pass.
    static func instanceNormBackward(shape: [Int], layout: TensorLayout, elementType: ElementType) -> BenchmarkCase {
        // saved mean/invstd read per (n, c).
        backwardCase(
            op: "InstanceNorm backward", shape: shape, layout: layout, elementType: elementType,
            parameterBytes: shape[0] * shape[1] * 4 * 2, gradOutput: { gradOutput(for: $0) }
        ) { input, gradOutput, backend in
            let forward = try NormCL.instanceNorm(input)
            return steadyBackward(on: backend) {
                try NormCL.instanceNormBackward(gradOutput, forward: forward, outputMask: .input, into: $0, waitingFor: $1)
            }
        }
    }
}
