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
            try CallerBuffers.tensor(values, shape: shape, layout: layout, elementType: elementType, on: backend),
            try CallerBuffers.tensor(dy, shape: shape, layout: layout, elementType: elementType, on: backend)
        )
    }

    /// A forward case: uploads the input values in the case's layout and storage type,
    /// and `makeRun` prepares the op on that input (its parameters on `backend`).
    /// Ideal bytes: the input read and the output written, plus `parameterBytes`.
    static func forwardCase(
        op: String, shape: [Int], layout: TensorLayout = .channelsFirst, elementType: ElementType, parameterBytes: Int,
        makeRun: @escaping @Sendable (_ input: Tensor, _ backend: Backend) throws -> Run
    ) -> BenchmarkCase {
        BenchmarkCase(
            op: op, shape: shape, layout: layout, elementType: elementType,
            idealBytes: 2 * elementBytes(shape.reduce(1, *), elementType) + parameterBytes
        ) { values, backend in
            try makeRun(
                try CallerBuffers.tensor(values, shape: shape, layout: layout, elementType: elementType, on: backend), backend)
        }
    }

    /// A backward case timing dx (and whatever other gradients the op computes):
    /// uploads the input values and `gradOutput(values)` as dy, both in the case's layout
    /// and storage type; `backward` runs the forward (untimed) and returns the timed
    /// backward call. Ideal bytes, Triton's backward convention: x and dy read and dx
    /// written, plus `parameterBytes`.
    static func backwardCase<Gradients: TimedGradients>(
        op: String, shape: [Int], layout: TensorLayout = .channelsFirst, elementType: ElementType, parameterBytes: Int,
        gradOutput: @escaping @Sendable (_ values: [Float]) -> [Float],
        backward: @escaping @Sendable (_ input: Tensor, _ gradOutput: Tensor, _ backend: Backend) throws -> () throws -> Gradients
    ) -> BenchmarkCase {
        BenchmarkCase(
            op: op, shape: shape, layout: layout, elementType: elementType,
            idealBytes: 3 * elementBytes(shape.reduce(1, *), elementType) + parameterBytes
        ) { values, backend in
            let (input, dy) = try inputAndGradient(
                values, gradOutput(values), shape: shape, layout: layout, elementType: elementType, on: backend)
            let run = try backward(input, dy, backend)
            return {
                let gradients = try run()
                guard let dx = gradients.input else { preconditionFailure("dx was asked for") }
                return (dx, gradients.events)
            }
        }
    }
}

/// What a backward case reads from the gradients of its timed call: dx and the events
/// of the kernels that computed them (Sendable: the timed closure captures its type).
protocol TimedGradients: Sendable {
    var input: Tensor? { get }
    var events: [KernelEvent] { get }
    /// The gradients as the next call's destinations (`--caller-buffers`).
    var destinations: BackwardDestinations { get }
}

extension NormGradients: TimedGradients {}
extension SwitchableNormGradients: TimedGradients {}
