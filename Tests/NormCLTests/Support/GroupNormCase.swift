import Testing

/// A GroupNorm problem for the parameterised suites: the input shape and G.
struct GroupNormCase: Sendable, CustomTestStringConvertible {
    var shape: [Int]
    var groups: Int
    var testDescription: String { "\(shape) G=\(groups)" }

    /// The awkward sizes both the forward and the backward sweep run (each suite adds
    /// its own on top).
    static let sweep: [GroupNormCase] = [
        GroupNormCase(shape: [2, 6, 5, 7], groups: 3),  // odd spatial, scalar loads
        GroupNormCase(shape: [3, 4, 9], groups: 2),  // one spatial dim
        GroupNormCase(shape: [4, 8], groups: 4),  // (N, C): M = 1
        GroupNormCase(shape: [5, 8], groups: 8),  // (N, C), one value per group: y = β, dx = 0
        GroupNormCase(shape: [2, 12, 17, 19], groups: 4),  // primes
        GroupNormCase(shape: [1, 4, 4099], groups: 1),  // long prime reduction, one row
        GroupNormCase(shape: [2, 3, 2, 3, 5], groups: 3),  // 3-d spatial, C/G = 1
        GroupNormCase(shape: [2, 24, 6, 6], groups: 8),  // 3 channels per group: column vectors straddle groups
        GroupNormCase(shape: [2, 68, 5, 5], groups: 17),  // several column tiles, a narrower last one
        GroupNormCase(shape: [1, 1, 1, 1], groups: 1),  // one element
    ]
}
