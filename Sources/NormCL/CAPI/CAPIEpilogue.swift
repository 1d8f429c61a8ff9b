import COpenCL

// The fused epilogues' options for include/normcl.h: `normcl_epilogue` and
// `normcl_activation`, read the way ``CTensorDescriptor`` reads `normcl_tensor`.

/// A `const normcl_epilogue *` (NULL: no activation, no γ offset).
@_spi(CAPI) public typealias CEpilogueArgument = UnsafeRawPointer?

/// A `normcl_epilogue` read from C memory: the scalar options of a `_fused` call.
///
/// The struct starts with its own size, so that a later header can append options: this
/// library reads a struct of exactly the size it knows (``size``) and reports a larger
/// one (a newer header's) as unsupported instead of reading past what it knows.
struct CEpilogue {
    /// `activation`.
    var activation: Activation = .none
    /// `weight_offset`.
    var weightOffset: Float = 0

    /// `sizeof(normcl_epilogue)` in this library's header.
    static let size = 16

    /// `normcl_activation`'s values: the C value is the index (checked against
    /// include/normcl.h by the tests).
    static let activations: [Activation] = [.none, .relu, .silu, .gelu, .geluTanh]

    /// The options at `pointer` (the defaults for NULL), checked.
    ///
    /// - Throws: ``NormError`` naming `epilogue.struct_size` (not this library's size),
    ///   `epilogue.activation` (not a `NORMCL_ACTIVATION_*` value) or `epilogue.reserved`.
    init(_ pointer: CEpilogueArgument) throws(NormError) {
        guard let pointer else { return }
        let size = pointer.loadUnaligned(fromByteOffset: 0, as: UInt32.self)
        guard size == Self.size else {
            let reason = "\(size) is not sizeof(normcl_epilogue) (\(Self.size)): set it with NORMCL_EPILOGUE_INIT"
            throw size > Self.size
                ? .unsupported(argument: "epilogue.struct_size", reason: "\(reason); a newer header's struct needs a newer library")
                : .invalidArgument(argument: "epilogue.struct_size", reason: reason)
        }
        let code = pointer.loadUnaligned(fromByteOffset: 4, as: Int32.self)
        guard Self.activations.indices.contains(Int(code)) else {
            throw .invalidArgument(
                argument: "epilogue.activation",
                reason: "\(code) is not a NORMCL_ACTIVATION_* value (0...\(Self.activations.count - 1))")
        }
        guard pointer.loadUnaligned(fromByteOffset: 12, as: UInt32.self) == 0 else {
            throw .invalidArgument(argument: "epilogue.reserved", reason: "must be 0")
        }
        activation = Self.activations[Int(code)]
        weightOffset = pointer.loadUnaligned(fromByteOffset: 8, as: Float.self)
    }

    /// The options of an op other than LayerNorm and RMSNorm, which has no γ offset.
    ///
    /// - Throws: ``NormError/unsupported(argument:reason:)`` for a non-zero `weight_offset`.
    func withoutWeightOffset(_ op: String) throws(NormError) -> Activation {
        guard weightOffset == 0 else {
            throw .unsupported(
                argument: "epilogue.weight_offset", reason: "is \(weightOffset): \(op) has no γ offset (LayerNorm and RMSNorm do)")
        }
        return activation
    }
}

extension CAPICall {
    /// The tensor at `descriptor` (nil when absent), checked as a companion of `input`:
    /// its shape, layout and element type (or float32, with `allowsFloat32`).
    func companion(
        _ descriptor: CTensorArgument, _ name: String, of input: Tensor, allowsFloat32: Bool = false
    ) throws -> Tensor? {
        let companion = try tensor(descriptor, name)
        try NormError.checkCompanion(companion, name, matches: input, allowsFloat32: allowsFloat32)
        return companion
    }

    /// Throws unless `output` is NULL or `source` is present: an output that only exists
    /// with an input (dz with an addend, RMSNorm's dbias with a bias), checked before
    /// any kernel runs.
    func requireSource(for output: CTensorArgument, _ name: String, _ source: Tensor?, _ reason: String) throws {
        if source == nil, try tensor(output, name) != nil {
            throw NormError.invalidArgument(argument: name, reason: reason)
        }
    }
}
