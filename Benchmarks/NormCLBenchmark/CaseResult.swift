import NormCL

/// One kernel of an op's launch sequence and its median device time.
struct KernelTiming: Sendable {
    let name: String
    let median: Double
}

/// Everything measured for one case.
struct CaseResult: Sendable {
    let name: String
    let op: String
    let shape: [Int]
    let layout: String
    let dtype: String
    let idealBytes: Int
    /// First call including program build and kernel code generation, ms.
    let firstCallMilliseconds: Double
    /// The same first call in a new runtime on the same device, its programs now in the
    /// disk cache (nil on the reference path), ms.
    let warmFirstCallMilliseconds: Double?
    /// What the first call cost beyond a steady-state call (the host median): program
    /// builds or loads, kernel code generation, first use of buffers, ms.
    var firstCallOverhead: Double { firstCallMilliseconds - host.median }
    /// The same for the first call in a new runtime (``warmFirstCallMilliseconds``).
    var warmFirstCallOverhead: Double? { warmFirstCallMilliseconds.map { $0 - host.median } }
    /// Programs the first call built from source or loaded from disk (0 when an earlier
    /// case of the same specialisation already had them).
    let programs: ProgramStatistics?
    /// Device time of the op's kernels (first start to last end), ms.
    let kernel: TimingSummary?
    /// Host wall time per call including the wait for the result, ms.
    let host: TimingSummary
    /// Host wall time per call until the op returns, its kernels enqueued and not waited
    /// for: NormCL's own host overhead (validation, plan, allocation, argument setting,
    /// the driver's enqueue calls), ms.
    let enqueue: TimingSummary
    /// Kernels the op enqueues per call (each costs a launch on top of its run time).
    let launches: Int
    /// A float4 copy moving the case's ideal bytes (read plus written), run after each
    /// iteration of the op, ms (nil on the reference path).
    let copy: TimingSummary?
    /// Bytes the copy moved (the ideal bytes rounded up to whole float4 pairs).
    let copyBytes: Int?
    /// The median over iterations of (copy time scaled to the ideal bytes) / (op kernel
    /// time): how close the op runs to a copy of its own traffic, at the same size and
    /// moment. 1 is the memory-bound ceiling.
    let fractionOfCopy: Double?
    /// The CPU reference path on the same case, host wall time, ms (nil when skipped).
    let referenceMilliseconds: Double?
    /// Largest |output − reference| and whether every element was within tolerance.
    let maxError: Double?
    let matchesReference: Bool?
    /// Each kernel of the op in launch order with its median device time, ms.
    var kernelBreakdown: [KernelTiming] = []
    /// The peer's (PyTorch's) wall time per call on the same case, ms, when it ran: timed
    /// in batches alternating with ``host``'s iterations, or read from a peer JSON.
    var peer: TimingSummary? = nil
    /// The peer's median wall time per call, ms.
    var peerMilliseconds: Double? { peer?.median }
    /// Whether NormCL's host times or the peer's spread as if other load took the cores
    /// (``TimingSummary/looksBusy``).
    var looksBusy: Bool { host.looksBusy || peer?.looksBusy == true }

    /// The time GB/s are computed from: kernel time on OpenCL, else host time.
    var bestTimeMilliseconds: Double { kernel?.median ?? host.median }
    var gigabytesPerSecond: Double { Double(idealBytes) / (bestTimeMilliseconds * 1e6) }
    /// The copy's bandwidth at the case's size, GB/s.
    var copyGigabytesPerSecond: Double? {
        guard let copy, let copyBytes else { return nil }
        return Double(copyBytes) / (copy.median * 1e6)
    }
    var speedupOverReference: Double? { referenceMilliseconds.map { $0 / host.median } }
    /// Peer time over ours, both host wall time per call (what a caller waits for):
    /// above 1 means NormCL is faster.
    var speedupOverPeer: Double? { peerMilliseconds.map { $0 / host.median } }
    /// The peer's effective bandwidth on the same ideal bytes.
    var peerGigabytesPerSecond: Double? { peerMilliseconds.map { Double(idealBytes) / ($0 * 1e6) } }
}
