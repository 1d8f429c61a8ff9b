import Testing
@testable import NormCL

/// What a forward harness's `run` reads back: the arrays of the op's reference result
/// type (so the harness does not restate its fields), plus the running statistics'
/// update count and the number of events the op returned.
@dynamicMemberLookup
struct ReadBack<Arrays>: CustomStringConvertible {
    var arrays: Arrays
    var numBatchesTracked: Int?
    var events = 0

    subscript<T>(dynamicMember key: WritableKeyPath<Arrays, T>) -> T {
        get { arrays[keyPath: key] }
        set { arrays[keyPath: key] = newValue }
    }

    var description: String { "\(arrays) numBatchesTracked=\(String(describing: numBatchesTracked)) events=\(events)" }
}

/// The random data of a per-channel forward harness (BatchNorm, GroupNorm,
/// InstanceNorm), drawn in this order from one seeded generator: x = `offset +
/// scale·N(0,1)`, then (when `affine`) γ = `1 + 0.5·N(0,1)` and β = `0.5·N(0,1)`,
/// then (when `tracking`) running means N(0,1) and running variances in [0.5, 2].
struct ChannelData {
    /// The input, `(N, C, *S)` in the harness's memory order.
    var x: [Float]
    /// γ and β, per channel (nil: not affine).
    var weight, bias: [Float]?
    /// The running statistics the op reads and updates (nil: not tracked).
    var runningMean, runningVar: [Float]?

    init(shape: [Int], offset: Double, scale: Double, affine: Bool, tracking: Bool, seed: UInt64) {
        var rng = SeededGenerator(seed: seed)
        let channels = shape[1]
        x = rng.normals(shape.reduce(1, *), offset: offset, scale: scale)
        if affine {
            weight = rng.normals(channels, offset: 1, scale: 0.5)
            bias = rng.normals(channels, scale: 0.5)
        }
        if tracking {
            runningMean = rng.normals(channels)
            runningVar = (0..<channels).map { _ in Float.random(in: 0.5...2, using: &rng) }
        }
    }
}

/// An `(N, C, *S)` problem's channels and spatial size (values per (n, c)).
protocol ChannelsAndSpatial {
    var shape: [Int] { get }
}

extension ChannelsAndSpatial {
    var channels: Int { shape[1] }
    var spatial: Int { shape.dropFirst(2).reduce(1, *) }
}

/// A harness that keeps its data in a ``ChannelData``, read and written as
/// `harness.x`, `harness.weight` and so on.
@dynamicMemberLookup
protocol ChannelDataHolder {
    var data: ChannelData { get set }
}

extension ChannelDataHolder {
    subscript<T>(dynamicMember key: WritableKeyPath<ChannelData, T>) -> T {
        get { data[keyPath: key] }
        set { data[keyPath: key] = newValue }
    }
}

/// Running statistics on `backend` from host values; nil unless both are given.
func runningStatistics(_ mean: [Float]?, _ variance: [Float]?, numBatchesTracked: Int = 0, on backend: Backend) throws
    -> RunningStatistics?
{
    guard let mean, let variance else { return nil }
    return RunningStatistics(
        mean: try Tensor(mean, on: backend), variance: try Tensor(variance, on: backend), numBatchesTracked: numBatchesTracked)
}

/// A harness whose tensors can be stored in either layout and element type.
protocol StorageConfigurable {
    var layout: TensorLayout { get set }
    var elementType: ElementType { get set }
}

extension StorageConfigurable {
    /// This harness with its data stored as `elementType` in `layout`.
    func stored(as elementType: ElementType, _ layout: TensorLayout) -> Self {
        var copy = self
        copy.elementType = elementType
        copy.layout = layout
        return copy
    }
}

extension BatchNormHarness: StorageConfigurable {}
extension BatchNormBackwardHarness: StorageConfigurable {}
extension GroupNormHarness: StorageConfigurable {}
extension GroupNormBackwardHarness: StorageConfigurable {}
