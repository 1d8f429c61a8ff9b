extension OpenCLRuntime {
    /// The device's measured copy bandwidth: the speed limit of memory-bound kernels.
    ///
    /// Copies a `megabytes`-sized buffer with a float4 kernel (``CopyProbe``)
    /// `iterations` times after one warm-up and returns the median of
    /// `2 · bytes / kernel time` (bytes read plus bytes written) in GB/s (10⁹ bytes per
    /// second), from profiling events. Use a size well above the last-level cache for
    /// the DRAM bandwidth.
    ///
    /// - Throws: ``NormError/invalidArgument(argument:reason:)`` for `megabytes` whose
    ///   bytes overflow the probe's arithmetic; what ``CopyProbe/init(bytes:on:)`` throws.
    public func measureCopyBandwidth(megabytes: Int = 256, iterations: Int = 10) throws -> Double {
        guard megabytes <= Int.max >> 23 else {
            throw NormError.invalidArgument(argument: "megabytes", reason: "must be at most \(Int.max >> 23), got \(megabytes)")
        }
        let probe = try CopyProbe(bytes: 2 * max(1, megabytes) << 20, on: self)
        var rates: [Double] = []
        for iteration in 0...max(1, iterations) {
            let nanoseconds = try probe.run()
            if iteration > 0 && nanoseconds > 0 { rates.append(Double(probe.bytes) / Double(nanoseconds)) }
        }
        rates.sort()
        return rates.isEmpty ? 0 : rates[rates.count / 2]
    }
}
