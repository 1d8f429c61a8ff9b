/// How a runtime came by its programs: built from source, or loaded as a binary from
/// the disk cache. The benchmark reports these beside first-call times; a number that
/// grows with the number of shapes would mean sizes leaked into build options.
public struct ProgramStatistics: Sendable, Equatable {
    /// Programs compiled from OpenCL C source.
    public var builtFromSource: Int
    /// Programs created from a binary in the disk cache.
    public var loadedFromDisk: Int

    /// Programs this runtime has obtained either way.
    public var total: Int { builtFromSource + loadedFromDisk }

    public init(builtFromSource: Int = 0, loadedFromDisk: Int = 0) {
        self.builtFromSource = builtFromSource
        self.loadedFromDisk = loadedFromDisk
    }

    /// The programs obtained since `earlier`.
    public static func - (later: ProgramStatistics, earlier: ProgramStatistics) -> ProgramStatistics {
        ProgramStatistics(
            builtFromSource: later.builtFromSource - earlier.builtFromSource,
            loadedFromDisk: later.loadedFromDisk - earlier.loadedFromDisk)
    }
}

extension OpenCLRuntime {
    /// The programs this runtime has built or loaded so far.
    public var programStatistics: ProgramStatistics {
        ProgramStatistics(builtFromSource: programs.sourceBuildCount, loadedFromDisk: programs.binaryLoadCount)
    }
}
