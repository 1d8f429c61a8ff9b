import Testing
@testable import NormCL

/// The OpenCL runtime: discovery and selection, error names, the default-backend
/// decision, the program cache, build failures, events, allocation failures and
/// concurrent use.
@Suite("OpenCL runtime")
struct RuntimeTests {
    // MARK: Discovery and selection

    @Test("the copy probe copies real data of the size asked for")
    func copyProbeCopies() throws {
        let runtime = try #require(sharedRuntime)
        // 1000 bytes read plus written: 500 each way, rounded up to 32 float4s.
        let probe = try CopyProbe(bytes: 1000, on: runtime)
        #expect(probe.bytes == 1024)
        #expect(try probe.run() > 0)
        // The source holds written data (untouched memory would read as one cached zero
        // page on CPU devices and flatter the copy), and the run copied all of it.
        let copied: [Float] = try probe.destination.download()
        #expect(copied.count == 128 && copied.allSatisfy { $0 == 1 })
        #expect(try runtime.measureCopyBandwidth(megabytes: 1, iterations: 2) > 0)
    }

    @Test("devices are discovered on this machine")
    func devicesDiscovered() throws {
        let runtime = try #require(sharedRuntime)
        let devices = try DeviceDiscovery.devices()
        #expect(!devices.isEmpty)
        #expect(devices.map(\.index) == Array(devices.indices), "indices follow discovery order")
        #expect(devices.contains { $0.name == runtime.device.name })
        for device in devices {
            #expect(!device.name.isEmpty)
            #expect(device.computeUnits > 0 && device.maxWorkGroupSize > 0)
            #expect(device.maxAllocationBytes > 0 && device.maxAllocationBytes <= device.globalMemoryBytes)
        }
        // Discovery runs once: a second call returns the same devices.
        #expect(try DeviceDiscovery.devices().map(\.description) == devices.map(\.description))
    }

