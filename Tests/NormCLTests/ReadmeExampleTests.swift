import COpenCL
import Foundation
import Testing
import NormCL

/// The README's examples, compiled and run (without @testable: public API only), and a
/// check that each `<!-- example: NAME -->` block of README.md appears here line for
/// line, so the README cannot show code that does not compile or does not run.
///
/// To change an example: edit README.md and the block between `// README: NAME` and
/// `// END README` below alike (indentation aside); the checks after each block are the
/// test's own.
@Suite("README examples")
struct ReadmeExampleTests {
    @Test("README example: layer-norm")
    func exampleLayerNorm() throws {
        // README: layer-norm
        let backend = try Backend.default  // the default OpenCL device, or the CPU reference path

        // 4 rows of 8 features, like torch.nn.functional.layer_norm(x, [8], weight, bias).
        let values: [Float] = (0..<32).map { Float(($0 * 37) % 11) - 5 }
        let x = try Tensor(values, shape: [4, 8], on: backend)
        let weight = try Tensor(repeating: 1.5, shape: [8], on: backend)
        let bias = try Tensor(repeating: 0.25, shape: [8], on: backend)
        let forward = try layerNorm(x, normalizedShape: [8], weight: weight, bias: bias)
        let y: [Float] = try forward.output.toArray()        // waits for the device, copies back
        let rowMeans: [Float] = try forward.saveMean.toArray() // float32, one per row

        // Backward takes dy and the forward's output, which kept x, γ, β and eps.
        let dy = try Tensor((0..<32).map { Float($0 % 5) * 0.1 }, shape: [4, 8], on: backend)
        let gradients = try layerNormBackward(dy, forward: forward)
        let dx: [Float] = try gradients.input!.toArray()
        let dWeight: [Float] = try gradients.weight!.toArray() // Σ over rows of dy·x̂
        let dBias: [Float] = try gradients.bias!.toArray()     // Σ over rows of dy

        // dx alone (PyTorch's output_mask): the dγ and dβ reductions are skipped.
        let dxOnly = try layerNormBackward(dy, forward: forward, outputMask: .input)

        // The same with a layer that owns γ and β, like torch.nn.LayerNorm(8).
        let layer = try LayerNorm(normalizedShape: [8], on: backend)
        let step = try layer.forward(x)
        let layerGradients = try layer.backward(dy, forward: step)
        // END README
        // Checks (not in the README): the math the example claims.
        #expect(y.count == 32 && rowMeans.count == 4)
        for r in 0..<4 {
            let row = values[(r * 8)..<(r * 8 + 8)].map(Double.init)
            #expect(Swift.abs(row.reduce(0, +) / 8 - Double(rowMeans[r])) < 1e-5)
        }
        #expect(dx.count == 32 && dWeight.count == 8)
        for j in 0..<8 {
            let expected = (0..<4).map { Double(((($0 * 8 + j) % 5)) ) * 0.1 }.reduce(0, +)
            #expect(Swift.abs(Double(dBias[j]) - expected) < 1e-5)
        }
        #expect(dxOnly.weight == nil && dxOnly.bias == nil && dxOnly.input != nil)
        #expect(layerGradients.weight != nil && layerGradients.bias != nil)
    }

    @Test("README example: batch-norm-fold")
    func exampleBatchNormFold() throws {
        // README: batch-norm-fold
        let backend = try Backend.default

        // A batch of 8 NCHW images, 16 channels of 6×6.
        let count = 8 * 16 * 6 * 6
        let x = try Tensor((0..<count).map { Float(($0 * 7919) % 1000) / 250 - 2 }, shape: [8, 16, 6, 6], on: backend)
        let dy = try Tensor((0..<count).map { Float($0 % 13) * 0.01 - 0.06 }, shape: [8, 16, 6, 6], on: backend)

        // Like torch.nn.BatchNorm2d(16): γ = 1, β = 0, running mean 0 and variance 1, momentum 0.1.
        var bn = try BatchNorm(numFeatures: 16, on: backend)
        for _ in 0..<3 {
            let step = try bn.forward(x)                       // batch statistics; updates the running ones
            let gradients = try bn.backward(dy, forward: step) // dx, dγ, dβ
            // A plain SGD step on γ and β, after the backward pass.
            let gamma = try bn.weight!.toArray(), dGamma = try gradients.weight!.toArray()
            let beta = try bn.bias!.toArray(), dBeta = try gradients.bias!.toArray()
            bn.weight = try Tensor(zip(gamma, dGamma).map { $0 - 0.01 * $1 }, on: backend)
            bn.bias = try Tensor(zip(beta, dBeta).map { $0 - 0.01 * $1 }, on: backend)
        }
        let tracked = bn.runningStatistics!.numBatchesTracked // 3

        bn.isTraining = false
        let z: [Float] = try bn(x).toArray()                  // inference: the running statistics

        // Fold the inference map into the convolution before it: weight [16, 3, 3, 3], bias [16].
        let convWeight = [Float](repeating: 0.1, count: 16 * 3 * 3 * 3)
        let convBias = [Float](repeating: 0.5, count: 16)
        let folding = try BatchNormFolding(bn)
        let (foldedWeight, foldedBias) = try folding.fold(weight: convWeight, bias: convBias)
        // foldedWeight[o, …] = convWeight[o, …] · folding.scale[o]
        // foldedBias[o]      = convBias[o] · folding.scale[o] + folding.shift[o]
        // END README
        // Checks (not in the README).
        #expect(tracked == 3 && z.count == count)
        #expect(foldedWeight.count == convWeight.count && foldedBias.count == 16)
        for o in 0..<16 {
            let expected = Double(convBias[o]) * Double(folding.scale[o]) + Double(folding.shift[o])
            #expect(Swift.abs(Double(foldedBias[o]) - expected) < 1e-5)
            #expect(Swift.abs(Double(foldedWeight[o * 27]) - 0.1 * Double(folding.scale[o])) < 1e-6)
        }
    }

