/// The vector widths and work sizes of the kernels of an `(N, C, *spatial)` problem —
/// BatchNorm's, GroupNorm's and InstanceNorm's, Switchable Norm's — derived once from
/// the shape and ``LaunchGeometry``; each op's plan adds its own launches.
///
/// These kernels read memory in two patterns: NCHW runs (the M contiguous values of one
/// (n, c), ``vectorWidth`` values a load), and a row-major `(rows, C)` matrix
/// (channels-last input, or `(N, C)` input of either layout) whose column kernels give
/// each work-item ``LaunchGeometry/columnTile`` adjacent vectors of
/// ``channelVectorWidth`` channels and walk the rows.
struct ChannelGeometry: Equatable, Sendable {
    let launch: LaunchGeometry
    /// Values per load along an NCHW run: the widest the device takes that divides M
    /// (``LaunchGeometry/vectorWidth(dividing:)``; 1 for channels-last input). A vector never straddles two channels, so γ and β stay per
    /// vector.
    let vectorWidth: Int
    /// Channels per load in the column kernels: the widest the device takes that divides
    /// C (``LaunchGeometry/vectorWidth(dividing:)``; the activations of a fused epilogue
    /// run at this width).
    let channelVectorWidth: Int
    /// Work-items of a column kernel over one block of rows (one per tile of channel
    /// vectors), and their work-group size.
    let columnWorkItems: Int
    let columnWorkGroupSize: Int
    /// Work-group size of the reductions (a power of two).
    let reductionWorkGroupSize: Int

    /// Fewer rows than this per slice make a split column reduction's partials cost more
    /// than they save.
    static let minimumRowsPerSlice = 64

    /// - Parameter localBytesPerItem: local memory per work-item of the op's reduction tree.
    init(_ problem: some ChannelShaped, layout: TensorLayout, launch: LaunchGeometry, localBytesPerItem: Int) {
        self.launch = launch
        vectorWidth = layout == .channelsFirst ? launch.vectorWidth(dividing: problem.spatial) : 1
        channelVectorWidth = launch.vectorWidth(dividing: problem.channels)
        (columnWorkItems, columnWorkGroupSize) = launch.columnWorkItems(
            columnVectors: problem.channels / channelVectorWidth, vectorWidth: channelVectorWidth)
        reductionWorkGroupSize = launch.reductionWorkGroupSize(localBytesPerItem: localBytesPerItem)
    }

    /// The column kernels' work-items over one block of rows, rounded up to whole work-groups.
    var columnItems: Int { columnWorkItems.roundedUp(toMultipleOf: columnWorkGroupSize) }

    /// Row slices of a column reduction over `samples` blocks of `rows` rows each (1 when
    /// the column tiles alone fill the device): enough that the launch has
    /// ``LaunchGeometry/targetWorkGroups`` work-groups (GPUs: that many full ones). A CPU
    /// driver runs a work-group's items one after another on one thread (PoCL here: one
    /// work-group of 8 items keeps one of its two threads busy, two keep both), so busy
    /// items alone do not spread the work: GroupNorm at batch 1 NHWC, (1, 640, 32, 32) with
    /// 32 groups, had 10 column work-items in one work-group and 1 slice by items (one
    /// core), 8 slices now. Never fewer than ``minimumRowsPerSlice`` rows a slice, at most 1024.
    func columnSlices(samples: Int, rows: Int) -> Int {
        let target = launch.targetWorkGroups
        let limit = min(rows / Self.minimumRowsPerSlice, 1024)
        guard launch.chunkedAccess else {
            return max(1, min((target * columnWorkGroupSize).ceilingDivided(by: samples * columnWorkItems), limit))
        }
        let workGroupsPerSlice = max(1, samples * columnItems / columnWorkGroupSize)
        return max(1, min(target.ceilingDivided(by: workGroupsPerSlice), limit))
    }

    /// Whether a one-pass column kernel's tiles alone keep a CPU's compute units evenly
    /// busy: at least one work-group per compute unit, and the last round of work-groups
    /// at least three quarters full. Then splitting the rows into slices only adds two
    /// launches (partials and their merge, ~40 µs each on PoCL): BatchNorm training on
    /// (256, 2048) took 0.30 ms in three launches over 8 work-groups and 0.17 ms in one
    /// over 2. GPUs need many work-groups per compute unit to hide latency, so there
    /// ``columnSlices(samples:rows:)`` decides alone.
    var columnTilesFillComputeUnits: Bool {
        guard launch.chunkedAccess else { return false }
        let groups = columnItems / columnWorkGroupSize, units = launch.computeUnits
        return groups >= units && 4 * groups >= 3 * groups.roundedUp(toMultipleOf: units)
    }

    /// Whether element indices of `elements` values need 64 bits, for an op whose widest
    /// launches are a reduction work-group and an elementwise pass over `elementwiseVectors`.
    func wideIndices(elements: Int, elementwiseVectors: Int) -> Bool {
        LaunchGeometry.needsWideIndices(
            elements: elements,
            workItems: max(reductionWorkGroupSize, launch.elementwiseLaunch(vectors: elementwiseVectors).global[0]))
    }

    /// The build options every program of these ops starts with: element type, access,
    /// index width, `VEC` and `WG`; `CVEC` and `TILE` when the program has column kernels
    /// (`channelVectorWidth` given), so that programs without them do not follow `C % 4`.
    func specialization(
        elementType: ElementType, wideIndices: Bool, vectorWidth: Int, channelVectorWidth: Int?
    ) -> KernelSpecialization {
        var options = KernelSpecialization(
            elementType: elementType, geometry: launch, wideIndices: wideIndices)
        options.define("VEC", vectorWidth)
        options.define("WG", reductionWorkGroupSize)
        if let channelVectorWidth {
            options.define("CVEC", channelVectorWidth)
            options.define("TILE", launch.columnTile(vectorWidth: channelVectorWidth))
        }
        return options
    }
}
