import Testing
@testable import NormCL

/// One op run with NaN or ±Inf placed in its input x or its gradient dy, and the
/// isolation unit that value may legitimately reach in each output.
///
/// The units follow from which statistics each op computes:
/// - **BatchNorm, Batch Renorm (training)**: statistics per channel over N and S, so the
///   whole channel c₀ (and its dγ, dβ, saved and running statistics, r and d); other
///   channels are clean.
///   **Inference**: `y = x·scale_c + shift_c` per element, so only the element itself;
///   dx = dy·γ·invstd does not read x (x poisoned: no dx is affected), dγ reads x.
/// - **LayerNorm, RMSNorm**: the row r₀ (and its saved statistics). dγ and dβ sum over
///   rows, so with x poisoned every column's may be affected (x̂ of the whole row is NaN);
///   with dy poisoned only the poisoned columns'.
/// - **GroupNorm**: the (n₀, group of c₀), and its saved statistics; dγ, dβ of that
///   group's channels (x poisoned) or of c₀ alone (dy poisoned). **InstanceNorm**: the
///   (n₀, c₀) and its saved statistics; dγ, dβ and running statistics of c₀; with
///   running statistics (inference), as BatchNorm's inference.
/// - **Switchable Norm** mixes statistics across units: per instance (n, c) the mixed
///   statistic is `Σ_k p_k·stat_k`, and IN reaches (n₀, c₀), LN the whole sample n₀,
///   BN (training) the whole channel c₀. A softmax weight is never exactly 0 for finite
///   logits, and `0·NaN` is NaN anyway, so even logits that all but switch LN and BN
///   off (the `instanceDominant` case) leave the union of the branches' units affected:
///   the unit depends on the branch set, not the logits (the saved mixed mean and
///   invstd too; the IN, LN and BN statistics stay in (n₀, c₀), n₀ and c₀). Backward:
///   every instance in that union has a NaN adjoint, which flows into the LN statistics
///   of its sample and (training with BN) the BN statistics of its channel, so dx may
///   be affected on those samples and channels; with IN, LN and BN in training that is
///   all of dx. dγ, dβ: the channels of the affected instances; the logit gradients sum
///   over all instances and are always affected.
struct NonFiniteIsolationCase: Sendable, CustomTestStringConvertible, ChannelsAndSpatial {
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

    /// What is put into the isolation unit.
    enum Poison: String, Sendable, CaseIterable, CustomTestStringConvertible {
        case nan, infinity, negativeInfinity
        /// +Inf at the poisoned element and −Inf at a second element of the same (n₀, c₀)
        /// instance (or, with one value per instance, of BatchNorm's channel c₀): the
        /// unit's sum, and so its mean, is NaN.
        case infinities
        /// +Inf in every element of the (n₀, c₀) instance (for the row norms the row r₀):
        /// the median-of-five pilot the kernels draw from a unit is +Inf itself for the
        /// instance (InstanceNorm, Switchable Norm), the row and the group.
        case allInfinity

        var testDescription: String { rawValue }
        var value: Float {
            switch self {
            case .nan: .nan
            case .infinity, .infinities, .allInfinity: .infinity
            case .negativeInfinity: -.infinity
            }
        }
    }

    enum Target: String, Sendable { case x, dy }

    /// A plan strategy forced on the OpenCL forward (and, for the row norms and Switchable
    /// Norm, the backward): every reduction path merges its statistics its own way.
    enum Path: Sendable, CustomStringConvertible {
        case automatic
        case batchNorm(BatchNormPlan.Strategy)
        /// `fuseParameters: false`: the backward's dγ, dβ column walk instead of the fused one.
        case rowNorm(RowNormPlan.Strategy, fuseParameters: Bool? = nil)
        case groupNorm(GroupNormPlan.Strategy)
        case switchable(SwitchableNormPlan.Strategy)

        var description: String {
            switch self {
            case .automatic: "automatic"
            case .batchNorm(let s): "\(s)"
            case .rowNorm(let s, let fuse): fuse == false ? "\(s) unfused" : "\(s)"
            case .groupNorm(let s): "\(s)"
            case .switchable(let s): "\(s)"
            }
        }
    }

    var op: Op
    var poison: Poison
    var target: Target
    var backward: Bool
    var layout: TensorLayout
    var elementType: ElementType
    /// (N, C, spatial…); the row norms normalise over the spatial dims: N·C rows.
    var shape = Self.standardShape
    var path = Path.automatic

