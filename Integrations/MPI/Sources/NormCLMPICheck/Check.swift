import CMPI
import Glibc
import NormCL
import NormCLMPI

/// The quantities compared in every case, in the order of ``runCase(_:backend:over:)``'s result.
let quantities = ["y (slice)", "saveMean", "saveInvstd", "running mean", "running var", "dx (slice)", "dweight", "dbias"]

/// The check's cases: (N, 16, 5, 7) in both layouts and both storage types, one with
/// large-mean data, and (N, 64).
let cases: [Case] = [
    Case(name: "NCHW f32 (7,16,5,7)", batch: 7, channels: 16, spatial: [5, 7], layout: .channelsFirst, elementType: .float32, offset: 0, seed: 1),
    Case(name: "NHWC f32 (7,16,5,7)", batch: 7, channels: 16, spatial: [5, 7], layout: .channelsLast, elementType: .float32, offset: 0, seed: 2),
    Case(name: "NCHW f16 (7,16,5,7)", batch: 7, channels: 16, spatial: [5, 7], layout: .channelsFirst, elementType: .float16, offset: 0, seed: 3),
    Case(name: "NHWC f16 (7,16,5,7)", batch: 7, channels: 16, spatial: [5, 7], layout: .channelsLast, elementType: .float16, offset: 0, seed: 4),
    Case(name: "NCHW f32 (7,16,5,7) mean 1e4", batch: 7, channels: 16, spatial: [5, 7], layout: .channelsFirst, elementType: .float32, offset: 1e4, seed: 5),
    Case(name: "f32 (13,64)", batch: 13, channels: 64, spatial: [], layout: .channelsFirst, elementType: .float32, offset: 0, seed: 6),
    Case(name: "f16 (13,64)", batch: 13, channels: 64, spatial: [], layout: .channelsFirst, elementType: .float16, offset: 0, seed: 7),
]

