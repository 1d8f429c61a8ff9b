import COpenCL

/// Tensors over the caller's OpenCL memory, and NormCL's memory for the caller's own
/// kernels: the two directions of working inside another OpenCL program.
extension Tensor {
    /// A tensor viewing the caller's buffer: `shape`'s elements of `elementType`, in
    /// `layout`, from `byteOffset` bytes into `buffer`. Zero-copy: ops read the caller's
    /// memory and write into it (as a destination, see ``ForwardDestinations``); NormCL
    /// never frees it, and holds a reference to it (`clRetainMemObject`, or a sub-buffer)
    /// only while the tensor lives. The offset must be a multiple of the element size.
    ///
    /// At offset 0 or a multiple of the device's ``OpenCLDevice/baseAddressAlignmentBytes``
    /// (`CL_DEVICE_MEM_BASE_ADDR_ALIGN`, 128 bytes on PoCL and NVIDIA) the view is the buffer
    /// or a sub-buffer of it, zero-copy. At any other offset it is staged: each op copies the
    /// bytes into a buffer of NormCL's before its kernels read them and copies what its
    /// kernels write back (one copy of the tensor each way per op; the op's events include
    /// the copies), so results are the same, at the cost of those copies.
    ///
    /// - Parameters:
    ///   - buffer: a buffer of `runtime`'s context (``OpenCLRuntime/contextHandle``).
    ///   - byteOffset: where the first element is, in bytes.
    ///   - shape: the logical shape (`[N, C, H, W]` also for ``TensorLayout/channelsLast``).
    ///   - layout: how the channel axis is laid out in memory.
    ///   - elementType: the element storage type.
    ///   - runtime: the runtime whose ops will use the tensor.
    /// - Throws: ``NormError/invalidShape(argument:reason:)`` for a bad shape,
    ///   ``NormError/invalidArgument(argument:reason:)`` naming `buffer` (not a valid
    ///   buffer of the runtime's context) or `byteOffset` (the elements go past the end of
    ///   the buffer, or a negative offset), ``OpenCLError`` when a sub-buffer or staging
    ///   buffer cannot be made.
    public init(
        wrapping buffer: cl_mem, byteOffset: Int = 0, shape: [Int], layout: TensorLayout = .channelsFirst,
        elementType: ElementType = .float32, on runtime: OpenCLRuntime
    ) throws {
        let count = try Self.checkedCount(of: shape, argument: "shape")
        guard byteOffset >= 0, byteOffset % elementType.byteCount == 0 else {
            throw NormError.invalidArgument(
                argument: "byteOffset", reason: "\(byteOffset) is negative or not a multiple of the \(elementType.byteCount)-byte element")
        }
        guard count > 0 else {
            self.init(shape: shape, layout: layout, elementType: elementType, storage: .emptyDevice(runtime))
            return
        }
        let bytes = try Self.checkedStorageBytes(
            count: count, elementType: elementType, on: .openCL(runtime), shape: shape, argument: "shape")
        let view = try DeviceBuffer(borrowing: buffer, byteOffset: byteOffset, byteCount: bytes, on: runtime)
        self.init(shape: shape, layout: layout, elementType: elementType, storage: .device(view))
    }

    /// The OpenCL memory holding the elements and the byte offset of the first one, for the
    /// caller's own kernels and copies: the caller's buffer and offset for a view, NormCL's
    /// own buffer and 0 otherwise; nil for the reference backend and empty tensors.
    ///
    /// Valid while this tensor (or a copy of it) lives: a NormCL buffer goes back to the
    /// runtime's pool when the last tensor holding it goes. Read it only after the events
    /// of the op that wrote it (or use the runtime's queue, which orders it after them when
    /// it executes in order).
    public var openCLMemory: (buffer: cl_mem, byteOffset: Int)? {
        guard case .device(let buffer) = storage else { return nil }
        return buffer.borrowed ?? (buffer.handle, 0)
    }
}
