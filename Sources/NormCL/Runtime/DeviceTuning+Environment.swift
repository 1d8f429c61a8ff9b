extension DeviceTuning {
    /// The environment variable that overrides tuning values, for measuring other
    /// settings without a rebuild: comma-separated `name=value` pairs, e.g.
    /// `NORMCL_TUNING=reductionWorkGroupSize=64,chunkedAccess=0`.
    public static let environmentVariable = "NORMCL_TUNING"

    /// `self` with the overrides of `text` applied; unknown names and bad values are
    /// reported in the returned list and otherwise ignored.
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
            case "reductionWorkGroupSize" where value > 0: tuning.reductionWorkGroupSize = value
            case "elementwiseWorkGroupSize" where value > 0: tuning.elementwiseWorkGroupSize = value
            case "workGroupsPerComputeUnit" where value > 0: tuning.workGroupsPerComputeUnit = value
            case "minimumVectorsPerWorkGroup" where value > 0: tuning.minimumVectorsPerWorkGroup = value
            case "chunkedAccess": tuning.chunkedAccess = value != 0
            case "columnTile" where value > 0: tuning.columnTile = value
            default: rejected.append(String(pair))
            }
        }
        return (tuning, rejected)
    }
}
