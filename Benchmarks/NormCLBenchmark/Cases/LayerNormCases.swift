import NormCL

extension BenchmarkCase {
    /// Transformer-sized rows: LayerNorm (8192, 1024) and (4096, 4096), RMSNorm
    /// (4096, 4096); float32 and half storage each (quick mode: (512, 1024)); forward
    /// and backward.
    static func layerNormCases(quick: Bool) -> [BenchmarkCase] {
        let layerShapes: [[Int]] = quick ? [[512, 1024]] : [[8192, 1024], [4096, 4096]]
        let rmsShapes: [[Int]] = quick ? [[512, 1024]] : [[4096, 4096]]
        return ElementType.allCases.flatMap { type in
            layerShapes.map { layerNorm(shape: $0, elementType: type) } + rmsShapes.map { rmsNorm(shape: $0, elementType: type) }
                + layerShapes.map { layerNormBackward(shape: $0, elementType: type) }
                + rmsShapes.map { rmsNormBackward(shape: $0, elementType: type) }
        }
    }

    static func layerNorm(shape: [Int], elementType: ElementType) -> BenchmarkCase {
        let d = shape[1], rows = shape[0]
        // γ and β read; mean and invstd written per row.
        return forwardCase(op: "LayerNorm", shape: shape, elementType: elementType, parameterBytes: 2 * d * 4 + 2 * rows * 4) {
            input, backend in
            let (weight, bias) = try affineParameters(d, on: backend)
            let steady = SteadyState<LayerNormOutput>(on: backend)
            return {
                let out = try steady.call({ previous, waitList in
                    try NormCL.layerNorm(
                        input, normalizedShape: [d], weight: weight, bias: bias, into: previous?.destinations ?? .init(),
                        waitingFor: waitList)
                }, events: \.events)
                return (out.output, out.events)
            }
        }
    }

    static func rmsNorm(shape: [Int], elementType: ElementType) -> BenchmarkCase {
        let d = shape[1], rows = shape[0]
        // γ read; rstd written per row.
        return forwardCase(op: "RMSNorm", shape: shape, elementType: elementType, parameterBytes: d * 4 + rows * 4) {
            input, backend in
            let weight = try affineParameters(d, on: backend).weight
            let steady = SteadyState<RMSNormOutput>(on: backend)
            return {
                let out = try steady.call({ previous, waitList in
                    try NormCL.rmsNorm(
                        input, normalizedShape: [d], weight: weight, eps: 1e-6, into: previous?.destinations ?? .init(),
                        waitingFor: waitList)
                }, events: \.events)
                return (out.output, out.events)
            }
        }
    }

    /// dy for a backward case: the input's values shifted by one row (deterministic,
    /// O(1), uncorrelated with x within a row).
    static func gradOutput(for values: [Float], rowLength d: Int) -> [Float] {
        (0..<values.count).map { values[($0 + d) % values.count] }
    }

    /// LayerNorm backward (all of dx, dγ, dβ); the forward runs untimed in `prepare`.
    static func layerNormBackward(shape: [Int], elementType: ElementType) -> BenchmarkCase {
        let d = shape[1], rows = shape[0]
        // Triton's backward convention: x and dy read, dx written (3·numel); γ read,
        // mean and invstd read, dγ and dβ written.
        return backwardCase(
            op: "LayerNorm backward", shape: shape, elementType: elementType, parameterBytes: 3 * d * 4 + 2 * rows * 4,
            gradOutput: { gradOutput(for: $0, rowLength: d) }
        ) { input, gradOutput, backend in
            let (weight, bias) = try affineParameters(d, on: backend)
            let forward = try NormCL.layerNorm(input, normalizedShape: [d], weight: weight, bias: bias)
            return steadyBackward(on: backend) { try NormCL.layerNormBackward(gradOutput, forward: forward, into: $0, waitingFor: $1) }
        }
    }

    /// RMSNorm backward (dx and dγ); the forward runs untimed in `prepare`.
    static func rmsNormBackward(shape: [Int], elementType: ElementType) -> BenchmarkCase {
        let d = shape[1], rows = shape[0]
        // x and dy read, dx written; γ read, rstd read, dγ written.
        return backwardCase(
            op: "RMSNorm backward", shape: shape, elementType: elementType, parameterBytes: 2 * d * 4 + rows * 4,
            gradOutput: { gradOutput(for: $0, rowLength: d) }
        ) { input, gradOutput, backend in
            let weight = try affineParameters(d, on: backend).weight
            let forward = try NormCL.rmsNorm(input, normalizedShape: [d], weight: weight, eps: 1e-6)
            return steadyBackward(on: backend) { try NormCL.rmsNormBackward(gradOutput, forward: forward, into: $0, waitingFor: $1) }
        }
    }
}
