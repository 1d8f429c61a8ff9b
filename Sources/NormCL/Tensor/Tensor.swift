/// An n-dimensional array of values on one ``Backend``: device memory for OpenCL,
/// host memory for the CPU reference path.
///
/// A `Tensor` is a value: ops never modify their inputs, they return new tensors. On
/// OpenCL the data stays on the device between ops; ``toArray()`` is the only call
/// that waits for queued kernels and copies back.
public struct Tensor: Sendable {
    /// The logical shape, e.g. `[N, C, H, W]` (also for ``TensorLayout/channelsLast``).
    public let shape: [Int]
    /// How the channel axis is laid out in memory.
    public let layout: TensorLayout
    /// The element storage type.
    public let elementType: ElementType
    let storage: Storage

    enum Storage: Sendable {
        case host([Float])
        case device(DeviceBuffer)
        /// A device tensor with no elements: OpenCL cannot create a zero-byte buffer,
        /// so it holds only the runtime it belongs to (which ``backend`` reports).
        case emptyDevice(OpenCLRuntime)
    }

    /// The number of elements, the product of ``shape``.
    public var count: Int { shape.reduce(1, *) }

    /// Whether the tensor has no elements (a zero dimension in ``shape``).
    public var isEmpty: Bool { shape.contains(0) }

    /// The backend that holds the data.
    public var backend: Backend {
        switch storage {
        case .host: .reference
        case .device(let buffer): .openCL(buffer.runtime)
        case .emptyDevice(let runtime): .openCL(runtime)
        }
    }

    /// Copies `values` to `backend`, stored as `elementType` (rounded to nearest even
    /// for ``ElementType/float16``).
    ///
    /// A shape with a zero dimension gives an empty tensor (as PyTorch's); on OpenCL it
    /// holds no device buffer, and the ops return empty results for it without
    /// launching a kernel (see each op for what it returns).
    ///
    /// - Throws: ``NormError/shapeMismatch(argument:expected:actual:)`` when
    ///   `values.count` is not the product of `shape`, ``NormError/invalidShape(argument:reason:)``
    ///   for a negative dimension or non-zero dimensions whose product overflows `Int`
    ///   (also beside a zero dimension), or an ``OpenCLError`` when the device cannot
    ///   allocate. `values` already holds the data, so no host limit applies (see
    ///   ``init(repeating:shape:layout:elementType:on:)`` for the size rules).
    public init(
        _ values: [Float], shape: [Int], layout: TensorLayout = .channelsFirst, elementType: ElementType = .float32,
        on backend: Backend
    ) throws {
        let count = try Self.checkedCount(of: shape, argument: "shape")
        guard values.count == count else {
            throw NormError.shapeMismatch(argument: "values", expected: shape, actual: [values.count])
        }
        self.shape = shape
        self.layout = layout
        self.elementType = elementType
        switch (backend, elementType) {
        case (.reference, .float32):
            storage = .host(values)
        case (.reference, .float16):
            // Host tensors keep Floats holding exactly the half values.
            storage = .host(values.map { elementType.rounded($0) })
        case (.openCL(let runtime), _) where count == 0:
            storage = .emptyDevice(runtime)
        case (.openCL(let runtime), _):
            let bytes = try Self.checkedStorageBytes(
                count: count, elementType: elementType, on: backend, shape: shape, argument: "shape")
            let buffer = try DeviceBuffer(byteCount: bytes, on: runtime)
            switch elementType {
            case .float32: try buffer.upload(values)
            case .float16: try buffer.upload(values.map { Float16($0) })
            }
            storage = .device(buffer)
        }
    }

    /// Wraps existing storage; host values of a float16 tensor must already be
    /// rounded to half precision.
    init(shape: [Int], layout: TensorLayout, elementType: ElementType = .float32, storage: Storage) {
        self.shape = shape
        self.layout = layout
        self.elementType = elementType
        self.storage = storage
    }

    /// A tensor of uninitialised device memory (filled by the kernel that follows);
    /// without a buffer when `shape` has no elements. Ops size these from validated
    /// inputs; the size checks of ``init(repeating:shape:layout:elementType:on:)`` still
    /// apply (errors name `shape`).
    init(
        uninitializedShape shape: [Int], layout: TensorLayout = .channelsFirst, elementType: ElementType = .float32,
        on runtime: OpenCLRuntime
    ) throws {
        let count = try Self.checkedCount(of: shape, argument: "shape")
        guard count > 0 else {
            self.init(shape: shape, layout: layout, elementType: elementType, storage: .emptyDevice(runtime))
            return
        }
        let bytes = try Self.checkedStorageBytes(
            count: count, elementType: elementType, on: .openCL(runtime), shape: shape, argument: "shape")
        let buffer = try DeviceBuffer(byteCount: bytes, on: runtime)
        self.init(shape: shape, layout: layout, elementType: elementType, storage: .device(buffer))
    }

    /// The values in memory order, after every op queued before this call has finished
    /// (half values widened to Float exactly).
    public func toArray() throws -> [Float] {
        switch (storage, elementType) {
        case (.host(let values), _): values
        case (.emptyDevice, _): []
        case (.device(let buffer), .float32): try buffer.download(as: Float.self)
        case (.device(let buffer), .float16): try buffer.download(as: Float16.self).map { Float($0) }
        }
    }
}
