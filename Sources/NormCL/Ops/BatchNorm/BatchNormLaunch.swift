/// The reduction strategies of ``BatchNormPlan/Strategy`` and
/// ``BatchNormBackwardPlan/Strategy`` (each plan describes them), which
/// ``BatchNormLaunch/reduction()`` chooses between.
protocol BatchNormReductionStrategy {
    static var fusedPerChannel: Self { get }
    static func splitReduction(groupsPerChannel: Int) -> Self
    static var columns: Self { get }
    static func splitColumns(rowGroups: Int) -> Self
}

extension BatchNormPlan.Strategy: BatchNormReductionStrategy {}
extension BatchNormBackwardPlan.Strategy: BatchNormReductionStrategy {}

/// What BatchNorm's forward and backward plans share: the vector widths, the launch
/// geometry (from ``LaunchGeometry``), the choice between the reduction strategies, the
/// build options common to `batch_norm.cl` and `batch_norm_backward.cl`, and the size
/// arguments their kernels take.
///
/// Sizes are kernel arguments: a program depends on the element type, the vector widths,
/// the work-group size, the access pattern, the index width and the op's flags, never on
/// the shape.
struct BatchNormLaunch: Equatable, Sendable {
    let geometry: LaunchGeometry
    /// N, C and M (the product of the spatial dims, 1 for `(N, C)` input).
    let batch: Int
    let channels: Int
    let spatial: Int
    /// Whether memory holds a row-major `(N·M, C)` matrix: channels-last input, or
    /// `(N, C)` input of either layout. The column kernels take these.
    let isRowsByChannels: Bool
    /// Elements per load along the spatial axis of NCHW input: 4 when `M % 4 == 0`, else 1.
    let vectorWidth: Int
    /// Channels per load in the column kernels: 4 when `C % 4 == 0`, else 1.
    let channelVectorWidth: Int
    let reductionWorkGroupSize: Int
    /// Work-items of the column kernels (one per tile of column vectors), and their
    /// work-group size.
    let columnWorkItems: Int
    let columnWorkGroupSize: Int
    /// Whether element indices need 64 bits (``LaunchGeometry/needsWideIndices(elements:workItems:)``).
    let wideIndices: Bool

    /// Fewer rows than this per slice make the partials cost more than they save.
    static let minimumRowsPerGroup = 64

    /// The launch of a problem of `shape` in `layout`, whose reduction tree keeps
    /// `localBytesPerItem` bytes of local memory per work-item.
    init(shape: [Int], layout: TensorLayout, device: OpenCLDevice, tuning: DeviceTuning, localBytesPerItem: Int) {
        geometry = LaunchGeometry(device: device, tuning: tuning)
        batch = shape[0]
        channels = shape[1]
        spatial = shape.dropFirst(2).reduce(1, *)
        isRowsByChannels = layout == .channelsLast || spatial == 1
        vectorWidth = layout == .channelsFirst && spatial % 4 == 0 ? 4 : 1
        channelVectorWidth = channels % 4 == 0 ? 4 : 1
        reductionWorkGroupSize = geometry.reductionWorkGroupSize(localBytesPerItem: localBytesPerItem)
        (columnWorkItems, columnWorkGroupSize) = geometry.columnWorkItems(columnVectors: channels / channelVectorWidth)
        let count = batch * channels * spatial
        let elementwiseItems = geometry.elementwiseWorkGroups(vectors: count / vectorWidth) * geometry.elementwiseWorkGroupSize
        wideIndices = LaunchGeometry.needsWideIndices(
            elements: count, workItems: max(reductionWorkGroupSize, elementwiseItems))
    }

    /// n = N·M: the values of each channel, and the rows of the `(rows, C)` matrix.
    var valuesPerChannel: Int { batch * spatial }

    /// The reduction strategy for this shape: columns for a `(rows, C)` matrix, per
    /// channel for NCHW, split into slices only when the channels alone cannot fill the
    /// device and each slice still gets a worthwhile amount of data.
    func reduction<Strategy: BatchNormReductionStrategy>() -> Strategy {
        if isRowsByChannels {
            // With chunked access (CPUs) a work-group's items run one after another on one
            // core, so the aim is targetWorkGroups busy work-items; on GPUs it is
            // targetWorkGroups full work-groups of work-items.
            let target = geometry.targetWorkGroups
            let wantedItems = geometry.chunkedAccess ? target : target * columnWorkGroupSize
            let groups = min(
                wantedItems.ceilingDivided(by: columnWorkItems), valuesPerChannel / Self.minimumRowsPerGroup, 1024)
            return groups > 1 ? .splitColumns(rowGroups: groups) : .columns
        }
        let groups = geometry.slicesPerSegment(segments: channels, vectorsPerSegment: valuesPerChannel / vectorWidth)
        return groups > 1 ? .splitReduction(groupsPerChannel: groups) : .fusedPerChannel
    }

