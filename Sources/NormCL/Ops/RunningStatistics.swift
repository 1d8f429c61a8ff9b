/// Per-channel running mean and unbiased variance, as BatchNorm (and InstanceNorm or
/// Switchable Norm with tracking) keep them for inference.
///
/// Matches PyTorch's `running_mean`, `running_var` and `num_batches_tracked` buffers.
public struct RunningStatistics: Sendable {
    /// Running mean per channel, initially 0.
    public var mean: Tensor
    /// Running unbiased variance per channel, initially 1.
    public var variance: Tensor
    /// Training steps that updated these statistics; with `momentum == nil` the
    /// update is a cumulative average with factor `1 / numBatchesTracked`.
    public var numBatchesTracked: Int

    /// Mean 0 and variance 1 for `channels` channels, as PyTorch initialises them
    /// (filled on the device on OpenCL, no host arrays).
    ///
    /// - Throws: ``NormError/invalidArgument(argument:reason:)`` for `channels ≤ 0`;
    ///   ``NormError/invalidShape(argument:reason:)`` (`channels`) or ``OpenCLError`` for
    ///   more channels than the backend can hold (see ``Tensor/init(repeating:shape:layout:elementType:on:)``).
    public init(channels: Int, on backend: Backend) throws {
        guard channels > 0 else {
            throw NormError.invalidArgument(argument: "channels", reason: "must be positive, got \(channels)")
        }
        mean = try Tensor(filling: 0, shape: [channels], on: backend, argument: "channels")
        variance = try Tensor(filling: 1, shape: [channels], on: backend, argument: "channels")
        numBatchesTracked = 0
    }

    /// Wraps existing statistics, e.g. loaded from a checkpoint.
    public init(mean: Tensor, variance: Tensor, numBatchesTracked: Int = 0) {
        self.mean = mean
        self.variance = variance
        self.numBatchesTracked = numBatchesTracked
    }
}

extension RunningStatistics {
    /// Counts one training step that updates these statistics and returns the weight of
    /// its batch in the update: `momentum`, or `1/numBatchesTracked` (a cumulative
    /// average) when it is nil. PyTorch increments `num_batches_tracked` before a
    /// cumulative-average update, so the count comes first.
    mutating func countStep(momentum: Float?) -> Float {
        numBatchesTracked += 1
        return momentum ?? 1 / Float(numBatchesTracked)
    }

    /// Runs an op's implementation, which takes optional running statistics, on these
    /// (always present) ones, and keeps what it wrote: the public forms take
    /// `inout RunningStatistics`, the one implementation behind them `inout RunningStatistics?`.
    mutating func updated<Output>(by body: (inout RunningStatistics?) throws -> Output) rethrows -> Output {
        var running: RunningStatistics? = self
        let output = try body(&running)
        if let running { self = running }
        return output
    }
}