    var testDescription: String {
        "\(op) \(backward ? "backward" : "forward") \(poison) in \(target) \(shape) \(layout) \(elementType) \(path)"
    }

    // The standard shape: (N, C, H, W) = (3, 4, 2, 3); GroupNorm G = 2; LayerNorm/RMSNorm
    // over the trailing (2, 3): 12 rows of 6.
    static let standardShape = [3, 4, 2, 3]
    static let groups = 2
    var normalizedShape: [Int] { Array(shape.dropFirst(2)) }
    var count: Int { shape.reduce(1, *) }
    var batch: Int { shape[0] }
    var rowLength: Int { spatial }
    /// The poisoned element: n₀ = 1, c₀ = 2, m₀ = 3 (0 with one value per instance); for
    /// the row norms row r₀ = n₀·C + c₀, column j₀ = m₀.
    let n0 = 1, c0 = 2
    var m0: Int { min(3, spatial - 1) }

    func index(n: Int, c: Int, m: Int) -> Int {
        layout == .channelsFirst ? (n * channels + c) * spatial + m : (n * spatial + m) * channels + c
    }

    func coordinates(_ i: Int) -> (n: Int, c: Int, m: Int) {
        layout == .channelsFirst
            ? (i / (channels * spatial), (i / spatial) % channels, i % spatial)
            : (i / (channels * spatial), i % channels, (i / channels) % spatial)
    }

    /// Memory indices of the poisoned elements (the row norms run channels-first only):
    /// (n₀, c₀, m₀); for ``Poison/infinities`` then the −Inf at (n₀, c₀, 0), or at
    /// (0, c₀, 0) with one value per instance (BatchNorm's (N, C) input); for
    /// ``Poison/allInfinity`` then the rest of the instance.
    var poisonIndices: [Int] {
        let first = index(n: n0, c: c0, m: m0)
        switch poison {
        case .nan, .infinity, .negativeInfinity: return [first]
        case .infinities: return [first, spatial > 1 ? index(n: n0, c: c0, m: 0) : index(n: 0, c: c0, m: 0)]
        case .allInfinity: return [first] + (0..<spatial).filter { $0 != m0 }.map { index(n: n0, c: c0, m: $0) }
        }
    }

    /// Which elements of output `name` may be affected by the poison (computed once per
    /// output: the check asks for every element).
    func isolationUnit(_ name: String) -> (Int) -> Bool {
        let poisonX = target == .x
        let poisoned = poisonIndices
        let (n0, c0, channels) = (self.n0, self.c0, self.channels)
        if op.isRowNorm {
            // Row-major regardless of the layout flag (the row norms take channels-first only).
            let rowLength = self.rowLength
            let r0 = poisoned[0] / rowLength, columns = Set(poisoned.map { $0 % rowLength })
            switch name {
            case "y", "dx": return { $0 / rowLength == r0 }
            case "saveMean", "saveInvstd", "saveInvRms": return { $0 == r0 }
            default: return { poisonX || columns.contains($0) }  // dγ, dβ per column
            }
        }
        let elements = Set(poisoned)
        switch op {
        case .batchNormTraining, .batchRenorm:
            switch name {
            case "y", "dx": return { coordinates($0).c == c0 }
            default: return { $0 == c0 }  // dγ, dβ, saved and running statistics, r, d
            }
        case .batchNormInference, .instanceNormRunning:
            switch name {
            case "y": return { elements.contains($0) }
            case "dx": return { !poisonX && elements.contains($0) }
            default: return { $0 == c0 }
            }
        case .groupNorm:
            let perGroup = channels / Self.groups
            switch name {
            case "y", "dx":
                return { i in
                    let (n, c, _) = coordinates(i)
                    return n == n0 && c / perGroup == c0 / perGroup
                }
            case "saveMean", "saveInvstd": return { $0 == n0 * Self.groups + c0 / perGroup }
            default: return { poisonX ? $0 / perGroup == c0 / perGroup : $0 == c0 }
            }
        case .instanceNorm:
            switch name {
            case "y", "dx":
                return { i in
                    let (n, c, _) = coordinates(i)
                    return n == n0 && c == c0
                }
            case "saveMean", "saveInvstd": return { $0 == n0 * channels + c0 }
            default: return { $0 == c0 }
            }
        default:
            return switchableIsolationUnit(name)
        }
    }

