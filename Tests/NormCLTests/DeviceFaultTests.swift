import COpenCL
import Testing
@testable import NormCL

#if canImport(Glibc)
import Glibc
#endif

/// Device faults are typed errors that leave the runtime usable: after each one the
/// same runtime runs an op that matches the reference, and its allocator holds only
/// live, accounted buffers.
///
/// Each test makes its own runtime: faults there (a lowered allocation limit, a device
/// filled to its limit) cannot disturb tests running in parallel on the shared one.
@Suite("Device faults", .enabled(if: hasOpenCL))
struct DeviceFaultTests {
    /// A private runtime on the shared runtime's device.
    private func privateRuntime() throws -> OpenCLRuntime {
        try OpenCLRuntime(device: try #require(sharedRuntime).device)
    }

    /// Runs `fault` on a private runtime (its tensors gone when it returns), then
    /// ``expectUsable(_:seed:sourceLocation:)`` on that runtime.
    private func faultThenUsable(
        seed: UInt64, _ fault: (OpenCLRuntime) throws -> Void, sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let runtime = try privateRuntime()
        try fault(runtime)
        try expectUsable(runtime, seed: seed, sourceLocation: sourceLocation)
    }

    /// The runtime still computes BatchNorm (training and inference) as the reference
    /// does, and every byte it holds is an idle pool buffer: call it once the test's own
    /// tensors are gone.
    private func expectUsable(_ runtime: OpenCLRuntime, seed: UInt64, sourceLocation: SourceLocation = #_sourceLocation)
        throws
    {
        try BatchNormHarness(shape: [2, 3, 7], seed: seed).check(on: .openCL(runtime), training: true)
        try BatchNormHarness(shape: [2, 3, 7], seed: seed + 1).check(on: .openCL(runtime), training: false)
        try runtime.finish()
        #expect(
            runtime.buffers.allocatedBytes == runtime.buffers.idleBytes,
            "held \(runtime.buffers.allocatedBytes) bytes, idle \(runtime.buffers.idleBytes)", sourceLocation: sourceLocation)
        #expect(
            runtime.objects.count(.event) == 0, "events outlived their ops", sourceLocation: sourceLocation)
    }

    // MARK: Allocation

    @Test("a tensor larger than the device's max allocation is CL_INVALID_BUFFER_SIZE")
    func overMaxAllocation() throws {
        let runtime = try privateRuntime()
        let device = runtime.device
        let elements = device.maxAllocationBytes / 4 + 1024
        let error = #expect(throws: OpenCLError.self) { try Tensor(uninitializedShape: [elements], on: runtime) }
        let openCLError = try #require(error)
        #expect(openCLError.isOutOfResources, "\(openCLError)")
        if elements * 4 <= runtime.buffers.limitBytes {
            #expect(openCLError.code == CL_INVALID_BUFFER_SIZE, "the driver's own check: \(openCLError)")
        }
        #expect(openCLError.call == "clCreateBuffer(\(elements * 4) bytes)")
        #expect(runtime.buffers.allocatedBytes == 0, "a failed allocation is not counted as held")
        #expect(runtime.objects.count(.memory) == 0)
        try expectUsable(runtime, seed: 101)
    }

    /// PoCL accepts any number of buffers and aborts the process when one cannot be
    /// backed at its first use (tried: `ulimit -v`, then a write), so the runtime stops
    /// at the device's global memory size with the error a GPU driver gives. Only one
    /// page of each buffer is touched: the test reserves address space, not memory.
    @Test("allocations past the device's global memory are CL_MEM_OBJECT_ALLOCATION_FAILURE")
    func pastGlobalMemory() throws {
        let runtime = try privateRuntime()
        let device = runtime.device
        #expect(runtime.buffers.limitBytes == device.globalMemoryBytes)
        let byteCount = device.maxAllocationBytes - 4096
        let attempts = device.globalMemoryBytes / byteCount + 2
        var held: [DeviceBuffer] = []
        var failure: OpenCLError?
        for _ in 0..<attempts {
            do {
                held.append(try DeviceBuffer(byteCount: byteCount, on: runtime))
            } catch {
                failure = error
                break
            }
        }
        let error = try #require(failure, "\(attempts) buffers of \(byteCount) bytes all allocated")
        #expect(error.code == CL_MEM_OBJECT_ALLOCATION_FAILURE, "\(error)")
        #expect(error.isOutOfResources)
        #expect(error.call == "clCreateBuffer(\(byteCount) bytes)")
        #expect(held.count == device.globalMemoryBytes / byteCount)
        #expect(runtime.buffers.allocatedBytes == held.count * byteCount)
        // The buffers that were allocated work: write and read back a word of each.
        for (index, buffer) in held.enumerated() {
            var word = Float(index + 1)
            try check(
                clEnqueueWriteBuffer(runtime.queue, buffer.handle, cl_bool(CL_TRUE), 4096, 4, &word, 0, nil, nil),
                "clEnqueueWriteBuffer")
            var back: Float = 0
            try check(
                clEnqueueReadBuffer(runtime.queue, buffer.handle, cl_bool(CL_TRUE), 4096, 4, &back, 0, nil, nil),
                "clEnqueueReadBuffer")
            #expect(back == Float(index + 1))
        }
        held.removeAll()
        // Each is larger than the pool keeps idle (a quarter of the device): all released.
        #expect(runtime.buffers.allocatedBytes == 0)
        #expect(runtime.objects.count(.memory) == 0)
        try expectUsable(runtime, seed: 103)
    }