/// Synchronized BatchNorm forward (running statistics, momentum 0.1, γ and β) and
/// backward of this rank's slice of `c`'s batch over `exchange`, against single-device
/// BatchNorm of the whole batch on the same backend and storage: the difference of each
/// of ``quantities``.
///
/// Tolerances are float32 rounding level, scaled by what each quantity is computed from
/// (ε = 2^-23): κ = max |x|·invstd (how many standard deviations the values are from 0:
/// ~4 for centred data, ~1e4 for the large-mean case, where x itself holds only
/// ε·1e4 absolute precision), n the values per channel.
///
/// - y: 16ε·(κ·max|γ| + max|y|); dx: 16ε·(κ·max|γ|·max invstd·(max|dy| + max_c(Σ|dy| +
///   Σ|dy·x̂|·max|x̂|)/n) + max|dx|). Half storage adds one half ulp of each element
///   (the two results round float32 values that differ at float32 level).
/// - saveMean 16ε·max|x|; saveInvstd and running var 64ε relative per channel; running
///   mean 16ε·(max|running mean| + 0.1·max|x|).
/// - dbias 16ε·Σ|dy| per channel; dweight 16ε·(κ·Σ|dy| + Σ|dy·x̂|) per channel.
func runCase(_ c: Case, backend: Backend, over exchange: some StatisticsExchange) throws -> [Difference] {
    let p = Problem(c)
    let parts = split(batch: c.batch, ranks: exchange.participants)
    let mine = parts[exchange.rank]
    func tensor(_ values: [Float], _ shape: [Int]) throws -> Tensor {
        try Tensor(values, shape: shape, layout: c.layout, elementType: c.elementType, on: backend)
    }
    func running() throws -> RunningStatistics {
        RunningStatistics(mean: try Tensor(p.runningMean, on: backend), variance: try Tensor(p.runningVariance, on: backend))
    }
    let weight = try Tensor(p.weight, on: backend)
    let bias = try Tensor(p.bias, on: backend)

    // Synchronized, first: every rank reaches the exchanges whatever happens after.
    let x = try tensor(Problem.slice(p.x, mine, c), c.partShape(mine.count))
    let dy = try tensor(Problem.slice(p.dy, mine, c), c.partShape(mine.count))
    var runningPart = try running()
    let forward = try syncBatchNorm(
        x, weight: weight, bias: bias, runningStatistics: &runningPart, momentum: 0.1, eps: 1e-5, over: exchange)
    guard let saveMean = forward.saveMean, let saveInvstd = forward.saveInvstd else {
        throw CheckFailure("syncBatchNorm saved no statistics")
    }
    let backward = try syncBatchNormBackward(
        dy, input: x, weight: weight, saveMean: saveMean, saveInvstd: saveInvstd, over: exchange)

    // Single device, whole batch.
    let xAll = try tensor(p.x, c.shape)
    let dyAll = try tensor(p.dy, c.shape)
    var runningAll = try running()
    let reference = try batchNorm(
        xAll, weight: weight, bias: bias, runningStatistics: &runningAll, training: true, momentum: 0.1, eps: 1e-5)
    guard let referenceMean = reference.saveMean, let referenceInvstd = reference.saveInvstd else {
        throw CheckFailure("batchNorm saved no statistics")
    }
    let referenceGradients = try batchNormBackward(
        dyAll, input: xAll, weight: weight, saveMean: referenceMean, saveInvstd: referenceInvstd)
    guard runningPart.numBatchesTracked == runningAll.numBatchesTracked else {
        throw CheckFailure("numBatchesTracked \(runningPart.numBatchesTracked), single device \(runningAll.numBatchesTracked)")
    }
    guard let dx = backward.input, let dweight = backward.weight, let dbias = backward.bias,
        let dxAll = referenceGradients.input, let dweightAll = referenceGradients.weight,
        let dbiasAll = referenceGradients.bias
    else { throw CheckFailure("a gradient is missing") }

    let yAll = try reference.output.toArray()
    let meanAll = try referenceMean.toArray()
    let invstdAll = try referenceInvstd.toArray()
    let runningMeanAll = try runningAll.mean.toArray()
    let runningVarAll = try runningAll.variance.toArray()
    let dxAllValues = try dxAll.toArray()
    let dweightAllValues = try dweightAll.toArray()
    let dbiasAllValues = try dbiasAll.toArray()

    // Scales for the tolerances, from the whole batch.
    let channels = c.channels
    let n = Double(c.batch * c.spatialCount)
    var kappa = 0.0
    var maxXhat = 0.0
    var sumAbsDy = [Double](repeating: 0, count: channels)
    var sumAbsDyXhat = [Double](repeating: 0, count: channels)
    for i in p.x.indices {
        let ch = c.channel(ofIndex: i)
        let invstd = Double(invstdAll[ch])
        let xhat = (Double(p.x[i]) - Double(meanAll[ch])) * invstd
        kappa = max(kappa, abs(Double(p.x[i])) * invstd)
        maxXhat = max(maxXhat, abs(xhat))
        sumAbsDy[ch] += abs(Double(p.dy[i]))
        sumAbsDyXhat[ch] += abs(Double(p.dy[i]) * xhat)
    }
    let e = epsilon32
    let maxWeight = maxAbs(p.weight)
    let maxInvstd = maxAbs(invstdAll)
    let half = c.elementType == .float16
    let yExpected = Problem.slice(yAll, mine, c)
    let dxExpected = Problem.slice(dxAllValues, mine, c)
    let yTolerance = 16 * e * (kappa * maxWeight + maxAbs(yAll))
    let sumsTerm = (0..<channels).map { (sumAbsDy[$0] + sumAbsDyXhat[$0] * maxXhat) / n }.max() ?? 0
    let dxTolerance = 16 * e * (kappa * maxWeight * maxInvstd * (maxAbs(p.dy) + sumsTerm) + maxAbs(dxAllValues))

    return [
        Difference(try forward.output.toArray(), yExpected) { yTolerance + (half ? halfULP(yExpected[$0]) : 0) },
        Difference(try saveMean.toArray(), meanAll) { _ in 16 * e * maxAbs(p.x) },
        Difference(try saveInvstd.toArray(), invstdAll) { 64 * e * Double(invstdAll[$0]) },
        Difference(try runningPart.mean.toArray(), runningMeanAll) { _ in
            16 * e * (maxAbs(p.runningMean) + 0.1 * maxAbs(p.x))
        },
        Difference(try runningPart.variance.toArray(), runningVarAll) { 64 * e * Double(runningVarAll[$0]) },
        Difference(try dx.toArray(), dxExpected) { dxTolerance + (half ? halfULP(dxExpected[$0]) : 0) },
        Difference(try dweight.toArray(), dweightAllValues) { 16 * e * (kappa * sumAbsDy[$0] + sumAbsDyXhat[$0]) },
        Difference(try dbias.toArray(), dbiasAllValues) { 16 * e * sumAbsDy[$0] },
    ]
}

