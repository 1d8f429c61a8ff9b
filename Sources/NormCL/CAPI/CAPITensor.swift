import COpenCL

/// A `normcl_tensor` (include/normcl.h) read from C memory.
///
/// The library does not import the header: it reads the struct's fields at the offsets
/// the header fixes, and the header fails to compile on any platform where they differ
/// (its `normcl_tensor_layout_check_`).
struct CTensorDescriptor {
    /// `buffer`: nil means absent.
    let buffer: cl_mem?
    let byteOffset: Int
    let shape: [Int]
    let elementType: ElementType
    let layout: TensorLayout

    /// `NORMCL_MAX_RANK`.
    static let maxRank = 8
    /// `sizeof(normcl_tensor)`.
    static let size = 96

    /// The descriptor at `pointer`, checked: `name` is the C argument, for messages.
    ///
    /// - Throws: ``NormError`` naming `<name>.rank`, `.shape`, `.dtype`, `.layout` or
    ///   `.byte_offset` for a rank outside 0...8, a negative dim, an unknown enum value or
    ///   an offset beyond `Int.max`.
    init(_ pointer: UnsafeRawPointer, name: String) throws(NormError) {
        buffer = cl_mem(bitPattern: pointer.loadUnaligned(fromByteOffset: 0, as: UInt.self))
        let offset = pointer.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
        let rank = pointer.loadUnaligned(fromByteOffset: 80, as: Int32.self)
        let dtype = pointer.loadUnaligned(fromByteOffset: 84, as: Int32.self)
        let layout = pointer.loadUnaligned(fromByteOffset: 88, as: Int32.self)
        guard (0...Int32(Self.maxRank)).contains(rank) else {
            throw .invalidShape(argument: "\(name).rank", reason: "\(rank) is not in 0...\(Self.maxRank) (NORMCL_MAX_RANK)")
        }
        let dims = (0..<Int(rank)).map { pointer.loadUnaligned(fromByteOffset: 16 + 8 * $0, as: Int64.self) }
        if let negative = dims.firstIndex(where: { $0 < 0 }) {
            throw .invalidShape(argument: "\(name).shape", reason: "dim \(negative) is \(dims[negative]) in \(dims)")
        }
        guard offset <= UInt64(Int.max) else {
            throw .invalidArgument(argument: "\(name).byte_offset", reason: "\(offset) is too large")
        }
        switch dtype {
        case 0: elementType = .float32
        case 1: elementType = .float16
        default:
            throw .invalidArgument(argument: "\(name).dtype", reason: "\(dtype) is not NORMCL_DTYPE_F32 (0) or NORMCL_DTYPE_F16 (1)")
        }
        switch layout {
        case 0: self.layout = .channelsFirst
        case 1: self.layout = .channelsLast
        default:
            throw .invalidArgument(
                argument: "\(name).layout",
                reason: "\(layout) is not NORMCL_LAYOUT_CHANNELS_FIRST (0) or NORMCL_LAYOUT_CHANNELS_LAST (1)")
        }
        byteOffset = Int(offset)
        shape = dims.map { Int($0) }
    }

    /// A zero-copy view of the caller's memory on `runtime` (an empty tensor for a
    /// buffer-less descriptor without elements).
    func tensor(on runtime: OpenCLRuntime) throws -> Tensor {
        guard let buffer else {
            precondition(shape.contains(0), "absent descriptors are not made into tensors")
            return Tensor(shape: shape, layout: layout, elementType: elementType, storage: .emptyDevice(runtime))
        }
        return try Tensor(
            wrapping: buffer, byteOffset: byteOffset, shape: shape, layout: layout, elementType: elementType, on: runtime)
    }
}
