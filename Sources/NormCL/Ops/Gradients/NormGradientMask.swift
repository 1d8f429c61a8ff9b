/// Which gradients a backward pass computes: PyTorch's `output_mask` of
/// `native_batch_norm_backward` / `native_layer_norm_backward`, as an option set.
///
/// Leaving out ``weight`` and ``bias`` saves the parameter-gradient reductions (for
/// LayerNorm, RMSNorm, GroupNorm and InstanceNorm a whole extra pass over `dy` and
/// `x`); pass ``input`` alone for a layer without affine parameters. A gradient left
/// out comes back nil.
public struct NormGradientMask: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// `dx`, the gradient with respect to the input.
    public static let input = NormGradientMask(rawValue: 1 << 0)
    /// `dγ`, the gradient with respect to the weight.
    public static let weight = NormGradientMask(rawValue: 1 << 1)
    /// `dβ`, the gradient with respect to the bias.
    public static let bias = NormGradientMask(rawValue: 1 << 2)
    /// `dz`, the gradient with respect to the tensor added before a fused activation
    /// (BatchNorm's `relu(BN(x) + z)`); ignored by ops without one.
    public static let addend = NormGradientMask(rawValue: 1 << 3)
    /// The gradient with respect to the bias added to the input with a fused residual
    /// (LayerNorm's and RMSNorm's `inputBias`); ignored by ops without one.
    public static let inputBias = NormGradientMask(rawValue: 1 << 4)
    /// Every gradient the op has.
    public static let all: NormGradientMask = [.input, .weight, .bias, .addend, .inputBias]
}
