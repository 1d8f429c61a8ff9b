import Glibc
import NormCL

/// A 64-bit linear congruential generator (Knuth's MMIX constants): every rank draws the
/// same numbers from the same seed, so every rank builds the same whole batch.
struct LCG {
    private var state: UInt64

    init(seed: UInt64) { state = seed &* 0x9E37_79B9_7F4A_7C15 &+ 1 }

    mutating func next() -> UInt64 {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return state
    }

    /// Uniform in [0, 1), from the high 53 bits.
    mutating func uniform() -> Double { Double(next() >> 11) * 0x1p-53 }

    /// A standard normal sample (Box–Muller).
    mutating func normal() -> Double {
        let u1 = max(uniform(), 0x1p-53)
        let u2 = uniform()
        return (-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2)
    }
}

/// One configuration of the check: the whole batch's shape, layout and storage, and the
/// data's offset (1e4 for the large-mean case).
struct Case {
    let name: String
    let batch: Int
    let channels: Int
    let spatial: [Int]
    let layout: TensorLayout
    let elementType: ElementType
    let offset: Double
    let seed: UInt64

    var shape: [Int] { [batch, channels] + spatial }
    var spatialCount: Int { spatial.reduce(1, *) }
    /// Elements per sample: a rank's slice of the batch is a contiguous run of samples in
    /// both layouts (N is outermost in NCHW and in NHWC).
    var perSample: Int { channels * spatialCount }

    /// The channel of the element at memory offset `index`.
    func channel(ofIndex index: Int) -> Int {
        switch layout {
        case .channelsFirst: (index / spatialCount) % channels
        case .channelsLast: index % channels
        }
    }

    func partShape(_ samples: Int) -> [Int] { [samples, channels] + spatial }
}

/// A case's whole-batch data on the host, in memory order for its layout, rounded to its
/// storage type (so the host values are exactly what the tensors hold).
struct Problem {
    let x: [Float]
    let dy: [Float]
    let weight: [Float]
    let bias: [Float]
    let runningMean: [Float]
    let runningVariance: [Float]

    init(_ c: Case) {
        var random = LCG(seed: c.seed)
        let count = c.batch * c.perSample
        // Per channel: its own shift and spread, so that a channel mix-up shows.
        let shift = (0..<c.channels).map { _ in random.normal() }
        let spread = (0..<c.channels).map { _ in 0.5 + random.uniform() }
        x = (0..<count).map { i in
            let ch = c.channel(ofIndex: i)
            return c.elementType.rounded(Float(c.offset + shift[ch] + spread[ch] * random.normal()))
        }
        dy = (0..<count).map { _ in c.elementType.rounded(Float(random.normal())) }
        weight = (0..<c.channels).map { _ in Float(1 + 0.25 * random.normal()) }
        bias = (0..<c.channels).map { _ in Float(0.1 * random.normal()) }
        runningMean = (0..<c.channels).map { _ in Float(0.1 * random.normal()) }
        runningVariance = (0..<c.channels).map { _ in Float(0.5 + random.uniform()) }
    }

    /// The samples `range` of a whole-batch array `values`.
    static func slice(_ values: [Float], _ range: Range<Int>, _ c: Case) -> [Float] {
        Array(values[(range.lowerBound * c.perSample)..<(range.upperBound * c.perSample)])
    }
}

/// Each rank's samples of a batch of `batch`: uneven, and with three or more ranks rank 1
/// gets none. Weights 1, 2, 3, … by rank (rank 1's 0 from three ranks on), rounded down,
/// the rest to rank 0: N = 7 splits 3/4 over two ranks, 2/0/5 over three.
func split(batch: Int, ranks: Int) -> [Range<Int>] {
    let weights = (0..<ranks).map { ranks >= 3 && $0 == 1 ? 0 : $0 + 1 }
    let total = weights.reduce(0, +)
    var counts = weights.map { batch * $0 / total }
    counts[0] += batch - counts.reduce(0, +)
    var start = 0
    return counts.map { n in
        defer { start += n }
        return start..<(start + n)
    }
}
