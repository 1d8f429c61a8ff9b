import NormCL

/// The cost of synchronized BatchNorm in one process: a batch of `parts` slices of
/// (8, 64, 56, 56) (float32, NCHW), each on its own runtime on the same device — the
/// stand-in for several devices —, forward and backward through `syncBatchNorm`, against
/// local BatchNorm of one slice (what each device would run without synchronizing).
///
/// Synchronizing adds, per pass, a read-back of each part's partial statistics (a few
/// floats per channel), a float64 merge on the host and an upload of the merged ones:
/// with P parts and C channels, P·(1 + 2C) doubles each way per pass.
struct SyncBatchNormBench {
    let parts: Int
    let quick: Bool

    func run(on backend: Backend, iterations: Int, warmup: Int) throws {
        let shape = quick ? [2, 64, 14, 14] : [8, 64, 56, 56]
        let count = shape.reduce(1, *), channels = shape[1]
        let backends: [Backend] = try (0..<parts).map { _ in
            guard let runtime = backend.runtime else { return .reference }
            return .openCL(try OpenCLRuntime(device: runtime.device))
        }
        var rng = SystemRandomNumberGenerator()
        let values = (0..<count).map { _ in Float.random(in: -2...2, using: &rng) }
        let inputs = try backends.map { try Tensor(values, shape: shape, on: $0) }
        let grads = try backends.map { try Tensor(values.reversed(), shape: shape, on: $0) }
        let weights = try backends.map { try Tensor(repeating: 1, shape: [channels], on: $0) }
        let biases = try backends.map { try Tensor(repeating: 0, shape: [channels], on: $0) }
        var running = try backends.map { try RunningStatistics(channels: channels, on: $0) }

        func local() throws {
            let forward = try batchNorm(
                inputs[0], weight: weights[0], bias: biases[0], runningStatistics: &running[0], training: true)
            let gradients = try batchNormBackward(grads[0], forward: forward)
            _ = try gradients.input?.toArray().first
        }
        func synchronized() throws {
            let forwards = try syncBatchNorm(inputs, weights: weights, biases: biases, runningStatistics: &running)
            let gradients = try syncBatchNormBackward(grads, inputs: inputs, weights: weights, forwards: forwards)
            for g in gradients { _ = try g.input?.toArray().first }
        }
        func time(_ body: () throws -> Void) throws -> TimingSummary {
            for _ in 0..<warmup + 1 { try body() }
            var samples: [Double] = []
            let clock = ContinuousClock()
            for _ in 0..<iterations {
                let start = clock.now
                try body()
                samples.append((clock.now - start).milliseconds)
            }
            return TimingSummary(samples)
        }
        // Interleaved rounds, so both see the same machine.
        var localTimes: [Double] = [], syncTimes: [Double] = []
        for _ in 0..<3 {
            localTimes.append(try time(local).median)
            syncTimes.append(try time(synchronized).median)
        }
        let localMedian = TimingSummary(localTimes).median, syncMedian = TimingSummary(syncTimes).median
        let bytes = parts * (1 + 2 * channels) * 8 * 2
        print("synchronized BatchNorm in one process on \(backend.name): \(parts) parts of \(shape) f32 NCHW, forward + backward, each read back")
        print("local BatchNorm, one part:                 \(Report.format(localMedian)) ms")
        print("synchronized, all \(parts) parts (one after another): \(Report.format(syncMedian)) ms = \(Report.format(syncMedian / Double(parts))) ms per part")
        print("synchronization cost per part: \(Report.format(syncMedian / Double(parts) - localMedian)) ms (\(Report.format(100 * (syncMedian / Double(parts) / localMedian - 1), digits: 1))%)")
        print("statistics exchanged per step (forward + backward): \(bytes) bytes = parts × (1 + 2C) doubles × 2 passes")
    }
}
