/// The storage type of a tensor's elements in memory.
///
/// Arithmetic and statistics are float32 for every element type: half storage is
/// converted on load and rounded (to nearest even) on store, with OpenCL's core
/// `vload_half`/`vstore_half`, so it runs on devices without `cl_khr_fp16`.
/// Parameters (γ, β), saved statistics and running statistics are always float32,
/// as in PyTorch's and cuDNN's mixed-precision normalization.
public enum ElementType: String, Sendable, Hashable, CaseIterable {
    /// IEEE 754 binary32.
    case float32
    /// IEEE 754 binary16 storage ("half"), float32 arithmetic.
    case float16

    /// Bytes per element in memory.
    public var byteCount: Int {
        switch self {
        case .float32: 4
        case .float16: 2
        }
    }

    /// `value` rounded to this storage type (to nearest even), as a Float.
    @inlinable
    public func rounded(_ value: Float) -> Float {
        switch self {
        case .float32: value
        case .float16: Float(Float16(value))
        }
    }

    /// The machine epsilon of the storage type (RMSNorm's default eps, as PyTorch's
    /// `torch.finfo(dtype).eps`).
    public var epsilon: Float {
        switch self {
        case .float32: Float.ulpOfOne
        case .float16: Float(Float16.ulpOfOne)
        }
    }

    /// The `-D` option that selects the storage type in `Kernels/common.cl`.
    var buildOption: String {
        switch self {
        case .float32: "-DSTORAGE_HALF=0"
        case .float16: "-DSTORAGE_HALF=1"
        }
    }
}
