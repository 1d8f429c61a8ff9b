/// The launches of a ``BatchNormPlan``, forward or backward: the ``ChannelGeometry``,
/// the choice between the reduction strategies, the build options common to
/// `batch_norm.cl` and `batch_norm_backward.cl`, and the size arguments their kernels
/// take.
///
/// Sizes are kernel arguments: a program depends on the element type, the vector widths,
/// the work-group size, the access pattern, the index width and the op's flags, never on
/// the shape.
struct BatchNormLaunch: ChannelShaped, Equatable, Sendable {
    let channel: ChannelGeometry
    let shape: [Int]
    /// Whether memory holds a row-major `(N·M, C)` matrix: channels-last input, or
    /// `(N, C)` input of either layout. The column kernels take these.
    let isRowsByChannels: Bool
    /// Whether element indices need 64 bits (``LaunchGeometry/needsWideIndices(elements:workItems:)``).
    let wideIndices: Bool

    /// The launch of a problem of `shape` in `layout`, whose reduction tree keeps
    /// `localBytesPerItem` bytes of local memory per work-item.
    init(shape: [Int], layout: TensorLayout, device: OpenCLDevice, tuning: DeviceTuning, localBytesPerItem: Int) {
        let sizes = ChannelShape(shape: shape)
        self.shape = shape
        channel = ChannelGeometry(
            sizes, layout: layout, launch: LaunchGeometry(device: device, tuning: tuning),
            localBytesPerItem: localBytesPerItem)
        isRowsByChannels = layout == .channelsLast || sizes.spatial == 1
        wideIndices = channel.wideIndices(elements: sizes.count, elementwiseVectors: sizes.count / channel.vectorWidth)
    }

    /// n = N·M: the values of each channel, and the rows of the `(rows, C)` matrix.
    var valuesPerChannel: Int { batchSpatial }

    /// The reduction strategy for this shape: columns for a `(rows, C)` matrix, per
    /// channel for NCHW, split into slices only when the channels alone cannot fill the
    /// device and each slice still gets a worthwhile amount of data.
    func reduction() -> BatchNormPlan.Strategy {
        if isRowsByChannels {
            if channel.columnTilesFillComputeUnits { return .columns }
            let groups = channel.columnSlices(samples: 1, rows: valuesPerChannel)
            return groups > 1 ? .splitColumns(rowGroups: groups) : .columns
        }
        // A CPU runs a work-group per channel on one thread, and scheduling one costs
        // about as much as reducing a few thousand values: many short channels go one per
        // work-item instead ((4, 1024, 14, 14): 0.90 ms in 1024 work-groups, 0.41 ms).
        let launch = channel.launch
        if launch.chunkedAccess && channels >= launch.targetWorkGroups
            && valuesPerChannel / channel.vectorWidth < launch.minimumVectorsPerWorkGroup
        {
            return .channelItems
        }
        let groups = launch.slicesPerSegment(
            segments: channels, vectorsPerSegment: valuesPerChannel / channel.vectorWidth)
        return groups > 1 ? .splitReduction(groupsPerChannel: groups) : .fusedPerChannel
    }

    /// The build options both BatchNorm programs start with; the op adds its flags.
    func specialization(elementType: ElementType) -> KernelSpecialization {
        // The column kernels are in every program; NCHW problems all take CVEC 1, so that
        // their programs do not follow C % 4.
        channel.specialization(
            elementType: elementType, wideIndices: wideIndices, vectorWidth: channel.vectorWidth,
            channelVectorWidth: isRowsByChannels ? channel.channelVectorWidth : 1)
    }

    // MARK: Launches

    typealias Launch = KernelLaunches.Launch

    /// One work-group per channel.
    var perChannelGroups: Launch { ([channels * channel.reductionWorkGroupSize], [channel.reductionWorkGroupSize]) }
    /// `groups` work-groups per channel (slice, channel).
    func sliceGroups(_ groups: Int) -> Launch {
        ([groups * channel.reductionWorkGroupSize, channels], [channel.reductionWorkGroupSize, 1])
    }
    /// One work-item per column tile.
    var columnItems: Launch { ([channel.columnItems], [channel.columnWorkGroupSize]) }
    /// One work-item per column tile and row slice (tile, slice).
    func columnItems(rowGroups: Int) -> Launch {
        ([channel.columnItems, rowGroups], [channel.columnWorkGroupSize, 1])
    }
    /// The one-launch strategies: one work-group per channel with the NCHW sizes
    /// (`fusedPerChannel`), or one work-item per column tile with the column sizes.
    func singlePass(columns: Bool) throws -> (launch: Launch, sizes: KeyValuePairs<String, KernelArgument>) {
        columns ? (columnItems, try columnSizes()) : (perChannelGroups, try planeSizes())
    }
    /// One work-item per channel, in work-groups spread over the device (the
    /// ``BatchNormPlan/Strategy/channelItems`` reductions).
    var channelItems: Launch { channel.launch.spreadLaunch(items: channels) }
    /// One work-item per channel.
    var perChannelItems: Launch { channel.launch.perSegmentLaunch(segments: channels) }
    /// An elementwise pass over every element vector.
    var elementwise: Launch { channel.launch.elementwiseLaunch(vectors: count / channel.vectorWidth) }

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
}
