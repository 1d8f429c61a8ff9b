import CMPI
import NormCL
import NormCLMPI

/// A ``StatisticsExchange`` that counts what passes through it and the time spent in it.
final class CountingExchange: StatisticsExchange {
    let base: MPIStatisticsExchange
    var rank: Int { base.rank }
    var participants: Int { base.participants }
    /// Doubles this rank receives per call, in call order (including the exchange's
    /// one-double length prefix per participant).
    var receivedDoubles: [Int] = []
    var seconds = 0.0

    init(_ base: MPIStatisticsExchange) { self.base = base }

    func allGather(_ values: [Double]) throws -> [[Double]] {
        receivedDoubles.append(participants * (values.count + 1))
        let start = MPI_Wtime()
        defer { seconds += MPI_Wtime() - start }
        return try base.allGather(values)
    }
}

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return .nan }
    let middle = sorted.count / 2
    return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

/// Per-rank batch (8, 64, 56, 56) float32 NCHW: the median time of synchronized BatchNorm
/// forward + backward against single-device BatchNorm forward + backward of the same
/// per-rank tensor, every rank at once (a barrier before each timed step, so both see the
/// same contention), each step until the device has finished. Rank 0 prints the slowest
/// rank's medians.
func runBench(backend: Backend, over exchange: MPIStatisticsExchange, iterations: Int, warmup: Int) -> Bool {
    let shape = [8, 64, 56, 56]
    let channels = shape[1]
    let count = shape.reduce(1, *)
    let counting = CountingExchange(exchange)
    var sync: [Double] = []
    var local: [Double] = []
    var inExchange: [Double] = []
    var failure: String? = nil
    do {
        var random = LCG(seed: 100 + UInt64(World.rank))
        let x = try Tensor((0..<count).map { _ in Float(random.normal()) }, shape: shape, on: backend)
        let dyValues = (0..<count).map { _ in Float(random.normal()) }
        let dy = try Tensor(dyValues, shape: shape, on: backend)
        let weight = try Tensor((0..<channels).map { _ in Float(1 + 0.1 * random.normal()) }, on: backend)
        let bias = try Tensor((0..<channels).map { _ in Float(0.1 * random.normal()) }, on: backend)
        var runningSync = try RunningStatistics(channels: channels, on: backend)
        var runningLocal = try RunningStatistics(channels: channels, on: backend)
        func finish() throws { try backend.runtime?.finish() }
        @discardableResult
        func syncStep() throws -> NormGradients {
            let forward = try syncBatchNorm(
                x, weight: weight, bias: bias, runningStatistics: &runningSync, momentum: 0.1, eps: 1e-5, over: counting)
            let gradients = try syncBatchNormBackward(
                dy, input: x, weight: weight, forward: forward, over: counting)
            try finish()
            return gradients
        }
        func localStep() throws {
            let forward = try batchNorm(
                x, weight: weight, bias: bias, runningStatistics: &runningLocal, training: true, momentum: 0.1, eps: 1e-5)
            _ = try batchNormBackward(
                dy, input: x, weight: weight, saveMean: forward.saveMean!, saveInvstd: forward.saveInvstd!)
            try finish()
        }
        try finish()
        // That the timed path computes: dβ is Σ dy over every rank's batch.
        var sums = [Double](repeating: 0, count: channels)
        for (i, value) in dyValues.enumerated() { sums[(i / (shape[2] * shape[3])) % channels] += Double(value) }
        let wholeSums = World.allReduce(sums, normcl_mpi_sum())
        guard let dbias = try syncStep().bias?.toArray() else { throw CheckFailure("no dbias") }
        let worst = zip(dbias, wholeSums).map { abs(Double($0) - $1) }.max() ?? .infinity
        guard worst <= 1e-6 * Double(World.size * count / channels) else {
            throw CheckFailure("synchronized dbias differs from Σ dy over the ranks by \(worst)")
        }
        for _ in 0..<warmup {
            try syncStep()
            try localStep()
        }
        for _ in 0..<iterations {
            World.barrier()
            counting.seconds = 0
            var start = MPI_Wtime()
            try syncStep()
            sync.append(MPI_Wtime() - start)
            inExchange.append(counting.seconds)
            World.barrier()
            start = MPI_Wtime()
            try localStep()
            local.append(MPI_Wtime() - start)
        }
    } catch {
        failure = "rank \(World.rank): \(Outcome { throw error })"
    }
    let passed = World.all(failure == nil)
    let lines = World.gatherLines(failure ?? "")
    guard passed else {
        if World.rank == 0 { for line in lines where !line.isEmpty { print("FAIL  bench: \(line)") } }
        return false
    }
    let mine = [median(sync), median(local), median(inExchange)]
    let slowest = World.allMax(mine)
    let rank0 = mine
    // One step: four all-gathers (forward header and moments, backward header and sums).
    let perStep = Array(counting.receivedDoubles.suffix(4))
    if World.rank == 0 {
        let ms = { (seconds: Double) in fixed(seconds * 1e3, 2) + " ms" }
        let ranks = World.size
        let statistics = ranks * (1 + 2 * channels)
        print("bench: \(ranks) ranks, per-rank batch (8,64,56,56) float32 NCHW on \(backend.name), \(iterations) iterations after \(warmup) warm-up")
        print("  synchronized forward+backward  median \(ms(rank0[0])) (rank 0), \(ms(slowest[0])) (slowest rank)")
        print("  local forward+backward         median \(ms(rank0[1])) (rank 0), \(ms(slowest[1])) (slowest rank)")
        print("  overhead                       \(ms(slowest[0] - slowest[1])), ×\(fixed(slowest[0] / slowest[1], 3)) (slowest rank's medians)")
        print("  inside allGather               median \(ms(rank0[2])) (rank 0), \(ms(slowest[2])) (slowest rank), 4 calls per step")
        let bytes = perStep.reduce(0, +) * 8
        print(
            "  exchanged per step, received by each rank: \(bytes) bytes, \(perStep.map(String.init).joined(separator: " + ")) doubles"
                + " (forward header, moments, backward header, gradient sums): statistics 2 × \(ranks) × (1 + 2·\(channels))"
                + " = \(2 * statistics), headers 2 × \(ranks) × 5 = \(ranks * 10), length prefixes 4 × \(ranks)")
    }
    return true
}
