/// GroupNorm and InstanceNorm backward on the CPU, written for clarity: float64
/// throughout, the formulas of docs/SEMANTICS.md taken literally. Works on `[Double]` so the
/// tests can gradient-check it against central differences of a float64 forward.
extension ReferenceGroupNorm {
    struct Gradients {
        var input: [Double]?
        var weight: [Double]?
        var bias: [Double]?
    }

    /// Backward through statistics computed from the input, per (n, g) row of
    /// `K = (C/G)·M` values, `x̂ = (x − mean)·invstd`, `g = dy·γ_c`:
    ///
    ///     dx  = invstd/K · (K·g − Σ_row g − x̂·Σ_row g·x̂)
    ///     dγ_c = Σ_{n,m} dy·x̂        dβ_c = Σ_{n,m} dy
    ///
    /// With the problem's fused activation f, `y = f(a)`, `a = x̂·γ_c + β_c`, the backward is
    /// the unfused sequence: `dy ← dy·f′(a)` at `a` recomputed from x, the statistics, γ
    /// and β (``activationGradient(_:_:input:weight:bias:statistics:)``), then the above.
    ///
    /// - Parameters:
    ///   - dy, x: in the memory order of `problem.layout`.
    ///   - weight: γ, or nil for γ = 1.
    ///   - bias: β, or nil for β = 0 (read only with an activation).
    ///   - mean, invstd: the statistics the forward pass normalised with, per row
    ///     `r = n·G + g` (the saved ones, so the gradient is that of the computed output).
    static func backward(
        _ problem: GroupNormProblem, gradOutput: [Double], input x: [Double], weight: [Double]?, bias: [Double]? = nil,
        mean: [Double], invstd: [Double], mask: NormGradientMask
    ) -> Gradients {
        let perGroup = problem.channelsPerGroup
        let dy = activationGradient(problem, gradOutput, input: x, weight: weight, bias: bias) { n, c in
            let r = n * problem.groups + c / perGroup
            return (mean[r], invstd[r])
        }
        let index = indexing(problem)
        let count = Double(problem.valuesPerRow)
        var result = Gradients()
        if mask.contains(.input) {
            var dx = [Double](repeating: 0, count: x.count)
            for n in 0..<problem.batch {
                for group in 0..<problem.groups {
                    let r = n * problem.groups + group
                    let channels = (group * perGroup)..<((group + 1) * perGroup)
                    var sumG = 0.0
                    var sumGXhat = 0.0
                    for c in channels {
                        let gamma = weight?[c] ?? 1
                        for m in 0..<problem.spatial {
                            let i = index(n, c, m)
                            let g = dy[i] * gamma
                            sumG += g
                            sumGXhat += g * (x[i] - mean[r]) * invstd[r]
                        }
                    }
                    for c in channels {
                        let gamma = weight?[c] ?? 1
                        for m in 0..<problem.spatial {
                            let i = index(n, c, m)
                            let xhat = (x[i] - mean[r]) * invstd[r]
                            dx[i] = invstd[r] / count * (count * dy[i] * gamma - sumG - xhat * sumGXhat)
                        }
                    }
                }
            }
            result.input = dx
        }
        let (dWeight, dBias) = parameterGradients(problem, dy: dy, x: x, mask: mask) { n, c in
            let r = n * problem.groups + c / perGroup
            return (mean[r], invstd[r])
        }
        result.weight = dWeight
        result.bias = dBias
        return result
    }

