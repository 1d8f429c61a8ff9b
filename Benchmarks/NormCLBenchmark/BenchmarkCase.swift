import NormCL

/// One op on one shape, layout and element type, with what it costs in memory traffic.
///
/// Each op contributes its cases from its own file under `Cases/`; ``suite(quick:)``
/// lists them all.
struct BenchmarkCase: Sendable {
    /// Runs the op once on tensors prepared for one backend.
    typealias Run = () throws -> (output: Tensor, events: [KernelEvent])

    /// The op and mode, e.g. "BatchNorm train".
    let op: String
    /// The input shape, logical order `(N, C, *S)` or `(rows, D)`.
    let shape: [Int]
    var layout: TensorLayout = .channelsFirst
    var elementType: ElementType = .float32
    /// Ideal bytes moved, Triton's convention: inputs read once and outputs written
    /// once (forward 2·numel·bytes), plus the parameters and statistics read and written.
    let idealBytes: Int
    /// Uploads `input` (and the op's parameters) to a backend and returns the op.
    let prepare: @Sendable (_ input: [Float], _ backend: Backend) throws -> Run

    var name: String {
        let layoutText = shape.count == 2 && layout == .channelsFirst ? "" : (layout == .channelsFirst ? " NCHW" : " NHWC")
        return "\(op) \(shapeText)\(layoutText) \(elementType == .float32 ? "f32" : "f16")"
    }
    var shapeText: String { "(" + shape.map(String.init).joined(separator: ",") + ")" }
    var count: Int { shape.reduce(1, *) }

    /// How far an output may be from the reference's: float32 statistics keep ~1e-5
    /// relative on O(1) data; half storage rounds each output to 2^-11 relative (and
    /// the reference's output may round the other way at a tie).
    var tolerance: Double { elementType == .float32 ? 1e-4 : 2e-3 }

    /// Bytes of `count` elements of the case's storage type.
    static func elementBytes(_ count: Int, _ elementType: ElementType) -> Int { count * elementType.byteCount }
}
