/// What a backward pass returns: the gradients of a scalar loss with respect to the
/// op's input and affine parameters, given the gradient `dy` with respect to its output.
///
/// ``input`` has the input's shape, layout and element type; ``weight`` and ``bias``
/// have the parameters' shape and are float32 for every storage type (they are sums
/// over many elements). Each is nil when the ``NormGradientMask`` left it out.
///
/// For an empty input (a zero dim) every backward pass returns, without a kernel
/// launch, an empty ``input`` and zero ``weight`` and ``bias``: sums of no terms, as
/// PyTorch gives them.
public struct NormGradients: Sendable {
    /// `dx`.
    public let input: Tensor?
    /// `dγ`.
    public let weight: Tensor?
    /// `dβ`.
    public let bias: Tensor?
    /// The OpenCL kernels the backward pass enqueued, in order (empty on the
    /// reference path); their profiling intervals give its device time.
    public let events: [KernelEvent]
    /// The gradient of the tensor added before a fused activation (`dz` of BatchNorm's
    /// `relu(BN(x) + z)`), with z's shape, layout and element type; nil when the forward
    /// added none or the ``NormGradientMask`` left it out.
    public internal(set) var addend: Tensor? = nil
    /// The gradient of the bias added to the input before the norm (LayerNorm's and
    /// RMSNorm's `inputBias`): Σ over rows of dL/dh, float32 of the bias's shape; nil when
    /// the forward added none or the ``NormGradientMask`` left it out.
    public internal(set) var inputBias: Tensor? = nil

    init(input: Tensor?, weight: Tensor?, bias: Tensor?, events: [KernelEvent]) {
        self.input = input
        self.weight = weight
        self.bias = bias
        self.events = events
    }
}
