/// Median, minimum and spread of repeated timings.
struct TimingSummary: Sendable {
    let median: Double
    let minimum: Double
    /// The 10th and 90th percentiles (linear interpolation between the closest ranks, as
    /// numpy and the peer script compute them): the spread without the single worst and
    /// best iteration of a 20-iteration run. NaN when unknown (a peer JSON without them).
    let p10: Double
    let p90: Double
    /// How many timings (0 for figures read from a peer JSON).
    let samples: Int

    /// How wide the timings spread, p90 / p10: about 1 when every iteration took the same
    /// time; NaN when unknown.
    var spread: Double { p90 / p10 }

    /// Whether the spread says other load took the cores during these timings: p90 is more
    /// than ``busySpread`` times p10 *and* more than ``busyMilliseconds`` above it.
    ///
    /// With 2 cores a competing process shows as whole scheduler time slices (milliseconds)
    /// added to some iterations — a 9.4 ms PyTorch case once measured 31 ms — so the
    /// ratio catches long cases and the absolute gap keeps sub-millisecond cases, whose
    /// launch jitter alone can exceed a ratio of 1.5, from warning on an idle machine.
    var looksBusy: Bool { spread > Self.busySpread && p90 - p10 > Self.busyMilliseconds }

    static let busySpread = 1.5
    static let busyMilliseconds = 1.0
    /// ``looksBusy``'s rule in words, for the report and the JSON.
    static let busyRule = "p90/p10 > \(busySpread) and p90 - p10 > \(busyMilliseconds) ms"
}

extension TimingSummary {
    init(_ values: [Double]) {
        let sorted = values.sorted()
        func percentile(_ fraction: Double) -> Double {
            guard !sorted.isEmpty else { return .nan }
            let position = fraction * Double(sorted.count - 1)
            let low = Int(position), high = min(Int(position) + 1, sorted.count - 1)
            return sorted[low] + (sorted[high] - sorted[low]) * (position - Double(low))
        }
        self.init(
            median: percentile(0.5), minimum: sorted.first ?? .nan, p10: percentile(0.1), p90: percentile(0.9),
            samples: sorted.count)
    }
}

extension Duration {
    /// The duration in milliseconds.
    var milliseconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) * 1e3 + Double(attoseconds) * 1e-15
    }
}
