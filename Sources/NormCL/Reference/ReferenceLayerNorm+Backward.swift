extension ReferenceLayerNorm {
    /// The gradients of one LayerNorm backward pass, in float64.
    struct Gradients {
        /// dx, the input's length.
        var input: [Double]
        /// dγ = Σ_rows dy·x̂, length D.
        var weight: [Double]
        /// dβ = Σ_rows dy, length D.
        var bias: [Double]
    }

    /// LayerNorm backward with the saved statistics, the formulas of docs/SEMANTICS.md taken
    /// literally, float64 throughout (the core the tests gradient-check):
    ///
    ///     x̂ = (x − mean_r)·invstd_r      g = dy·γ
    ///     dx = invstd_r/D · (D·g − Σ_row g − x̂·Σ_row g·x̂)
    ///     dγ = Σ_rows dy·x̂               dβ = Σ_rows dy
    ///
    /// `mean` and `invstd` are the forward's per-row statistics; because the forward's
    /// statistics are functions of x, this dx is the full derivative through them.
    /// `weight` nil means γ ≡ 1.
    static func backward(
        rows: Int, rowLength: Int, x: [Double], gradOutput dy: [Double], weight: [Double]?, mean: [Double],
        invstd: [Double]
    ) -> Gradients {
        let d = Double(rowLength)
        var dx = [Double](repeating: 0, count: x.count)
        var dWeight = [Double](repeating: 0, count: rowLength)
        var dBias = [Double](repeating: 0, count: rowLength)
        for r in 0..<rows {
            let base = r * rowLength
            var sumG = 0.0, sumGXhat = 0.0
            for j in 0..<rowLength {
                let xhat = (x[base + j] - mean[r]) * invstd[r]
                let g = dy[base + j] * (weight?[j] ?? 1)
                sumG += g
                sumGXhat += g * xhat
                dWeight[j] += dy[base + j] * xhat
                dBias[j] += dy[base + j]
            }
            for j in 0..<rowLength {
                let xhat = (x[base + j] - mean[r]) * invstd[r]
                let g = dy[base + j] * (weight?[j] ?? 1)
                dx[base + j] = invstd[r] / d * (d * g - sumG - xhat * sumGXhat)
            }
        }
        return Gradients(input: dx, weight: dWeight, bias: dBias)
    }

    /// ``backward(rows:rowLength:x:gradOutput:weight:mean:invstd:)`` on float32 values
    /// (the saved statistics as the forward stored them), each result rounded to Float once.
    static func backward(
        rows: Int, rowLength: Int, x: [Float], gradOutput: [Float], weight: [Float]?, mean: [Float], invstd: [Float]
    ) -> (input: [Float], weight: [Float], bias: [Float]) {
        let result = backward(
            rows: rows, rowLength: rowLength, x: x.map(Double.init), gradOutput: gradOutput.map(Double.init),
            weight: weight?.map(Double.init), mean: mean.map(Double.init), invstd: invstd.map(Double.init))
        return (result.input.map(Float.init), result.weight.map(Float.init), result.bias.map(Float.init))
    }
}
