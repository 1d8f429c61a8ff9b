extension Tensor {
    /// A tensor of `shape` with every element `value` (rounded to `elementType`).
    ///
    /// On OpenCL no host array is built: the device buffer is allocated and filled on the
    /// device (`clEnqueueFillBuffer` with the element's bits — a `Float`'s, or a
    /// `Float16`'s for half storage), enqueued on the runtime's in-order queue without
    /// waiting. A shape with a zero dimension gives an empty tensor without a buffer.
    ///
    /// Sizes are checked before any memory is taken: a negative dimension, non-zero
    /// dimensions whose product overflows `Int` (`[2^40, 2^40]`, also with a zero
    /// dimension beside them), or storage bytes that overflow `Int` are
    /// ``NormError/invalidShape(argument:reason:)`` on both backends. On the reference
    /// backend a tensor may take at most the machine's physical memory (4 bytes per
    /// element: host tensors hold `Float`s), beyond it the same error; on OpenCL the
    /// device's limits apply, as ``OpenCLError`` from the allocator
    /// (`CL_MEM_OBJECT_ALLOCATION_FAILURE` past the device's global memory,
    /// `CL_INVALID_BUFFER_SIZE` past its maximum allocation).
    ///
    /// - Throws: ``NormError/invalidShape(argument:reason:)`` (argument `shape`) or
    ///   ``OpenCLError`` as above.
    public init(
        repeating value: Float, shape: [Int], layout: TensorLayout = .channelsFirst, elementType: ElementType = .float32,
        on backend: Backend
    ) throws {
        try self.init(filling: value, shape: shape, layout: layout, elementType: elementType, on: backend, argument: "shape")
    }

    /// ``init(repeating:shape:layout:elementType:on:)`` with size errors naming
    /// `argument` (e.g. a layer's `numFeatures`, which sizes its parameters).
    init(
        filling value: Float, shape: [Int], layout: TensorLayout = .channelsFirst, elementType: ElementType = .float32,
        on backend: Backend, argument: String
    ) throws {
        let count = try Self.checkedCount(of: shape, argument: argument)
        switch backend {
        case .reference:
            _ = try Self.checkedStorageBytes(count: count, elementType: elementType, on: backend, shape: shape, argument: argument)
            // Host tensors keep Floats holding exactly the stored (e.g. half) values.
            self.init(
                shape: shape, layout: layout, elementType: elementType,
                storage: .host([Float](repeating: elementType.rounded(value), count: count)))
        case .openCL(let runtime) where count == 0:
            self.init(shape: shape, layout: layout, elementType: elementType, storage: .emptyDevice(runtime))
        case .openCL(let runtime):
            let bytes = try Self.checkedStorageBytes(
                count: count, elementType: elementType, on: backend, shape: shape, argument: argument)
            let buffer = try DeviceBuffer(byteCount: bytes, on: runtime)
            switch elementType {
            case .float32: try buffer.fill(with: value.bitPattern)
            case .float16: try buffer.fill(with: Float16(value).bitPattern)
            }
            self.init(shape: shape, layout: layout, elementType: elementType, storage: .device(buffer))
        }
    }

    /// A one-dimensional tensor of `values`.
    public init(_ values: [Float], on backend: Backend) throws {
        try self.init(values, shape: [values.count], on: backend)
    }
}

extension Tensor {
    /// Zeros with `tensor`'s shape, layout, element type and backend: for an empty
    /// `tensor`, the empty output of an op (no device buffer, nothing uploaded). Filled
    /// on the device on OpenCL (see ``init(repeating:shape:layout:elementType:on:)``).
    init(zerosLike tensor: Tensor) throws {
        try self.init(repeating: 0, shape: tensor.shape, layout: tensor.layout, elementType: tensor.elementType, on: tensor.backend)
    }
}
