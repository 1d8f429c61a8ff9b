extension Tensor {
    /// A tensor of `shape` with every element `value`.
    public init(
        repeating value: Float, shape: [Int], layout: TensorLayout = .channelsFirst, elementType: ElementType = .float32,
        on backend: Backend
    ) throws {
        guard let count = shape.checkedProduct else {
            throw NormError.invalidShape(argument: "shape", reason: "\(shape) has more elements than Int can count")
        }
        try self.init([Float](repeating: value, count: Swift.max(0, count)), shape: shape, layout: layout, elementType: elementType, on: backend)
    }

    /// A one-dimensional tensor of `values`.
    public init(_ values: [Float], on backend: Backend) throws {
        try self.init(values, shape: [values.count], on: backend)
    }
}

extension Tensor {
    /// Zeros with `tensor`'s shape, layout, element type and backend: for an empty
    /// `tensor`, the empty output of an op (no device buffer, nothing uploaded).
    init(zerosLike tensor: Tensor) throws {
        try self.init(repeating: 0, shape: tensor.shape, layout: tensor.layout, elementType: tensor.elementType, on: tensor.backend)
    }
}
