/// RMSNorm on the CPU, written for clarity: float64 accumulation, the formula of
/// docs/SEMANTICS.md taken literally.
///
/// Row `r` of the `(rows, D)` view is elements `r·D ..< (r + 1)·D`.
enum ReferenceRMSNorm {
    struct Result {
        var output: [Float]
        var saveInvRms: [Float]
    }

    /// `rstd_r = 1/sqrt(Σx²/D + eps)`, `y = x·rstd_r·γ + β`, rounded to Float once
    /// (`bias` nil: β = 0, plain RMSNorm).
    static func forward(
        rows: Int, rowLength: Int, x: [Float], weight: [Float]?, bias: [Float]? = nil, eps: Double
    ) -> Result {
        var output = [Float](repeating: 0, count: x.count)
        var saveInvRms = [Float](repeating: 0, count: rows)
        for r in 0..<rows {
            let base = r * rowLength
            var squares = 0.0
            for j in 0..<rowLength { squares += Double(x[base + j]) * Double(x[base + j]) }
            let rstd = 1 / (squares / Double(rowLength) + eps).squareRoot()
            for j in 0..<rowLength {
                let gamma = weight.map { Double($0[j]) } ?? 1
                let beta = bias.map { Double($0[j]) } ?? 0
                output[base + j] = Float(Double(x[base + j]) * rstd * gamma + beta)
            }
            saveInvRms[r] = Float(rstd)
        }
        return Result(output: output, saveInvRms: saveInvRms)
    }
}