/// Runs `c` on every rank and prints (rank 0) the largest difference of each quantity
/// over the ranks. Returns whether every rank passed.
func checkCase(_ c: Case, label: String? = nil, backend: Backend, over exchange: MPIStatisticsExchange) -> Bool {
    var differences = [Difference](repeating: Difference(), count: quantities.count)
    var failure: String? = nil
    do {
        differences = try runCase(c, backend: backend, over: exchange)
    } catch {
        failure = "\(Outcome { throw error })"
        differences = [Difference](repeating: Difference(), count: quantities.count)
    }
    let maxima = World.allMax(differences.map(\.maximum))
    let ratios = World.allMax(differences.map(\.ratio))
    let passed = World.all(failure == nil && differences.allSatisfy(\.passed))
    let lines = World.gatherLines(failure.map { "rank \(World.rank): \($0)" } ?? "")
    if World.rank == 0 {
        let parts = split(batch: c.batch, ranks: World.size).map { String($0.count) }.joined(separator: "/")
        print("\(passed ? "PASS" : "FAIL")  \(label ?? c.name), N split \(parts)")
        for line in lines where !line.isEmpty { print("      \(line)") }
        for (i, name) in quantities.enumerated() {
            print("      \(padded(name, 13)) max|Δ| \(padded(sci(maxima[i]), 9))  (\(fixed(ratios[i], 3)) of tolerance)")
        }
    }
    return passed
}

/// One failure check: `body` runs on every rank and says whether this rank's outcome is
/// the expected one, and what it was; rank 0 prints every rank's.
func failureCheck(_ title: String, _ body: () -> (passed: Bool, line: String)) -> Bool {
    let (mine, line) = body()
    let passed = World.all(mine)
    let lines = World.gatherLines("rank \(World.rank) \(mine ? "as expected" : "UNEXPECTED"): \(line)")
    if World.rank == 0 {
        print("\(passed ? "PASS" : "FAIL")  \(title)")
        for line in lines { print("      \(line)") }
    }
    return passed
}

