/// How the channel axis of an `(N, C, *S)` tensor is laid out in memory.
public enum TensorLayout: String, Sendable, Hashable, CaseIterable {
    /// Contiguous `(N, C, *S)`: each channel's spatial plane is contiguous ("NCHW").
    case channelsFirst
    /// Contiguous `(N, *S, C)`: channels are adjacent in memory ("NHWC"). The shape
    /// is still given as `(N, C, *S)`, as PyTorch's `channels_last` does.
    case channelsLast
}
