/// The launch sizes every op derives from its device's limits and tuning, in one place:
/// plans ask it for work-group sizes and counts instead of each re-deriving them.
///
/// - Reductions run in power-of-two work-groups (the tree in `Kernels/reduction.cl`
///   halves its width), capped by the device's work-group limit and by local memory.
/// - Elementwise passes launch enough work-groups to fill every compute unit
///   (``DeviceTuning/workGroupsPerComputeUnit``) and no more than the data needs.
/// - Column kernels (row-major `(rows, columns)` matrices) give each work-item
///   ``DeviceTuning/columnTile`` column vectors.
struct LaunchGeometry: Equatable, Sendable {
    /// Whether each work-item walks one contiguous chunk (CPUs) or items interleave (GPUs).
    let chunkedAccess: Bool
    /// Column vectors per work-item in column kernels.
    let columnTile: Int
    /// The widest elementwise vector (``DeviceTuning/vectorWidth``).
    let maximumVectorWidth: Int
    /// Work-items per work-group of elementwise and column kernels.
    let elementwiseWorkGroupSize: Int
    /// Work-items per work-group of one-work-item-per-segment kernels (merges, scales).
    let perSegmentWorkGroupSize: Int
    /// The device's compute units.
    let computeUnits: Int
    /// Work-groups that keep every compute unit busy.
    let targetWorkGroups: Int
    /// The fewest vectors worth a reduction work-group of their own (see ``DeviceTuning``).
    let minimumVectorsPerWorkGroup: Int
    /// Kernels moving more bytes stream their stores (``DeviceTuning/streamingStoreBytes``).
    let streamingStoreBytes: Int
    private let tunedReductionWorkGroupSize: Int
    private let maxWorkGroupSize: Int
    private let localMemoryBytes: Int

    init(device: OpenCLDevice, tuning: DeviceTuning) {
        chunkedAccess = tuning.chunkedAccess
        columnTile = max(1, tuning.columnTile)
        maximumVectorWidth = tuning.vectorWidth
        elementwiseWorkGroupSize = max(1, min(tuning.elementwiseWorkGroupSize, device.maxWorkGroupSize))
        perSegmentWorkGroupSize = max(1, min(64, device.maxWorkGroupSize))
        computeUnits = max(1, device.computeUnits)
        targetWorkGroups = max(1, device.computeUnits * tuning.workGroupsPerComputeUnit)
        minimumVectorsPerWorkGroup = max(1, tuning.minimumVectorsPerWorkGroup)
        streamingStoreBytes = tuning.streamingStoreBytes
        tunedReductionWorkGroupSize = tuning.reductionWorkGroupSize
        maxWorkGroupSize = device.maxWorkGroupSize
        localMemoryBytes = device.localMemoryBytes
    }

    /// Values per elementwise load for runs of `length` contiguous values (a row, a
    /// plane): the widest of 16, 8 and 4, up to ``maximumVectorWidth``, that divides
    /// `length`, else 1 (kernels take `VEC` = 16, 8, 4 or 1).
    func vectorWidth(dividing length: Int) -> Int {
        [16, 8, 4].first { $0 <= maximumVectorWidth && length % $0 == 0 } ?? 1
    }

    /// The reduction work-group size: the largest power of two within the tuning, the
    /// device's work-group limit and its local memory, for kernels that keep
    /// `localBytesPerItem` bytes per work-item (plus `reservedLocalBytes` per group).
    func reductionWorkGroupSize(localBytesPerItem: Int, reservedLocalBytes: Int = 16) -> Int {
        let localLimit = max(1, (localMemoryBytes - reservedLocalBytes) / localBytesPerItem)
        return Self.powerOfTwo(atMost: min(tunedReductionWorkGroupSize, maxWorkGroupSize, localLimit))
    }

    /// Work-groups of an elementwise pass over `vectors` vectors.
    func elementwiseWorkGroups(vectors: Int) -> Int {
        max(1, min(targetWorkGroups, vectors.ceilingDivided(by: elementwiseWorkGroupSize)))
    }

    /// The 1-D launch of an elementwise pass over `vectors` vectors: (global, local).
    func elementwiseLaunch(vectors: Int) -> (global: [Int], local: [Int]) {
        ([elementwiseWorkGroups(vectors: vectors) * elementwiseWorkGroupSize], [elementwiseWorkGroupSize])
    }

    /// The 1-D launch of one work-item per segment (channel, row, group) of `segments`.
    func perSegmentLaunch(segments: Int) -> (global: [Int], local: [Int]) {
        ([max(1, segments).roundedUp(toMultipleOf: perSegmentWorkGroupSize)], [perSegmentWorkGroupSize])
    }

    /// The 1-D launch of `items` independent work-items (one per channel, say) in
    /// work-groups of a power of two small enough that there are ``targetWorkGroups`` of
    /// them where the items allow (a CPU driver runs a work-group on one thread), at most
    /// ``perSegmentWorkGroupSize``.
    func spreadLaunch(items: Int) -> (global: [Int], local: [Int]) {
        let size = Self.powerOfTwo(atMost: max(1, min(perSegmentWorkGroupSize, items / targetWorkGroups)))
        return ([max(1, items).roundedUp(toMultipleOf: size)], [size])
    }

    /// Column vectors of `vectorWidth` channels a column kernel's work-item owns (`TILE`):
    /// ``columnTile`` vectors of 4 channels (or narrower), fewer of wider vectors, so that a
    /// work-item owns the same channels whatever the width.
    func columnTile(vectorWidth: Int) -> Int {
        vectorWidth > 4 ? max(1, columnTile * 4 / vectorWidth) : columnTile
    }

    /// Column kernels over `columnVectors` column vectors of `vectorWidth` channels:
    /// work-items (one per tile) and their work-group size.
    func columnWorkItems(columnVectors: Int, vectorWidth: Int) -> (items: Int, groupSize: Int) {
        let items = max(1, columnVectors.ceilingDivided(by: columnTile(vectorWidth: vectorWidth)))
        return (items, min(elementwiseWorkGroupSize, items.roundedUp(toMultipleOf: 4)))
    }

    /// Slices to split each of `segments` reductions of `vectorsPerSegment` vectors into,
    /// so that all of them together fill the device: 1 when the segments alone do, never
    /// so many that a slice gets less than ``minimumVectorsPerWorkGroup``, at most `limit`.
    func slicesPerSegment(segments: Int, vectorsPerSegment: Int, limit: Int = 1024) -> Int {
        let wanted = targetWorkGroups.ceilingDivided(by: max(1, segments))
        let worthwhile = vectorsPerSegment / minimumVectorsPerWorkGroup
        return max(1, min(wanted, worthwhile, limit))
    }

    /// Whether element indices need 64 bits: `elements`, plus the overshoot of a
    /// work-item's range past the end (up to twice the work-items), reach 2^32.
    static func needsWideIndices(elements: Int, workItems: Int) -> Bool {
        elements + 2 * workItems >= 1 << 32
    }

    static func powerOfTwo(atMost limit: Int) -> Int {
        var size = 1
        while size * 2 <= limit { size *= 2 }
        return size
    }
}

extension Int {
    /// `⌈self / divisor⌉` for positive divisors.
    func ceilingDivided(by divisor: Int) -> Int { (self + divisor - 1) / divisor }
    /// The smallest multiple of `multiple` that is at least `self`.
    func roundedUp(toMultipleOf multiple: Int) -> Int { ceilingDivided(by: multiple) * multiple }
}
