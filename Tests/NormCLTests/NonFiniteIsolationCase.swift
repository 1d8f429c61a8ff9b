import Testing
@testable import NormCL

/// One op run with a single NaN or +Inf placed in its input x or its gradient dy, and
/// the isolation unit that value may legitimately reach in each output.
///
/// The units follow from which statistics each op computes:
/// - **BatchNorm, Batch Renorm (training)**: statistics per channel over N and S, so the
///   whole channel c₀ (and its dγ, dβ, running statistics); other channels are clean.
///   **Inference**: `y = x·scale_c + shift_c` per element, so only the element itself;
///   dx = dy·γ·invstd does not read x (x poisoned: no dx is affected), dγ reads x.
/// - **LayerNorm, RMSNorm**: the row r₀. dγ and dβ sum over rows, so with x poisoned
///   every column's may be affected (x̂ of the whole row is NaN); with dy poisoned only
///   column j₀'s.
/// - **GroupNorm**: the (n₀, group of c₀); dγ, dβ of that group's channels (x poisoned)
///   or of c₀ alone (dy poisoned). **InstanceNorm**: the (n₀, c₀); dγ, dβ of c₀; with
///   running statistics (inference), as BatchNorm's inference.
/// - **Switchable Norm** mixes statistics across units: per instance (n, c) the mixed
///   statistic is `Σ_k p_k·stat_k`, and IN reaches (n₀, c₀), LN the whole sample n₀,
///   BN (training) the whole channel c₀. A softmax weight is never exactly 0 for finite
///   logits, and `0·NaN` is NaN anyway, so even logits that all but switch LN and BN
///   off (the `instanceDominant` case) leave the union of the branches' units affected:
///   the unit depends on the branch set, not the logits. Backward: every instance in
///   that union has a NaN adjoint, which flows into the LN statistics of its sample and
///   (training with BN) the BN statistics of its channel, so dx may be affected on
///   those samples and channels; with IN, LN and BN in training that is all of dx.
///   dγ, dβ: the channels of the affected instances; the logit gradients sum over all
///   instances and are always affected.
struct NonFiniteIsolationCase: Sendable, CustomTestStringConvertible {
    enum Op: Sendable, CustomTestStringConvertible, CaseIterable {
        case batchNormTraining, batchNormInference, batchRenorm, layerNorm, rmsNorm, groupNorm, instanceNorm
        case instanceNormRunning
        case switchableAll, switchableAllInference, switchableInstanceLayer, switchableLayerBatch
        /// IN + LN with logits (30, −30): LN's weight ≈ 1e-26, still not zero.
        case switchableInstanceDominant

        var testDescription: String { "\(self)" }

        var isRowNorm: Bool { self == .layerNorm || self == .rmsNorm }
        var branches: SwitchableNormOptions.Branches? {
            switch self {
            case .switchableAll, .switchableAllInference: .instanceLayerBatch
            case .switchableInstanceLayer, .switchableInstanceDominant: .instanceLayer
            case .switchableLayerBatch: .layerBatch
            default: nil
            }
        }
        /// Whether statistics come from the batch (not running statistics).
        var training: Bool { self != .batchNormInference && self != .instanceNormRunning && self != .switchableAllInference }
    }

    enum Target: String, Sendable { case x, dy }

    var op: Op
    var value: Float
    var target: Target
    var backward: Bool
    var layout: TensorLayout
    var elementType: ElementType

    var testDescription: String {
        "\(op) \(backward ? "backward" : "forward") \(value) in \(target) \(layout) \(elementType)"
    }

    // The one shape: (N, C, H, W) = (3, 4, 2, 3); GroupNorm G = 2; LayerNorm/RMSNorm
    // over the trailing (2, 3): 12 rows of 6.
    static let shape = [3, 4, 2, 3]
    static let groups = 2
    static let normalizedShape = [2, 3]
    var count: Int { Self.shape.reduce(1, *) }
    var channels: Int { Self.shape[1] }
    var spatial: Int { 6 }
    var rowLength: Int { 6 }
    /// The poisoned element: n₀ = 1, c₀ = 2, m₀ = 3 (for the row norms, flat index 39:
    /// row r₀ = 6, column j₀ = 3).
    static let n0 = 1, c0 = 2, m0 = 3

