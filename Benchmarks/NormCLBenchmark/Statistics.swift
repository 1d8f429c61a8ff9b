/// Median and minimum of repeated timings.
struct TimingSummary: Sendable {
    let median: Double
    let minimum: Double
    let samples: Int

    init(_ values: [Double]) {
        let sorted = values.sorted()
        samples = sorted.count
        minimum = sorted.first ?? .nan
        median =
            sorted.isEmpty ? .nan
            : sorted.count % 2 == 1 ? sorted[sorted.count / 2]
            : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    }
}

extension Duration {
    /// The duration in milliseconds.
    var milliseconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) * 1e3 + Double(attoseconds) * 1e-15
    }
}
