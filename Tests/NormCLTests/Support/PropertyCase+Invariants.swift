import Testing
@testable import NormCL

/// Invariants of the reference path that hold whatever the shape, checked for every
/// property case (they are the whole property on machines without OpenCL).
///
/// Forward, with γ = 1 and β = 0, per statistic group of K values with biased variance
/// v (float64, from the values the op reads): `Σ y = 0` and `Σ y² = K·v/(v + eps)`
/// (RMSNorm: `Σ y² = K·ms/(ms + eps)`, no mean removed). Backward in training, per
/// group: `Σ dx = 0` (the mean's gradient removes it) for BatchNorm, Batch Renorm,
/// LayerNorm, GroupNorm and InstanceNorm; RMSNorm:
/// `Σ dx·x = eps/(ms + eps)·Σ g·x̂` with `g = dy·γ`, `x̂ = x·rstd`. Where no group invariant
/// applies (inference modes, running statistics, Switchable Norm's mixed groups),
/// every output is finite for finite input.
///
/// Tolerances: the reference rounds each float64 result once to the storage type, so a
/// sum of K outputs moves by at most `u·Σ|·|` (u = 2^-24, half 2^-11); twice that,
/// plus, backward, `1e-6` of the terms' size `Σ invstd·|g|·(1 + x̂²)` (RMSNorm: times
/// |x|): the backward pass reads the forward's statistics rounded to float32, so `Σx̂`
/// is off zero by the mean's rounding and RMSNorm's `1 − rstd²·ms` by twice rstd's.
extension PropertyCase {
    /// The statistic group of element `i` (memory order) and the number of groups, or
    /// nil where statistics mix groups or come from running statistics.
    var statisticGroups: (count: Int, of: (Int) -> Int)? {
        let n = batch, c = shape.count > 1 ? channels : 1, m = spatial, layout = layout
        func channel(_ i: Int) -> Int { layout == .channelsFirst ? (i / m) % c : i % c }
        switch op {
        case .batchNorm(.inference), .instanceNorm(running: true), .switchableNorm: return nil
        case .batchNorm(.renorm) where !backward: return nil
        case .batchNorm: return (c, channel)
        case .layerNorm, .rmsNorm:
            let d = normalizedShape.reduce(1, *)
            return (shape.reduce(1, *) / d, { $0 / d })
        case .groupNorm(let g): return (n * g, { i in (i / (c * m)) * g + channel(i) / (c / g) })
        case .instanceNorm: return (n * c, { i in (i / (c * m)) * c + channel(i) })
        }
    }

    var unitRoundoff: Double { elementType == .float16 ? 0x1p-11 : 0x1p-24 }

    func checkInvariants() throws {
        var rng = SeededGenerator(seed: seed &+ 0x5EED)
        let count = shape.reduce(1, *)
        let input = try Tensor(rng.normals(count, offset: 0.5, scale: 2), shape: shape, layout: layout, elementType: elementType, on: .reference)
        let dy = try Tensor(rng.normals(count), shape: shape, layout: layout, elementType: elementType, on: .reference)
        let parameterShape: [Int] =
            switch op {
            case .layerNorm, .rmsNorm: normalizedShape
            default: [channels]
            }
        let weight = affine ? try Tensor(rng.normals(parameterShape.reduce(1, *), offset: 1, scale: 0.5), shape: parameterShape, on: .reference) : nil
        let x = try input.toArray().map(Double.init)
        if backward {
            let (dx, gradients) = try referenceBackward(input: input, dy: dy, weight: weight)
            for (name, values) in gradients {
                #expect(values.allSatisfy { $0.isFinite }, "\(self): reference \(name) not finite for finite input")
            }
            if let dx, let groups = statisticGroups {
                try checkGradientSums(dx: dx, x: x, dy: try dy.toArray().map(Double.init), weight: try weight?.toArray(), groups: groups)
            }
        } else {
            let y = try referenceForward(input: input).map(Double.init)
            #expect(y.allSatisfy { $0.isFinite }, "\(self): reference output not finite for finite input")
            if let groups = statisticGroups { checkNormalized(y: y, x: x, groups: groups) }
        }
    }