    func index(n: Int, c: Int, m: Int) -> Int {
        layout == .channelsFirst ? (n * channels + c) * spatial + m : (n * spatial + m) * channels + c
    }

    func coordinates(_ i: Int) -> (n: Int, c: Int, m: Int) {
        layout == .channelsFirst
            ? (i / (channels * spatial), (i / spatial) % channels, i % spatial)
            : (i / (channels * spatial), i % channels, (i / channels) % spatial)
    }

    /// Memory index of the poisoned element (the row norms run channels-first only).
    var poisonIndex: Int { index(n: Self.n0, c: Self.c0, m: Self.m0) }

    /// Whether element `i` of output `name` may be affected by the poison.
    func mayBeAffected(_ name: String, _ i: Int) -> Bool {
        let poisonX = target == .x
        if op.isRowNorm {
            // Row-major regardless of the layout flag (the row norms take channels-first only).
            let r0 = poisonIndex / rowLength, j0 = poisonIndex % rowLength
            switch name {
            case "y", "dx": return i / rowLength == r0
            default: return poisonX || i == j0  // dγ, dβ per column
            }
        }
        let inElement = i == poisonIndex
        let (n, c, _) = coordinates(i)
        switch op {
        case .batchNormTraining, .batchRenorm:
            switch name {
            case "y", "dx": return c == Self.c0
            default: return i == Self.c0  // dγ, dβ, running statistics
            }
        case .batchNormInference, .instanceNormRunning:
            switch name {
            case "y": return inElement
            case "dx": return !poisonX && inElement
            default: return i == Self.c0
            }
        case .groupNorm:
            let perGroup = channels / Self.groups
            switch name {
            case "y", "dx": return n == Self.n0 && c / perGroup == Self.c0 / perGroup
            default: return poisonX ? i / perGroup == Self.c0 / perGroup : i == Self.c0
            }
        case .instanceNorm:
            switch name {
            case "y", "dx": return n == Self.n0 && c == Self.c0
            default: return i == Self.c0
            }
        default:
            return switchableMayBeAffected(name, i)
        }
    }

    /// Instance-level reasoning for Switchable Norm (see the type's comment).
    private func switchableMayBeAffected(_ name: String, _ i: Int) -> Bool {
        let branches = op.branches!, batchStatistics = op.training && branches.hasBatch
        let N = Self.shape[0], C = channels
        // Instances whose forward statistics are poisoned (x) or whose adjoints are (dy).
        var poisoned = Set<Int>()
        func instance(_ n: Int, _ c: Int) -> Int { n * C + c }
        if target == .x {
            if branches.hasInstance { poisoned.insert(instance(Self.n0, Self.c0)) }
            for c in 0..<C { poisoned.insert(instance(Self.n0, c)) }  // LN is in every branch set
            if batchStatistics { for n in 0..<N { poisoned.insert(instance(n, Self.c0)) } }
        } else {
            poisoned.insert(instance(Self.n0, Self.c0))
        }
        if name == "y" { return poisoned.contains(instance(coordinates(i).n, coordinates(i).c)) }
        if name == "runningMean" || name == "runningVar" { return i == Self.c0 }
        if name == "dwμ" || name == "dwσ" { return true }
        let samples = Set(poisoned.map { $0 / C }), poisonedChannels = Set(poisoned.map { $0 % C })
        if name == "dx" {
            let (n, c, _) = coordinates(i)
            return poisoned.contains(instance(n, c)) || samples.contains(n) || (batchStatistics && poisonedChannels.contains(c))
        }
        return poisonedChannels.contains(i)  // dγ, dβ
    }

    /// Clean data: x = 0.5 + 2·N(0,1), dy = N(0,1), γ = 1 + 0.5·N(0,1), β = 0.5·N(0,1),
    /// running statistics away from the batch's.
    struct Data {
        var x: [Float]
        var dy: [Float]
        var weight: [Float]
        var bias: [Float]
        var runningMean: [Float]
        var runningVar: [Float]
    }