    /// Backward with per-channel statistics that are constants (InstanceNorm in
    /// inference mode, normalising with the running statistics):
    ///
    ///     dx = dy·γ_c·invstd_c      dγ_c = Σ_{n,m} dy·(x − mean_c)·invstd_c      dβ_c = Σ_{n,m} dy
    ///
    /// - Parameters:
    ///   - mean, invstd: per channel, `invstd_c = 1/sqrt(running_var_c + eps)`.
    static func backwardWithConstantStatistics(
        _ problem: GroupNormProblem, gradOutput dy: [Double], input x: [Double], weight: [Double]?,
        mean: [Double], invstd: [Double], mask: NormGradientMask
    ) -> Gradients {
        let index = indexing(problem)
        var result = Gradients()
        if mask.contains(.input) {
            var dx = [Double](repeating: 0, count: x.count)
            for n in 0..<problem.batch {
                for c in 0..<problem.channels {
                    let scale = (weight?[c] ?? 1) * invstd[c]
                    for m in 0..<problem.spatial {
                        let i = index(n, c, m)
                        dx[i] = dy[i] * scale
                    }
                }
            }
            result.input = dx
        }
        let (dWeight, dBias) = parameterGradients(problem, dy: dy, x: x, mask: mask) { _, c in (mean[c], invstd[c]) }
        result.weight = dWeight
        result.bias = dBias
        return result
    }

    /// The gradient at GroupNorm's output from `dy` at the fused activation's: `dy·f′(a)`
    /// with `a = (x − mean(n, c))·invstd(n, c)·γ_c + β_c` in float64 (never rounded to
    /// storage: the kernels recompute it in registers too); `dy` without an activation.
    static func activationGradient(
        _ problem: GroupNormProblem, _ dy: [Double], input x: [Double], weight: [Double]?, bias: [Double]?,
        statistics: (_ n: Int, _ c: Int) -> (mean: Double, invstd: Double)
    ) -> [Double] {
        let f = problem.activation
        guard f != .none else { return dy }
        let index = indexing(problem)
        var g = dy
        for n in 0..<problem.batch {
            for c in 0..<problem.channels {
                let (mean, invstd) = statistics(n, c)
                let gamma = weight?[c] ?? 1, beta = bias?[c] ?? 0
                for m in 0..<problem.spatial {
                    let i = index(n, c, m)
                    g[i] = f.gradient(dy[i], at: (x[i] - mean) * invstd * gamma + beta)
                }
            }
        }
        return g
    }

    /// `dγ_c = Σ_{n,m} dy·(x − mean(n, c))·invstd(n, c)` and `dβ_c = Σ_{n,m} dy`, each
    /// when the mask asks for it.
    private static func parameterGradients(
        _ problem: GroupNormProblem, dy: [Double], x: [Double], mask: NormGradientMask,
        statistics: (_ n: Int, _ c: Int) -> (mean: Double, invstd: Double)
    ) -> (weight: [Double]?, bias: [Double]?) {
        guard mask.contains(.weight) || mask.contains(.bias) else { return (nil, nil) }
        let index = indexing(problem)
        var dWeight = [Double](repeating: 0, count: problem.channels)
        var dBias = [Double](repeating: 0, count: problem.channels)
        for n in 0..<problem.batch {
            for c in 0..<problem.channels {
                let (mean, invstd) = statistics(n, c)
                for m in 0..<problem.spatial {
                    let i = index(n, c, m)
                    dWeight[c] += dy[i] * (x[i] - mean) * invstd
                    dBias[c] += dy[i]
                }
            }
        }
        return (mask.contains(.weight) ? dWeight : nil, mask.contains(.bias) ? dBias : nil)
    }
}

extension ReferenceGroupNorm.Gradients {
    /// The gradients as reference-backend tensors: dx with the input's shape, layout
    /// and element type (rounded as a device store would round it), dγ and dβ float32 `[C]`.
    func tensors(for problem: GroupNormProblem) throws -> NormGradients {
        NormGradients(
            input: input.map {
                Tensor(
                    referenceValues: $0.map(Float.init), shape: problem.shape, layout: problem.layout,
                    elementType: problem.elementType)
            },
            weight: try weight.map { try Tensor($0.map(Float.init), on: .reference) },
            bias: try bias.map { try Tensor($0.map(Float.init), on: .reference) },
            events: [])
    }
}
