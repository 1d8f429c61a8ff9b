/// What a LayerNorm or RMSNorm call fuses around its normalization, as far as it changes
/// the kernels' code: a residual added before it, γ's offset and an activation after it.
///
///     h = (x + b) + residual        (when a residual is given, b the input bias or 0;
///                                    else h = x)
///     a = norm(h) · (γ + offset) + β
///     y = f(a)
///
/// The backward recomputes h from x and the residual and a from h and the saved
/// statistics; it never reads a stored copy of either.
struct RowNormFusion: Hashable, Sendable {
    /// The residual's element type (also that of the stored sum h) when one is added:
    /// the input's, or float32 under half storage (`residual_in_fp32`); nil without one.
    var residualType: ElementType? = nil
    /// Whether a bias b (float32, one per column) is added to x with the residual.
    var hasInputBias = false
    /// Added to every γ before it scales (1 for Gemma's zero-centred γ); needs a weight.
    var weightOffset: Float = 0
    /// The activation applied to the normalized, scaled and shifted value.
    var activation: Activation = .none
    /// Backward only: the input is the sum h the forward stored (no residual is read),
    /// and the gradient of h from elsewhere may be added to dx.
    var inputIsSum = false

    /// Checks the fused arguments of a call whose input and weight are already valid.
    ///
    /// - Throws: ``NormError`` for a residual of another shape, layout, backend or element
    ///   type (it may be float32 under half storage), an input bias without a residual or
    ///   not float32 of `normalizedShape`, a non-finite `weightOffset`, or a non-zero one
    ///   without a weight.
    static func validated(
        residual: Tensor?, inputBias: Tensor? = nil, input: Tensor, normalizedShape: [Int], weight: Tensor?,
        weightOffset: Float, activation: Activation
    ) throws(NormError) -> RowNormFusion {
        try NormError.checkCompanion(residual, "residual", matches: input, allowsFloat32: true)
        if inputBias != nil && residual == nil {
            throw .invalidArgument(argument: "inputBias", reason: "is added with the residual, and there is none")
        }
        try NormError.checkParameter(inputBias, "inputBias", shape: normalizedShape, backend: input.backend)
        guard weightOffset.isFinite else {
            throw .invalidArgument(argument: "weightOffset", reason: "must be finite, got \(weightOffset)")
        }
        if weightOffset != 0 && weight == nil {
            throw .invalidArgument(argument: "weightOffset", reason: "offsets γ, so it needs a weight")
        }
        return RowNormFusion(
            residualType: residual?.elementType, hasInputBias: inputBias != nil, weightOffset: weightOffset,
            activation: activation)
    }

    /// Adds the kernels' options (Kernels/epilogue.cl): HAS_RESIDUAL and RESIDUAL_FLOAT with
    /// a residual, HAS_INPUT_BIAS with an input bias, ACTIVATION with an activation. Nothing for the plain op, whose programs
    /// stay those of an unfused call. The offset is a kernel argument.
    func specialize(_ options: inout KernelSpecialization, storage: ElementType) {
        options.addResidual(residualType, storage: storage)
        if hasInputBias { options.flag("HAS_INPUT_BIAS", true) }
        if inputIsSum { options.flag("SUM_GRADIENT", true) }
        options.fuse(activation)
    }
}
