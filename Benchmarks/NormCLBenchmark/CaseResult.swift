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
    /// Device time of the op's kernels (first start to last end), ms.
    let kernel: TimingSummary?
    /// Host wall time per call including the wait for the result, ms.
    let host: TimingSummary
    /// The CPU reference path on the same case, host wall time, ms (nil when skipped).
    let referenceMilliseconds: Double?
    /// Largest |output − reference| and whether every element was within tolerance.
    let maxError: Double?
    let matchesReference: Bool?
    /// The peer's (PyTorch's) median wall time on the same case, ms, when it ran.
    var peerMilliseconds: Double? = nil

    /// The time GB/s are computed from: kernel time on OpenCL, else host time.
    var bestTimeMilliseconds: Double { kernel?.median ?? host.median }
    var gigabytesPerSecond: Double { Double(idealBytes) / (bestTimeMilliseconds * 1e6) }
    var speedupOverReference: Double? { referenceMilliseconds.map { $0 / host.median } }
    /// Peer time over ours, both host wall time per call (what a caller waits for):
    /// above 1 means NormCL is faster.
    var speedupOverPeer: Double? { peerMilliseconds.map { $0 / host.median } }
    /// The peer's effective bandwidth on the same ideal bytes.
    var peerGigabytesPerSecond: Double? { peerMilliseconds.map { Double(idealBytes) / ($0 * 1e6) } }
}