/// The failure checks of issue #19: a rank with another channel count, a rank with
/// invalid input (forward and backward), and an exchange that times out.
func failureChecks(backend: Backend, over exchange: MPIStatisticsExchange) -> Bool {
    let rank = World.rank
    let size = World.size
    let base = cases[0]
    let parts = split(batch: base.batch, ranks: size)
    let mine = parts[rank]
    var passed = true

    func inputs(channels: Int) throws -> (x: Tensor, dy: Tensor, weight: Tensor, bias: Tensor, running: RunningStatistics) {
        let c = Case(
            name: base.name, batch: base.batch, channels: channels, spatial: base.spatial, layout: base.layout,
            elementType: base.elementType, offset: 0, seed: 11)
        let p = Problem(c)
        return (
            try Tensor(Problem.slice(p.x, mine, c), shape: c.partShape(mine.count), layout: c.layout, on: backend),
            try Tensor(Problem.slice(p.dy, mine, c), shape: c.partShape(mine.count), layout: c.layout, on: backend),
            try Tensor(p.weight, on: backend), try Tensor(p.bias, on: backend),
            try RunningStatistics(channels: channels, on: backend)
        )
    }

    // (a) The last rank's input has 12 channels (with γ, β and running statistics of 12):
    // every rank must throw mismatchedParticipants, and keep its running statistics.
    let odd = size - 1
    passed = failureCheck("(a) rank \(odd) passes 12 channels, the others 16: mismatchedParticipants everywhere") {
        do {
            var t = try inputs(channels: rank == odd ? 12 : base.channels)
            let outcome = Outcome {
                _ = try syncBatchNorm(
                    t.x, weight: t.weight, bias: t.bias, runningStatistics: &t.running, momentum: 0.1, eps: 1e-5,
                    over: exchange)
            }
            let kept = t.running.numBatchesTracked == 0
            return (outcome.isMismatch && kept, "\(outcome)\(kept ? "" : " (running statistics changed)")")
        } catch {
            return (false, "set-up failed: \(error)")
        }
    } && passed

    // (b1) Rank 0 passes a negative eps to the forward.
    passed = failureCheck("(b1) rank 0 passes eps = -1 to the forward: its NormError, participantsFailed([0]) elsewhere") {
        do {
            var t = try inputs(channels: base.channels)
            let outcome = Outcome {
                _ = try syncBatchNorm(
                    t.x, weight: t.weight, bias: t.bias, runningStatistics: &t.running, momentum: 0.1,
                    eps: rank == 0 ? -1 : 1e-5, over: exchange)
            }
            return (rank == 0 ? outcome.isNormError : outcome.isParticipantsFailed([0]), "\(outcome)")
        } catch {
            return (false, "set-up failed: \(error)")
        }
    } && passed

    // (b2) Rank 1 (the one with no samples from three ranks on) passes a weight of C + 1.
    passed = failureCheck(
        "(b2) rank 1 (N_1 = \(parts[1].count)) passes a weight of \(base.channels + 1) to the forward: its NormError, participantsFailed([1]) elsewhere"
    ) {
        do {
            var t = try inputs(channels: base.channels)
            let weight = rank == 1 ? try Tensor([Float](repeating: 1, count: base.channels + 1), on: backend) : t.weight
            let outcome = Outcome {
                _ = try syncBatchNorm(
                    t.x, weight: weight, bias: t.bias, runningStatistics: &t.running, momentum: 0.1, eps: 1e-5,
                    over: exchange)
            }
            return (rank == 1 ? outcome.isNormError : outcome.isParticipantsFailed([1]), "\(outcome)")
        } catch {
            return (false, "set-up failed: \(error)")
        }
    } && passed

    // (b3) After a good forward, the last rank passes a weight of C + 1 to the backward.
    passed = failureCheck(
        "(b3) rank \(odd) passes a weight of \(base.channels + 1) to the backward: its NormError, participantsFailed([\(odd)]) elsewhere"
    ) {
        do {
            var t = try inputs(channels: base.channels)
            let forward = try syncBatchNorm(
                t.x, weight: t.weight, bias: t.bias, runningStatistics: &t.running, momentum: 0.1, eps: 1e-5,
                over: exchange)
            guard let mean = forward.saveMean, let invstd = forward.saveInvstd else { return (false, "no saved statistics") }
            let weight = rank == odd ? try Tensor([Float](repeating: 1, count: base.channels + 1), on: backend) : t.weight
            let outcome = Outcome {
                _ = try syncBatchNormBackward(
                    t.dy, input: t.x, weight: weight, saveMean: mean, saveInvstd: invstd, over: exchange)
            }
            return (rank == odd ? outcome.isNormError : outcome.isParticipantsFailed([odd]), "\(outcome)")
        } catch {
            return (false, "set-up failed: \(error)")
        }
    } && passed

    // (c) A rank that does not take part: the others time out (1 s) instead of hanging,
    // their exchange refuses new collectives while the abandoned one is pending, and
    // once the late rank joins it, the exchange is in step again.
    let late = size - 1
    passed = failureCheck(
        "(c) rank \(late) joins an exchange late: timedOut, then earlierExchangePending, on the others; in step once it joins"
    ) {
        let lateExchange: MPIStatisticsExchange
        do {
            lateExchange = try MPIStatisticsExchange(timeout: .seconds(1))
        } catch {
            return (false, "MPIStatisticsExchange failed: \(error)")
        }
        var lines: [String] = []
        var ok = true
        let values = [Double(rank), 1, 2]
        if rank != late {
            let first = Outcome { _ = try lateExchange.allGather(values) }
            let second = Outcome { _ = try lateExchange.allGather(values) }
            if case .exchange(.timedOut) = first {} else { ok = false }
            if case .exchange(.earlierExchangePending) = second {} else { ok = false }
            lines += ["first \(first)", "then \(second)"]
        }
        World.barrier()
        lateExchange.timeout = .seconds(30)
        if rank == late {
            let joined = Outcome {
                let all = try lateExchange.allGather(values)
                guard all == (0..<size).map({ [Double($0), 1, 2] }) else { throw CheckFailure("gathered \(all)") }
            }
            if case .succeeded = joined {} else { ok = false }
            lines.append("joined late: \(joined)")
        } else {
            let start = MPI_Wtime()
            while lateExchange.pendingExchangeCount() > 0, MPI_Wtime() - start < 30 { usleep(1000) }
            let pending = lateExchange.pendingExchangeCount()
            if pending != 0 { ok = false }
            lines.append("pending after the late join: \(pending)")
        }
        // In step again: a synchronized forward and backward over the same exchange.
        let again = Outcome {
            let differences = try runCase(cases[5], backend: backend, over: lateExchange)
            guard differences.allSatisfy(\.passed) else { throw CheckFailure("differences beyond tolerance") }
        }
        if case .succeeded = again {} else { ok = false }
        lines.append("then a good sync: \(again)")
        return (ok, lines.joined(separator: "; "))
    } && passed
    return passed
}

