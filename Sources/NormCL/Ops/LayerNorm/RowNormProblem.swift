/// A LayerNorm or RMSNorm forward call, described by what decides how to run it.
///
/// Both ops normalise each row of a row-major `(rows, D)` view of the input, where
/// `D = prod(normalizedShape)` (the trailing dims) and `rows` is the product of the
/// leading dims; they share validation, plans and kernels (`Kernels/layer_norm.cl`).
/// Built by ``validated(_:input:normalizedShape:weight:bias:eps:)``, which is where
/// every argument check lives; plans and backends take a problem known to be valid.
struct RowNormProblem: Hashable, Sendable {
    enum Kind: Hashable, Sendable {
        /// Mean and biased variance per row, elementwise affine γ and β.
        case layerNorm
        /// Root mean square per row, elementwise γ (and β, an offset, when given), no mean
        /// subtraction.
        case rmsNorm

        var name: String {
            switch self {
            case .layerNorm: "LayerNorm"
            case .rmsNorm: "RMSNorm"
            }
        }
    }

    let kind: Kind
    /// The input shape: leading dims, then `normalizedShape`.
    let shape: [Int]
    let normalizedShape: [Int]
    let layout: TensorLayout
    let elementType: ElementType
    let hasWeight: Bool
    let hasBias: Bool
    /// The residual added before the norm, γ's offset and the activation after it.
    var fusion = RowNormFusion()

    /// The leading dims: the shape of the per-row saved statistics (`[]` for rank-1 input).
    var statisticsShape: [Int] { Array(shape.dropLast(normalizedShape.count)) }
    /// The number of rows, the product of the leading dims (1 for rank-1 input).
    var rows: Int { statisticsShape.reduce(1, *) }
    /// D, the elements of one row.
    var rowLength: Int { normalizedShape.reduce(1, *) }
    /// Every element of the input.
    var count: Int { shape.reduce(1, *) }

    /// Checks every argument and describes the call.
    ///
    /// - Throws: ``NormError`` naming the first argument that is wrong.
    static func validated(
        _ kind: Kind, input: Tensor, normalizedShape: [Int], weight: Tensor?, bias: Tensor?, eps: Float,
        residual: Tensor? = nil, inputBias: Tensor? = nil, weightOffset: Float = 0, activation: Activation = .none
    ) throws(NormError) -> RowNormProblem {
        let shape = input.shape
        guard !normalizedShape.isEmpty else {
            throw .invalidShape(argument: "normalizedShape", reason: "\(kind.name) needs at least one normalized dim")
        }
        // Zero dims are allowed (an empty input, as in PyTorch); negative ones never match.
        guard normalizedShape.allSatisfy({ $0 >= 0 }) else {
            throw .invalidShape(argument: "normalizedShape", reason: "dims must not be negative, got \(normalizedShape)")
        }
        // PyTorch: "Given normalized_shape=[…], expected input with shape [*, …]".
        guard shape.count >= normalizedShape.count, Array(shape.suffix(normalizedShape.count)) == normalizedShape else {
            let trailing = shape.count >= normalizedShape.count ? Array(shape.suffix(normalizedShape.count)) : shape
            throw .shapeMismatch(argument: "input", expected: normalizedShape, actual: trailing)
        }
        // Kernels take the rows and D as 32-bit values (element offsets are 64-bit).
        try NormError.checkDimensions(shape, argument: "input")
        let rows = shape.dropLast(normalizedShape.count).reduce(1, *)
        try NormError.check32BitLimit(rows, "rows", argument: "input", shape: shape)
        try NormError.check32BitLimit(normalizedShape.reduce(1, *), "D", argument: "input", shape: shape)
        // Channels-last memory of rank ≥ 3 is not a row-major (rows, D) matrix; at rank 2
        // both layouts are the same memory.
        if input.layout == .channelsLast && shape.count > 2 {
            throw .unsupported(argument: "input", reason: "\(kind.name) takes row-major (channels-first) input, got channels-last \(shape)")
        }
        let backend = input.backend
        try NormError.checkParameter(weight, "weight", shape: normalizedShape, backend: backend)
        try NormError.checkParameter(bias, "bias", shape: normalizedShape, backend: backend)
        try NormError.checkEps(eps)
        let fusion = try RowNormFusion.validated(
            residual: residual, inputBias: inputBias, input: input, normalizedShape: normalizedShape, weight: weight,
            weightOffset: weightOffset, activation: activation)
        return RowNormProblem(
            kind: kind, shape: shape, normalizedShape: normalizedShape, layout: input.layout,
            elementType: input.elementType, hasWeight: weight != nil, hasBias: bias != nil, fusion: fusion)
    }
}
