import COpenCL
import Testing
@testable import NormCL

/// NormCL inside the caller's OpenCL program: their context and queue
/// (`OpenCLRuntime(adopting:queue:device:)`), their buffers (`Tensor(wrapping:…)`), their
/// events (`waitingFor:`), results written where they say (`into:`).
@Suite("Interop", .enabled(if: hasOpenCL))
struct InteropTests {
    let device = sharedRuntime!.device
    static let shape = [6, 5, 7]
    static let count = 210
    static let normalizedShape = [7]

    /// LayerNorm forward and backward and BatchNorm training forward and backward on
    /// `backend`, read back in one list.
    static func layerAndBatchNorm(on backend: Backend, x: [Float], dy: [Float]) throws -> [[Float]] {
        let o = try Operands(x: x, dy: dy, on: backend)
        let ln = try layerNorm(o.input, normalizedShape: normalizedShape, weight: o.gamma, bias: o.gamma)
        let lnGrads = try layerNormBackward(o.gradOutput, forward: ln)
        var running = o.running
        let bn = try batchNorm(o.input, weight: o.channels, bias: o.channels, runningStatistics: &running, training: true)
        let bnGrads = try batchNormBackward(o.gradOutput, forward: bn)
        return try results(ln, lnGrads, bn, running, bnGrads)
    }

    /// x and dy, LayerNorm's γ = β (7 values) and BatchNorm's γ = β (5 channels), and
    /// new running statistics on one backend.
    struct Operands {
        let input, gradOutput, gamma, channels: Tensor
        let running: RunningStatistics

        init(x: [Float], dy: [Float], on backend: Backend) throws {
            input = try Tensor(x, shape: InteropTests.shape, on: backend)
            gradOutput = try Tensor(dy, shape: InteropTests.shape, on: backend)
            gamma = try Tensor((0..<7).map { 1 + Float($0) / 10 }, on: backend)
            channels = try Tensor((0..<5).map { 1 - Float($0) / 10 }, on: backend)
            running = try RunningStatistics(channels: 5, on: backend)
        }
    }

    /// Every result of ``layerAndBatchNorm(on:x:dy:)``, read back in one list.
    static func results(
        _ ln: LayerNormOutput, _ lnGrads: NormGradients, _ bn: BatchNormOutput, _ running: RunningStatistics,
        _ bnGrads: NormGradients
    ) throws -> [[Float]] {
        try [
            ln.output, ln.saveMean, ln.saveInvstd, lnGrads.input!, lnGrads.weight!, lnGrads.bias!, bn.output,
            running.mean, running.variance, bnGrads.input!, bnGrads.weight!, bnGrads.bias!,
        ].map { try $0.toArray() }
    }

    /// Seeded x and dy, and their ``layerAndBatchNorm(on:x:dy:)`` results on the shared runtime.
    static func data(seed: UInt64) throws -> (x: [Float], dy: [Float], expected: [[Float]]) {
        var rng = SeededGenerator(seed: seed)
        let (x, dy) = (rng.normals(count, offset: 3), rng.normals(count))
        return (x, dy, try layerAndBatchNorm(on: .openCL(sharedRuntime!), x: x, dy: dy))
    }

    @Test("a runtime on the caller's context and queue gives the results of NormCL's own", arguments: [false, true])
    func adoptedRuntime(outOfOrder: Bool) throws {
        let (x, dy, expected) = try Self.data(seed: 16)
        let caller = try CallerOpenCL(device: device, outOfOrder: outOfOrder)
        let referencesBefore = caller.contextReferenceCount
        do {
            let runtime = try OpenCLRuntime(adopting: caller.context, queue: caller.queue, device: caller.device)
            #expect(runtime.isAdopted && runtime.isOutOfOrder == outOfOrder)
            #expect(runtime.contextHandle == caller.context && runtime.queueHandle == caller.queue)
            #expect(runtime.device.id == device.id)
            #expect(caller.contextReferenceCount == referencesBefore + 1, "the runtime retains the context")
            #expect(try Self.layerAndBatchNorm(on: .openCL(runtime), x: x, dy: dy) == expected)
        }
        #expect(caller.contextReferenceCount == referencesBefore, "and releases it when it goes")
    }

    @Test("a queue of another context is refused with an OpenCL error")
    func mismatchedHandles() throws {
        let a = try CallerOpenCL(device: device), b = try CallerOpenCL(device: device)
        #expect(throws: OpenCLError.self) { try OpenCLRuntime(adopting: a.context, queue: b.queue, device: a.device) }
    }

