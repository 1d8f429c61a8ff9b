/// BatchNorm's backward pass on the CPU: float64 accumulation, the formulas of
/// docs/SEMANTICS.md taken literally, from the statistics the forward pass saved (never
/// recomputed from x).
///
/// The core, ``backward(dy:x:index:weight:mean:invstd:renorm:mode:mask:)``, takes
/// `[Double]` so that the tests can check it against a float64 forward's numerical
/// gradient; ``backward(_:dy:x:weight:mean:second:renormR:renormD:eps:)`` is what
/// ``Backend/reference`` runs.
extension ReferenceBatchNorm {
    /// Which forward pass the gradients are of.
    enum BackwardMode {
        /// Batch statistics: `mean` and `invstd` are the saved batch statistics, which
        /// depend on x (the `−Σdy` and `−x̂·Σdy·x̂` terms of dx).
        case training
        /// Running statistics: `mean` and `invstd` are constants, dx is `dy·γ·invstd`.
        case inference
    }

    /// The three gradients in float64; each nil when the mask left it out.
    struct BackwardResult {
        var gradInput: [Double]?
        var gradWeight: [Double]?
        var gradBias: [Double]?
    }

    /// BatchNorm backward per channel `c`, with `x̂ = (x − mean_c)·invstd_c` over the
    /// `n = N·M` values of the channel and `(r_c, d_c)` Batch Renorm's constants
    /// (`r = 1`, `d = 0` without `renorm`):
    ///
    ///     dβ_c = Σ dy                   dγ_c = Σ dy·(x̂·r_c + d_c) = r_c·Σ dy·x̂ + d_c·Σ dy
    ///     training:  dx = γ_c·r_c·invstd_c/n · (n·dy − Σ dy − x̂·Σ dy·x̂)
    ///     inference: dx = dy·γ_c·invstd_c
    ///
    /// (Training: `y = γ·(x̂·r + d) + β` with x̂ a function of x through the batch mean
    /// and variance, r and d held constant.)
    static func backward(
        dy: [Double], x: [Double], index: Indexing, weight: [Double]?, mean: [Double], invstd: [Double],
        renorm: (r: [Double], d: [Double])? = nil, mode: BackwardMode, mask: NormGradientMask
    ) -> BackwardResult {
        let (sumDy, sumDyCentered) = channelSums(dy: dy, x: x, index: index, mean: mean)
        return backward(
            dy: dy, x: x, index: index, weight: weight, mean: mean, invstd: invstd, sumDy: sumDy,
            sumDyXhat: zip(sumDyCentered, invstd).map { $0 * $1 }, count: index.batch * index.spatial, renorm: renorm,
            mode: mode, mask: mask)
    }

    /// Per channel `Σ dy` and `Σ dy·(x − mean_c)` over the channel's values in `x`.
    static func channelSums(
        dy: [Double], x: [Double], index: Indexing, mean: [Double]
    ) -> (sumDy: [Double], sumDyCentered: [Double]) {
        var sumDy = [Double](repeating: 0, count: index.channels)
        var sumDyCentered = sumDy
        for b in 0..<index.batch {
            for c in 0..<index.channels {
                for m in 0..<index.spatial {
                    let i = index(b, c, m)
                    sumDy[c] += dy[i]
                    sumDyCentered[c] += dy[i] * (x[i] - mean[c])
                }
            }
        }
        return (sumDy, sumDyCentered)
    }

    /// Per channel `Σ g` and `Σ g·(x − mean_c)` over one part of a synchronized batch
    /// (``BatchNormBackwardProblem``'s input), with `g = dy·f′(a)` taken through the
    /// problem's epilogue (``epilogueGradient(dy:x:index:weight:bias:mean:invstd:renorm:activation:addend:)``;
    /// `invstd`, `weight`, `bias` and `addend` are read only with an activation).
    static func channelSums(
        _ problem: BatchNormBackwardProblem, dy: [Float], x: [Float], weight: [Float]?, bias: [Float]?,
        mean: [Float], invstd: [Float], addend: [Float]?
    ) -> (sumDy: [Double], sumDyCentered: [Double]) {
        let index = Indexing(problem, layout: problem.layout)
        let xs = x.map(Double.init), means = mean.map(Double.init)
        let g = epilogueGradient(
            dy: dy.map(Double.init), x: xs, index: index, weight: weight?.map(Double.init),
            bias: bias?.map(Double.init), mean: means, invstd: invstd.map(Double.init), activation: problem.activation,
            addend: addend?.map(Double.init))
        return channelSums(dy: g, x: xs, index: index, mean: means)
    }

