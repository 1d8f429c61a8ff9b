/// The sizes of an `(N, C, *spatial)` input, which BatchNorm, InstanceNorm, GroupNorm and
/// Switchable Norm share: their problems conform and read N, C and M from `shape`.
protocol ChannelShaped {
    /// `(N, C, *spatial)`, at least two dims.
    var shape: [Int] { get }
}

extension ChannelShaped {
    /// N.
    var batch: Int { shape[0] }
    /// C.
    var channels: Int { shape[1] }
    /// M, the product of the spatial dims (1 for `(N, C)` input).
    var spatial: Int { shape.dropFirst(2).reduce(1, *) }
    /// N·M: the values of one channel over the batch.
    var batchSpatial: Int { batch * spatial }
    /// N·C: the (sample, channel) planes.
    var planes: Int { batch * channels }
    /// Every element.
    var count: Int { shape.reduce(1, *) }
}

/// An input shape being checked (``NormError/checkChannelInput(_:op:limits:)``).
struct ChannelShape: ChannelShaped {
    let shape: [Int]

    /// A size that kernels take as a 32-bit value. (An enum, not a key path: a key-path
    /// literal is instantiated at run time each time it is evaluated, which showed in the
    /// host time of every call.)
    enum Size: Sendable {
        case batchSpatial, channels, planes
    }

    subscript(size: Size) -> Int {
        switch size {
        case .batchSpatial: batchSpatial
        case .channels: channels
        case .planes: planes
        }
    }
}

extension NormError {
    /// Throws unless `shape` is `(N, C, *spatial)`, its element count fits `Int`, and each
    /// size in `limits` (each with its name for the message, e.g. `(.batchSpatial, "N·M")`)
    /// is below 2^32: the sizes the op's kernels take as 32-bit arguments
    /// (element offsets may be 64-bit).
    ///
    /// - Parameter op: the op's name for the message ("BatchNorm").
    static func checkChannelInput(
        _ shape: [Int], op: String, limits: [(ChannelShape.Size, String)]
    ) throws(NormError) {
        guard shape.count >= 2 else {
            throw .invalidShape(argument: "input", reason: "\(op) needs (N, C, *spatial), got \(shape)")
        }
        try checkDimensions(shape, argument: "input")
        let sizes = ChannelShape(shape: shape)
        for (size, name) in limits {
            try check32BitLimit(sizes[size], name, argument: "input", shape: shape)
        }
    }

    /// Throws unless `running` (when given) holds `[channels]` float32 statistics on
    /// `backend` with a step count that can still be incremented, and `momentum` is
    /// valid: what every op that tracks running statistics checks.
    static func checkRunningStatistics(
        _ running: RunningStatistics?, channels: Int, momentum: Float?, backend: Backend
    ) throws(NormError) {
        try checkParameter(running?.mean, "runningMean", shape: [channels], backend: backend)
        try checkParameter(running?.variance, "runningVar", shape: [channels], backend: backend)
        try checkMomentum(momentum)
        if let running, running.numBatchesTracked < 0 || running.numBatchesTracked == Int.max {
            throw .invalidArgument(
                argument: "numBatchesTracked", reason: "must lie in [0, Int.max), got \(running.numBatchesTracked)")
        }
    }
}