    @Test("select by index, kind, and case-insensitive name substring")
    func selectDevices() throws {
        _ = try #require(sharedRuntime)
        let all = try DeviceDiscovery.devices()
        for device in all {
            #expect(try DeviceDiscovery.select("\(device.index)", from: all).index == device.index)
        }
        for (request, kind) in [("cpu", OpenCLDevice.Kind.cpu), ("GPU", .gpu)] {
            if let first = all.first(where: { $0.kind == kind }) {
                #expect(try DeviceDiscovery.select(request, from: all).index == first.index, "\(request)")
            } else {
                #expect(throws: DeviceSelectionError.noMatch(request: request, available: all.map(\.description))) {
                    try DeviceDiscovery.select(request, from: all)
                }
            }
        }
        // A middle part of the first device's name, in the other case.
        let name = all[0].name
        let start = name.index(name.startIndex, offsetBy: name.count / 4)
        let end = name.index(start, offsetBy: Swift.max(1, name.count / 2))
        let fragment = String(name[start..<end])
        let swapped = String(fragment.map { $0.isUppercase ? Character($0.lowercased()) : Character($0.uppercased()) })
        for request in [fragment, fragment.uppercased(), fragment.lowercased(), swapped] {
            let chosen = try DeviceDiscovery.select(request, from: all)
            #expect(chosen.name.lowercased().contains(fragment.lowercased()), "'\(request)' chose \(chosen.name)")
            #expect(chosen.index == all.first { $0.name.lowercased().contains(fragment.lowercased()) }!.index)
        }
        // The platform name selects too (when no device name contains it).
        let platform = all[0].platformName
        if !all.contains(where: { $0.name.lowercased().contains(platform.lowercased()) }) {
            #expect(try DeviceDiscovery.select(platform.uppercased(), from: all).platformName == platform)
        }
    }

    @Test("a request that matches nothing lists the devices")
    func selectNoMatch() throws {
        _ = try #require(sharedRuntime)
        let all = try DeviceDiscovery.devices()
        for request in ["no-such-device-xyz", "\(all.count + 7)", "-1"] {
            let error = #expect(throws: DeviceSelectionError.self) { try DeviceDiscovery.select(request, from: all) }
            #expect(error == .noMatch(request: request, available: all.map(\.description)))
            let description = error.map(String.init(describing:)) ?? ""
            #expect(description.contains("'\(request)'"))
            for device in all { #expect(description.contains(device.description), "description lists \(device.name)") }
            #expect(description.contains("reference"), "description offers the reference path")
        }
        #expect(throws: DeviceSelectionError.noMatch(request: "cpu", available: [])) { try DeviceDiscovery.select("cpu", from: []) }
        #expect(String(describing: DeviceSelectionError.noMatch(request: "x", available: [])).contains("(none)"))
    }

    // MARK: Errors

    @Test("OpenCL error names")
    func errorNames() {
        #expect(OpenCLError.name(of: -54) == "CL_INVALID_WORK_GROUP_SIZE")
        #expect(OpenCLError.name(of: -1001) == "CL_PLATFORM_NOT_FOUND_KHR")
        #expect(OpenCLError.name(of: -61) == "CL_INVALID_BUFFER_SIZE")
        #expect(OpenCLError.name(of: -5) == "CL_OUT_OF_RESOURCES")
        #expect(OpenCLError.name(of: -11) == "CL_BUILD_PROGRAM_FAILURE")
        #expect(OpenCLError.name(of: 0) == "CL_SUCCESS")
        #expect(OpenCLError.name(of: -9999) == "unknown OpenCL error")
        #expect(OpenCLError.name(of: -20) == "unknown OpenCL error")
        let error = OpenCLError(code: -4, call: "clCreateBuffer(64 bytes)")
        #expect(error.name == "CL_MEM_OBJECT_ALLOCATION_FAILURE")
        #expect(error.isOutOfResources)
        #expect(!OpenCLError(code: -54, call: "x").isOutOfResources)
        #expect(error.description.contains("clCreateBuffer(64 bytes)"))
        #expect(error.description.contains("CL_MEM_OBJECT_ALLOCATION_FAILURE"))
        #expect(error.description.contains("-4"))
    }

    // MARK: The default backend

    @Test("no OpenCL platform or device falls back to the reference with a notice")
    func fallbackToReference() throws {
        let failures: [(any Error, String)] = [
            (OpenCLError(code: -1001, call: "clGetPlatformIDs"), "CL_PLATFORM_NOT_FOUND_KHR"),
            (OpenCLError(code: -1, call: "clGetDeviceIDs"), "CL_DEVICE_NOT_FOUND"),
            (DeviceSelectionError.noDevice, "no device"),
        ]
        for (failure, mention) in failures {
            let resolved = try Backend.resolve(request: nil) { throw failure }
            #expect(resolved.backend.runtime == nil, "\(failure)")
            #expect(resolved.backend.name == "CPU reference")
            let notice = try #require(resolved.notice, "\(failure)")
            #expect(notice.contains("CPU reference path"), "\(notice)")
            #expect(notice.contains(mention), "\(notice)")
        }
    }

    @Test("'reference' selects the reference without discovery or notice")
    func referenceRequest() throws {
        for request in ["reference", "REFERENCE", "Reference"] {
            var discovered = false
            let resolved = try Backend.resolve(request: request) {
                discovered = true
                throw OpenCLError(code: -1001, call: "clGetPlatformIDs")
            }
            #expect(resolved.backend.runtime == nil)
            #expect(resolved.notice == nil)
            #expect(!discovered, "'reference' must not touch OpenCL")
        }
    }

    @Test("selection and other OpenCL failures propagate")
    func failuresPropagate() throws {
        let noMatch = DeviceSelectionError.noMatch(request: "nvidia", available: ["#0 cpu"])
        #expect(throws: noMatch) { try Backend.resolve(request: "nvidia") { throw noMatch } }
        let hostMemory = OpenCLError(code: -6, call: "clGetDeviceIDs")
        #expect(throws: hostMemory) { try Backend.resolve(request: nil) { throw hostMemory } }
    }

    @Test("a discovered device gives an OpenCL backend and no notice")
    func resolvesDevice() throws {
        let runtime = try #require(sharedRuntime)
        let resolved = try Backend.resolve(request: nil) { runtime.device }
        #expect(resolved.notice == nil)
        let resolvedRuntime = try #require(resolved.backend.runtime)
        #expect(resolvedRuntime.device.name == runtime.device.name)
        #expect(try Backend.default.name == runtime.device.name)
    }

    // MARK: Programs

    /// A private runtime, so other tests building programs in parallel on the shared
    /// one cannot change the counts.
    @Test("the program cache builds each (source, options) once")
    func programCache() throws {
        let shared = try #require(sharedRuntime)
        let runtime = try OpenCLRuntime(device: shared.device)
        let source = KernelSource(
            name: "cache_probe",
            text: "__kernel void probe(__global float *y) { y[get_global_id(0)] = VALUE * (float)get_global_id(0); }")
        let before = runtime.programs.count
        let first = try runtime.program(source, options: "-D VALUE=2.5f")
        #expect(runtime.programs.count == before + 1)
        let again = try runtime.program(source, options: "-D VALUE=2.5f")
        #expect(first === again)
        #expect(runtime.programs.count == before + 1)
        let other = try runtime.program(source, options: "-D VALUE=-3.0f")
        #expect(other !== first)
        #expect(runtime.programs.count == before + 2)

        // The options really are part of what was built: run both programs.
        for (program, value) in [(first, Float(2.5)), (other, -3)] {
            let buffer = try DeviceBuffer(byteCount: 16 * 4, on: runtime)
            try runtime.enqueue("probe", from: program, global: [16], local: [16], arguments: [.buffer(buffer)])
            #expect(try buffer.download(as: Float.self) == (0..<16).map { value * Float($0) })
        }
    }

    @Test("a kernel with a syntax error is a KernelBuildError, and the runtime stays usable")
    func buildFailure() throws {
        let shared = try #require(sharedRuntime)
        let runtime = try OpenCLRuntime(device: shared.device)
        let broken = KernelSource(name: "broken", text: "__kernel void k() { this is not C; }")
        let options = "-cl-std=CL1.2 -D PROBE=1"
        let before = runtime.programs.count
        let error = #expect(throws: KernelBuildError.self) { try runtime.program(broken, options: options) }
        let buildError = try #require(error)
        #expect(!buildError.log.isEmpty)
        #expect(buildError.log.lowercased().contains("error"), "log: \(buildError.log)")
        // The options the compiler got: the op's, and the cache's own (compilerOptions).
        #expect(buildError.options == ProgramCache.compilerOptions(options))
        #expect(buildError.program == "broken")
        #expect(buildError.device == runtime.device.name)
        #expect(buildError.status.code == -11, "CL_BUILD_PROGRAM_FAILURE, got \(buildError.status)")
        #expect(String(describing: buildError).contains(buildError.log))
        // Not cached: the same error again, and nothing counted.
        #expect(throws: KernelBuildError.self) { try runtime.program(broken, options: options) }
        #expect(runtime.programs.count == before)
        // The runtime still runs BatchNorm correctly.
        try BatchNormHarness(shape: [3, 4, 5, 6], seed: 55).check(on: .openCL(runtime), training: true)
        try BatchNormHarness(shape: [3, 4, 5, 6], seed: 56).check(on: .openCL(runtime), training: false)
    }

    // MARK: Events

    @Test("BatchNorm events report device time", arguments: ["fused", "split", "inference"])
    func events(mode: String) throws {
        let runtime = try #require(sharedRuntime)
        let harness = BatchNormHarness(shape: [8, 16, 32, 32], affine: false, seed: 66)
        let input = try Tensor(harness.x, shape: harness.shape, on: .openCL(runtime))
        var running: RunningStatistics? = RunningStatistics(
            mean: try Tensor(harness.runningMean!, on: .openCL(runtime)), variance: try Tensor(harness.runningVar!, on: .openCL(runtime)))
        let strategy: BatchNormPlan.Strategy? =
            switch mode {
            case "fused": .fusedPerChannel
            case "split": .splitReduction(groupsPerChannel: 4)
            default: nil
            }
        let out = try batchNorm(
            input, weight: nil, bias: nil, runningStatistics: &running, training: mode != "inference",
            momentum: 0.1, eps: 1e-5, strategy: strategy)
        #expect(!out.events.isEmpty)
        var longest: UInt64 = 0
        for event in out.events {
            let duration = try event.durationNanoseconds()
            #expect(duration > 0, "\(event.name) took \(duration) ns")
            let (start, end) = try event.interval()
            #expect(end - start == duration)
            longest = Swift.max(longest, duration)
        }
        let span = try out.events.spanNanoseconds()
        #expect(span >= longest, "span \(span) ns, longest kernel \(longest) ns")
        #expect(try [KernelEvent]().spanNanoseconds() == 0)
        // Events are no substitute for the data: the output is also right (1e-5·(1 + |y|)
        // as in the harness, for data of order 1).
        let expected = try harness.run(on: .reference, training: mode != "inference").output
        expectClose(try out.output.toArray(), expected, "output \(mode)") { i in 1e-5 * (1 + Swift.abs(Double(expected[i]))) }
    }

    // MARK: Allocation failure

    @Test("a buffer larger than the device allows is an OpenCLError, not a crash")
    func allocationFailure() throws {
        let runtime = try #require(sharedRuntime)
        let limit = runtime.device.maxAllocationBytes
        let elements = limit / 4 + 1024
        let error = #expect(throws: OpenCLError.self) { try Tensor(uninitializedShape: [elements], on: runtime) }
        let openCLError = try #require(error)
        #expect(openCLError.isOutOfResources || openCLError.code == -61, "\(openCLError)")
        #expect(openCLError.call.hasPrefix("clCreateBuffer"))
        // Still usable afterwards.
        try BatchNormHarness(shape: [2, 3, 7], seed: 88).check(on: .openCL(runtime), training: true)
    }

    // MARK: Concurrency

    /// Eight tasks, five BatchNorm forwards each, on the shared runtime at once: kernel
    /// objects, the program cache and the queue are used from several threads.
    @Test("concurrent BatchNorm on the shared runtime matches the reference")
    func concurrentUse() async throws {
        let runtime = try #require(sharedRuntime)
        let shapes: [[Int]] = [[4, 3, 9, 9], [16, 8], [2, 5, 33], [3, 2, 4, 4], [1, 2, 4099], [6, 7, 5]]
        try await withThrowingTaskGroup(of: Void.self) { group in
            for task in 0..<8 {
                group.addTask {
                    for step in 0..<5 {
                        let shape = shapes[(task + step) % shapes.count]
                        let harness = BatchNormHarness(shape: shape, offset: Double(task), seed: UInt64(task * 100 + step))
                        let strategy: BatchNormPlan.Strategy? = step % 2 == 0 ? nil : .splitReduction(groupsPerChannel: 3)
                        try harness.check(on: .openCL(runtime), training: step != 4, strategy: step == 4 ? nil : strategy)
                    }
                }
            }
            try await group.waitForAll()
        }
    }
}
