import NormCL

/// The fused epilogues of the channel norms (#18) at the shapes models use, each beside
/// the same work as separate NormCL ops ("… separate ops") and PyTorch's eager composite:
/// - `BatchNorm+add+ReLU`: a ResNet-50 bottleneck's last BN with its shortcut,
///   `relu(BN(x) + z)`, stage 1 at batch 8 (256 channels of 56×56), NCHW and NHWC,
///   training and inference, and the training backward (dx, dγ, dβ and dz);
/// - `GroupNorm+SiLU G=32`: Stable Diffusion's U-Net ResNet blocks, NHWC, at batch 1
///   (320 channels of 64×64) and batch 2 (640 channels of 32×32), and the backward of the
///   first.
extension BenchmarkCase {
    static func fusedChannelCases(quick: Bool) -> [BenchmarkCase] {
        if quick { return [] }
        let resnet = [8, 256, 56, 56]
        return [false, true].flatMap { separate in
            [
                batchNormAddReLU(training: true, shape: resnet, layout: .channelsFirst, separate: separate),
                batchNormAddReLU(training: true, shape: resnet, layout: .channelsLast, separate: separate),
                batchNormAddReLU(training: false, shape: resnet, layout: .channelsFirst, separate: separate),
                batchNormAddReLUBackward(shape: resnet, layout: .channelsFirst, separate: separate),
                groupNormSiLU(shape: [1, 320, 64, 64], separate: separate),
                groupNormSiLU(shape: [2, 640, 32, 32], separate: separate),
                groupNormSiLUBackward(shape: [1, 320, 64, 64], separate: separate),
            ]
        }
    }

    /// y = relu(BN(x) + z); separately, BN and then an add-and-ReLU pass in place.
    static func batchNormAddReLU(training: Bool, shape: [Int], layout: TensorLayout, separate: Bool) -> BenchmarkCase {
        let channels = shape[1], bytes = 4 * shape.reduce(1, *)
        return forwardCase(
            op: fusedName(training ? "BatchNorm+add+ReLU train" : "BatchNorm+add+ReLU eval", separate: separate),
            shape: shape, layout: layout, elementType: .float32, parameterBytes: bytes + channels * 4 * (training ? 8 : 4)
        ) { input, backend in
            let (weight, bias) = try affineParameters(channels, on: backend)
            let statistics = try runningStatistics(channels, on: backend)
            let addend = try shiftedCopy(of: input, rowLength: channels, on: backend)
            return {
                var running = statistics
                if separate {
                    let out = try NormCL.batchNorm(
                        input, weight: weight, bias: bias, runningStatistics: &running, training: training)
                    let y = try NormCL.activate(out.output, .relu, adding: addend, into: out.output)
                    return (y.output, out.events + y.events)
                }
                let out = try NormCL.batchNorm(
                    input, weight: weight, bias: bias, runningStatistics: &running, training: training, activation: .relu,
                    addend: addend)
                return (out.output, out.events)
            }
        }
    }

    /// dx, dγ, dβ and dz of relu(BN(x) + z) in training; separately, ReLU's backward at
    /// the stored BN + z (it is dz) and then BN's backward of it.
    static func batchNormAddReLUBackward(shape: [Int], layout: TensorLayout, separate: Bool) -> BenchmarkCase {
        let channels = shape[1], bytes = 4 * shape.reduce(1, *)
        return backwardCase(
            op: fusedName("BatchNorm+add+ReLU train backward", separate: separate), shape: shape, layout: layout,
            elementType: .float32, parameterBytes: 2 * bytes + channels * 4 * 5, gradOutput: { $0.reversed() }
        ) { input, gradOutput, backend in
            let (weight, bias) = try affineParameters(channels, on: backend)
            let addend = try shiftedCopy(of: input, rowLength: channels, on: backend)
            if separate {
                let forward = try NormCL.batchNorm(input, weight: weight, bias: bias)
                let preActivation = try NormCL.residualSum(forward.output, addend).output
                return {
                    let dz = try NormCL.activationBackward(gradOutput, .relu, input: preActivation)
                    let g = try NormCL.batchNormBackward(dz.output, forward: forward)
                    return FusedGradients(input: g.input, events: dz.events + g.events)
                }
            }
            let forward = try NormCL.batchNorm(input, weight: weight, bias: bias, activation: .relu, addend: addend)
            return {
                let g = try NormCL.batchNormBackward(gradOutput, forward: forward)
                return FusedGradients(input: g.input, events: g.events)
            }
        }
    }

    /// y = silu(GroupNorm(x)), NHWC; separately, GroupNorm and then SiLU in place.
    static func groupNormSiLU(shape: [Int], separate: Bool) -> BenchmarkCase {
        let channels = shape[1], rows = shape[0] * 32
        return forwardCase(
            op: fusedName("GroupNorm+SiLU G=32", separate: separate), shape: shape, layout: .channelsLast,
            elementType: .float32, parameterBytes: 2 * channels * 4 + 2 * rows * 4
        ) { input, backend in
            let (weight, bias) = try affineParameters(channels, on: backend)
            return {
                if separate {
                    let out = try NormCL.groupNorm(input, numGroups: 32, weight: weight, bias: bias)
                    let y = try NormCL.activate(out.output, .silu, into: out.output)
                    return (y.output, out.events + y.events)
                }
                let out = try NormCL.groupNorm(input, numGroups: 32, weight: weight, bias: bias, activation: .silu)
                return (out.output, out.events)
            }
        }
    }

    /// dx, dγ, dβ of silu(GroupNorm(x)), NHWC; separately, SiLU's backward at the stored
    /// GroupNorm output and then GroupNorm's backward of it.
    static func groupNormSiLUBackward(shape: [Int], separate: Bool) -> BenchmarkCase {
        let channels = shape[1], rows = shape[0] * 32
        return backwardCase(
            op: fusedName("GroupNorm+SiLU backward G=32", separate: separate), shape: shape, layout: .channelsLast,
            elementType: .float32, parameterBytes: 3 * channels * 4 + 2 * rows * 4, gradOutput: { $0.reversed() }
        ) { input, gradOutput, backend in
            let (weight, bias) = try affineParameters(channels, on: backend)
            if separate {
                let forward = try NormCL.groupNorm(input, numGroups: 32, weight: weight, bias: bias)
                return {
                    let da = try NormCL.activationBackward(gradOutput, .silu, input: forward.output)
                    let g = try NormCL.groupNormBackward(da.output, forward: forward)
                    return FusedGradients(input: g.input, events: da.events + g.events)
                }
            }
            let forward = try NormCL.groupNorm(input, numGroups: 32, weight: weight, bias: bias, activation: .silu)
            return {
                let g = try NormCL.groupNormBackward(gradOutput, forward: forward)
                return FusedGradients(input: g.input, events: g.events)
            }
        }
    }
}
