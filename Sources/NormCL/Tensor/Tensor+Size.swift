#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Size checks done before any memory for a new tensor is taken.
///
/// The rules, on both backends:
/// - every dimension is ≥ 0;
/// - the product of the non-zero dimensions fits in `Int` (so that every product of some
///   of them — N·M, C·M, strides — can be computed; a zero dimension does not excuse a
///   product that overflows: `[0, 2^40, 2^40]` is rejected like `[2^40, 2^40]`);
/// - the bytes the storage takes fit in `Int`;
/// - on the reference backend, those bytes (4 per element: host tensors hold `Float`s for
///   every ``ElementType``) are at most ``hostByteLimit``, the machine's physical memory.
///   A tensor larger than all of RAM can never be held; Swift would end the process when
///   the allocation failed (or the kernel's OOM killer would), so it is a typed error.
///   A tensor that fits in RAM but not in the memory free now is not caught.
/// - on OpenCL, the device decides: the runtime's allocator throws ``OpenCLError``
///   (`CL_MEM_OBJECT_ALLOCATION_FAILURE` past the device's global memory,
///   `CL_INVALID_BUFFER_SIZE` past its maximum allocation) before anything is written.
extension Tensor {
    /// The most bytes one reference-backend tensor may hold: the machine's physical memory
    /// (`sysconf(_SC_PHYS_PAGES) × _SC_PAGESIZE`), read once; `Int.max` where unknown.
    static let hostByteLimit: Int = {
        let pages = sysconf(Int32(_SC_PHYS_PAGES)), pageSize = sysconf(Int32(_SC_PAGESIZE))
        guard pages > 0, pageSize > 0 else { return .max }
        let (bytes, overflow) = pages.multipliedReportingOverflow(by: pageSize)
        return overflow ? .max : bytes
    }()

    /// The element count of a new tensor of `shape`.
    ///
    /// - Throws: ``NormError/invalidShape(argument:reason:)`` naming `argument` for a
    ///   negative dimension, or non-zero dimensions whose product overflows `Int`.
    static func checkedCount(of shape: [Int], argument: String) throws(NormError) -> Int {
        if let negative = shape.first(where: { $0 < 0 }) {
            throw .invalidShape(argument: argument, reason: "dimension \(negative) is negative in \(shape)")
        }
        guard let nonZeroProduct = shape.filter({ $0 != 0 }).checkedProduct else {
            throw .invalidShape(argument: argument, reason: "\(shape) has more elements than Int can count")
        }
        return shape.contains(0) ? 0 : nonZeroProduct
    }

    /// The bytes of storage for `count` elements of `elementType` on `backend`: device
    /// bytes on OpenCL (the device's limits are its allocator's to check), host bytes
    /// (`Float`s) on the reference, checked against ``hostByteLimit``.
    ///
    /// - Throws: ``NormError/invalidShape(argument:reason:)`` naming `argument` when the
    ///   bytes overflow `Int` or exceed the reference backend's limit.
    static func checkedStorageBytes(
        count: Int, elementType: ElementType, on backend: Backend, shape: [Int], argument: String
    ) throws(NormError) -> Int {
        let bytesPerElement = backend.runtime == nil ? MemoryLayout<Float>.stride : elementType.byteCount
        let (bytes, overflow) = count.multipliedReportingOverflow(by: bytesPerElement)
        guard !overflow else {
            throw .invalidShape(
                argument: argument,
                reason: "\(shape) needs more bytes than Int can count (\(count) elements of \(bytesPerElement) bytes)")
        }
        if backend.runtime == nil && bytes > hostByteLimit {
            throw .invalidShape(
                argument: argument,
                reason: "\(shape) needs \(bytes) bytes of host memory, more than the reference backend gives one tensor: "
                    + "the machine's physical memory, \(hostByteLimit) bytes")
        }
        return bytes
    }
}