    @Test("README example: batch-norm-functional")
    func exampleBatchNormFunctional() throws {
        // README: batch-norm-functional
        let backend = try Backend.default
        let x = try Tensor((0..<64 * 4).map { Float($0 % 23) / 4 }, shape: [64, 4], on: backend) // (N, C)

        var running = try RunningStatistics(channels: 4, on: backend)
        // momentum nil: a cumulative average over the batches seen (1 / numBatchesTracked).
        let train = try batchNorm(x, runningStatistics: &running, training: true, momentum: nil)
        let eval = try batchNorm(x, runningStatistics: &running, training: false)
        let dy = try Tensor(repeating: 0.5, shape: [64, 4], on: backend)
        let dx = try batchNormBackward(dy, forward: train, outputMask: .input).input
        // END README
        // Checks (not in the README).
        #expect(running.numBatchesTracked == 1)
        #expect(train.saveMean != nil && eval.saveMean == nil)
        // A constant dy has no component along x̂ or the mean: dx = 0.
        #expect(try dx!.toArray().allSatisfy { Swift.abs($0) < 1e-5 })
    }

    @Test("README example: fused")
    func exampleFused() throws {
        // README: fused
        let backend = try Backend.default

        // A pre-norm transformer block: h = x + residual and y = RMSNorm(h) in one pass, h kept
        // for the next block (vLLM's fused_add_rms_norm), the residual stream in float32 under
        // half activations; Gemma's zero-centred γ, x · rstd · (1 + w), as weightOffset 1.
        let x = try Tensor(repeating: 0.25, shape: [8, 64], elementType: .float16, on: backend)
        let residual = try Tensor(repeating: 1, shape: [8, 64], on: backend)
        let w = try Tensor(repeating: 0, shape: [64], on: backend)
        let block = try rmsNorm(x, normalizedShape: [64], weight: w, eps: 1e-6, residual: residual,
                                returnsResidualSum: true, weightOffset: 1)
        let h = block.residualSum!                                    // float32, the next block's residual
        let dy = try Tensor(repeating: 1, shape: [8, 64], elementType: .float16, on: backend)
        let dh = try Tensor(repeating: 0.5, shape: [8, 64], on: backend)   // dL/dh from the next block
        let dx = try rmsNormBackward(dy, forward: block, gradResidualSum: dh).input  // = dL/dresidual

        // ResNet's relu(BN(x) + shortcut) and the U-Net's silu(GroupNorm(x)), backward included.
        let features = try Tensor(
            (0..<2 * 32 * 4 * 4).map { Float($0 % 9) - 4 }, shape: [2, 32, 4, 4], layout: .channelsLast, on: backend)
        let shortcut = try Tensor(repeating: 0.5, shape: [2, 32, 4, 4], layout: .channelsLast, on: backend)
        let bn = try batchNorm(features, activation: .relu, addend: shortcut)  // training statistics
        let bnGradients = try batchNormBackward(features, forward: bn)         // .input, .weight, .bias, .addend (dz)
        let gn = try groupNorm(features, numGroups: 8, activation: .silu)
        let gnGradients = try groupNormBackward(features, forward: gn)
        // END README
        // Checks (not in the README).
        // h = 1.25 everywhere; with w = 0 and offset 1 the row normalises to 1.
        #expect(try h.elementType == .float32 && h.toArray().allSatisfy { $0 == 1.25 })
        #expect(try block.output.toArray().allSatisfy { Swift.abs($0 - 1) < 1e-3 })
        // A constant row's own gradient is 0 (dy is constant along it): dx is dh.
        #expect(try dx!.toArray().allSatisfy { Swift.abs($0 - 0.5) < 1e-3 })
        #expect(bnGradients.addend?.shape == [2, 32, 4, 4] && bnGradients.input?.layout == .channelsLast)
        #expect(try bn.output.toArray().allSatisfy { $0 >= 0 })
        #expect(gnGradients.weight == nil && gn.output.shape == [2, 32, 4, 4])
    }