    @Test(
        "views of the caller's buffer give the results of copies, written in place: zero-copy at aligned offsets, staged at others",
        arguments: [0, 4])
    func views(misalignment: Int) throws {
        var rng = SeededGenerator(seed: 17)
        let (x, dy) = (rng.normals(Self.count, offset: 100), rng.normals(Self.count))
        let own = Backend.openCL(sharedRuntime!)
        let expectedLN = try layerNorm(Tensor(x, shape: Self.shape, on: own), normalizedShape: [7])
        let expectedGrads = try layerNormBackward(
            Tensor(dy, shape: Self.shape, on: own), input: Tensor(x, shape: Self.shape, on: own), normalizedShape: [7],
            weight: nil, saveMean: expectedLN.saveMean, saveInvstd: expectedLN.saveInvstd)
        var expectedRunning = try RunningStatistics(channels: 5, on: own)
        let expectedBN = try batchNorm(
            Tensor(x, shape: Self.shape, on: own), runningStatistics: &expectedRunning, training: true)
        let caller = try CallerOpenCL(device: device)
        let runtime = try OpenCLRuntime(adopting: caller.context, queue: caller.queue, device: caller.device)
        // One caller buffer holding everything, each tensor `misalignment` bytes past a multiple of the alignment.
        let align = device.baseAddressAlignmentBytes
        let slot = (Self.count * 4 + misalignment).ceilingDivided(by: align) * align
        let memory = try caller.buffer(bytes: 10 * slot)
        func offset(_ index: Int) -> Int { index * slot + misalignment }
        func view(_ index: Int, _ shape: [Int]) throws -> Tensor {
            try Tensor(wrapping: memory, byteOffset: offset(index), shape: shape, on: runtime)
        }
        try caller.write(x, to: memory, byteOffset: offset(1))
        try caller.write(dy, to: memory, byteOffset: offset(4))
        try caller.write([0, 0, 0, 0, 0, 1, 1, 1, 1, 1], to: memory, byteOffset: offset(7))
        let input = try view(1, Self.shape)
        #expect(input.deviceBuffer?.isStaged == (misalignment % align != 0))
        let ln = try layerNorm(
            input, normalizedShape: [7],
            into: .init(output: try view(2, Self.shape), saveMean: try view(0, [6, 5]), saveInvstd: try view(3, [6, 5])))
        #expect(ln.output.openCLMemory?.buffer == memory && ln.output.openCLMemory?.byteOffset == offset(2))
        let grads = try layerNormBackward(
            try view(4, Self.shape), input: input, normalizedShape: [7], weight: nil, saveMean: ln.saveMean,
            saveInvstd: ln.saveInvstd, into: .init(gradInput: try view(5, Self.shape), gradWeight: try view(6, [7])))
        // Running statistics in place at offsets 7 and 7 + 20 bytes.
        let runningMean = try view(7, [5])
        let runningVar = try Tensor(wrapping: memory, byteOffset: offset(7) + 20, shape: [5], on: runtime)
        var running = RunningStatistics(mean: runningMean, variance: runningVar)
        let bn = try batchNorm(
            input, runningStatistics: &running, training: true,
            into: .init(output: try view(8, Self.shape), runningMean: runningMean, runningVar: runningVar))
        try runtime.finish()
        #expect(try caller.read(memory, count: Self.count, byteOffset: offset(2)) == expectedLN.output.toArray())
        #expect(try caller.read(memory, count: 30, byteOffset: offset(0)) == expectedLN.saveMean.toArray())
        #expect(try ln.saveInvstd.toArray() == expectedLN.saveInvstd.toArray())
        #expect(try caller.read(memory, count: Self.count, byteOffset: offset(5)) == expectedGrads.input!.toArray())
        #expect(try caller.read(memory, count: 7, byteOffset: offset(6)) == expectedGrads.weight!.toArray())
        #expect(try grads.bias?.toArray() == expectedGrads.bias?.toArray())
        #expect(try caller.read(memory, count: Self.count, byteOffset: offset(8)) == expectedBN.output.toArray())
        #expect(
            try caller.read(memory, count: 10, byteOffset: offset(7))
                == expectedRunning.mean.toArray() + expectedRunning.variance.toArray())
        #expect(try caller.read(memory, count: Self.count, byteOffset: offset(1)) == x, "the input is untouched")
        #expect(try bn.output.toArray() == expectedBN.output.toArray())
    }

    @Test("views off the buffer or its elements, and destinations that do not fit, are typed errors")
    func refusedViews() throws {
        let caller = try CallerOpenCL(device: device), other = try CallerOpenCL(device: device)
        let runtime = try OpenCLRuntime(adopting: caller.context, queue: caller.queue, device: caller.device)
        let memory = try caller.buffer(bytes: 4096)
        let align = device.baseAddressAlignmentBytes
        let misaligned = #expect(throws: NormError.self) {
            try Tensor(wrapping: memory, byteOffset: align + 2, shape: [8], on: runtime)
        }
        #expect(misaligned?.argument == "byteOffset" && misaligned?.description.contains("element") == true)
        let pastEnd = #expect(throws: NormError.self) {
            try Tensor(wrapping: memory, byteOffset: 4096 - align, shape: [align], on: runtime)
        }
        #expect(pastEnd?.argument == "byteOffset")
        let foreign = try other.buffer(bytes: 64)
        #expect(#expect(throws: NormError.self) { try Tensor(wrapping: foreign, shape: [16], on: runtime) }?.argument == "buffer")
        let x = try Tensor(wrapping: memory, shape: [4, 8], on: runtime)
        let overlapping = #expect(throws: NormError.self) { try layerNorm(x, normalizedShape: [8], into: .init(output: x)) }
        #expect(overlapping?.argument == "destinations.output")
        let misshapen = #expect(throws: NormError.self) { try layerNorm(x, normalizedShape: [8], into: .init(saveMean: x)) }
        #expect(misshapen == .shapeMismatch(argument: "destinations.saveMean", expected: [4], actual: [4, 8]))
    }

    @Test("ops enqueue behind the caller's unset user event and return; setting it runs them", arguments: [false, true])
    func userEventGate(outOfOrder: Bool) throws {
        let (x, dy, expected) = try Self.data(seed: 18)
        let caller = try CallerOpenCL(device: device, outOfOrder: outOfOrder)
        // A fresh runtime: its programs are new, so these are first launches (which on
        // PoCL would otherwise wait for their compile).
        let runtime = try OpenCLRuntime(adopting: caller.context, queue: caller.queue, device: caller.device)
        let o = try Operands(x: x, dy: dy, on: .openCL(runtime))
        var running = o.running
        var status: cl_int = CL_SUCCESS
        let gate = try #require(clCreateUserEvent(caller.context, &status))
        defer { clReleaseEvent(gate) }
        let ln = try layerNorm(o.input, normalizedShape: [7], weight: o.gamma, bias: o.gamma, waitingFor: [OpenCLEvent(gate)])
        let lnGrads = try layerNormBackward(o.gradOutput, forward: ln, waitingFor: ln.events.map(\.openCLEvent))
        let bn = try batchNorm(
            o.input, weight: o.channels, bias: o.channels, runningStatistics: &running, training: true,
            waitingFor: lnGrads.events.map(\.openCLEvent))
        let bnGrads = try batchNormBackward(o.gradOutput, forward: bn, waitingFor: bn.events.map(\.openCLEvent))
        let events = ln.events + lnGrads.events + bn.events + bnGrads.events
        #expect(!events.isEmpty && events.allSatisfy(isPending), "nothing has run while the gate is unset")
        #expect(clSetUserEventStatus(gate, CL_COMPLETE) == CL_SUCCESS)
        #expect(try Self.results(ln, lnGrads, bn, running, bnGrads) == expected)
    }

    @Test("with destinations an op needs no memory of NormCL's: it runs under a zero memory limit, and fails cleanly without")
    func memoryLimit() throws {
        let caller = try CallerOpenCL(device: device)
        let runtime = try OpenCLRuntime(adopting: caller.context, queue: caller.queue, device: caller.device)
        func view(_ shape: [Int]) throws -> Tensor {
            try Tensor(wrapping: try caller.buffer(bytes: shape.reduce(4, *)), shape: shape, on: runtime)
        }
        let (x, y, mean, invstd) = (try view([64, 32]), try view([64, 32]), try view([64]), try view([64]))
        try caller.write((0..<2048).map { Float($0 % 13) }, to: x.openCLMemory!.buffer)
        runtime.memoryLimitBytes = 0
        let out = try layerNorm(x, normalizedShape: [32], into: .init(output: y, saveMean: mean, saveInvstd: invstd))
        #expect(runtime.allocatedBytes == 0)
        #expect(try out.output.toArray() == layerNorm(x.toArray(), shape: [64, 32], normalizedShape: [32], on: .openCL(sharedRuntime!)))
        let refused = #expect(throws: OpenCLError.self) { try layerNorm(x, normalizedShape: [32]) }
        #expect(refused?.isOutOfResources == true)
        runtime.memoryLimitBytes = .max
        #expect(try layerNorm(x, normalizedShape: [32]).output.toArray() == out.output.toArray())
    }

    @Test("a runtime dropped while its work waits for an unset user event returns at once; the work runs when it is set")
    func dropWhileGated() throws {
        let caller = try CallerOpenCL(device: device)
        let (xMemory, yMemory) = (try caller.buffer(bytes: 4 * 64), try caller.buffer(bytes: 4 * 64))
        let values = (0..<64).map { Float($0 % 7) }
        try caller.write(values, to: xMemory)
        var status: cl_int = CL_SUCCESS
        let gate = try #require(clCreateUserEvent(caller.context, &status))
        defer { clReleaseEvent(gate) }
        weak var dropped: OpenCLRuntime?
        do {
            let runtime = try OpenCLRuntime(adopting: caller.context, queue: caller.queue, device: caller.device)
            dropped = runtime
            let x = try Tensor(wrapping: xMemory, shape: [8, 8], on: runtime)
            let y = try Tensor(wrapping: yMemory, shape: [8, 8], on: runtime)
            _ = try layerNorm(x, normalizedShape: [8], into: .init(output: y), waitingFor: [OpenCLEvent(gate)])
        }
        #expect(dropped == nil, "the runtime and its tensors are gone, without waiting for the gate")
        #expect(clSetUserEventStatus(gate, CL_COMPLETE) == CL_SUCCESS)
        let expected = try layerNorm(values, shape: [8, 8], normalizedShape: [8], on: .openCL(sharedRuntime!))
        #expect(try caller.read(yMemory, count: 64) == expected)
    }

    @Test("1,000 steady-state calls on caller buffers and destinations create no OpenCL object")
    func steadyStateAllocatesNothing() throws {
        var rng = SeededGenerator(seed: 19)
        let caller = try CallerOpenCL(device: device)
        let runtime = try OpenCLRuntime(adopting: caller.context, queue: caller.queue, device: caller.device)
        func view(_ shape: [Int]) throws -> Tensor {
            let memory = try caller.buffer(bytes: shape.reduce(4, *))
            return try Tensor(wrapping: memory, shape: shape, on: runtime)
        }
        let (x, dy, y, dx) = (try view(Self.shape), try view(Self.shape), try view(Self.shape), try view(Self.shape))
        let (mean, invstd, runningMean, runningVar) = (try view([6, 5]), try view([6, 5]), try view([5]), try view([5]))
        let (dGamma, dBeta, bnMean, bnInvstd) = (try view([7]), try view([7]), try view([5]), try view([5]))
        try caller.write(rng.normals(Self.count), to: x.openCLMemory!.buffer)
        try caller.write(rng.normals(Self.count), to: dy.openCLMemory!.buffer)
        try caller.write([Float](repeating: 0, count: 5), to: runningMean.openCLMemory!.buffer)
        try caller.write([Float](repeating: 1, count: 5), to: runningVar.openCLMemory!.buffer)
        var running = RunningStatistics(mean: runningMean, variance: runningVar)
        // The last call's events, kept alive (an OpenCLEvent does not retain) for the next to wait for.
        var last: [KernelEvent] = []
        func step() throws {
            let ln = try layerNorm(
                x, normalizedShape: [7], into: .init(output: y, saveMean: mean, saveInvstd: invstd),
                waitingFor: last.map(\.openCLEvent))
            let grads = try layerNormBackward(
                dy, input: x, normalizedShape: [7], weight: nil, saveMean: ln.saveMean, saveInvstd: ln.saveInvstd,
                into: .init(gradInput: dx, gradWeight: dGamma, gradBias: dBeta))
            let bn = try batchNorm(
                x, runningStatistics: &running, training: true,
                into: .init(output: y, saveMean: bnMean, saveInvstd: bnInvstd, runningMean: runningMean, runningVar: runningVar),
                waitingFor: grads.events.map(\.openCLEvent))
            #expect(running.mean.openCLMemory?.buffer == runningMean.openCLMemory?.buffer, "updated in place")
            last = Array(bn.events.suffix(1))
        }
        try step()
        try runtime.finish()
        let before = runtime.objects.snapshot
        for _ in 0..<1_000 { try step() }
        try runtime.finish()
        #expect(runtime.objects.snapshot == before)
    }
}
