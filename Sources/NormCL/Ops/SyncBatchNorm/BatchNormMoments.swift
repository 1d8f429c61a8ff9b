/// The moments of one part of a batch, per channel: the number of values each channel
/// has there, their mean and the sum of squared deviations from it (M2), in float64.
///
/// This is the form in which the statistics of several parts — the slices of one batch
/// on several devices or in several processes — combine without cancellation (Chan,
/// Golub and LeVeque): two parts `a` and `b` of counts `n_a`, `n_b` merge as
///
///     n = n_a + n_b        δ = mean_b − mean_a
///     mean = mean_a + δ·n_b/n
///     M2   = M2_a + M2_b + δ²·n_a·n_b/n
///
/// and the whole batch's biased variance is `M2/n`. Counts may differ between parts and
/// may be zero (a part with no samples changes nothing). ``merged(_:)`` folds parts in
/// the order given, so every participant that merges the same parts in the same order
/// gets the same bits, whichever finished first.
///
/// ``batchNormMoments(_:waitingFor:)`` computes a part's moments;
/// ``batchNorm(_:moments:weight:bias:runningStatistics:momentum:eps:activation:addend:into:waitingFor:)``
/// normalises with merged ones.
public struct BatchNormMoments: Sendable, Equatable {
    /// Values per channel in this part: N·M of its `(N, C, *S)` input.
    public let count: Int
    /// Per channel, the mean of its values (0 when `count` is 0).
    public let mean: [Double]
    /// Per channel, `Σ (x − mean)²` (0 when `count` is 0).
    public let m2: [Double]

    /// The number of channels.
    public var channels: Int { mean.count }

    /// Moments from their parts.
    ///
    /// - Throws: ``NormError`` for a negative count, or `mean` and `m2` of different
    ///   lengths.
    public init(count: Int, mean: [Double], m2: [Double]) throws(NormError) {
        try ChannelStatisticsPacking.check(count: count, mean.count, m2.count, second: "m2")
        self.count = count
        self.mean = mean
        self.m2 = m2
    }

    /// The moments of no values: count 0, mean and M2 zero.
    public static func empty(channels: Int) -> BatchNormMoments {
        let zeros = [Double](repeating: 0, count: channels)
        return BatchNormMoments(unchecked: 0, mean: zeros, m2: zeros)
    }

    init(unchecked count: Int, mean: [Double], m2: [Double]) {
        self.count = count
        self.mean = mean
        self.m2 = m2
    }

    /// Per channel, the biased variance `M2/count` that BatchNorm normalises with (NaN
    /// when `count` is 0).
    public var variance: [Double] { m2.map { $0 / Double(count) } }

    /// The parts merged in the order given (Chan's formula, float64): the moments of
    /// all their values together.
    ///
    /// A part whose count is 0 is skipped. A channel with an infinite or NaN mean in some
    /// part gets the IEEE sum of the parts' means (NaN stays NaN, Inf stays Inf) and a
    /// NaN or infinite M2, as the whole batch's statistics would have.
    ///
    /// - Throws: ``NormError`` when the parts have different numbers of channels, or
    ///   when there are none.
    public static func merged(_ parts: [BatchNormMoments]) throws(NormError) -> BatchNormMoments {
        let channels = try ChannelStatisticsPacking.commonChannels(parts.map(\.channels))
        var count = 0
        var mean = [Double](repeating: 0, count: channels)
        var m2 = mean
        for part in parts {
            guard part.count > 0 else { continue }
            guard count > 0 else {
                (count, mean, m2) = (part.count, part.mean, part.m2)
                continue
            }
            let total = Double(count + part.count)
            let weight = Double(part.count) / total
            for c in 0..<mean.count {
                let delta = part.mean[c] - mean[c]
                let merged = mean[c] + delta * weight
                m2[c] += part.m2[c] + delta * delta * Double(count) * weight
                // Inf or NaN on a side: the IEEE sum of the means (Inf − Inf would be NaN
                // for a channel that is +Inf on both sides).
                mean[c] = merged.isFinite ? merged : mean[c] + part.mean[c]
            }
            count += part.count
        }
        return BatchNormMoments(unchecked: count, mean: mean, m2: m2)
    }

    /// The moments as `1 + 2·channels` numbers — count, means, M2s — for an exchange
    /// between processes (``StatisticsExchange``).
    public var packed: [Double] { [Double(count)] + mean + m2 }

    /// Moments from their ``packed`` form.
    ///
    /// - Throws: ``NormError`` when `packed` does not hold `1 + 2·channels` numbers or
    ///   its count is not a whole non-negative number.
    public init(packed: [Double], channels: Int) throws(NormError) {
        let (count, mean, m2) = try ChannelStatisticsPacking.unpack(packed, channels: channels)
        try self.init(count: count, mean: mean, m2: m2)
    }
}

/// What ``BatchNormMoments`` and ``BatchNormGradientSums`` share: their parts' channels,
/// and the packed form they take in an exchange (a count, then two per-channel arrays).
enum ChannelStatisticsPacking {
    /// The channels every part has.
    ///
    /// - Throws: ``NormError`` for no parts, or parts with different channels.
    static func commonChannels(_ channels: [Int]) throws(NormError) -> Int {
        guard let first = channels.first else {
            throw .invalidArgument(argument: "parts", reason: "there is nothing to merge")
        }
        if let index = channels.firstIndex(where: { $0 != first }) {
            throw .shapeMismatch(argument: "parts[\(index)]", expected: [first], actual: [channels[index]])
        }
        return first
    }

    /// Checks a count and the lengths of the two per-channel arrays.
    static func check(count: Int, _ first: Int, _ second: Int, second name: String) throws(NormError) {
        guard count >= 0 else {
            throw .invalidArgument(argument: "count", reason: "must not be negative, got \(count)")
        }
        guard first == second else { throw .shapeMismatch(argument: name, expected: [first], actual: [second]) }
    }

    /// `packed`'s count and two arrays of `channels` each.
    static func unpack(_ packed: [Double], channels: Int) throws(NormError) -> (Int, [Double], [Double]) {
        guard packed.count == 1 + 2 * channels else {
            throw .shapeMismatch(argument: "packed", expected: [1 + 2 * channels], actual: [packed.count])
        }
        let count = packed[0]
        guard count >= 0, count == count.rounded(), count < 0x1p53 else {
            throw .invalidArgument(argument: "packed", reason: "count \(count) is not a whole non-negative number")
        }
        return (Int(count), Array(packed[1..<(1 + channels)]), Array(packed[(1 + channels)...]))
    }
}
