extension OpenCLRuntime {
    /// The device's measured copy bandwidth: the speed limit of memory-bound kernels.
    ///
    /// Copies a `megabytes`-sized buffer with a float4 kernel `iterations` times after
    /// one warm-up and returns the median of `2 · bytes / kernel time` (bytes read plus
    /// bytes written) in GB/s (10⁹ bytes per second), from profiling events.
    public func measureCopyBandwidth(megabytes: Int = 256, iterations: Int = 10) throws -> Double {
        let vectors = max(1, megabytes << 20 / 16)
        let source = try DeviceBuffer(byteCount: vectors * 16, on: self)
        let destination = try DeviceBuffer(byteCount: vectors * 16, on: self)
        let local = max(1, min(tuning.elementwiseWorkGroupSize, device.maxWorkGroupSize))
        let groups = max(1, min(device.computeUnits * tuning.workGroupsPerComputeUnit, vectors.ceilingDivided(by: local)))
        let wide = vectors + 2 * groups * local >= 1 << 32
        let program = try program(
            .memory, options: "-cl-std=CL1.2 -D CHUNKED=\(tuning.chunkedAccess ? 1 : 0) -D INDEX_T=\(wide ? "ulong" : "uint")")
        var rates: [Double] = []
        for iteration in 0...max(1, iterations) {
            let event = try enqueue(
                "copy_float4", from: program, global: [groups * local], local: [local],
                arguments: [.buffer(source), .buffer(destination), .ulong(UInt64(vectors))])
            let nanoseconds = try event.durationNanoseconds()
            if iteration > 0 && nanoseconds > 0 { rates.append(Double(2 * vectors * 16) / Double(nanoseconds)) }
        }
        rates.sort()
        return rates.isEmpty ? 0 : rates[rates.count / 2]
    }
}
