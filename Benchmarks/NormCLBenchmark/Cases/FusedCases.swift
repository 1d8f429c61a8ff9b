import NormCL

/// The fused epilogues (#18) at the shapes models use, each beside the same work done as
/// separate NormCL ops (the op named "… separate ops"), and PyTorch doing the same
/// composite eagerly (the peer script's `+` ops):
/// - `RMSNorm+residual`: LLaMA's pre-norm block, h = x + residual, y = RMSNorm(h), h
///   returned (vLLM's `fused_add_rms_norm`), hidden 4096 over 2048 tokens, and its backward
///   (the gradient of h from the next block added);
/// - `LayerNorm+residual`: a ViT-B/16 block at batch 8 (1576 tokens of 768);
/// - `LayerNorm+GELU`: LayerNorm then GELU over (8192, 1024).
/// Float32 (quick mode: one small one).
extension BenchmarkCase {
    static func fusedCases(quick: Bool) -> [BenchmarkCase] {
        if quick { return [rmsNormResidual(shape: [256, 1024], separate: false), rmsNormResidual(shape: [256, 1024], separate: true)] }
        return [false, true].flatMap { separate in
            [
                rmsNormResidual(shape: [2048, 4096], separate: separate),
                rmsNormResidualBackward(shape: [2048, 4096], separate: separate),
                layerNormResidual(shape: [1576, 768], separate: separate),
                layerNormActivation(shape: [8192, 1024], activation: .gelu, separate: separate),
            ]
        }
    }

    /// The op name of a fused case, or of the same work as separate ops.
    static func fusedName(_ op: String, separate: Bool) -> String { separate ? op + " separate ops" : op }

    /// h = x + residual (read both, write h), y = RMSNorm(h).
    static func rmsNormResidual(shape: [Int], separate: Bool) -> BenchmarkCase {
        let d = shape[1], rows = shape[0], bytes = 4 * shape.reduce(1, *)
        // Besides x read and y written: the residual read and h written; γ read, rstd written.
        return forwardCase(
            op: fusedName("RMSNorm+residual", separate: separate), shape: shape, elementType: .float32,
            parameterBytes: 2 * bytes + d * 4 + rows * 4
        ) { input, backend in
            let weight = try affineParameters(d, on: backend).weight
            let residual = try shiftedCopy(of: input, rowLength: d, on: backend)
            return {
                if separate {
                    let h = try NormCL.residualSum(input, residual)
                    let out = try NormCL.rmsNorm(h.output, normalizedShape: [d], weight: weight, eps: 1e-6)
                    return (out.output, h.events + out.events)
                }
                let out = try NormCL.rmsNorm(
                    input, normalizedShape: [d], weight: weight, eps: 1e-6, residual: residual, returnsResidualSum: true)
                return (out.output, out.events)
            }
        }
    }

    /// The backward of ``rmsNormResidual(shape:separate:)`` with the gradient of h from the
    /// next block: separately, RMSNorm's backward on h and then dx + dh.
    static func rmsNormResidualBackward(shape: [Int], separate: Bool) -> BenchmarkCase {
        let d = shape[1], rows = shape[0], bytes = 4 * shape.reduce(1, *)
        // Besides x and dy read and dx written: the residual and dh read; γ and rstd read, dγ written.
        return backwardCase(
            op: fusedName("RMSNorm+residual backward", separate: separate), shape: shape, elementType: .float32,
            parameterBytes: 2 * bytes + 2 * d * 4 + rows * 4, gradOutput: { gradOutput(for: $0, rowLength: d) }
        ) { input, gradOutput, backend in
            let weight = try affineParameters(d, on: backend).weight
            let residual = try shiftedCopy(of: input, rowLength: d, on: backend)
            let gradSum = try shiftedCopy(of: gradOutput, rowLength: 2 * d, on: backend)
            if separate {
                let h = try NormCL.residualSum(input, residual).output
                let forward = try NormCL.rmsNorm(h, normalizedShape: [d], weight: weight, eps: 1e-6)
                return {
                    let g = try NormCL.rmsNormBackward(gradOutput, forward: forward)
                    let dx = try NormCL.residualSum(g.input!, gradSum)
                    return FusedGradients(input: dx.output, events: g.events + dx.events)
                }
            }
            let forward = try NormCL.rmsNorm(
                input, normalizedShape: [d], weight: weight, eps: 1e-6, residual: residual, returnsResidualSum: true)
            return {
                let g = try NormCL.rmsNormBackward(gradOutput, forward: forward, gradResidualSum: gradSum)
                return FusedGradients(input: g.input, events: g.events)
            }
        }
    }

    /// h = x + residual, y = LayerNorm(h), h returned.
    static func layerNormResidual(shape: [Int], separate: Bool) -> BenchmarkCase {
        let d = shape[1], rows = shape[0], bytes = 4 * shape.reduce(1, *)
        return forwardCase(
            op: fusedName("LayerNorm+residual", separate: separate), shape: shape, elementType: .float32,
            parameterBytes: 2 * bytes + 2 * d * 4 + 2 * rows * 4
        ) { input, backend in
            let (weight, bias) = try affineParameters(d, on: backend)
            let residual = try shiftedCopy(of: input, rowLength: d, on: backend)
            return {
                if separate {
                    let h = try NormCL.residualSum(input, residual)
                    let out = try NormCL.layerNorm(h.output, normalizedShape: [d], weight: weight, bias: bias)
                    return (out.output, h.events + out.events)
                }
                let out = try NormCL.layerNorm(
                    input, normalizedShape: [d], weight: weight, bias: bias, residual: residual, returnsResidualSum: true)
                return (out.output, out.events)
            }
        }
    }

    /// y = f(LayerNorm(x)).
    static func layerNormActivation(shape: [Int], activation: Activation, separate: Bool) -> BenchmarkCase {
        let d = shape[1], rows = shape[0]
        return forwardCase(
            op: fusedName("LayerNorm+\(activationName(activation))", separate: separate), shape: shape,
            elementType: .float32, parameterBytes: 2 * d * 4 + 2 * rows * 4
        ) { input, backend in
            let (weight, bias) = try affineParameters(d, on: backend)
            return {
                if separate {
                    let out = try NormCL.layerNorm(input, normalizedShape: [d], weight: weight, bias: bias)
                    let y = try NormCL.activate(out.output, activation, into: out.output)
                    return (y.output, out.events + y.events)
                }
                let out = try NormCL.layerNorm(input, normalizedShape: [d], weight: weight, bias: bias, activation: activation)
                return (out.output, out.events)
            }
        }
    }

    /// The name in case names and in the peer script: ReLU, SiLU, GELU, GELU-tanh.
    static func activationName(_ activation: Activation) -> String {
        switch activation {
        case .none: "none"
        case .relu: "ReLU"
        case .silu: "SiLU"
        case .gelu: "GELU"
        case .geluTanh: "GELU-tanh"
        }
    }

    /// A second tensor like `tensor` (its values moved by `rowLength` elements): a residual,
    /// an addend or a gradient of the same shape, layout and element type.
    static func shiftedCopy(of tensor: Tensor, rowLength: Int, on backend: Backend) throws -> Tensor {
        let values = try tensor.toArray()
        return try Tensor(
            (0..<values.count).map { values[($0 + rowLength) % values.count] }, shape: tensor.shape, layout: tensor.layout,
            elementType: tensor.elementType, on: backend)
    }
}

/// What a fused backward case times: dx and the kernels of every step.
struct FusedGradients: TimedGradients {
    var input: Tensor?
    var events: [KernelEvent]
    var destinations: BackwardDestinations { BackwardDestinations() }
}
