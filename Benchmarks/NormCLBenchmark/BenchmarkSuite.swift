extension BenchmarkCase {
    /// Every op's cases (each op's list lives in `Cases/<Op>Cases.swift`).
    static func suite(quick: Bool) -> [BenchmarkCase] {
        batchNormCases(quick: quick) + layerNormCases(quick: quick) + groupNormCases(quick: quick)
            + switchableNormCases(quick: quick)
    }
}