    /// The build options both BatchNorm programs start with; the op adds its flags.
    func specialization(elementType: ElementType) -> KernelSpecialization {
        var specialization = KernelSpecialization(
            elementType: elementType, chunkedAccess: geometry.chunkedAccess, wideIndices: wideIndices)
        specialization.define("VEC", vectorWidth)
        specialization.define("WG", reductionWorkGroupSize)
        // Only the column kernels read CVEC: NCHW problems all take 1, so that their
        // programs do not follow C % 4.
        specialization.define("CVEC", isRowsByChannels ? channelVectorWidth : 1)
        specialization.define("TILE", geometry.columnTile)
        return specialization
    }

    // MARK: Launches

    typealias Launch = (global: [Int], local: [Int])

    /// One work-group per channel.
    var perChannelGroups: Launch { ([channels * reductionWorkGroupSize], [reductionWorkGroupSize]) }
    /// `groups` work-groups per channel (slice, channel).
    func sliceGroups(_ groups: Int) -> Launch {
        ([groups * reductionWorkGroupSize, channels], [reductionWorkGroupSize, 1])
    }
    /// One work-item per column tile.
    var columnItems: Launch { ([columnWorkItems.roundedUp(toMultipleOf: columnWorkGroupSize)], [columnWorkGroupSize]) }
    /// One work-item per column tile and row slice (tile, slice).
    func columnItems(rowGroups: Int) -> Launch {
        ([columnItems.global[0], rowGroups], [columnWorkGroupSize, 1])
    }
    /// The one-launch strategies: one work-group per channel with the NCHW sizes
    /// (`fusedPerChannel`), or one work-item per column tile with the column sizes.
    func singlePass(columns: Bool) throws -> (launch: Launch, sizes: KeyValuePairs<String, KernelArgument>) {
        columns ? (columnItems, try columnSizes()) : (perChannelGroups, try planeSizes())
    }
    /// One work-item per channel.
    var perChannelItems: Launch { geometry.perSegmentLaunch(segments: channels) }
    /// An elementwise pass over every element vector.
    var elementwise: Launch { geometry.elementwiseLaunch(vectors: batch * channels * spatial / vectorWidth) }

    // MARK: Size arguments

    /// The sizes of the NCHW kernels: `uint batch, uint channels, uint spatial`.
    func planeSizes() throws -> KeyValuePairs<String, KernelArgument> {
        ["batch": try .count(batch), "channels": try .count(channels), "spatial": try .count(spatial)]
    }

    /// The sizes of the column kernels: `uint rows, uint channels`.
    func columnSizes() throws -> KeyValuePairs<String, KernelArgument> {
        ["rows": try .count(valuesPerChannel), "channels": try .count(channels)]
    }

    /// The sizes of an elementwise or reduction kernel of this layout's family.
    func sizes() throws -> KeyValuePairs<String, KernelArgument> {
        try isRowsByChannels ? columnSizes() : planeSizes()
    }

    /// The sizes of the one-work-item-per-channel kernels: `uint channels`.
    func channelCount() throws -> KeyValuePairs<String, KernelArgument> {
        ["channels": try .count(channels)]
    }

    /// Enqueues `kernel` with its arguments given in parts (a literal list each, in the
    /// kernel's parameter order): named, so the runtime checks them against the kernel's
    /// own parameter list as for one `KeyValuePairs` list.
    static func enqueue(
        _ kernel: String, from program: CompiledProgram, on runtime: OpenCLRuntime, _ launch: Launch,
        _ parts: KeyValuePairs<String, KernelArgument>...
    ) throws -> KernelEvent {
        let arguments = parts.flatMap { $0 }
        return try runtime.enqueue(
            kernel, from: program, global: launch.global, local: launch.local,
            arguments: arguments.map(\.value), names: arguments.map(\.key))
    }
}