    @Test("at the limit, idle pool buffers are released to make room before an allocation fails")
    func limitReleasesIdle() throws {
        let runtime = try privateRuntime()
        runtime.buffers.limitBytes = 1 << 20
        var buffers = try (0..<3).map { _ in try DeviceBuffer(byteCount: 256 << 10, on: runtime) }
        buffers.removeAll()
        #expect(runtime.buffers.idleBytes == 768 << 10)
        let large = try DeviceBuffer(byteCount: 512 << 10, on: runtime)
        #expect(runtime.buffers.idleBytes == 0, "the idle buffers made room")
        #expect(runtime.buffers.allocatedBytes == 512 << 10)
        #expect(throws: OpenCLError(code: CL_MEM_OBJECT_ALLOCATION_FAILURE, call: "clCreateBuffer(\(768 << 10) bytes)")) {
            try DeviceBuffer(byteCount: 768 << 10, on: runtime)
        }
        _ = large
    }

    /// The fault-injection hook: a lowered limit fails the op's first output allocation,
    /// then (with room for the output only) a later one; the inputs and whatever the op
    /// had allocated are unharmed, and with the limit lifted the same op on the same
    /// tensors matches the reference.
    @Test("an op whose output allocation fails throws OpenCLError, and runs once memory is back")
    func outputAllocationFails() throws {
        try faultThenUsable(seed: 106, outputAllocationFails(on:))
    }

    private func outputAllocationFails(on runtime: OpenCLRuntime) throws {
        let harness = BatchNormHarness(shape: [2, 3, 7], seed: 105)
        let input = try Tensor(harness.x, shape: harness.shape, on: .openCL(runtime))
        let weight = try Tensor(harness.weight!, on: .openCL(runtime))
        let bias = try Tensor(harness.bias!, on: .openCL(runtime))
        let outputBytes = harness.x.count * 4
        let normalLimit = runtime.buffers.limitBytes
        for room in [0, outputBytes] {
            runtime.buffers.releaseAll()
            runtime.buffers.limitBytes = runtime.buffers.allocatedBytes + room
            let error = #expect(throws: OpenCLError.self, "room for \(room) bytes") {
                try batchNorm(input, weight: weight, bias: bias)
            }
            #expect(error?.code == CL_MEM_OBJECT_ALLOCATION_FAILURE, "\(String(describing: error))")
            #expect(error?.call.hasPrefix("clCreateBuffer(") == true)
            #expect(runtime.objects.count(.event) == 0, "no kernel was launched")
        }
        runtime.buffers.limitBytes = normalLimit
        let out = try batchNorm(input, weight: weight, bias: bias)
        let expected = try harness.run(on: .reference, training: true).output
        expectClose(try out.output.toArray(), expected, "after the fault") { i in 1e-5 * (1 + Swift.abs(Double(expected[i]))) }
        #expect(try input.toArray() == harness.x, "the input is unharmed")

        // A backward pass's output allocation fails the same way.
        let dy = try Tensor(harness.x.reversed(), shape: harness.shape, on: .openCL(runtime))
        runtime.buffers.releaseAll()
        runtime.buffers.limitBytes = runtime.buffers.allocatedBytes
        #expect(throws: OpenCLError.self) { try batchNormBackward(dy, input: input, weight: weight, forward: out) }
        runtime.buffers.limitBytes = normalLimit
        let grads = try batchNormBackward(dy, input: input, weight: weight, forward: out)
        let reference = try batchNormBackward(
            try Tensor(harness.x.reversed(), shape: harness.shape, on: .reference),
            input: try Tensor(harness.x, shape: harness.shape, on: .reference), weight: try Tensor(harness.weight!, on: .reference),
            forward: try batchNorm(
                try Tensor(harness.x, shape: harness.shape, on: .reference), weight: try Tensor(harness.weight!, on: .reference),
                bias: try Tensor(harness.bias!, on: .reference)))
        let dx = try reference.input!.toArray()
        expectClose(try grads.input!.toArray(), dx, "dx after the fault") { i in 1e-4 * (1 + Swift.abs(Double(dx[i]))) }
    }

    // MARK: Launches

    @Test("a launch with a work-group larger than the device allows is an OpenCLError")
    func workGroupTooLarge() throws {
        try faultThenUsable(seed: 107, workGroupTooLarge(on:))
    }

    private func workGroupTooLarge(on runtime: OpenCLRuntime) throws {
        let source = KernelSource(
            name: "fault_probe", text: "__kernel void probe(__global float *y) { y[get_global_id(0)] = (float)get_global_id(0); }")
        let program = try runtime.program(source, options: "-cl-std=CL1.2")
        let local = runtime.device.maxWorkGroupSize * 2
        let buffer = try DeviceBuffer(byteCount: local * 4, on: runtime)
        let error = #expect(throws: OpenCLError.self) {
            try runtime.enqueue("probe", from: program, global: [local], local: [local], arguments: [.buffer(buffer)])
        }
        let code = try #require(error).code
        #expect(code == CL_INVALID_WORK_GROUP_SIZE || code == CL_INVALID_WORK_ITEM_SIZE, "\(String(describing: error))")
        #expect(error?.call == "clEnqueueNDRangeKernel(probe)")
        #expect(runtime.objects.count(.event) == 0)
        // The kernel object went back to the program's pool and launches legally.
        let kernels = runtime.objects.count(.kernel)
        try runtime.enqueue("probe", from: program, global: [local], local: [16], arguments: [.buffer(buffer)])
        #expect(runtime.objects.count(.kernel) == kernels, "the checked-out kernel was returned and reused")
        #expect(try buffer.download(as: Float.self) == (0..<local).map(Float.init))
    }

    // MARK: Environment

    /// In a child process (the override is read from the process environment, and
    /// ``Backend/default`` is resolved once per process).
    @Test("NORMCL_DEVICE naming no device is a DeviceSelectionError listing the devices")
    func deviceOverrideMatchesNothing() async {
        await #expect(processExitsWith: .success) {
            setenv("NORMCL_DEVICE", "no-such-device-xyz", 1)
            let all = (try? DeviceDiscovery.devices()) ?? []
            guard !all.isEmpty else { exit(10) }
            do {
                _ = try Backend.default
                exit(11)
            } catch let error as DeviceSelectionError {
                guard error == .noMatch(request: "no-such-device-xyz", available: all.map(\.description)) else { exit(12) }
                let text = String(describing: error)
                guard all.allSatisfy({ text.contains($0.description) }), text.contains("reference") else { exit(13) }
            } catch {
                exit(14)
            }
            guard Backend.fallbackNotice == nil else { exit(15) }
            // The one-shot entry points, which use the default backend, throw it too.
            do {
                _ = try batchNorm([1, 2, 3, 4], shape: [2, 2])
                exit(16)
            } catch is DeviceSelectionError {
            } catch {
                exit(17)
            }
            exit(0)
        }
    }

    @Test("NORMCL_TUNING garbage is reported and ignored; valid entries apply")
    func tuningGarbage() async throws {
        let result = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            setenv(
                "NORMCL_TUNING",
                "garbage,reductionWorkGroupSize=99999,=,chunkedAccess=2,columnTile=-1,,elementwiseWorkGroupSize=32", 1)
            guard let runtime = try? OpenCLRuntime() else { exit(10) }
            var expected = DeviceTuning(for: runtime.device)
            expected.elementwiseWorkGroupSize = 32
            guard runtime.tuning == expected else { exit(11) }
            let harness = BatchNormHarness(shape: [2, 3, 7], seed: 109)
            guard let device = try? harness.run(on: .openCL(runtime), training: false).output,
                let reference = try? harness.run(on: .reference, training: false).output,
                zip(device, reference).allSatisfy({ Swift.abs(Double($0) - Double($1)) <= 1e-5 * (1 + Swift.abs(Double($1))) })
            else { exit(12) }
            exit(0)
        }
        let standardError = String(decoding: try #require(result).standardErrorContent, as: UTF8.self)
        for entry in ["garbage", "reductionWorkGroupSize=99999", "chunkedAccess=2", "columnTile=-1"] {
            #expect(standardError.contains(entry), "stderr: \(standardError)")
        }
        #expect(!standardError.contains("elementwiseWorkGroupSize"), "a valid entry is not reported")
    }
}