    @Test("README example: other-ops")
    func exampleOtherOps() throws {
        // README: other-ops
        let backend = try Backend.default

        // NHWC images in half storage. The shape is still (N, C, H, W); the values are in memory order (N, H, W, C).
        let images = try Tensor(
            (0..<2 * 32 * 8 * 8).map { Float($0 % 17) / 4 }, shape: [2, 32, 8, 8], layout: .channelsLast,
            elementType: .float16, on: backend)
        let gn = try groupNorm(images, numGroups: 8)                  // statistics per (n, group), float32
        let inorm = try instanceNorm(images)                          // per (n, c), no running statistics
        var sn = try SwitchableNorm(numFeatures: 32, on: backend)     // IN, LN and BN mixed by learned weights
        let mixed = try sn.forward(images)
        let snGradients = try sn.backward(images, forward: mixed)     // dx, dγ, dβ and both logit gradients
        var renormed = try BatchNorm(numFeatures: 32, on: backend)
        renormed.renorm = BatchRenormLimits(rmax: 3, dmax: 5)         // Batch Renorm in training steps
        let corrected = try renormed.forward(images)                  // corrected.renormR, .renormD

        let tokens = try Tensor(repeating: 0.5, shape: [4, 16, 64], on: backend)
        let rms = try rmsNorm(tokens, normalizedShape: [64], eps: 1e-6)   // eps nil: the element type's epsilon
        let dTokens = try rmsNormBackward(tokens, forward: rms).input
        // END README
        // Checks (not in the README).
        #expect(gn.saveMean?.shape == [2, 8] && inorm.output.layout == .channelsLast)
        #expect(snGradients.input?.elementType == .float16 && snGradients.meanLogits.shape == [3])
        #expect(corrected.renormR?.shape == [32] && corrected.renormD?.shape == [32])
        // A constant row normalises to 1 (0.5 / sqrt(0.25 + 1e-6)), and its dx is 0.
        #expect(try rms.output.toArray().allSatisfy { Swift.abs($0 - 1) < 1e-5 })
        #expect(try dTokens!.toArray().allSatisfy { Swift.abs($0) < 1e-5 })
    }

    @Test("README example: sync-batch-norm")
    func exampleSyncBatchNorm() throws {
        // README: sync-batch-norm
        let backend = try Backend.default
        let parts: [Backend] = [backend, backend, .reference]
        let sizes = [3, 1, 0]                                   // samples per part: uneven, one part empty
        let inputs = try parts.indices.map { i in
            try Tensor((0..<sizes[i] * 16 * 25).map { Float(($0 + i) % 13) }, shape: [sizes[i], 16, 5, 5], on: parts[i])
        }
        var running = try parts.map { try RunningStatistics(channels: 16, on: $0) }
        let outputs = try syncBatchNorm(inputs, runningStatistics: &running)   // y of each part, whole-batch statistics
        let dys = try inputs.map { try Tensor(repeating: 0.5, shape: $0.shape, on: $0.backend) }
        let gradients = try syncBatchNormBackward(dys, inputs: inputs, forwards: outputs)
        // END README
        // Checks (not in the README): the parts together are BatchNorm of the whole batch.
        let whole = try batchNorm(
            try Tensor(inputs.flatMap { try $0.toArray() }, shape: [4, 16, 5, 5], on: .reference))
        let wholeY = try whole.output.toArray()
        let partsY = try outputs.flatMap { try $0.output.toArray() }
        #expect(partsY.count == wholeY.count)
        #expect(zip(partsY, wholeY).allSatisfy { Swift.abs($0 - $1) < 1e-4 })
        let (referenceRunning, deviceRunning) = (try running[2].mean.toArray(), try running[0].mean.toArray())
        #expect(zip(referenceRunning, deviceRunning).allSatisfy { Swift.abs($0 - $1) < 1e-5 })
        #expect(gradients[2].input?.count == 0 && gradients[2].weight?.count == 16)
    }