    /// The reference forward with γ = 1, β = 0 (running statistics where the mode needs them).
    private func referenceForward(input: Tensor) throws -> [Float] {
        let running = { RunningStatistics(mean: try! Tensor([Float](repeating: 0.3, count: channels), on: .reference), variance: try! Tensor([Float](repeating: 1.7, count: channels), on: .reference)) }
        switch op {
        case .batchNorm(let mode):
            var stats: RunningStatistics? = running()
            var limits: BatchRenormLimits? = nil
            if case .renorm(let rmax, let dmax) = mode { limits = BatchRenormLimits(rmax: rmax, dmax: dmax) }
            return try batchNorm(
                input, weight: nil, bias: nil, runningStatistics: &stats, training: mode != .inference, momentum: momentum,
                eps: eps, strategy: nil, renorm: limits
            ).output.toArray()
        case .layerNorm: return try layerNorm(input, normalizedShape: normalizedShape, eps: eps).output.toArray()
        case .rmsNorm: return try rmsNorm(input, normalizedShape: normalizedShape, eps: eps).output.toArray()
        case .groupNorm(let g): return try groupNorm(input, numGroups: g, eps: eps).output.toArray()
        case .instanceNorm(let useRunning):
            var stats: RunningStatistics? = useRunning ? running() : nil
            return try instanceNorm(input, runningStatistics: &stats, useInputStats: !useRunning, momentum: momentum, eps: eps).output.toArray()
        case .switchableNorm(let branches, let training):
            var stats: RunningStatistics? = branches.hasBatch ? running() : nil
            let logits = try Tensor([Float](repeating: 1, count: branches.count), on: .reference)
            return try switchableNorm(
                input, meanLogits: logits, varianceLogits: logits, runningStatistics: &stats, training: training,
                options: switchableOptions(branches)
            ).output.toArray()
        }
    }

    /// The reference backward after a reference forward: dx (nil if the mask leaves it
    /// out) and every gradient by name.
    private func referenceBackward(input: Tensor, dy: Tensor, weight: Tensor?) throws -> ([Float]?, [(String, [Float])]) {
        let gradients: NormGradients
        switch op {
        case .batchNorm(let mode):
            var stats: RunningStatistics? = RunningStatistics(
                mean: try Tensor([Float](repeating: 0.3, count: channels), on: .reference),
                variance: try Tensor([Float](repeating: 1.7, count: channels), on: .reference))
            switch mode {
            case .training:
                let forward = try batchNorm(input, weight: weight, eps: eps)
                gradients = try batchNormBackward(dy, input: input, weight: weight, forward: forward, outputMask: mask)
            case .inference:
                gradients = try batchNormBackward(dy, input: input, weight: weight, runningStatistics: stats!, eps: eps, outputMask: mask)
            case .renorm(let rmax, let dmax):
                let forward = try batchNorm(
                    input, weight: weight, bias: nil, runningStatistics: &stats, training: true, momentum: momentum, eps: eps,
                    strategy: nil, renorm: BatchRenormLimits(rmax: rmax, dmax: dmax))
                gradients = try batchRenormBackward(dy, input: input, weight: weight, forward: forward, outputMask: mask)
            }
        case .layerNorm:
            let forward = try layerNorm(input, normalizedShape: normalizedShape, weight: weight, eps: eps)
            gradients = try layerNormBackward(dy, input: input, normalizedShape: normalizedShape, weight: weight, forward: forward, outputMask: mask)
        case .rmsNorm:
            let forward = try rmsNorm(input, normalizedShape: normalizedShape, weight: weight, eps: eps)
            gradients = try rmsNormBackward(dy, input: input, normalizedShape: normalizedShape, weight: weight, forward: forward, outputMask: mask)
        case .groupNorm(let g):
            let forward = try groupNorm(input, numGroups: g, weight: weight, eps: eps)
            gradients = try groupNormBackward(dy, input: input, numGroups: g, weight: weight, forward: forward, outputMask: mask)
        case .instanceNorm(let useRunning):
            if useRunning {
                let stats = RunningStatistics(
                    mean: try Tensor([Float](repeating: 0.3, count: channels), on: .reference),
                    variance: try Tensor([Float](repeating: 1.7, count: channels), on: .reference))
                gradients = try instanceNormBackward(dy, input: input, weight: weight, runningStatistics: stats, eps: eps, outputMask: mask)
            } else {
                let forward = try instanceNorm(input, weight: weight, eps: eps)
                gradients = try instanceNormBackward(dy, input: input, weight: weight, forward: forward, outputMask: mask)
            }
        case .switchableNorm(let branches, let training):
            let stats: RunningStatistics? =
                branches.hasBatch
                ? RunningStatistics(
                    mean: try Tensor([Float](repeating: 0.3, count: channels), on: .reference),
                    variance: try Tensor([Float](repeating: 1.7, count: channels), on: .reference)) : nil
            var running = stats
            let logits = try Tensor([Float](repeating: 1, count: branches.count), on: .reference)
            let options = switchableOptions(branches)
            let forward = try switchableNorm(
                input, meanLogits: logits, varianceLogits: logits, weight: weight, runningStatistics: &running,
                training: training, options: options)
            let g = try switchableNormBackward(
                dy, input: input, meanLogits: logits, varianceLogits: logits, weight: weight, forward: forward,
                runningStatistics: stats, training: training, options: options, outputMask: mask)
            var named: [(String, [Float])] = [("dwμ", try g.meanLogits.toArray()), ("dwσ", try g.varianceLogits.toArray())]
            if let dx = g.input { named.append(("dx", try dx.toArray())) }
            if let dw = g.weight { named.append(("dγ", try dw.toArray())) }
            if let db = g.bias { named.append(("dβ", try db.toArray())) }
            return (try g.input?.toArray(), named)
        }
        var named: [(String, [Float])] = []
        if let dx = gradients.input { named.append(("dx", try dx.toArray())) }
        if let dw = gradients.weight { named.append(("dγ", try dw.toArray())) }
        if let db = gradients.bias { named.append(("dβ", try db.toArray())) }
        return (try gradients.input?.toArray(), named)
    }

