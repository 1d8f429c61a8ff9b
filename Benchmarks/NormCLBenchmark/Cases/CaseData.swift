import NormCL

/// The tensors the cases build in `prepare`, the same for every op.
extension BenchmarkCase {
    /// γ = 1 + 0.1·(i mod 7) and β = 0.1·(i mod 5) − 0.2 for `count` channels (or row
    /// elements): O(1), varied, never zero.
    static func affineParameters(_ count: Int, on backend: Backend) throws -> (weight: Tensor, bias: Tensor) {
        (
            try Tensor((0..<count).map { 1 + Float($0 % 7) * 0.1 }, on: backend),
            try Tensor((0..<count).map { Float($0 % 5) * 0.1 - 0.2 }, on: backend)
        )
    }

    /// Running statistics for `channels` channels: means 0.1·(c mod 3), variances
    /// 1 + 0.25·(c mod 4).
    static func runningStatistics(_ channels: Int, on backend: Backend) throws -> RunningStatistics {
        RunningStatistics(
            mean: try Tensor((0..<channels).map { Float($0 % 3) * 0.1 }, on: backend),
            variance: try Tensor((0..<channels).map { 1 + Float($0 % 4) * 0.25 }, on: backend))
    }

    /// The input `values` and the gradient `dy` of a backward case, both of `shape`
    /// stored in `layout` as `elementType`.
    static func inputAndGradient(
        _ values: [Float], _ dy: [Float], shape: [Int], layout: TensorLayout = .channelsFirst, elementType: ElementType,
        on backend: Backend
    ) throws -> (input: Tensor, gradOutput: Tensor) {
        (
            try Tensor(values, shape: shape, layout: layout, elementType: elementType, on: backend),
            try Tensor(dy, shape: shape, layout: layout, elementType: elementType, on: backend)
        )
    }
}
