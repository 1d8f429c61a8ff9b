/// The build options of a program: what its code is specialised on at compile time.
///
/// Only what changes the code belongs here — element type, layout, affine flags, vector
/// widths, work-group size, access pattern, index width. Sizes are kernel arguments, so
/// one program serves every shape (a size may be a compile-time constant only where a
/// paired measurement shows it pays; say so beside it). Every program starts with the
/// same options; an op adds its own flags with ``define(_:_:)`` and ``flag(_:_:)``.
struct KernelSpecialization: Hashable, Sendable {
    private(set) var options: [String]

    /// The options every program shares.
    init(elementType: ElementType, chunkedAccess: Bool, wideIndices: Bool) {
        options = [
            "-cl-std=CL1.2",
            elementType.buildOption,
            "-D CHUNKED=\(chunkedAccess ? 1 : 0)",
            "-D INDEX_T=\(wideIndices ? "ulong" : "uint")",
        ]
    }

    /// Adds `-D name=value`.
    mutating func define(_ name: String, _ value: Int) {
        options.append("-D \(name)=\(value)")
    }

    /// Adds `-D name=1` or `-D name=0`.
    mutating func flag(_ name: String, _ value: Bool) {
        define(name, value ? 1 : 0)
    }

    /// Adds `-D ACTIVATION=…` for a fused activation (`Kernels/epilogue.cl`), nothing for
    /// ``Activation/none``: unfused calls keep their options and their cached programs.
    /// A build option, not an argument: it changes the arithmetic of every element.
    mutating func fuse(_ activation: Activation) {
        if activation != .none { define("ACTIVATION", activation.kernelCode) }
    }

    /// Adds the residual prologue's options (`Kernels/epilogue.cl`) for a residual of
    /// `residualType` beside `storage` input: `HAS_RESIDUAL`, and `RESIDUAL_FLOAT` when the
    /// residual is float32 under half storage. Nothing without a residual.
    mutating func addResidual(_ residualType: ElementType?, storage: ElementType) {
        guard let residualType else { return }
        flag("HAS_RESIDUAL", true)
        flag("RESIDUAL_FLOAT", residualType == .float32 && storage != .float32)
    }

    /// The options as one string for `clBuildProgram`.
    var text: String { options.joined(separator: " ") }
}
