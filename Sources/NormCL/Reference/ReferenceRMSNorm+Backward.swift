extension ReferenceRMSNorm {
    /// The gradients of one RMSNorm backward pass, in float64 (RMSNorm has no β).
    struct Gradients {
        /// dx, the input's length.
        var input: [Double]
        /// dγ = Σ_rows dy·x̂, length D.
        var weight: [Double]
    }

    /// RMSNorm backward with the saved `rstd`, float64 throughout (the core the tests
    /// gradient-check). With `r = rstd_row = 1/sqrt(Σx²/D + eps)`:
    ///
    ///     x̂ = x·r      g = dy·γ
    ///     dx = r · (g − x̂ · Σ_row(g·x̂)/D)
    ///     dγ = Σ_rows dy·x̂
    ///
    /// (∂r/∂x_j = −r³·x_j/D gives the second term: the derivative through the
    /// statistic). `weight` nil means γ ≡ 1.
    static func backward(
        rows: Int, rowLength: Int, x: [Double], gradOutput dy: [Double], weight: [Double]?, invRms: [Double]
    ) -> Gradients {
        let d = Double(rowLength)
        var dx = [Double](repeating: 0, count: x.count)
        var dWeight = [Double](repeating: 0, count: rowLength)
        for r in 0..<rows {
            let base = r * rowLength
            var sumGXhat = 0.0
            for j in 0..<rowLength {
                let xhat = x[base + j] * invRms[r]
                sumGXhat += dy[base + j] * (weight?[j] ?? 1) * xhat
                dWeight[j] += dy[base + j] * xhat
            }
            for j in 0..<rowLength {
                let xhat = x[base + j] * invRms[r]
                let g = dy[base + j] * (weight?[j] ?? 1)
                dx[base + j] = invRms[r] * (g - xhat * sumGXhat / d)
            }
        }
        return Gradients(input: dx, weight: dWeight)
    }

    /// ``backward(rows:rowLength:x:gradOutput:weight:invRms:)`` on float32 values (the
    /// saved `rstd` as the forward stored it), each result rounded to Float once.
    static func backward(
        rows: Int, rowLength: Int, x: [Float], gradOutput: [Float], weight: [Float]?, invRms: [Float]
    ) -> (input: [Float], weight: [Float]) {
        let result = backward(
            rows: rows, rowLength: rowLength, x: x.map(Double.init), gradOutput: gradOutput.map(Double.init),
            weight: weight?.map(Double.init), invRms: invRms.map(Double.init))
        return (result.input.map(Float.init), result.weight.map(Float.init))
    }
}
