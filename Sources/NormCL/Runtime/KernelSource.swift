/// The text of one OpenCL C file from `Kernels/`, embedded at build time.
///
/// The build plugin `EmbedKernels` adds one static constant per file, named after it
/// (`batch_norm.cl` → `KernelSource.batchNorm`).
public struct KernelSource: Sendable, Hashable {
    /// The file's name without `.cl`.
    public let name: String
    /// The OpenCL C source.
    public let text: String
}

extension KernelSource {
    /// The files every program starts with, in order: element storage and the moments
    /// arithmetic (`common.cl`), the fused epilogues (`epilogue.cl`: activations and their
    /// gradients, which the reduction's gradient sums apply), then the shared reduction
    /// machinery (`reduction.cl`).
    static let sharedLibrary: [KernelSource] = [.common, .epilogue, .reduction]
}