    /// Instance-level reasoning for Switchable Norm (see the type's comment).
    private func switchableIsolationUnit(_ name: String) -> (Int) -> Bool {
        let branches = op.branches!, batchStatistics = op.training && branches.hasBatch
        let N = batch, C = channels, n0 = self.n0, c0 = self.c0
        // Instances whose forward statistics are poisoned (x) or whose adjoints are (dy).
        var poisoned = Set<Int>()
        func instance(_ n: Int, _ c: Int) -> Int { n * C + c }
        if target == .x {
            if branches.hasInstance { poisoned.insert(instance(n0, c0)) }
            for c in 0..<C { poisoned.insert(instance(n0, c)) }  // LN is in every branch set
            if batchStatistics { for n in 0..<N { poisoned.insert(instance(n, c0)) } }
        } else {
            poisoned.insert(instance(n0, c0))
        }
        switch name {
        case "y":
            return { i in
                let (n, c, _) = coordinates(i)
                return poisoned.contains(instance(n, c))
            }
        case "mean", "invstd": return { poisoned.contains($0) }  // per instance
        case "instanceMean", "instanceVariance": return { $0 == instance(n0, c0) }
        case "layerMean", "layerVariance": return { $0 == n0 }
        case "batchMean", "batchVariance", "runningMean", "runningVar": return { $0 == c0 }
        case "dwμ", "dwσ": return { _ in true }
        default: break
        }
        let samples = Set(poisoned.map { $0 / C }), poisonedChannels = Set(poisoned.map { $0 % C })
        if name == "dx" {
            return { i in
                let (n, c, _) = coordinates(i)
                return poisoned.contains(instance(n, c)) || samples.contains(n)
                    || (batchStatistics && poisonedChannels.contains(c))
            }
        }
        return { poisonedChannels.contains($0) }  // dγ, dβ
    }

    /// Clean data: x = 0.5 + 2·N(0,1), dy = N(0,1), γ = 1 + 0.5·N(0,1), β = 0.5·N(0,1),
    /// running statistics away from the batch's.
    struct Data {
        var x, dy: [Float]
        /// γ and β.
        var weight, bias: [Float]
        /// The running statistics (inference and Batch Renorm read them).
        var runningMean, runningVar: [Float]
    }

    var data: Data {
        var rng = SeededGenerator(seed: 2024)
        let parameterCount = op.isRowNorm ? rowLength : channels
        return Data(
            x: rng.normals(count, offset: 0.5, scale: 2), dy: rng.normals(count),
            weight: rng.normals(parameterCount, offset: 1, scale: 0.5), bias: rng.normals(parameterCount, scale: 0.5),
            runningMean: rng.normals(channels, scale: 0.5), runningVar: (0..<channels).map { 0.5 + Float($0) * 0.4 })
    }

