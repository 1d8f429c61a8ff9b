/// The build options of a program: what its code is specialised on at compile time.
///
/// Only what changes the code belongs here — element type, layout, affine flags, vector
/// widths, work-group size, access pattern, index width. Sizes are kernel arguments, so
/// one program serves every shape (a size may be a compile-time constant only where a
/// paired measurement shows it pays; say so beside it). Every program starts with the
/// same options; an op adds its own flags with ``define(_:_:)`` and ``flag(_:_:)``.
///
/// It is also the program cache's key (with the kernel file's name), looked up on every op
/// call: the options are kept as a list of literal texts and `(name, value)` defines, and
/// the command line (``text``) is formed only for a build. Forming it on every call (string
/// interpolation, then joining some 150 bytes) was a fifth of BatchNorm's host time per
/// call on PoCL. A digest of the options, folded in as they are added, is the hash (hashing
/// the list itself cost as much again). Two specialisations name the same program when
/// their option lists are equal.
struct KernelSpecialization: Hashable, Sendable {
    private enum Option: Hashable, Sendable {
        case text(String)
        case define(String, Int)

        var text: String {
            switch self {
            case .text(let text): text
            case .define(let name, let value): "-D \(name)=\(value)"
            }
        }
    }

    private var options: [Option] = []
    /// FNV-1a of the options so far (``append(_:)``).
    private var digest = FNV1a64()

    /// The options every program shares: the element type, the access pattern, the index
    /// width and the streaming threshold (``DeviceTuning/streamingStoreBytes``, the same
    /// for every shape on a device; 0 leaves it out).
    init(elementType: ElementType, chunkedAccess: Bool, wideIndices: Bool, streamingStoreBytes: Int = 0) {
        append(.text("-cl-std=CL1.2"))
        append(.text(elementType.buildOption))
        append(.define("CHUNKED", chunkedAccess ? 1 : 0))
        append(.text(wideIndices ? "-D INDEX_T=ulong" : "-D INDEX_T=uint"))
        if streamingStoreBytes > 0 { append(.define("STREAM_BYTES", streamingStoreBytes)) }
    }

    /// The options every program shares, from `geometry`.
    init(elementType: ElementType, geometry: LaunchGeometry, wideIndices: Bool) {
        self.init(
            elementType: elementType, chunkedAccess: geometry.chunkedAccess, wideIndices: wideIndices,
            streamingStoreBytes: geometry.streamingStoreBytes)
    }

    /// Options given as one command-line text (tests' probe programs).
    init(text: String) {
        append(.text(text))
    }

    /// Adds `-D name=value`.
    mutating func define(_ name: String, _ value: Int) {
        append(.define(name, value))
    }

    private mutating func append(_ option: Option) {
        options.append(option)
        switch option {
        case .text(let text):
            digest.combine(text.utf8)
        case .define(let name, let value):
            digest.combine(name.utf8)
            withUnsafeBytes(of: value) { digest.combine($0) }
        }
        digest.combine(CollectionOfOne(0))  // a separator: ("ab", "c") is not ("a", "bc")
    }

    static func == (a: Self, b: Self) -> Bool {
        a.digest.value == b.digest.value && a.options == b.options
    }

    func hash(into hasher: inout Hasher) {
        hasher.combine(digest.value)
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
    var text: String { options.map(\.text).joined(separator: " ") }
}
