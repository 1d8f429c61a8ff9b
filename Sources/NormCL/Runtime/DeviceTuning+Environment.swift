extension DeviceTuning {
    /// The environment variable that overrides tuning values, for measuring other
    /// settings without a rebuild: comma-separated `name=value` pairs, e.g.
    /// `NORMCL_TUNING=reductionWorkGroupSize=64,chunkedAccess=0`.
    public static let environmentVariable = "NORMCL_TUNING"

    /// `self` with the overrides of `text` applied; unknown names and values out of
    /// range are reported in the returned list and otherwise ignored. Ranges keep
    /// launches sane: work-groups 1…4096, 1…1024 groups per compute unit, tiles 1…64
    /// (a tile sizes private arrays in the column kernel).
    public func applying(overrides text: String) -> (tuning: DeviceTuning, rejected: [String]) {
        var tuning = self
        var rejected: [String] = []
        for pair in text.split(separator: ",") {
            let parts = pair.split(separator: "=", maxSplits: 1).map { String($0).trimmingSpaces() }
            guard parts.count == 2, let value = Int(parts[1]), value >= 0 else {
                rejected.append(String(pair))
                continue
            }
            switch parts[0] {
            case "reductionWorkGroupSize" where (1...4096).contains(value): tuning.reductionWorkGroupSize = value
            case "elementwiseWorkGroupSize" where (1...4096).contains(value): tuning.elementwiseWorkGroupSize = value
            case "workGroupsPerComputeUnit" where (1...1024).contains(value): tuning.workGroupsPerComputeUnit = value
            case "minimumVectorsPerWorkGroup" where value > 0: tuning.minimumVectorsPerWorkGroup = value
            case "chunkedAccess" where value <= 1: tuning.chunkedAccess = value != 0
            case "columnTile" where (1...64).contains(value): tuning.columnTile = value
            case "vectorWidth" where [1, 4, 8, 16].contains(value): tuning.vectorWidth = value
            case "streamingStoreBytes": tuning.streamingStoreBytes = value
            default: rejected.append(String(pair))
            }
        }
        return (tuning, rejected)
    }
}
