import Testing
@testable import NormCL

/// The default disk cache is left to a driver that keeps its own (PoCL, unless its
/// kernel cache is off): reading a PoCL program binary compiles every kernel of the
/// program, which doubled cold test times, while PoCL's own cache already serves later
/// processes.
@Suite("Program cache defaults")
struct ProgramCacheDefaultsTests {
    @Test("PoCL keeps its own program cache unless POCL_KERNEL_CACHE=0; other drivers do not")
    func driverCache() {
        #expect(ProgramCacheConfiguration.driverKeepsProgramCache(platformName: "Portable Computing Language", kernelCacheSetting: nil))
        #expect(ProgramCacheConfiguration.driverKeepsProgramCache(platformName: "Portable Computing Language", kernelCacheSetting: "1"))
        #expect(!ProgramCacheConfiguration.driverKeepsProgramCache(platformName: "Portable Computing Language", kernelCacheSetting: "0"))
        #expect(!ProgramCacheConfiguration.driverKeepsProgramCache(platformName: "NVIDIA CUDA", kernelCacheSetting: nil))
    }

    @Test("a runtime's default follows its device", .enabled(if: hasOpenCL))
    func runtimeDefault() throws {
        let device = sharedRuntime!.device
        let configuration = ProgramCacheConfiguration.default(for: device)
        let explicit = environment(ProgramCacheConfiguration.directoryEnvironmentVariable) != nil
        if !explicit, ProgramCacheConfiguration.driverKeepsProgramCache(
            platformName: device.platformName, kernelCacheSetting: environment("POCL_KERNEL_CACHE"))
        {
            #expect(configuration.directory == nil)
        } else {
            #expect(configuration.directory == ProgramCacheConfiguration.fromEnvironment().directory)
        }
    }
}
