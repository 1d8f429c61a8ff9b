/// How an ``OpenCLRuntime`` caches its compiled programs: how many it keeps in memory,
/// and where (if anywhere) it keeps their binaries on disk for later processes.
///
/// Every distinct (kernel, build options) pair a runtime runs is a program build: 0.1–1 s
/// on PoCL, and since sizes are build options, a new shape is a new program. The runtime
/// keeps the most recently used ``memoryLimit`` programs in memory and drops the least
/// recently used one beyond that (a launch still using a dropped program keeps it alive).
/// With a ``directory``, every program built from source is also written there as the
/// driver's binary, and a later runtime — in this process or another — loads it instead
/// of compiling the source. An entry is only used for exactly the source text, build
/// options, device, driver, platform and NormCL version it was compiled for; anything
/// else found there (a truncated or corrupt file, a foreign entry, a binary the driver
/// rejects) is compiled from source and replaced. A directory that cannot be written
/// never fails an op: programs are then compiled from source.
///
/// The default, ``default(for:)``, is ``fromEnvironment()`` with the disk cache left to
/// drivers that keep their own (PoCL); ``fromEnvironment()`` reads:
/// - `NORMCL_PROGRAM_CACHE_LIMIT`: the memory limit (default 64);
/// - `NORMCL_CACHE_DIR`: the directory, or `off` for no disk cache; when unset,
///   `$XDG_CACHE_HOME/normcl`, else `$HOME/.cache/normcl`.
public struct ProgramCacheConfiguration: Sendable, Equatable {
    /// Programs kept in memory per runtime unless configured otherwise.
    public static let defaultMemoryLimit = 64
    /// The environment variable that sets ``memoryLimit``: a whole number ≥ 1.
    public static let memoryLimitEnvironmentVariable = "NORMCL_PROGRAM_CACHE_LIMIT"
    /// The environment variable that sets ``directory``; the value `off` turns the disk
    /// cache off.
    public static let directoryEnvironmentVariable = "NORMCL_CACHE_DIR"

    /// The most programs a runtime keeps in memory; the least recently used one beyond it
    /// is dropped. At least 1.
    public var memoryLimit: Int {
        didSet { memoryLimit = max(1, memoryLimit) }
    }
    /// The directory program binaries are stored in and loaded from (created with its
    /// parents when first written), or nil for no disk cache.
    public var directory: String?

    /// A configuration with `memoryLimit` programs in memory (values below 1 are taken
    /// as 1) and program binaries in `directory` (nil: none on disk).
    public init(memoryLimit: Int = defaultMemoryLimit, directory: String?) {
        self.memoryLimit = max(1, memoryLimit)
        self.directory = directory
    }

    /// The configuration a runtime on `device` gets by default: ``fromEnvironment()``,
    /// except that without an explicit `NORMCL_CACHE_DIR` there is no disk cache on a
    /// driver that keeps its own program cache on disk — PoCL, unless
    /// `POCL_KERNEL_CACHE=0`. PoCL already gives a later process its programs from
    /// `~/.cache/pocl` (keyed, as here, by source and options), and reading a PoCL
    /// program's binary makes it compile every kernel of the program: on the 2-core
    /// development machine the LayerNorm test suite ran in 34 s from cold caches
    /// without NormCL's disk cache and in 70 s with it, and in 5.6 s and 5.0 s warm.
    public static func `default`(for device: OpenCLDevice) -> ProgramCacheConfiguration {
        var configuration = fromEnvironment()
        if environment(directoryEnvironmentVariable) == nil,
            driverKeepsProgramCache(platformName: device.platformName, kernelCacheSetting: environment("POCL_KERNEL_CACHE"))
        {
            configuration.directory = nil
        }
        return configuration
    }

    /// Whether the platform's driver keeps compiled programs on disk itself: PoCL does,
    /// unless `POCL_KERNEL_CACHE` is `0`.
    static func driverKeepsProgramCache(platformName: String, kernelCacheSetting: String?) -> Bool {
        platformName.contains("Portable Computing Language") && kernelCacheSetting != "0"
    }

    /// The configuration the environment variables describe (see the type's
    /// description); ``OpenCLRuntime/init(device:programCache:)`` uses it by default.
    /// An unusable `NORMCL_PROGRAM_CACHE_LIMIT` is reported on standard error and the
    /// default used.
    public static func fromEnvironment() -> ProgramCacheConfiguration {
        let (configuration, rejected) = resolve(environment)
        if let rejected {
            printToStandardError("NormCL: ignoring \(memoryLimitEnvironmentVariable)=\(rejected) (expected a whole number ≥ 1)")
        }
        return configuration
    }

    /// The configuration for the variables `lookup` gives, and the memory limit's value
    /// when it was not usable (separate from the process's environment for tests).
    static func resolve(_ lookup: (String) -> String?) -> (ProgramCacheConfiguration, rejected: String?) {
        var limit = defaultMemoryLimit
        var rejected: String?
        if let text = lookup(memoryLimitEnvironmentVariable), !text.isEmpty {
            if let value = Int(text.trimmingSpaces()), value >= 1 { limit = value } else { rejected = text }
        }
        return (ProgramCacheConfiguration(memoryLimit: limit, directory: defaultDirectory(lookup)), rejected)
    }

    /// `NORMCL_CACHE_DIR` (nil for `off`), else `$XDG_CACHE_HOME/normcl` (an absolute
    /// `XDG_CACHE_HOME` only, as the XDG specification says), else `$HOME/.cache/normcl`,
    /// else nil. Empty values count as unset.
    static func defaultDirectory(_ lookup: (String) -> String?) -> String? {
        func value(_ name: String) -> String? { lookup(name).flatMap { $0.isEmpty ? nil : $0 } }
        if let directory = value(directoryEnvironmentVariable) {
            return directory.lowercased() == "off" ? nil : directory
        }
        if let cacheHome = value("XDG_CACHE_HOME"), cacheHome.hasPrefix("/") { return cacheHome + "/normcl" }
        if let home = value("HOME") { return home + "/.cache/normcl" }
        return nil
    }
}
