// The README's MPI example (the block between `// README: mpi` and `// END README` is
// README.md's, line for line: ReadmeExampleTests checks it), run by scripts/test-mpi.sh
// under mpirun with 2 ranks. After the block, its own checks: every rank got the whole
// batch's statistics, and its y and dx equal the slices of single-device BatchNorm of the whole batch,
// which each rank rebuilds from the same formula.
import Glibc
import NormCL
import NormCLMPI

do {
    // README: mpi
    try MPIEnvironment.initialize()                 // MPI_Init_thread, once per process
    let exchange = try MPIStatisticsExchange()      // every rank of MPI_COMM_WORLD, 60 s timeout
    let backend = try Backend.default
    // This rank's part of the batch: rank r holds r + 1 samples of 8 channels of 4×4.
    let samples = exchange.rank + 1
    let values = (0..<samples * 8 * 16).map { Float(($0 * 7 + exchange.rank) % 23) }
    let x = try Tensor(values, shape: [samples, 8, 4, 4], on: backend)
    var running = try RunningStatistics(channels: 8, on: backend)
    let forward = try syncBatchNorm(x, runningStatistics: &running, over: exchange)  // whole-batch statistics
    let dy = try Tensor(values.map { $0 / 23 }, shape: x.shape, on: backend)
    let gradients = try syncBatchNormBackward(dy, input: x, weight: nil, forward: forward, over: exchange)
    // END README

    // Checks (not in the README): the whole batch on this rank alone gives the same.
    let ranks = exchange.participants
    let whole = (0..<ranks).flatMap { r in (0..<(r + 1) * 8 * 16).map { Float(($0 * 7 + r) % 23) } }
    let total = ranks * (ranks + 1) / 2
    let wholeX = try Tensor(whole, shape: [total, 8, 4, 4], on: backend)
    var wholeRunning = try RunningStatistics(channels: 8, on: backend)
    let wholeForward = try batchNorm(wholeX, runningStatistics: &wholeRunning, training: true)
    let wholeGradients = try batchNormBackward(
        try Tensor(whole.map { $0 / 23 }, shape: wholeX.shape, on: backend), forward: wholeForward)
    func worst(_ a: Tensor?, _ b: Tensor?) throws -> Float {
        zip(try a!.toArray(), try b!.toArray()).map { Swift.abs($0 - $1) / Swift.max(1, Swift.abs($1)) }.max() ?? 0
    }
    let first = (0..<exchange.rank).map { ($0 + 1) * 8 * 16 }.reduce(0, +)  // this rank's first value
    func sliceError(_ part: Tensor?, _ whole: Tensor?) throws -> Float {
        let (mine, all) = (try part!.toArray(), try whole!.toArray())
        return zip(mine, all[first..<(first + mine.count)]).map { Swift.abs($0 - $1) }.max() ?? 0
    }
    let errors: [Float] = [
        try sliceError(forward.output, wholeForward.output), try worst(forward.saveMean, wholeForward.saveMean),
        try worst(running.variance, wholeRunning.variance), try sliceError(gradients.input, wholeGradients.input),
    ]
    let passed = errors.allSatisfy { $0 < 1e-4 }
    let all = try exchange.allGather([passed ? 1 : 0])
    if exchange.rank == 0 {
        print("normcl-mpi-example: \(ranks) ranks, \(total) samples; rank 0's max differences y, saveMean, running var, dx: \(errors)")
        print("normcl-mpi-example: \(all.allSatisfy { $0 == [1] } ? "PASSED" : "FAILED") on every rank")
    }
    try MPIEnvironment.finalize()
    exit(all.allSatisfy { $0 == [1] } ? 0 : 1)
} catch {
    print("normcl-mpi-example: \(error)")
    exit(1)
}
