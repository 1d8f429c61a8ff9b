import Testing
@testable import NormCL

/// Every OpenCL object the library creates is released: a private runtime that ran
/// every op forward and backward, once dropped with everything made on it, holds no
/// context, queue, program, kernel, buffer or event (``OpenCLObjectCounts``).
///
/// The counts cover the library's own objects; the sanitizer run of
/// `scripts/leak-check.sh` covers host memory.
@Suite("Leaks", .enabled(if: hasOpenCL))
struct LeakTests {
    @Test("a runtime and everything made on it release every OpenCL object")
    func everyObjectReleased() throws {
        let device = try #require(sharedRuntime).device
        weak var weakRuntime: OpenCLRuntime?
        let objects: OpenCLObjectCounts
        do {
            let runtime = try OpenCLRuntime(device: device)
            weakRuntime = runtime
            objects = runtime.objects
            #expect(objects.snapshot == [.context: 1, .commandQueue: 1, .program: 0, .kernel: 0, .memory: 0, .event: 0])
            try runEveryOp(on: .openCL(runtime))
            let busy = objects.snapshot
            #expect(busy[.program]! > 0 && busy[.kernel]! >= busy[.program]!, "\(busy)")
            // The tensors and events are gone: only idle pool buffers and cached programs remain.
            #expect(objects.count(.event) == 0, "KernelEvent releases its cl_event")
            try runtime.finish()
            #expect(runtime.buffers.allocatedBytes == runtime.buffers.idleBytes, "every held buffer is idle")
            #expect((objects.count(.memory) == 0) == (runtime.buffers.idleBytes == 0))
            runtime.buffers.releaseAll()
            #expect(objects.count(.memory) == 0, "tensors release their buffers")
            #expect(runtime.buffers.allocatedBytes == 0)
            // A second round reuses the cached programs and kernels: nothing new is kept.
            try runEveryOp(on: .openCL(runtime))
            #expect(objects.count(.program) == busy[.program]!)
            #expect(objects.count(.kernel) == busy[.kernel]!, "kernels are checked back in, not recreated")
        }
        #expect(weakRuntime == nil, "nothing keeps the runtime alive")
        #expect(objects.snapshot == [.context: 0, .commandQueue: 0, .program: 0, .kernel: 0, .memory: 0, .event: 0])
    }

    /// Every op forward and backward (float32, channels-first), results read back so
    /// every kernel has run; the copy-bandwidth probe too.
    private func runEveryOp(on backend: Backend) throws {
        var rng = SeededGenerator(seed: 4242)
        let shape = [2, 4, 3, 3]
        let x = try Tensor(rng.normals(72), shape: shape, on: backend)
        let dy = try Tensor(rng.normals(72), shape: shape, on: backend)
        let weight = try Tensor(rng.normals(4, offset: 1, scale: 0.1), on: backend)
        let bias = try Tensor(rng.normals(4), on: backend)
        var values: [[Float]] = []

        var running: RunningStatistics? = try RunningStatistics(channels: 4, on: backend)
        let bn = try batchNorm(x, weight: weight, bias: bias, runningStatistics: &running, training: true)
        let bnGrads = try batchNormBackward(dy, input: x, weight: weight, forward: bn)
        let bnInference = try batchNorm(x, weight: weight, bias: bias, runningStatistics: &running, training: false)
        let bnInferenceGrads = try batchNormBackward(dy, input: x, weight: weight, runningStatistics: running!)
        var renormRunning = try RunningStatistics(channels: 4, on: backend)
        let renorm = try batchRenorm(
            x, weight: weight, bias: bias, runningStatistics: &renormRunning, limits: BatchRenormLimits(rmax: 3, dmax: 5))
        let renormGrads = try batchRenormBackward(dy, input: x, weight: weight, forward: renorm)
        values += try [bn.output, bnInference.output, renorm.output].map { try $0.toArray() }
        values += try [bnGrads, bnInferenceGrads, renormGrads].map { try $0.input!.toArray() }

        let ln = try layerNorm(x, normalizedShape: [3, 3])
        let lnGrads = try layerNormBackward(dy, input: x, normalizedShape: [3, 3], weight: nil, forward: ln)
        let rms = try rmsNorm(x, normalizedShape: [3, 3])
        let rmsGrads = try rmsNormBackward(dy, input: x, normalizedShape: [3, 3], weight: nil, forward: rms)
        let gn = try groupNorm(x, numGroups: 2, weight: weight, bias: bias)
        let gnGrads = try groupNormBackward(dy, input: x, numGroups: 2, weight: weight, forward: gn)
        let inorm = try instanceNorm(x, weight: weight, bias: bias)
        let inGrads = try instanceNormBackward(dy, input: x, weight: weight, forward: inorm)
        values += try [ln.output, rms.output, gn.output, inorm.output].map { try $0.toArray() }
        values += try [lnGrads, rmsGrads, gnGrads, inGrads].map { try $0.input!.toArray() }

        let logits = try Tensor([1, 1, 1], on: backend)
        var snRunning: RunningStatistics? = try RunningStatistics(channels: 4, on: backend)
        let sn = try switchableNorm(
            x, meanLogits: logits, varianceLogits: logits, weight: weight, bias: bias, runningStatistics: &snRunning,
            training: true)
        let snGrads = try switchableNormBackward(
            dy, input: x, meanLogits: logits, varianceLogits: logits, weight: weight, forward: sn, training: true)
        values += [try sn.output.toArray(), try snGrads.input!.toArray()]

        if case .openCL(let runtime) = backend {
            _ = try runtime.measureCopyBandwidth(megabytes: 1, iterations: 1)
        }
        #expect(values.allSatisfy { $0.count == 72 && $0.allSatisfy(\.isFinite) })
    }
}