    @Test("README example: your-opencl", .enabled(if: hasOpenCL))
    func exampleYourOpenCL() throws {
        // README: your-opencl
        // Your program's OpenCL objects, made by your code.
        var platform: cl_platform_id?
        var device: cl_device_id?
        var status: cl_int = CL_SUCCESS
        clGetPlatformIDs(1, &platform, nil)
        clGetDeviceIDs(platform, cl_device_type(CL_DEVICE_TYPE_ALL), 1, &device, nil)
        let context = clCreateContext(nil, 1, &device, nil, nil, &status)!
        let queue = clCreateCommandQueueWithProperties(context, device, nil, &status)!
        let xMemory = clCreateBuffer(context, cl_mem_flags(CL_MEM_READ_WRITE), 32 * 4, nil, &status)!
        let yMemory = clCreateBuffer(context, cl_mem_flags(CL_MEM_READ_WRITE), 32 * 4, nil, &status)!
        let values: [Float] = (0..<32).map { Float($0 % 9) }
        var written: cl_event?   // e.g. the event of your kernel that produces x
        clEnqueueWriteBuffer(queue, xMemory, cl_bool(CL_TRUE), 0, 32 * 4, values, 0, nil, &written)

        // NormCL on them: no copy, no allocation for y, no wait.
        let runtime = try OpenCLRuntime(adopting: context, queue: queue, device: device!)
        let x = try Tensor(wrapping: xMemory, shape: [4, 8], on: runtime)
        let y = try Tensor(wrapping: yMemory, shape: [4, 8], on: runtime)
        let forward = try layerNorm(
            x, normalizedShape: [8], into: ForwardDestinations(output: y), waitingFor: [OpenCLEvent(written!)])
        let done: cl_event = forward.events.last!.openCLEvent.handle   // what your next command waits for
        clWaitForEvents(1, [done])
        // END README
        // Checks (not in the README): y is in your buffer, and is LayerNorm's.
        var read = [Float](repeating: .nan, count: 32)
        #expect(clEnqueueReadBuffer(queue, yMemory, cl_bool(CL_TRUE), 0, 32 * 4, &read, 0, nil, nil) == CL_SUCCESS)
        let expected = try layerNorm(values, shape: [4, 8], normalizedShape: [8], on: .reference)
        #expect(zip(read, expected).allSatisfy { Swift.abs($0 - $1) < 1e-5 })
        #expect(forward.output.openCLMemory?.buffer == yMemory)
        clReleaseEvent(written)
        for memory in [xMemory, yMemory] { clReleaseMemObject(memory) }
        clReleaseCommandQueue(queue)
        clReleaseContext(context)
    }

    /// Every example block of README.md, by name: its non-empty lines without the imports (this file has them at the top).
    static func readmeExamples() throws -> [(name: String, lines: [String])] {
        let text = try String(contentsOfFile: Self.repositoryRoot + "/README.md", encoding: .utf8)
        var examples: [(String, [String])] = []
        var name: String?, lines: [String]?
        for line in text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
            if line.hasPrefix("<!-- example: ") {
                name = String(line.dropFirst("<!-- example: ".count).prefix { $0 != " " })
            } else if name != nil, lines == nil, line.hasPrefix("```") {
                // A Swift example's block; the C and Python examples are run by Tests/C and Tests/Python.
                if line == "```swift" { lines = [] } else { name = nil }
            } else if let current = lines, line == "```" {
                examples.append((name!, current))
                name = nil
                lines = nil
            } else if lines != nil {
                let trimmed = line.trimmingCharacters(in: .whitespaces)
                if !trimmed.isEmpty && !trimmed.hasPrefix("import ") { lines!.append(trimmed) }
            }
        }
        return examples
    }

    static var repositoryRoot: String {
        // …/Tests/NormCLTests/ReadmeExampleTests.swift → the repository root.
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }

    @Test("every README example is one of the blocks above, line for line")
    func readmeMatches() throws {
        let examples = try Self.readmeExamples()
        #expect(
            examples.map(\.name) == [
                "layer-norm", "batch-norm-fold", "batch-norm-functional", "other-ops", "fused", "your-opencl", "sync-batch-norm",
                "mpi",
            ])
        func lines(of path: String) throws -> [String] {
            try String(contentsOfFile: path, encoding: .utf8)
                .split(separator: "\n", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        }
        let here = try lines(of: #filePath)
        // The MPI example needs Open MPI: it lives in Integrations/MPI, and scripts/test-mpi.sh runs it.
        let mpiExample = try lines(of: Self.repositoryRoot + "/Integrations/MPI/Sources/NormCLMPIExample/main.swift")
        for (name, lines) in examples {
            let source = name == "mpi" ? mpiExample : here
            guard let start = source.firstIndex(of: "// README: \(name)"),
                let end = source[start...].firstIndex(of: "// END README")
            else {
                Issue.record("README example \(name) has no block in its test")
                continue
            }
            let tested = source[(start + 1)..<end].filter { !$0.isEmpty }
            #expect(Array(tested) == lines, "README example \(name) differs from its test")
        }
    }
}
