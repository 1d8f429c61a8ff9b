/// The clipping limits of Batch Renormalization (Ioffe, 2017).
///
/// In training, Batch Renorm corrects the batch-normalised value with
///
///     r = clamp(σ_B / σ, 1/rmax, rmax)      d = clamp((μ_B − μ) / σ, −dmax, dmax)
///     x̂ = (x − μ_B) / σ_B · r + d
///
/// where `σ_B = sqrt(var_B + eps)` and `μ_B` are the batch statistics and
/// `σ = sqrt(running_var + eps)`, `μ = running_mean` the running ones (before this
/// step's update); `r` and `d` are constants for the backward pass. `rmax = 1,
/// dmax = 0` (``batchNorm``) is exactly BatchNorm; users ramp them up during
/// training, e.g. to 3 and 5.
public struct BatchRenormLimits: Sendable, Hashable {
    /// Upper clip of `r`, at least 1 (`+infinity` leaves `r` unclipped above).
    public var rmax: Float
    /// Clip of `|d|`, at least 0 (`+infinity` leaves `d` unclipped).
    public var dmax: Float

    /// Limits `rmax ≥ 1` and `dmax ≥ 0`; checked when an op uses them.
    public init(rmax: Float, dmax: Float) {
        self.rmax = rmax
        self.dmax = dmax
    }

    /// `rmax = 1, dmax = 0`: Batch Renorm that computes exactly BatchNorm.
    public static let batchNorm = BatchRenormLimits(rmax: 1, dmax: 0)

    /// Throws unless `rmax ≥ 1` and `dmax ≥ 0` (NaN fails both).
    func validate() throws(NormError) {
        guard rmax >= 1 else { throw .invalidArgument(argument: "rmax", reason: "must be at least 1, got \(rmax)") }
        guard dmax >= 0 else { throw .invalidArgument(argument: "dmax", reason: "must be at least 0, got \(dmax)") }
    }
}
