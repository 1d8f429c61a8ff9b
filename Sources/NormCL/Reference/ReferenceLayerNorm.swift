/// LayerNorm on the CPU, written for clarity: float64 accumulation, two passes over
/// each row, the formulas of docs/SEMANTICS.md taken literally.
///
/// Row `r` of the `(rows, D)` view is elements `r·D ..< (r + 1)·D`.
enum ReferenceLayerNorm {
    struct Result {
        var output: [Float]
        var saveMean: [Float]
        var saveInvstd: [Float]
    }

    /// `mean_r = Σx/D`, `var_r = Σ(x − mean_r)²/D`,
    /// `y = (x − mean_r)/sqrt(var_r + eps)·γ + β`, rounded to Float once.
    static func forward(rows: Int, rowLength: Int, x: [Float], weight: [Float]?, bias: [Float]?, eps: Double) -> Result {
        var output = [Float](repeating: 0, count: x.count)
        var saveMean = [Float](repeating: 0, count: rows)
        var saveInvstd = [Float](repeating: 0, count: rows)
        let d = Double(rowLength)
        for r in 0..<rows {
            let base = r * rowLength
            var sum = 0.0
            for j in 0..<rowLength { sum += Double(x[base + j]) }
            let mean = sum / d
            var squares = 0.0
            for j in 0..<rowLength {
                let deviation = Double(x[base + j]) - mean
                squares += deviation * deviation
            }
            let invstd = 1 / (squares / d + eps).squareRoot()
            for j in 0..<rowLength {
                let gamma = weight.map { Double($0[j]) } ?? 1
                let beta = bias.map { Double($0[j]) } ?? 0
                output[base + j] = Float((Double(x[base + j]) - mean) * invstd * gamma + beta)
            }
            saveMean[r] = Float(mean)
            saveInvstd[r] = Float(invstd)
        }
        return Result(output: output, saveMean: saveMean, saveInvstd: saveInvstd)
    }
}
