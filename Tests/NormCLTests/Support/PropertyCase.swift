import Testing
@testable import NormCL

/// One randomly drawn case of a property test: which op and direction, the shape,
/// layout, element type, the op's parameters and the data seed. Its description is
/// what PropertyBased prints for a failing (and shrunk) case, so it names every choice:
/// `BatchNorm backward renorm(3,5) [2, 3, 5] channelsLast float16 affine eps=0.001 mask=input seed=17`.
struct PropertyCase: Sendable, CustomTestStringConvertible, CustomStringConvertible, ChannelsAndSpatial {
    enum Op: Sendable, Equatable {
        /// BatchNorm in training (batch statistics), inference (running statistics), or
        /// Batch Renorm training with these limits.
        case batchNorm(BatchNormMode)
        case layerNorm
        case rmsNorm
        case groupNorm(groups: Int)
        /// InstanceNorm with the input's statistics, or (`running`) in inference mode.
        case instanceNorm(running: Bool)
        case switchableNorm(SwitchableNormOptions.Branches, training: Bool)
    }

    enum BatchNormMode: Sendable, Equatable {
        case training
        case inference
        case renorm(rmax: Float, dmax: Float)
    }

    var op: Op
    var backward: Bool
    /// `(N, C, *S)`, or for LayerNorm/RMSNorm `(*leading, *normalizedShape)`.
    var shape: [Int]
    /// LayerNorm/RMSNorm: how many trailing dims are normalized.
    var normalizedDims = 0
    var layout: TensorLayout
    var elementType: ElementType
    var affine: Bool
    var eps: Float
    /// Running-statistics momentum (nil: cumulative average) where the op tracks them.
    var momentum: Float?
    /// Backward only: which gradients are asked for.
    var mask: NormGradientMask = .all
    var seed: UInt64

    var normalizedShape: [Int] { Array(shape.suffix(normalizedDims)) }
    var batch: Int { shape[0] }

    var description: String {
        var parts: [String] = []
        switch op {
        case .batchNorm(.training): parts.append("BatchNorm training")
        case .batchNorm(.inference): parts.append("BatchNorm inference")
        case .batchNorm(.renorm(let rmax, let dmax)): parts.append("BatchRenorm(rmax \(rmax), dmax \(dmax))")
        case .layerNorm: parts.append("LayerNorm")
        case .rmsNorm: parts.append("RMSNorm")
        case .groupNorm(let g): parts.append("GroupNorm G=\(g)")
        case .instanceNorm(let running): parts.append(running ? "InstanceNorm running-stats" : "InstanceNorm")
        case .switchableNorm(let branches, let training):
            parts.append("SwitchableNorm \(branches) \(training ? "training" : "inference")")
        }
        parts.append(backward ? "backward" : "forward")
        switch op {
        case .layerNorm, .rmsNorm: parts.append("\(shape)/normalizedShape \(normalizedShape)")
        default: parts.append("\(shape) \(layout == .channelsFirst ? "NCHW" : "NHWC")")
        }
        parts.append(elementType == .float16 ? "f16" : "f32")
        parts.append(affine ? "affine" : "no-affine")
        parts.append("eps=\(eps)")
        if let momentum { parts.append("momentum=\(momentum)") } else { parts.append("momentum=cumulative") }
        if backward { parts.append("mask=\(mask.name)") }
        parts.append("seed=\(seed)")
        return parts.joined(separator: " ")
    }

    var testDescription: String { description }
}

extension NormGradientMask {
    /// `all`, `input`, `weight+bias`, … for case descriptions.
    var name: String {
        if self == .all { return "all" }
        var names: [String] = []
        if contains(.input) { names.append("input") }
        if contains(.weight) { names.append("weight") }
        if contains(.bias) { names.append("bias") }
        return names.isEmpty ? "none" : names.joined(separator: "+")
    }
}
