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
        let parameterBytes = 2 * d * 4 + 2 * rows * 4
        return BenchmarkCase(
            op: "LayerNorm", shape: shape, elementType: elementType,
            idealBytes: 2 * elementBytes(rows * d, elementType) + parameterBytes
        ) { values, backend in
            let input = try Tensor(values, shape: shape, elementType: elementType, on: backend)
            let (weight, bias) = try affineParameters(d, on: backend)
            return {
                let out = try NormCL.layerNorm(input, normalizedShape: [d], weight: weight, bias: bias)
                return (out.output, out.events)
            }
        }
    }

    static func rmsNorm(shape: [Int], elementType: ElementType) -> BenchmarkCase {
        let d = shape[1], rows = shape[0]
        // γ read; rstd written per row.
        let parameterBytes = d * 4 + rows * 4
        return BenchmarkCase(
            op: "RMSNorm", shape: shape, elementType: elementType,
            idealBytes: 2 * elementBytes(rows * d, elementType) + parameterBytes
        ) { values, backend in
            let input = try Tensor(values, shape: shape, elementType: elementType, on: backend)
            let weight = try affineParameters(d, on: backend).weight
            return {
                let out = try NormCL.rmsNorm(input, normalizedShape: [d], weight: weight, eps: 1e-6)
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
        let parameterBytes = 3 * d * 4 + 2 * rows * 4
        return BenchmarkCase(
            op: "LayerNorm backward", shape: shape, elementType: elementType,
            idealBytes: 3 * elementBytes(rows * d, elementType) + parameterBytes
        ) { values, backend in
            let (input, gradOutput) = try inputAndGradient(
                values, gradOutput(for: values, rowLength: d), shape: shape, elementType: elementType, on: backend)
            let (weight, bias) = try affineParameters(d, on: backend)
            let forward = try NormCL.layerNorm(input, normalizedShape: [d], weight: weight, bias: bias)
            return {
                let gradients = try NormCL.layerNormBackward(gradOutput, forward: forward)
                guard let dx = gradients.input else { preconditionFailure("dx was asked for") }
                return (dx, gradients.events)
            }
        }
    }

    /// RMSNorm backward (dx and dγ); the forward runs untimed in `prepare`.
    static func rmsNormBackward(shape: [Int], elementType: ElementType) -> BenchmarkCase {
        let d = shape[1], rows = shape[0]
        // x and dy read, dx written; γ read, rstd read, dγ written.
        let parameterBytes = 2 * d * 4 + rows * 4
        return BenchmarkCase(
            op: "RMSNorm backward", shape: shape, elementType: elementType,
            idealBytes: 3 * elementBytes(rows * d, elementType) + parameterBytes
        ) { values, backend in
            let (input, gradOutput) = try inputAndGradient(
                values, gradOutput(for: values, rowLength: d), shape: shape, elementType: elementType, on: backend)
            let weight = try affineParameters(d, on: backend).weight
            let forward = try NormCL.rmsNorm(input, normalizedShape: [d], weight: weight, eps: 1e-6)
            return {
                let gradients = try NormCL.rmsNormBackward(gradOutput, forward: forward)
                guard let dx = gradients.input else { preconditionFailure("dx was asked for") }
                return (dx, gradients.events)
            }
        }
    }
}
