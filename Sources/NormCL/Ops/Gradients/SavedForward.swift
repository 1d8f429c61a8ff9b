/// What a forward pass keeps for its backward pass, as PyTorch's autograd node saves the
/// input, the parameters and the arguments of the call: a backward pass then takes only
/// dy and the forward's output, so it cannot be given another weight, eps, shape or
/// option than the forward used.
///
/// Holding the tensors keeps their device buffers alive until the output is dropped,
/// exactly as autograd keeps them until the backward has run.
struct SavedForward: Sendable {
    /// The forward's input x.
    let input: Tensor
    /// γ, or nil when the forward had none (γ ≡ 1; no dγ is returned).
    let weight: Tensor?
    /// β, or nil when the forward had none (no dβ is returned).
    let bias: Tensor?
    /// The eps the statistics were normalised with.
    let eps: Float
    /// The activation fused after the norm (``Activation/none`` when there is none): the
    /// backward applies its gradient, recomputing its input from x and the statistics.
    var activation: Activation = .none
    /// The tensor added after the norm and before the activation (BatchNorm's
    /// `relu(BN(x) + z)`), or nil.
    var addend: Tensor? = nil
    /// The residual added to the input before the norm (LayerNorm, RMSNorm), or nil.
    var residual: Tensor? = nil
    /// Added to γ before it scales (LayerNorm, RMSNorm).
    var weightOffset: Float = 0
    /// The bias added to the input with the residual (LayerNorm, RMSNorm), or nil.
    var inputBias: Tensor? = nil
}

extension NormGradientMask {
    /// The requested gradients that the forward has: no dγ without γ and no dβ without
    /// β (PyTorch returns None for a parameter that is not there).
    func restricted(to saved: SavedForward) -> NormGradientMask {
        var mask = self
        if saved.weight == nil { mask.remove(.weight) }
        if saved.bias == nil { mask.remove(.bias) }
        if saved.addend == nil { mask.remove(.addend) }
        if saved.inputBias == nil { mask.remove(.inputBias) }
        return mask
    }
}

extension Tensor {
    /// Whether both tensors hold the same data: the same device buffer, or the same host
    /// values bit for bit (a host tensor is a value; an equal copy gives equal gradients).
    func holdsSameData(as other: Tensor) -> Bool {
        guard shape == other.shape, layout == other.layout, elementType == other.elementType else { return false }
        switch (storage, other.storage) {
        case (.device(let a), .device(let b)): return a === b
        case (.emptyDevice(let a), .emptyDevice(let b)): return a === b
        case (.host(let a), .host(let b)): return a.elementsEqual(b) { $0.bitPattern == $1.bitPattern }
        default: return false
        }
    }
}

extension NormError {
    /// Throws ``NormError/forwardMismatch(argument:reason:)`` when a layer's parameter is
    /// not the one its forward used (replaced, added or removed since): the gradient
    /// would belong to another function. PyTorch raises for the same reason when a
    /// tensor saved for backward was modified in place.
    static func checkUnchanged(_ current: Tensor?, since saved: Tensor?, argument: String) throws {
        switch (current, saved) {
        case (nil, nil): return
        case (let current?, let saved?) where current.holdsSameData(as: saved): return
        case (nil, _?):
            throw NormError.forwardMismatch(argument: argument, reason: "the layer has no \(argument) now, the forward had one")
        case (_?, nil):
            throw NormError.forwardMismatch(argument: argument, reason: "the layer has a \(argument) now, the forward had none")
        default:
            throw NormError.forwardMismatch(
                argument: argument, reason: "the layer's \(argument) was replaced after the forward pass")
        }
    }

    /// The error for a forward output that carries nothing saved (not made by the op).
    static func nothingSaved(_ op: String) -> NormError {
        .forwardMismatch(argument: "forward", reason: "this output was not returned by \(op)")
    }
}

extension Optional where Wrapped == SavedForward {
    /// What a layer's `backward` checks first: the forward saved what backward needs
    /// (``NormError/nothingSaved(_:)`` otherwise), and the layer's `weight` and `bias` are
    /// still the tensors that forward used (``NormError/forwardMismatch(argument:reason:)``).
    @discardableResult
    func checkedForLayer(_ op: String, weight: Tensor?, bias: Tensor?) throws -> SavedForward {
        guard let saved = self else { throw NormError.nothingSaved(op) }
        try NormError.checkUnchanged(weight, since: saved.weight, argument: "weight")
        try NormError.checkUnchanged(bias, since: saved.bias, argument: "bias")
        return saved
    }
}