    /// `Σ y = 0` and `Σ y² = K·v/(v + eps)` per group (RMSNorm: the second only, with ms).
    private func checkNormalized(y: [Double], x: [Double], groups: (count: Int, of: (Int) -> Int)) {
        let centred = op != .rmsNorm
        var k = [Double](repeating: 0, count: groups.count), sumX = k
        for i in x.indices {
            k[groups.of(i)] += 1
            sumX[groups.of(i)] += x[i]
        }
        var m2 = [Double](repeating: 0, count: groups.count), sumY = m2, sumAbsY = m2, sumY2 = m2
        for i in x.indices {
            let g = groups.of(i)
            let centredX = centred ? x[i] - sumX[g] / k[g] : x[i]
            m2[g] += centredX * centredX
            sumY[g] += y[i]
            sumAbsY[g] += Swift.abs(y[i])
            sumY2[g] += y[i] * y[i]
        }
        let u = unitRoundoff
        for g in 0..<groups.count {
            let v = m2[g] / k[g], eps = Double(self.eps)
            if centred, Swift.abs(sumY[g]) > 2 * u * sumAbsY[g] + 1e-9 * k[g] {
                Issue.record("\(self): group \(g) of \(Int(k[g])) values: Σy = \(sumY[g]), should be 0")
                return
            }
            let expected = k[g] * v / (v + eps)
            if Swift.abs(sumY2[g] - expected) > 4 * u * sumY2[g] + 1e-9 * k[g] {
                Issue.record("\(self): group \(g) of \(Int(k[g])) values: Σy² = \(sumY2[g]), should be K·v/(v+eps) = \(expected)")
                return
            }
        }
    }

    /// `Σ dx = 0` per group (RMSNorm: `Σ dx·x = eps/(ms + eps)·Σ g·x̂`).
    private func checkGradientSums(
        dx dxFloat: [Float], x: [Double], dy: [Double], weight: [Float]?, groups: (count: Int, of: (Int) -> Int)
    ) throws {
        let dx = dxFloat.map(Double.init)
        let n = groups.count
        let d = normalizedShape.reduce(1, *), c = shape.count > 1 ? channels : 1, m = spatial
        func gamma(_ i: Int) -> Double {
            guard let weight else { return 1 }
            switch op {
            case .layerNorm, .rmsNorm: return Double(weight[i % d])
            default: return Double(weight[layout == .channelsFirst ? (i / m) % c : i % c])
            }
        }
        var k = [Double](repeating: 0, count: n), sumX = k, sumSq = k
        for i in x.indices {
            k[groups.of(i)] += 1
            sumX[groups.of(i)] += x[i]
        }
        let centred = op != .rmsNorm
        for i in x.indices {
            let g = groups.of(i)
            let cx = centred ? x[i] - sumX[g] / k[g] : x[i]
            sumSq[g] += cx * cx
        }
        // dx is stored in the element type: a value below half its smallest spacing (half:
        // 2^-25, below the 2^-24 subnormal step) is stored as 0 whatever the arithmetic, so
        // each element may miss the sum by that much (times |x| in RMSNorm's Σdx·x).
        let storageFloor = elementType == .float16 ? 0x1p-25 : 0x1p-150
        var sum = [Double](repeating: 0, count: n), sumAbs = sum, termScale = sum, gxhat = sum, underflow = sum
        for i in x.indices {
            let g = groups.of(i)
            underflow[g] += storageFloor * (op == .rmsNorm ? Swift.abs(x[i]) : 1)
            let invstd = 1 / (sumSq[g] / k[g] + Double(eps)).squareRoot()
            let xhat = ((centred ? x[i] - sumX[g] / k[g] : x[i])) * invstd
            let grad = dy[i] * gamma(i)
            if centred {
                sum[g] += dx[i]
                sumAbs[g] += Swift.abs(dx[i])
            } else {
                sum[g] += dx[i] * x[i]
                sumAbs[g] += Swift.abs(dx[i] * x[i])
                gxhat[g] += grad * xhat
            }
            termScale[g] += invstd * Swift.abs(grad) * (1 + xhat * xhat) * (centred ? 1 : Swift.abs(x[i]))
        }
        let u = unitRoundoff
        for g in 0..<n {
            let ms = sumSq[g] / k[g], eps = Double(self.eps)
            let expected = centred ? 0 : eps / (ms + eps) * gxhat[g]
            if Swift.abs(sum[g] - expected) > 2 * u * sumAbs[g] + 1e-6 * termScale[g] + underflow[g] {
                Issue.record(
                    "\(self): group \(g) of \(Int(k[g])) values: \(centred ? "Σdx" : "Σdx·x") = \(sum[g]), should be \(expected)")
                return
            }
        }
    }
}
