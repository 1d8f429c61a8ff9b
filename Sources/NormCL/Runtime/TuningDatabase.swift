/// Launch parameters measured on particular devices, kept apart from the code that uses
/// them, as CLBlast keeps its tuning database apart from its routines.
///
/// Each entry is for one device, named as OpenCL names it (`CL_DEVICE_NAME`, and the
/// platform's name). It records the driver it was measured with and how. A device with
/// no entry gets its kind's defaults (``DeviceTuning/init(defaultsFor:)``), and
/// `NORMCL_TUNING` overrides either.
///
/// `normcl-bench --tune` measures the device it runs on. It starts from the current
/// values and tries each parameter's candidates in turn, over a set of suite cases, and
/// keeps a value only when it makes the geometric mean of their median times at least
/// 3% lower. It then prints the entry, and with `--tune-database PATH` writes it into
/// this file: it replaces the entry for the same device and platform, or inserts one
/// before the end marker.
enum TuningDatabase {
    struct Entry: Sendable {
        /// `CL_DEVICE_NAME`, exactly.
        let deviceName: String
        /// `CL_PLATFORM_NAME`, exactly.
        let platformName: String
        /// The driver measured (`CL_DRIVER_VERSION`). Another version of the same device
        /// still uses the entry: a tuning is a starting point, not a correctness matter.
        let driverVersion: String
        let tuning: DeviceTuning
        /// How and when the entry was measured, and what it gained.
        let measured: String
    }

    /// The entry for `device`, if there is one.
    static func entry(for device: OpenCLDevice) -> Entry? {
        entry(deviceName: device.name, platformName: device.platformName)
    }

    /// The entry for the device of this name on the platform of this name, if any.
    static func entry(deviceName: String, platformName: String) -> Entry? {
        entries.first { $0.deviceName == deviceName && $0.platformName == platformName }
    }

    static let entries: [Entry] = [
        Entry(
            deviceName: "pthread-skylake-avx512-AMD EPYC", platformName: "Portable Computing Language",
            driverVersion: "3.1+debian",
            tuning: DeviceTuning(
                reductionWorkGroupSize: 16, elementwiseWorkGroupSize: 16, workGroupsPerComputeUnit: 4,
                minimumVectorsPerWorkGroup: 4096, chunkedAccess: true, columnTile: 16, vectorWidth: 16,
                streamingStoreBytes: 32 << 20),
            measured: "normcl-bench --tune --iterations 15 --warmup 3, 2026-12-07, 2 vCPUs: the search's pick (chunkedAccess=1,reductionWorkGroupSize=16,elementwiseWorkGroupSize=256,workGroupsPerComputeUnit=4,columnTile=16,minimumVectorsPerWorkGroup=16384) did not hold up when alternated with these values: 0.984 vs 0.994 ms"),
        // END OF ENTRIES (normcl-bench --tune --tune-database inserts new entries above this line)
    ]
}