    /// The gradients from the per-channel sums `Σ dy` and `Σ dy·x̂` over `count` values
    /// per channel: those of `x` itself, or of a whole batch of which `x` is a part
    /// (synchronized BatchNorm), with the formulas above.
    static func backward(
        dy: [Double], x: [Double], index: Indexing, weight: [Double]?, mean: [Double], invstd: [Double],
        sumDy: [Double], sumDyXhat: [Double], count: Int, renorm: (r: [Double], d: [Double])? = nil,
        mode: BackwardMode, mask: NormGradientMask
    ) -> BackwardResult {
        let channels = index.channels
        let n = Double(count)
        let r = renorm?.r ?? [Double](repeating: 1, count: channels)
        let d = renorm?.d ?? [Double](repeating: 0, count: channels)
        var result = BackwardResult()
        if mask.contains(.bias) { result.gradBias = sumDy }
        // d·Σdy only where d ≠ 0 (Batch Renorm): 0·Inf would turn an infinite Σdy's dγ into NaN.
        if mask.contains(.weight) {
            result.gradWeight = (0..<channels).map { c -> Double in
                let shift: Double = d[c] == 0 ? 0 : d[c] * sumDy[c]
                return r[c] * sumDyXhat[c] + shift
            }
        }
        if mask.contains(.input) {
            var dx = [Double](repeating: 0, count: dy.count)
            for b in 0..<index.batch {
                for c in 0..<channels {
                    let scale = (weight?[c] ?? 1) * r[c] * invstd[c]
                    for m in 0..<index.spatial {
                        let i = index(b, c, m)
                        switch mode {
                        case .inference:
                            dx[i] = dy[i] * scale
                        case .training:
                            let xhat = (x[i] - mean[c]) * invstd[c]
                            dx[i] = scale / n * (n * dy[i] - sumDy[c] - xhat * sumDyXhat[c])
                        }
                    }
                }
            }
            result.gradInput = dx
        }
        return result
    }

    /// The gradient at the norm's output of a fused forward `y = f(a)`, `a = BN(x) + z`:
    /// `g = dy·f′(a)`, with the activation's input recomputed in float64 from x, the
    /// statistics, γ and β, as the kernels recompute it (never read back from a stored,
    /// rounded output):
    ///
    ///     a = ((x − mean_c)·invstd_c·r_c + d_c)·γ_c + β_c + z
    ///
    /// (`r = 1`, `d = 0` without `renorm`; `z = 0` without an addend). `g` is also the
    /// addend's gradient dz, and the dy of BatchNorm's own backward
    /// (``backward(dy:x:index:weight:mean:invstd:renorm:mode:mask:)``). dy itself without
    /// an activation.
    static func epilogueGradient(
        dy: [Double], x: [Double], index: Indexing, weight: [Double]?, bias: [Double]?, mean: [Double],
        invstd: [Double], renorm: (r: [Double], d: [Double])? = nil, activation: Activation, addend: [Double]?
    ) -> [Double] {
        guard activation != .none else { return dy }
        var g = dy
        for b in 0..<index.batch {
            for c in 0..<index.channels {
                let gamma = weight?[c] ?? 1, beta = bias?[c] ?? 0
                let r = renorm?.r[c] ?? 1, d = renorm?.d[c] ?? 0
                for m in 0..<index.spatial {
                    let i = index(b, c, m)
                    let a = ((x[i] - mean[c]) * invstd[c] * r + d) * gamma + beta + (addend?[i] ?? 0)
                    g[i] = activation.gradient(dy[i], at: a)
                }
            }
        }
        return g
    }

    /// The backward pass of ``BatchNormBackwardProblem`` on host values (half storage
    /// holds exactly the half values): `second` is the saved invstd in training and
    /// the running variance in inference (`invstd = 1/sqrt(running_var + eps)`). With a
    /// fused epilogue (the problem's activation, `bias` and `addend`), the unfused
    /// sequence's backward: the activation's gradient
    /// (``epilogueGradient(dy:x:index:weight:bias:mean:invstd:renorm:activation:addend:)``),
    /// which is dz, then BatchNorm's backward of it. With `given` (training: one part of a
    /// synchronized batch), BatchNorm's backward takes the whole batch's sums of g
    /// instead of the part's own. Returns Floats, dx and dz rounded once.
    static func backward(
        _ problem: BatchNormBackwardProblem, dy: [Float], x: [Float], weight: [Float]?, bias: [Float]? = nil,
        mean: [Float], second: [Float], renormR: [Float]?, renormD: [Float]?, eps: Float, addend: [Float]? = nil,
        given: BatchNormGradientSums? = nil
    ) -> (gradInput: [Float]?, gradWeight: [Float]?, gradBias: [Float]?, gradAddend: [Float]?) {
        let index = Indexing(problem, layout: problem.layout)
        let invstd: [Double] =
            problem.mode == .inference
            ? second.map { 1 / (Double($0) + Double(eps)).squareRoot() } : second.map(Double.init)
        var renorm: (r: [Double], d: [Double])? = nil
        if let renormR, let renormD { renorm = (renormR.map(Double.init), renormD.map(Double.init)) }
        let xs = x.map(Double.init), weights = weight?.map(Double.init), means = mean.map(Double.init)
        let g = epilogueGradient(
            dy: dy.map(Double.init), x: xs, index: index, weight: weights, bias: bias?.map(Double.init), mean: means,
            invstd: invstd, renorm: renorm, activation: problem.activation, addend: addend?.map(Double.init))
        let mode: BackwardMode = problem.mode == .inference ? .inference : .training
        let result =
            if let given {
                backward(
                    dy: g, x: xs, index: index, weight: weights, mean: means, invstd: invstd, sumDy: given.sumGradOutput,
                    sumDyXhat: zip(given.sumGradOutputCentered, invstd).map { $0 * $1 }, count: given.count,
                    renorm: renorm, mode: mode, mask: problem.outputMask)
            } else {
                backward(
                    dy: g, x: xs, index: index, weight: weights, mean: means, invstd: invstd, renorm: renorm, mode: mode,
                    mask: problem.outputMask)
            }
        return (
            result.gradInput?.map(Float.init), result.gradWeight?.map(Float.init), result.gradBias?.map(Float.init),
            problem.outputMask.contains(.addend) ? g.map(Float.init) : nil
        )
    }
}