    /// Every output of the op on `backend` (forward: y, the saved statistics, Batch
    /// Renorm's r and d and the updated running statistics; backward: the gradients after
    /// a forward on the same backend), with or without the poison. ``path`` is forced on
    /// OpenCL only (the reference has one path).
    func outputs(on backend: Backend, poisoned: Bool) throws -> [(String, [Float])] {
        var d = data
        if poisoned {
            for (k, i) in poisonIndices.enumerated() {
                let value = k == 0 || poison == .allInfinity ? poison.value : -.infinity
                if target == .x { d.x[i] = value } else { d.dy[i] = value }
            }
        }
        let path: Path = if case .openCL = backend { self.path } else { .automatic }
        let normalizedShape = self.normalizedShape
        let layout = op.isRowNorm ? TensorLayout.channelsFirst : layout
        let x = try Tensor(d.x, shape: shape, layout: layout, elementType: elementType, on: backend)
        let dy = try Tensor(d.dy, shape: shape, layout: layout, elementType: elementType, on: backend)
        let parameterShape = op.isRowNorm ? normalizedShape : [channels]
        let w = try Tensor(d.weight, shape: parameterShape, on: backend)
        let b = try Tensor(d.bias, shape: parameterShape, on: backend)
        func running() throws -> RunningStatistics {
            RunningStatistics(mean: try Tensor(d.runningMean, on: backend), variance: try Tensor(d.runningVar, on: backend))
        }
        var results: [(String, [Float])] = []
        /// Appends each tensor given (in order), read back, under its name.
        func add(_ named: KeyValuePairs<String, Tensor?>) throws {
            for case let (name, tensor?) in named { results.append((name, try tensor.toArray())) }
        }
        func addGradients(_ g: NormGradients) throws {
            try add(["dx": g.input, "dγ": g.weight, "dβ": g.bias])
        }
        func addRunning(_ r: RunningStatistics?) throws {
            try add(["runningMean": r?.mean, "runningVar": r?.variance])
        }
        func addSaved(_ out: BatchNormOutput) throws {
            try add(["saveMean": out.saveMean, "saveInvstd": out.saveInvstd, "r": out.renormR, "d": out.renormD])
        }
        switch op {
        case .batchNormTraining, .batchNormInference:
            var stats: RunningStatistics? = try running()
            let out: BatchNormOutput
            if case .batchNorm(let strategy) = path {
                out = try batchNorm(
                    x, weight: w, bias: b, runningStatistics: &stats, training: op.training, momentum: 0.1, eps: 1e-5,
                    strategy: strategy)
            } else {
                out = try batchNorm(x, weight: w, bias: b, runningStatistics: &stats, training: op.training)
            }
            if !backward {
                try add(["y": out.output])
                try addSaved(out)
                if op.training { try addRunning(stats) }
            } else if op.training {
                try addGradients(try batchNormBackward(dy, input: x, weight: w, forward: out))
            } else {
                try addGradients(try batchNormBackward(dy, input: x, weight: w, runningStatistics: try running()))
            }
        case .batchRenorm:
            var stats = try running()
            let limits = BatchRenormLimits(rmax: 3, dmax: 5)
            let out: BatchNormOutput
            if case .batchNorm(let strategy) = path {
                var optional: RunningStatistics? = stats
                out = try batchNorm(
                    x, weight: w, bias: b, runningStatistics: &optional, training: true, momentum: 0.1, eps: 1e-5,
                    strategy: strategy, renorm: limits)
                stats = optional!
            } else {
                out = try batchRenorm(x, weight: w, bias: b, runningStatistics: &stats, limits: limits)
            }
            if backward {
                try addGradients(try batchRenormBackward(dy, input: x, weight: w, forward: out))
            } else {
                try add(["y": out.output])
                try addSaved(out)
                try addRunning(stats)
            }
        case .layerNorm:
            let out: LayerNormOutput
            if case .rowNorm(let strategy, _) = path {
                out = try layerNorm(
                    x, normalizedShape: normalizedShape, weight: w, bias: b, eps: 1e-5, strategy: strategy, tuning: nil)
            } else {
                out = try layerNorm(x, normalizedShape: normalizedShape, weight: w, bias: b)
            }
            if !backward {
                try add(["y": out.output, "saveMean": out.saveMean, "saveInvstd": out.saveInvstd])
            } else if case .rowNorm(let strategy, let fuse) = path {
                try addGradients(
                    try layerNormBackward(
                        dy, input: x, normalizedShape: normalizedShape, weight: w, saveMean: out.saveMean,
                        saveInvstd: out.saveInvstd, outputMask: .all, strategy: strategy, fuseParameters: fuse, tuning: nil))
            } else {
                try addGradients(try layerNormBackward(dy, input: x, normalizedShape: normalizedShape, weight: w, forward: out))
            }
        case .rmsNorm:
            let out: RMSNormOutput
            if case .rowNorm(let strategy, _) = path {
                out = try rmsNorm(x, normalizedShape: normalizedShape, weight: w, eps: 1e-6, strategy: strategy, tuning: nil)
            } else {
                out = try rmsNorm(x, normalizedShape: normalizedShape, weight: w, eps: 1e-6)
            }
            if !backward {
                try add(["y": out.output, "saveInvRms": out.saveInvRms])
            } else if case .rowNorm(let strategy, let fuse) = path {
                try addGradients(
                    try rmsNormBackward(
                        dy, input: x, normalizedShape: normalizedShape, weight: w, saveInvRms: out.saveInvRms,
                        outputMask: .all, strategy: strategy, fuseParameters: fuse, tuning: nil))
            } else {
                try addGradients(try rmsNormBackward(dy, input: x, normalizedShape: normalizedShape, weight: w, forward: out))
            }
        case .groupNorm:
            let out: GroupNormOutput
            if case .groupNorm(let strategy) = path {
                out = try groupNorm(x, numGroups: Self.groups, weight: w, bias: b, eps: 1e-5, strategy: strategy)
            } else {
                out = try groupNorm(x, numGroups: Self.groups, weight: w, bias: b)
            }
            if backward {
                try addGradients(try groupNormBackward(dy, input: x, numGroups: Self.groups, weight: w, forward: out))
            } else {
                try add(["y": out.output, "saveMean": out.saveMean, "saveInvstd": out.saveInvstd])
            }
        case .instanceNorm, .instanceNormRunning:
            var stats: RunningStatistics? = try running()
            let out: InstanceNormOutput
            if case .groupNorm(let strategy) = path {
                out = try instanceNorm(
                    x, runningStatistics: &stats, weight: w, bias: b, useInputStats: op.training, momentum: 0.1, eps: 1e-5,
                    strategy: strategy)
            } else {
                out = try instanceNorm(x, runningStatistics: &stats, weight: w, bias: b, useInputStats: op.training)
            }
            if !backward {
                try add(["y": out.output, "saveMean": out.saveMean, "saveInvstd": out.saveInvstd])
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
            var strategy: SwitchableNormPlan.Strategy? = nil
            if case .switchable(let forced) = path { strategy = forced }
            let out: SwitchableNormOutput
            if strategy != nil {
                out = try switchableNorm(
                    x, meanLogits: meanLogits, varianceLogits: varianceLogits, weight: w, bias: b, runningStatistics: &stats,
                    training: op.training, options: options, strategy: strategy)
            } else {
                out = try switchableNorm(
                    x, meanLogits: meanLogits, varianceLogits: varianceLogits, weight: w, bias: b, runningStatistics: &stats,
                    training: op.training, options: options)
            }
            if backward {
                let g: SwitchableNormGradients
                if strategy != nil {
                    g = try switchableNormBackward(
                        dy, input: x, meanLogits: meanLogits, varianceLogits: varianceLogits, weight: w, forward: out,
                        runningStatistics: initial, training: op.training, options: options, outputMask: .all,
                        strategy: strategy)
                } else {
                    g = try switchableNormBackward(
                        dy, input: x, meanLogits: meanLogits, varianceLogits: varianceLogits, weight: w, forward: out,
                        runningStatistics: initial, training: op.training, options: options)
                }
                try add(["dx": g.input, "dγ": g.weight, "dβ": g.bias, "dwμ": g.meanLogits, "dwσ": g.varianceLogits])
            } else {
                try add([
                    "y": out.output, "mean": out.saveMean, "invstd": out.saveInvstd, "instanceMean": out.instanceMean,
                    "instanceVariance": out.instanceVariance, "layerMean": out.layerMean,
                    "layerVariance": out.layerVariance, "batchMean": out.batchMean, "batchVariance": out.batchVariance,
                ])
                if op.training && branches.hasBatch { try addRunning(stats) }
            }
        }
        return results
    }

    /// Checks `backend` with the poison against the same backend without it and the
    /// reference with it:
    /// - outside the isolation unit every value is finite and bit-identical to the clean
    ///   run (the poison changes nothing there: no plan or merge depends on the data);
    /// - inside it the value is non-finite exactly where the reference's is, with the same
    ///   kind: NaN where the reference has NaN, and ±Inf where it has the same ±Inf (the
    ///   float64 reference sums first, so a statistic over +Inf alone is +Inf, not the
    ///   Inf − Inf of a shifted or compensated float32 sum); otherwise close to the
    ///   reference (`1e-3·(1 + |ref|)`: these are ordinary values such as dβ = Σdy next to
    ///   a poisoned x, held to tight bounds by the op's own tests);
    /// - the reference itself has a non-finite value somewhere, or the case tests nothing.
    func check(on backend: Backend, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let clean = try outputs(on: backend, poisoned: false)
        let poisoned = try outputs(on: backend, poisoned: true)
        let reference = try outputs(on: .reference, poisoned: true)
        let label = "\(testDescription) on \(backend.name)"
        #expect(
            reference.contains { $0.1.contains { !$0.isFinite } }, "\(label): the reference has no non-finite output",
            sourceLocation: sourceLocation)
        #expect(clean.map(\.0) == poisoned.map(\.0) && clean.map(\.0) == reference.map(\.0), "\(label): outputs differ")
        for ((name, c), ((_, p), (_, r))) in zip(clean, zip(poisoned, reference)) {
            let mayBeAffected = isolationUnit(name)
            for i in p.indices {
                if !mayBeAffected(i) {
                    if !(p[i].isFinite && p[i].bitPattern == c[i].bitPattern) {
                        Issue.record(
                            "\(label): \(name)[\(i)] outside the isolation unit is \(p[i]), clean run \(c[i]) (leaked)",
                            sourceLocation: sourceLocation)
                        break
                    }
                } else if r[i].isFinite != p[i].isFinite
                    || (!r[i].isFinite && !(r[i].isNaN ? p[i].isNaN : p[i] == r[i]))
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