    var data: Data {
        var rng = SeededGenerator(seed: 2024)
        let parameterCount = op.isRowNorm ? rowLength : channels
        return Data(
            x: rng.normals(count, offset: 0.5, scale: 2), dy: rng.normals(count),
            weight: rng.normals(parameterCount, offset: 1, scale: 0.5), bias: rng.normals(parameterCount, scale: 0.5),
            runningMean: rng.normals(channels, scale: 0.5), runningVar: (0..<channels).map { 0.5 + Float($0) * 0.4 })
    }

    /// Every output of the op on `backend` (forward: y and updated running statistics;
    /// backward: the gradients after a forward on the same backend), with or without the poison.
    func outputs(on backend: Backend, poisoned: Bool) throws -> [(String, [Float])] {
        var d = data
        if poisoned {
            if target == .x { d.x[poisonIndex] = value } else { d.dy[poisonIndex] = value }
        }
        let shape = Self.shape
        let layout = op.isRowNorm ? TensorLayout.channelsFirst : layout
        let x = try Tensor(d.x, shape: shape, layout: layout, elementType: elementType, on: backend)
        let dy = try Tensor(d.dy, shape: shape, layout: layout, elementType: elementType, on: backend)
        let parameterShape = op.isRowNorm ? Self.normalizedShape : [channels]
        let w = try Tensor(d.weight, shape: parameterShape, on: backend)
        let b = try Tensor(d.bias, shape: parameterShape, on: backend)
        func running() throws -> RunningStatistics {
            RunningStatistics(mean: try Tensor(d.runningMean, on: backend), variance: try Tensor(d.runningVar, on: backend))
        }
        var results: [(String, [Float])] = []
        func add(_ name: String, _ tensor: Tensor?) throws {
            if let tensor { results.append((name, try tensor.toArray())) }
        }
        func addGradients(_ g: NormGradients) throws {
            try add("dx", g.input)
            try add("dγ", g.weight)
            try add("dβ", g.bias)
        }
        func addRunning(_ r: RunningStatistics?) throws {
            try add("runningMean", r?.mean)
            try add("runningVar", r?.variance)
        }
        switch op {
        case .batchNormTraining, .batchNormInference:
            var stats: RunningStatistics? = try running()
            let out = try batchNorm(x, weight: w, bias: b, runningStatistics: &stats, training: op.training)
            if !backward {
                try add("y", out.output)
                if op.training { try addRunning(stats) }
            } else if op.training {
                try addGradients(try batchNormBackward(dy, input: x, weight: w, forward: out))
            } else {
                try addGradients(try batchNormBackward(dy, input: x, weight: w, runningStatistics: try running()))
            }
        case .batchRenorm:
            var stats = try running()
            let out = try batchRenorm(x, weight: w, bias: b, runningStatistics: &stats, limits: BatchRenormLimits(rmax: 3, dmax: 5))
            if backward {
                try addGradients(try batchRenormBackward(dy, input: x, weight: w, forward: out))
            } else {
                try add("y", out.output)
                try addRunning(stats)
            }
        case .layerNorm:
            let out = try layerNorm(x, normalizedShape: Self.normalizedShape, weight: w, bias: b)
            if backward {
                try addGradients(try layerNormBackward(dy, input: x, normalizedShape: Self.normalizedShape, weight: w, forward: out))
            } else {
                try add("y", out.output)
            }
        case .rmsNorm:
            let out = try rmsNorm(x, normalizedShape: Self.normalizedShape, weight: w, eps: 1e-6)
            if backward {
                try addGradients(try rmsNormBackward(dy, input: x, normalizedShape: Self.normalizedShape, weight: w, forward: out))
            } else {
                try add("y", out.output)
            }
        case .groupNorm:
            let out = try groupNorm(x, numGroups: Self.groups, weight: w, bias: b)
            if backward {
                try addGradients(try groupNormBackward(dy, input: x, numGroups: Self.groups, weight: w, forward: out))
            } else {
                try add("y", out.output)
            }
        case .instanceNorm, .instanceNormRunning:
            var stats: RunningStatistics? = try running()
            let out = try instanceNorm(x, runningStatistics: &stats, weight: w, bias: b, useInputStats: op.training)
            if !backward {
                try add("y", out.output)
                if op.training { try addRunning(stats) }
            } else if op.training {
                try addGradients(try instanceNormBackward(dy, input: x, weight: w, forward: out))
            } else {
                try addGradients(try instanceNormBackward(dy, input: x, weight: w, runningStatistics: try running()))
            }
        default:
            let branches = op.branches!
            let dominant = op == .switchableInstanceDominant
            let meanValues: [Float] = dominant ? [30, -30] : Array([1, 0.5, 1.5].prefix(branches.count))
            let varianceValues: [Float] = dominant ? [30, -30] : Array([0.8, 1.2, 1].prefix(branches.count))
            let meanLogits = try Tensor(meanValues, on: backend)
            let varianceLogits = try Tensor(varianceValues, on: backend)
            let options = SwitchableNormOptions(branches: branches)
            let initial: RunningStatistics? = branches.hasBatch ? try running() : nil
            var stats = initial
            let out = try switchableNorm(
                x, meanLogits: meanLogits, varianceLogits: varianceLogits, weight: w, bias: b, runningStatistics: &stats,
                training: op.training, options: options)
            if backward {
                let g = try switchableNormBackward(
                    dy, input: x, meanLogits: meanLogits, varianceLogits: varianceLogits, weight: w, forward: out,
                    runningStatistics: initial, training: op.training, options: options)
                try add("dx", g.input)
                try add("dγ", g.weight)
                try add("dβ", g.bias)
                try add("dwμ", g.meanLogits)
                try add("dwσ", g.varianceLogits)
            } else {
                try add("y", out.output)
                if op.training && branches.hasBatch { try addRunning(stats) }
            }
        }
        return results
    }