/// (d) Rank 0 calls the backward while the others call the forward: both passes send
/// headers of one length, so the all-gather is a valid one and every rank must throw
/// mismatchedParticipants; the same exchange is in step afterwards (a good sync follows).
func outOfStepCheck(backend: Backend) -> Bool {
    let rank = World.rank
    let base = cases[0]
    let parts = split(batch: base.batch, ranks: World.size)
    let mine = parts[rank]
    return failureCheck("(d) rank 0 in the backward while the others are in the forward: mismatchedParticipants everywhere, in step afterwards") {
        do {
            let exchange = try MPIStatisticsExchange(timeout: .seconds(5))
            let p = Problem(base)
            let x = try Tensor(Problem.slice(p.x, mine, base), shape: base.partShape(mine.count), on: backend)
            let dy = try Tensor(Problem.slice(p.dy, mine, base), shape: base.partShape(mine.count), on: backend)
            let weight = try Tensor(p.weight, on: backend)
            var running = try RunningStatistics(channels: base.channels, on: backend)
            let outcome = Outcome {
                if rank == 0 {
                    let mean = try Tensor([Float](repeating: 0, count: base.channels), on: backend)
                    let invstd = try Tensor([Float](repeating: 1, count: base.channels), on: backend)
                    _ = try syncBatchNormBackward(
                        dy, input: x, weight: weight, saveMean: mean, saveInvstd: invstd, over: exchange)
                } else {
                    _ = try syncBatchNorm(x, weight: weight, runningStatistics: &running, over: exchange)
                }
            }
            World.barrier()
            let pending = exchange.pendingExchangeCount()
            let after = Outcome { _ = try runCase(cases[5], backend: backend, over: exchange) }
            let good = if case .succeeded = after { true } else { false }
            return (outcome.isMismatch && pending == 0 && good, "\(outcome); pending \(pending); then a good sync: \(after)")
        } catch {
            return (false, "set-up failed: \(error)")
        }
    }
}
