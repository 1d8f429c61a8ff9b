/// Inference BatchNorm as a per-channel linear map, and its folding into the layer
/// before it.
///
/// In inference, `y = x·scale_c + shift_c` with `scale_c = γ_c / sqrt(running_var_c + eps)`
/// and `shift_c = β_c − running_mean_c·scale_c`. When a convolution or linear layer
/// `z = W·x + b` comes right before the BatchNorm — with no non-identity activation
/// between them — the pair is one layer with `W'[o, …] = W[o, …]·scale_o` and
/// `b'_o = (b_o − running_mean_o)·scale_o + β_o`. (Switchable Norm cannot be folded:
/// its instance and layer statistics depend on the live input.)
public struct BatchNormFolding: Sendable, Equatable {
    /// `γ_c / sqrt(running_var_c + eps)` per channel.
    public let scale: [Float]
    /// `β_c − running_mean_c · scale_c` per channel.
    public let shift: [Float]

    /// The inference map of a layer with running statistics (computed in float64).
    ///
    /// - Throws: ``NormError/invalidArgument(argument:reason:)`` when the layer tracks
    ///   no running statistics (its inference uses batch statistics, not a fixed map).
    public init(_ layer: BatchNorm) throws {
        guard let running = layer.runningStatistics else {
            throw NormError.invalidArgument(
                argument: "layer", reason: "a BatchNorm without running statistics has no fixed inference map to fold")
        }
        try self.init(
            runningMean: running.mean.toArray(), runningVar: running.variance.toArray(),
            weight: layer.weight?.toArray(), bias: layer.bias?.toArray(), eps: layer.eps)
    }

    /// The inference map of running statistics and optional affine parameters.
    ///
    /// - Throws: ``NormError`` when the lengths differ, or eps is non-finite or negative.
    public init(runningMean: [Float], runningVar: [Float], weight: [Float]? = nil, bias: [Float]? = nil, eps: Float = 1e-5) throws {
        let channels = runningMean.count
        guard channels > 0 else { throw NormError.emptyTensor(argument: "runningMean", shape: [0]) }
        for (name, values) in [("runningVar", runningVar), ("weight", weight), ("bias", bias)] {
            if let values, values.count != channels {
                throw NormError.shapeMismatch(argument: name, expected: [channels], actual: [values.count])
            }
        }
        try NormError.checkEps(eps)
        var scale = [Float](), shift = [Float]()
        for c in 0..<channels {
            let s = Double(weight?[c] ?? 1) / (Double(runningVar[c]) + Double(eps)).squareRoot()
            scale.append(Float(s))
            shift.append(Float(Double(bias?[c] ?? 0) - Double(runningMean[c]) * s))
        }
        self.scale = scale
        self.shift = shift
    }

    /// Folds the map into the weight and bias of the preceding convolution or linear
    /// layer whose output channel `o` owns the contiguous slice `weight[o·K ..< (o+1)·K]`
    /// (PyTorch's `[out, in, kh, kw]` or `[out, in]` layouts).
    ///
    /// - Parameters:
    ///   - weight: the layer's weight, `C·K` values for `C` output channels.
    ///   - bias: the layer's bias (`C` values), or nil for a layer without one.
    /// - Returns: the folded weight and bias (the folded layer always has a bias).
    /// - Throws: ``NormError/shapeMismatch(argument:expected:actual:)`` when `weight`
    ///   is not a whole number of channel slices or `bias` has the wrong length.
    public func fold(weight: [Float], bias: [Float]?) throws -> (weight: [Float], bias: [Float]) {
        let channels = scale.count
        guard !weight.isEmpty, weight.count % channels == 0 else {
            throw NormError.shapeMismatch(argument: "weight", expected: [channels, -1], actual: [weight.count])
        }
        if let bias, bias.count != channels {
            throw NormError.shapeMismatch(argument: "bias", expected: [channels], actual: [bias.count])
        }
        let perChannel = weight.count / channels
        var foldedWeight = weight
        var foldedBias = [Float](repeating: 0, count: channels)
        for o in 0..<channels {
            for k in 0..<perChannel { foldedWeight[o * perChannel + k] = Float(Double(weight[o * perChannel + k]) * Double(scale[o])) }
            // b' = (b − μ)·scale + β = b·scale + shift
            foldedBias[o] = Float(Double(bias?[o] ?? 0) * Double(scale[o]) + Double(shift[o]))
        }
        return (foldedWeight, foldedBias)
    }
}
