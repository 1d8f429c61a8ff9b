/// The variant of Switchable Normalization to run: which statistics are mixed, how the
/// variances are estimated, and the scalar hyper-parameters.
///
/// The defaults are those of the official code (`switchablenorms/Switchable-Normalization`,
/// `SwitchNorm2d`): IN, LN and BN mixed, unbiased instance variances, `eps = 1e-5`,
/// and its PyTorch momentum 0.9 in TF style, which is `momentum = 0.1` here.
public struct SwitchableNormOptions: Sendable, Hashable {
    /// Which normalizers are mixed; the mixing logits list them in this order.
    public enum Branches: Sendable, Hashable, CaseIterable {
        /// IN, LN and BN: three logits each (`SwitchNorm2d/3d`). Needs spatial dims.
        case instanceLayerBatch
        /// IN and LN, no batch statistics (`using_bn=False`): two logits each. Needs
        /// spatial dims. Batch-size independent, no running statistics.
        case instanceLayer
        /// LN and BN: two logits each. The only form for `(N, C)` input
        /// (`SwitchNorm1d`); allowed on spatial input too.
        case layerBatch

        /// The number of mixing logits (of each kind).
        public var count: Int { self == .instanceLayerBatch ? 3 : 2 }
        var hasInstance: Bool { self != .layerBatch }
        var hasBatch: Bool { self != .instanceLayer }
    }

    /// How a variance computed from the values themselves is divided.
    public enum VarianceEstimator: Sendable, Hashable {
        /// By the count (population variance).
        case biased
        /// By the count − 1 (sample variance; torch's `var()` default).
        case unbiased
    }

    /// The mixed normalizers (default: IN, LN and BN).
    public var branches: Branches
    /// The estimator of the variances computed directly from x: the instance variance
    /// `σ²_in` over L when IN is mixed (LN and BN then follow from it by the law of total
    /// variance), otherwise the LN and BN variances over `C·L` and `N·L` values. Default
    /// ``VarianceEstimator/unbiased``, as the official code (`x.var(-1)`).
    public var varianceEstimator: VarianceEstimator
    /// Added to the mixed variance inside the square root (default `1e-5`).
    public var eps: Float
    /// Weight of the new batch in the running BN statistics, PyTorch's meaning
    /// (default 0.1); nil for a cumulative average. The official TF-style decay 0.997
    /// is `momentum = 0.003` here, its PyTorch code's 0.9 is `0.1`.
    public var momentum: Float?

    /// The options, with the official code's defaults.
    public init(
        branches: Branches = .instanceLayerBatch, varianceEstimator: VarianceEstimator = .unbiased,
        eps: Float = 1e-5, momentum: Float? = 0.1
    ) {
        self.branches = branches
        self.varianceEstimator = varianceEstimator
        self.eps = eps
        self.momentum = momentum
    }
}
