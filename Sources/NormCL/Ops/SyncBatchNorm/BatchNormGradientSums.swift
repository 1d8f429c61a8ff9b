/// The two per-channel sums BatchNorm's training backward needs from one part of a
/// batch, in float64: `Σ g` and `Σ g·(x − mean)`, with `mean` the whole batch's (the
/// forward's saved mean) and `g` the gradient at the norm's output — dy, or for a forward
/// with a fused epilogue `y = f(a)`, `a = (x − mean)·invstd·γ + β + z`, `g = dy·f′(a)`.
///
/// Sums of parts add: the whole batch's are the parts' in any grouping, and
/// ``merged(_:)`` adds them in the order given, so every participant gets the same bits.
/// From the whole batch's sums, with `invstd` the saved inverse standard deviation and
/// `n` the whole batch's values per channel:
///
///     dβ = Σ g        dγ = invstd·Σ g·(x − mean)
///     dx = γ·invstd·(g − Σ g/n − (x − mean)·invstd²·Σ g·(x − mean)/n)        dz = g
///
/// ``batchNormGradientSums(_:input:weight:bias:saveMean:saveInvstd:activation:addend:waitingFor:)``
/// computes a part's sums;
/// ``batchNormBackward(_:input:weight:bias:saveMean:saveInvstd:gradientSums:activation:addend:outputMask:into:waitingFor:)``
/// finishes the backward pass with merged ones.
public struct BatchNormGradientSums: Sendable, Equatable {
    /// Values per channel these sums cover.
    public let count: Int
    /// Per channel, `Σ g` (`Σ dy` without an activation).
    public let sumGradOutput: [Double]
    /// Per channel, `Σ g·(x − mean)` (`Σ dy·(x − mean)` without an activation).
    public let sumGradOutputCentered: [Double]

    /// The number of channels.
    public var channels: Int { sumGradOutput.count }

    /// Sums from their parts.
    ///
    /// - Throws: ``NormError`` for a negative count or sums of different lengths.
    public init(count: Int, sumGradOutput: [Double], sumGradOutputCentered: [Double]) throws(NormError) {
        try ChannelStatisticsPacking.check(
            count: count, sumGradOutput.count, sumGradOutputCentered.count, second: "sumGradOutputCentered")
        self.count = count
        self.sumGradOutput = sumGradOutput
        self.sumGradOutputCentered = sumGradOutputCentered
    }

    /// The parts' sums added in the order given (float64).
    ///
    /// - Throws: ``NormError`` when the parts have different numbers of channels, or
    ///   when there are none.
    public static func merged(_ parts: [BatchNormGradientSums]) throws(NormError) -> BatchNormGradientSums {
        let channels = try ChannelStatisticsPacking.commonChannels(parts.map(\.channels))
        var count = 0
        var sumDy = [Double](repeating: 0, count: channels)
        var sumDyCentered = sumDy
        for part in parts {
            count += part.count
            for c in 0..<sumDy.count {
                sumDy[c] += part.sumGradOutput[c]
                sumDyCentered[c] += part.sumGradOutputCentered[c]
            }
        }
        return try BatchNormGradientSums(count: count, sumGradOutput: sumDy, sumGradOutputCentered: sumDyCentered)
    }

    /// The sums as `1 + 2·channels` numbers — count, Σ g, Σ g·(x − mean) — for an
    /// exchange between processes (``StatisticsExchange``).
    public var packed: [Double] { [Double(count)] + sumGradOutput + sumGradOutputCentered }

    /// Sums from their ``packed`` form.
    ///
    /// - Throws: ``NormError`` when `packed` does not hold `1 + 2·channels` numbers or
    ///   its count is not a whole non-negative number.
    public init(packed: [Double], channels: Int) throws(NormError) {
        let (count, sumDy, sumDyCentered) = try ChannelStatisticsPacking.unpack(packed, channels: channels)
        try self.init(count: count, sumGradOutput: sumDy, sumGradOutputCentered: sumDyCentered)
    }
}
