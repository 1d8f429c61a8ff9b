extension NormError {
    /// Throws unless `eps` is finite and non-negative.
    static func checkEps(_ eps: Float) throws(NormError) {
        guard eps.isFinite, eps >= 0 else {
            throw .invalidArgument(argument: "eps", reason: "must be finite and non-negative, got \(eps)")
        }
    }

    /// Throws unless `momentum` is nil (cumulative average) or lies in [0, 1].
    static func checkMomentum(_ momentum: Float?) throws(NormError) {
        if let momentum, !(momentum >= 0 && momentum <= 1) {
            throw .invalidArgument(argument: "momentum", reason: "must lie in [0, 1], got \(momentum)")
        }
    }
}

extension NormError {
    /// Throws unless `tensor` (when given) has `shape`, lives on `backend` and is
    /// float32 (parameters and statistics are float32 for every storage type).
    static func checkParameter(_ tensor: Tensor?, _ name: String, shape: [Int], backend: Backend) throws(NormError) {
        guard let tensor else { return }
        guard tensor.shape == shape else { throw .shapeMismatch(argument: name, expected: shape, actual: tensor.shape) }
        guard tensor.backend.isSame(as: backend) else { throw backendMismatch(name, tensor.backend, expected: backend) }
        guard tensor.elementType == .float32 else {
            throw .unsupported(
                argument: name, reason: "parameters and statistics are float32 (got \(tensor.elementType.rawValue))")
        }
        // Kernels read parameters row-major; below rank 3 both layouts are that memory.
        guard tensor.layout == .channelsFirst || shape.count < 3 else {
            throw .unsupported(argument: name, reason: "parameters and statistics of rank ≥ 3 are read channels-first, got channels-last")
        }
    }
}

extension NormError {
    /// Throws unless `gradOutput` matches the forward input it is the gradient of:
    /// same shape, layout, element type and backend (a backward pass's `dy` is
    /// read with the input's indexing).
    static func checkGradOutput(_ gradOutput: Tensor, matches input: Tensor) throws(NormError) {
        guard gradOutput.shape == input.shape else {
            throw .shapeMismatch(argument: "gradOutput", expected: input.shape, actual: gradOutput.shape)
        }
        guard gradOutput.backend.isSame(as: input.backend) else {
            throw backendMismatch("gradOutput", gradOutput.backend, expected: input.backend)
        }
        guard gradOutput.layout == input.layout else {
            throw .unsupported(
                argument: "gradOutput", reason: "layout \(gradOutput.layout) differs from the input's \(input.layout)")
        }
        guard gradOutput.elementType == input.elementType else {
            throw .unsupported(
                argument: "gradOutput",
                reason: "element type \(gradOutput.elementType.rawValue) differs from the input's \(input.elementType.rawValue)")
        }
    }
}

extension NormError {
    /// Throws unless the non-zero dims of `shape` multiply to a value `Int` holds, so
    /// that every product of some of them (N·M, C·M, …) can be computed without
    /// overflow; zero dims are skipped because they would hide a huge product of the
    /// others.
    static func checkDimensions(_ shape: [Int], argument: String) throws(NormError) {
        guard shape.filter({ $0 != 0 }).checkedProduct != nil else {
            throw .invalidShape(argument: argument, reason: "\(shape) has more elements than Int can count")
        }
    }

    /// Throws unless `value`, a size the kernels take as a 32-bit argument, is below 2^32.
    ///
    /// - Parameter quantity: what the value is, e.g. "N·M", for the message.
    static func check32BitLimit(_ value: Int, _ quantity: String, argument: String, shape: [Int]) throws(NormError) {
        guard value <= UInt32.max else {
            throw .invalidShape(
                argument: argument,
                reason: "\(quantity) = \(value) must be below 2^32 (a 32-bit kernel argument), got shape \(shape)")
        }
    }
}

extension NormError {
    /// The error for `argument` on `actual` instead of `expected`; names a second
    /// ``OpenCLRuntime`` of the same device as such (its buffers belong to another
    /// OpenCL context and cannot be mixed with the input's).
    static func backendMismatch(_ argument: String, _ actual: Backend, expected: Backend) -> NormError {
        var actualName = actual.name
        if case .openCL = actual, case .openCL = expected, actualName == expected.name {
            actualName += " (another OpenCLRuntime: its buffers belong to another OpenCL context)"
        }
        return .backendMismatch(argument: argument, expected: expected.name, actual: actualName)
    }
}

extension NormError {
    /// Throws unless `tensor` (when given) can be read elementwise beside `input` (a
    /// residual, an addend, the gradient of a fused sum): the same shape, layout and
    /// backend, and the input's element type, or float32 where `allowsFloat32` (a
    /// residual stream kept in float32 under half storage).
    static func checkCompanion(
        _ tensor: Tensor?, _ name: String, matches input: Tensor, allowsFloat32: Bool = false
    ) throws(NormError) {
        guard let tensor else { return }
        guard tensor.shape == input.shape else {
            throw .shapeMismatch(argument: name, expected: input.shape, actual: tensor.shape)
        }
        guard tensor.backend.isSame(as: input.backend) else {
            throw backendMismatch(name, tensor.backend, expected: input.backend)
        }
        guard tensor.layout == input.layout || input.shape.count < 3 else {
            throw .unsupported(argument: name, reason: "layout \(tensor.layout) differs from the input's \(input.layout)")
        }
        guard tensor.elementType == input.elementType || (allowsFloat32 && tensor.elementType == .float32) else {
            let allowed = allowsFloat32 && input.elementType != .float32 ? " or float32" : ""
            throw .unsupported(
                argument: name,
                reason: "element type \(tensor.elementType.rawValue) must be the input's (\(input.elementType.rawValue))\(allowed)")
        }
    }
}