    /// Checks `backend` with the poison against the same backend without it and the
    /// reference with it:
    /// - outside the isolation unit every value is finite and bit-identical to the clean
    ///   run (the poison changes nothing there: no plan or merge depends on the data);
    /// - inside it the value is non-finite exactly where the reference's is, and
    ///   otherwise close to the reference (`1e-3·(1 + |ref|)`: these are ordinary values
    ///   such as dβ = Σdy next to a poisoned x, held to tight bounds by the op's own
    ///   tests). `exactNonFinite`: NaN exactly where the reference has NaN and ±Inf
    ///   exactly where it has the same ±Inf. With a NaN poison every backend meets that;
    ///   with +Inf, float32 sums and float64 ones part ways inside the unit (Inf − Inf in
    ///   a compensated or pilot-relative sum is NaN, 0·Inf in the reference's dγ is NaN),
    ///   see `NonFiniteIsolationTests.infinityStaysInfinite`;
    /// - the reference itself has a non-finite value somewhere, or the case tests nothing.
    func check(on backend: Backend, exactNonFinite: Bool, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let clean = try outputs(on: backend, poisoned: false)
        let poisoned = try outputs(on: backend, poisoned: true)
        let reference = try outputs(on: .reference, poisoned: true)
        let label = "\(testDescription) on \(backend.name)"
        #expect(
            reference.contains { $0.1.contains { !$0.isFinite } }, "\(label): the reference has no non-finite output",
            sourceLocation: sourceLocation)
        #expect(clean.map(\.0) == poisoned.map(\.0) && clean.map(\.0) == reference.map(\.0), "\(label): outputs differ")
        for ((name, c), ((_, p), (_, r))) in zip(clean, zip(poisoned, reference)) {
            for i in p.indices {
                if !mayBeAffected(name, i) {
                    if !(p[i].isFinite && p[i].bitPattern == c[i].bitPattern) {
                        Issue.record(
                            "\(label): \(name)[\(i)] outside the isolation unit is \(p[i]), clean run \(c[i]) (leaked)",
                            sourceLocation: sourceLocation)
                        break
                    }
                } else if r[i].isFinite != p[i].isFinite
                    || (exactNonFinite && !r[i].isFinite && !(r[i].isNaN ? p[i].isNaN : p[i] == r[i]))
                    || (r[i].isFinite && Swift.abs(Double(p[i]) - Double(r[i])) > 1e-3 * (1 + Swift.abs(Double(r[i]))))
                {
                    Issue.record(
                        "\(label): \(name)[\(i)] inside the isolation unit is \(p[i]), reference \(r[i])",
                        sourceLocation: sourceLocation)
                    break
                }
            }
        }
    }
}
