import COpenCL
import Testing
@_spi(CAPI) @testable import NormCL

/// The C API's fused epilogues (include/normcl.h's `_fused` functions), called from
/// Swift as a C program calls them: descriptors of raw memory, a `normcl_epilogue`, a
/// status code and the thread's message. Each op's C results must be the Swift API's on
/// the same runtime bit for bit (the same kernels with the same inputs; the Swift
/// fused ops are tested against the reference elsewhere), and bad arguments must give
/// typed errors without writing anything. The C side's own tests are Tests/C.
@Suite("C API fused epilogues", .enabled(if: hasOpenCL))
struct CAPIFusedEpilogueTests {
    /// `normcl_activation`'s values and the header's `normcl_epilogue` size, read from
    /// include/normcl.h, are the library's.
    @Test("the header's NORMCL_ACTIVATION_* values and normcl_epilogue size are the library's")
    func headerMapping() throws {
        var parts = "\(#filePath)".split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)
        let header = readText(parts.joined(separator: "/") + "/include/normcl.h")
        let names: [String: Activation] = ["NONE": .none, "RELU": .relu, "SILU": .silu, "GELU": .gelu, "GELU_TANH": .geluTanh]
        var found: [Activation: Int] = [:]
        for match in header.matches(of: /NORMCL_ACTIVATION_([A-Z_]+) = (\d+)/) {
            found[try #require(names[String(match.1)], "unknown \(match.1)")] = Int(match.2)
        }
        #expect(found.count == Activation.allCases.count, "\(found)")
        for (activation, value) in found {
            #expect(CEpilogue.activations.firstIndex(of: activation) == value, "NORMCL_ACTIVATION_ of \(activation)")
        }
        #expect(header.contains("sizeof(normcl_epilogue) == \(CEpilogue.size)"))
    }

    @Test("RMSNorm: half x, float32 residual and input bias with the sum returned, γ offset, β, SiLU; backward with dL/dh")
    func rmsNorm() throws {
        let (c, backend) = try Self.setUp()
        var rng = SeededGenerator(seed: 41)
        let (rows, d) = (5, 40)
        let x = try Self.tensor(&rng, [rows, d], .float16, on: backend)
        let residual = try Self.tensor(&rng, [rows, d], on: backend)
        let (w, b) = (try Self.tensor(&rng, [d], on: backend), try Self.tensor(&rng, [d], on: backend))
        let inputBias = try Self.tensor(&rng, [d], on: backend)
        let dy = try Self.tensor(&rng, [rows, d], .float16, on: backend)
        let gradSum = try Self.tensor(&rng, [rows, d], on: backend)
        let expected = try NormCL.rmsNorm(
            x, normalizedShape: [d], weight: w, bias: b, eps: 1e-6, residual: residual, inputBias: inputBias,
            returnsResidualSum: true, weightOffset: 1, activation: .silu)
        let expectedGradients = try rmsNormBackward(dy, forward: expected, gradResidualSum: gradSum)

        let epilogue = c.epilogue(2, weightOffset: 1)
        let (y, rstd, h) = (try Self.blank(like: x), try Self.blank([rows], on: backend), try Self.blank(like: residual))
        try c.expectSuccess {
            normcl_rms_norm_forward_fused(
                c.runtime, c(x), c(residual), c(inputBias), 1, c(w), c(b), 1e-6, epilogue, c(y), c(rstd), c(h), 0, nil,
                $0)
        }
        try Self.expectSame([y, rstd, h], [expected.output, expected.saveInvRms, expected.residualSum])
        // residual_sum is float32 under half x: the backward adds x and the residual, as Swift's.
        let (dx, dw, db, dc) = (
            try Self.blank(like: x), try Self.blank(like: w), try Self.blank(like: b), try Self.blank(like: inputBias)
        )
        try c.expectSuccess {
            normcl_rms_norm_backward_fused(
                c.runtime, c(dy), c(x), c(residual), c(inputBias), c(h), 1, c(w), c(b), c(rstd), epilogue, c(gradSum),
                c(dx), c(dw), c(db), c(dc), 0, nil, $0)
        }
        try Self.expectSame(
            [dx, dw, db, dc],
            [expectedGradients.input, expectedGradients.weight, expectedGradients.bias, expectedGradients.inputBias])
    }

    @Test("LayerNorm: residual with the sum returned, GELU (tanh); backward reading the stored sum")
    func layerNorm() throws {
        let (c, backend) = try Self.setUp()
        var rng = SeededGenerator(seed: 42)
        let shape = [3, 4, 24]
        let x = try Self.tensor(&rng, shape, on: backend), residual = try Self.tensor(&rng, shape, on: backend)
        let (w, b) = (try Self.tensor(&rng, [4, 24], on: backend), try Self.tensor(&rng, [4, 24], on: backend))
        let (dy, gradSum) = (try Self.tensor(&rng, shape, on: backend), try Self.tensor(&rng, shape, on: backend))
        let expected = try NormCL.layerNorm(
            x, normalizedShape: [4, 24], weight: w, bias: b, residual: residual, returnsResidualSum: true,
            activation: .geluTanh)
        let expectedGradients = try layerNormBackward(dy, forward: expected, gradResidualSum: gradSum)

        let epilogue = c.epilogue(4)
        let (y, h) = (try Self.blank(like: x), try Self.blank(like: x))
        let (mean, invstd) = (try Self.blank([3], on: backend), try Self.blank([3], on: backend))
        try c.expectSuccess {
            normcl_layer_norm_forward_fused(
                c.runtime, c(x), c(residual), nil, 2, c(w), c(b), 1e-5, epilogue, c(y), c(mean), c(invstd), c(h), 0, nil,
                $0)
        }
        try Self.expectSame([y, mean, invstd, h], [expected.output, expected.saveMean, expected.saveInvstd, expected.residualSum])
        let (dx, dw, db) = (try Self.blank(like: x), try Self.blank(like: w), try Self.blank(like: b))
        try c.expectSuccess {
            normcl_layer_norm_backward_fused(
                c.runtime, c(dy), c(x), c(residual), nil, c(h), 2, c(w), c(b), c(mean), c(invstd), epilogue,
                c(gradSum), c(dx), c(dw), c(db), nil, 0, nil, $0)
        }
        try Self.expectSame([dx, dw, db], [expectedGradients.input, expectedGradients.weight, expectedGradients.bias])
    }

    @Test("BatchNorm inference and Batch Renorm with an addend and an activation; backward with dz")
    func batchNorm() throws {
        let (c, backend) = try Self.setUp()
        var rng = SeededGenerator(seed: 43)
        let shape = [2, 3, 4, 5]
        let x = try Self.tensor(&rng, shape, on: backend), z = try Self.tensor(&rng, shape, on: backend)
        let dy = try Self.tensor(&rng, shape, on: backend)
        let (w, b) = (try Self.tensor(&rng, [3], on: backend), try Self.tensor(&rng, [3], on: backend))
        func running() throws -> RunningStatistics {
            RunningStatistics(
                mean: try Tensor([0.1, -0.2, 0.3], on: backend), variance: try Tensor([1, 0.5, 2], on: backend))
        }

        // Inference, y = gelu(BN(x) + z).
        var statistics = try running()
        let inference = try NormCL.batchNorm(
            x, weight: w, bias: b, runningStatistics: &statistics, training: false, activation: .gelu, addend: z)
        let inferenceGradients = try batchNormBackward(
            dy, input: x, weight: w, bias: b, runningStatistics: statistics, activation: .gelu, addend: z)
        let gelu = c.epilogue(3)
        let (y, dx, dw, db, dz) = (
            try Self.blank(like: x), try Self.blank(like: x), try Self.blank(like: w), try Self.blank(like: b),
            try Self.blank(like: z)
        )
        try c.expectSuccess {
            normcl_batch_norm_forward_inference_fused(
                c.runtime, c(x), c(w), c(b), c(statistics.mean), c(statistics.variance), 1e-5, c(z), gelu, c(y), 0, nil, $0)
        }
        try c.expectSuccess {
            normcl_batch_norm_backward_inference_fused(
                c.runtime, c(dy), c(x), c(w), c(b), c(statistics.mean), c(statistics.variance), 1e-5, c(z), gelu, c(dx),
                c(dw), c(db), c(dz), 0, nil, $0)
        }
        try Self.expectSame(
            [y, dx, dw, db, dz],
            [inference.output, inferenceGradients.input, inferenceGradients.weight, inferenceGradients.bias,
             inferenceGradients.addend])

        // Batch Renorm, y = silu(BatchRenorm(x) + z), the running statistics updated in place.
        var swiftRunning = try running()
        let limits = BatchRenormLimits(rmax: 1.5, dmax: 0.5)
        let renorm = try NormCL.batchRenorm(
            x, weight: w, bias: b, runningStatistics: &swiftRunning, limits: limits, momentum: 0.2, activation: .silu,
            addend: z)
        let renormGradients = try batchRenormBackward(
            dy, input: x, weight: w, bias: b, saveMean: try #require(renorm.saveMean),
            saveInvstd: try #require(renorm.saveInvstd), renormR: try #require(renorm.renormR),
            renormD: try #require(renorm.renormD), activation: .silu, addend: z)
        let silu = c.epilogue(2)
        let cRunning = try running()
        var tracked: Int64 = 3
        let (mean, invstd, r, dd) = (
            try Self.blank(like: w), try Self.blank(like: w), try Self.blank(like: w), try Self.blank(like: w)
        )
        try c.expectSuccess {
            normcl_batch_renorm_forward_fused(
                c.runtime, c(x), c(w), c(b), c(cRunning.mean), c(cRunning.variance), 1.5, 0.5, 0.2, &tracked, 1e-5,
                c(z), silu, c(y), c(mean), c(invstd), c(r), c(dd), 0, nil, $0)
        }
        #expect(tracked == 4)
        try c.expectSuccess {
            normcl_batch_renorm_backward_fused(
                c.runtime, c(dy), c(x), c(w), c(b), c(mean), c(invstd), c(r), c(dd), c(z), silu, c(dx), c(dw), c(db),
                c(dz), 0, nil, $0)
        }
        try Self.expectSame(
            [y, mean, invstd, r, dd, cRunning.mean, cRunning.variance, dx, dw, db, dz],
            [renorm.output, renorm.saveMean, renorm.saveInvstd, renorm.renormR, renorm.renormD, swiftRunning.mean,
             swiftRunning.variance, renormGradients.input, renormGradients.weight, renormGradients.bias,
             renormGradients.addend])
    }

    @Test("GroupNorm channels-last with ReLU, forward and backward; the plain functions are the fused ones without fusion")
    func groupNorm() throws {
        let (c, backend) = try Self.setUp()
        var rng = SeededGenerator(seed: 44)
        let shape = [2, 8, 3, 3]
        let x = try Self.tensor(&rng, shape, layout: .channelsLast, on: backend)
        let dy = try Self.tensor(&rng, shape, layout: .channelsLast, on: backend)
        let (w, b) = (try Self.tensor(&rng, [8], on: backend), try Self.tensor(&rng, [8], on: backend))
        let expected = try NormCL.groupNorm(x, numGroups: 4, weight: w, bias: b, activation: .relu)
        let expectedGradients = try groupNormBackward(
            dy, input: x, numGroups: 4, weight: w, saveMean: try #require(expected.saveMean),
            saveInvstd: try #require(expected.saveInvstd), bias: b, activation: .relu)
        let relu = c.epilogue(1)
        let (y, mean, invstd) = (try Self.blank(like: x), try Self.blank([2, 4], on: backend), try Self.blank([2, 4], on: backend))
        let (dx, dw, db) = (try Self.blank(like: x), try Self.blank(like: w), try Self.blank(like: b))
        try c.expectSuccess {
            normcl_group_norm_forward_fused(c.runtime, c(x), 4, c(w), c(b), 1e-5, relu, c(y), c(mean), c(invstd), 0, nil, $0)
        }
        try c.expectSuccess {
            normcl_group_norm_backward_fused(
                c.runtime, c(dy), c(x), 4, c(w), c(b), c(mean), c(invstd), relu, c(dx), c(dw), c(db), 0, nil, $0)
        }
        try Self.expectSame(
            [y, mean, invstd, dx, dw, db],
            [expected.output, expected.saveMean, expected.saveInvstd, expectedGradients.input, expectedGradients.weight,
             expectedGradients.bias])

        // NULL epilogue, no fused tensors: the plain function's results.
        let plain = try Self.blank(like: x), fused = try Self.blank(like: x)
        try c.expectSuccess {
            normcl_group_norm_forward(c.runtime, c(x), 4, c(w), c(b), 1e-5, c(plain), nil, nil, 0, nil, $0)
        }
        try c.expectSuccess {
            normcl_group_norm_forward_fused(c.runtime, c(x), 4, c(w), c(b), 1e-5, nil, c(fused), nil, nil, 0, nil, $0)
        }
        try Self.expectSame([fused], [plain])
    }

    @Test("bad fused arguments: typed errors naming the C argument, nothing written")
    func errors() throws {
        let (c, backend) = try Self.setUp()
        var rng = SeededGenerator(seed: 45)
        let x = try Self.tensor(&rng, [4, 8], on: backend), residual = try Self.tensor(&rng, [4, 8], on: backend)
        let w = try Self.tensor(&rng, [8], on: backend)
        let (y, rstd, h) = (try Self.blank(like: x), try Self.blank([4], on: backend), try Self.blank(like: x))
        func rms(_ residual: Tensor?, _ epilogue: UnsafeRawPointer?, sum: Tensor? = nil, inputBias: Tensor? = nil) -> Int32 {
            normcl_rms_norm_forward_fused(
                c.runtime, c(x), c(residual), c(inputBias), 1, c(w), nil, 1e-5, epilogue, c(y), c(rstd), c(sum ?? h), 0,
                nil, nil)
        }
        let other = try Self.tensor(&rng, [4, 4, 2], on: backend)
        c.expectError(rms(residual, c.epilogue(7)), CAPIStatus.invalidArgument, "'epilogue.activation': 7 is not")
        c.expectError(rms(residual, c.epilogue(-1)), CAPIStatus.invalidArgument, "epilogue.activation")
        c.expectError(rms(residual, c.epilogue(1, size: 24)), CAPIStatus.unsupported, "epilogue.struct_size")
        c.expectError(rms(residual, c.epilogue(1, size: 12)), CAPIStatus.invalidArgument, "epilogue.struct_size")
        c.expectError(rms(residual, c.epilogue(1, weightOffset: .nan)), CAPIStatus.invalidArgument, "epilogue.weight_offset")
        c.expectError(rms(other, c.epilogue(1)), CAPIStatus.shapeMismatch, "'residual' has shape [4, 4, 2]")
        c.expectError(rms(nil, c.epilogue(1)), CAPIStatus.invalidArgument, "'residual_sum'")
        c.expectError(rms(residual, nil, inputBias: x), CAPIStatus.shapeMismatch, "'input_bias'")
        let halfResidual = try Self.tensor(&rng, [4, 8], .float16, on: backend)
        c.expectError(rms(halfResidual, nil), CAPIStatus.unsupported, "'residual'")
        c.expectError(rms(residual, nil, sum: try Self.blank([4, 8], .float16, on: backend)), CAPIStatus.unsupported, "'residual_sum'")
        c.expectError(
            normcl_rms_norm_backward_fused(
                c.runtime, c(x), c(x), nil, nil, c(h), 1, c(w), nil, c(rstd), nil, nil, c(y), nil, nil, nil, 0, nil, nil),
            CAPIStatus.invalidArgument, "'residual_sum'")
        c.expectError(
            normcl_rms_norm_backward_fused(
                c.runtime, c(x), c(x), c(residual), nil, nil, 1, c(w), nil, c(rstd), nil, nil, c(y), nil, nil, c(h), 0,
                nil, nil),
            CAPIStatus.invalidArgument, "'dinput_bias'")

        // BatchNorm: an addend of another dtype, dz without an addend, a γ offset.
        let nchw = try Self.tensor(&rng, [2, 4, 3], on: backend)
        let (by, bm, bs) = (try Self.blank(like: nchw), try Self.blank([4], on: backend), try Self.blank([4], on: backend))
        let running = RunningStatistics(mean: try Self.blank([4], on: backend), variance: try Self.blank([4], on: backend))
        var tracked: Int64 = 5
        func batchNorm(_ addend: Tensor?, _ epilogue: UnsafeRawPointer?) -> Int32 {
            normcl_batch_norm_forward_training_fused(
                c.runtime, c(nchw), nil, nil, c(running.mean), c(running.variance), 0.1, &tracked, 1e-5, c(addend),
                epilogue, c(by), c(bm), c(bs), 0, nil, nil)
        }
        let halfAddend = try Self.tensor(&rng, [2, 4, 3], .float16, on: backend)
        c.expectError(batchNorm(halfAddend, c.epilogue(1)), CAPIStatus.unsupported, "'addend': element type float16")
        c.expectError(batchNorm(nchw, c.epilogue(9)), CAPIStatus.invalidArgument, "epilogue.activation")
        c.expectError(batchNorm(nil, c.epilogue(1, weightOffset: 1)), CAPIStatus.unsupported, "epilogue.weight_offset")
        #expect(tracked == 5, "num_batches_tracked changed by a failed call")
        c.expectError(
            normcl_batch_norm_backward_training_fused(
                c.runtime, c(nchw), c(nchw), nil, nil, c(bm), c(bs), nil, nil, c(by), nil, nil, c(h), 0, nil, nil),
            CAPIStatus.invalidArgument, "'dz'")
        c.expectError(
            normcl_group_norm_forward_fused(c.runtime, c(nchw), 2, nil, nil, 1e-5, c.epilogue(5), c(by), nil, nil, 0, nil, nil),
            CAPIStatus.invalidArgument, "epilogue.activation")
        for untouched in [y, rstd, h, by, bm, bs, running.mean, running.variance] {
            #expect(try untouched.toArray().allSatisfy { $0 == Self.sentinel }, "a failed call wrote \(untouched.shape)")
        }
    }

    // MARK: Support

    /// What ``blank(_:_:layout:on:)`` fills outputs with: any value a failed call leaves.
    static let sentinel: Float = 7

    /// Calls on the shared runtime, as `normcl_runtime *`.
    static func setUp() throws -> (CArguments, Backend) {
        let runtime = try #require(sharedRuntime)
        return (CArguments(runtime), .openCL(runtime))
    }

    static func tensor(
        _ rng: inout SeededGenerator, _ shape: [Int], _ elementType: ElementType = .float32,
        layout: TensorLayout = .channelsFirst, on backend: Backend
    ) throws -> Tensor {
        try Tensor(
            rng.normals(shape.reduce(1, *), scale: 0.8), shape: shape, layout: layout, elementType: elementType,
            on: backend)
    }

    /// An output tensor filled with ``sentinel``.
    static func blank(
        _ shape: [Int], _ elementType: ElementType = .float32, layout: TensorLayout = .channelsFirst, on backend: Backend
    ) throws -> Tensor {
        try Tensor(repeating: sentinel, shape: shape, layout: layout, elementType: elementType, on: backend)
    }

    static func blank(like tensor: Tensor) throws -> Tensor {
        try blank(tensor.shape, tensor.elementType, layout: tensor.layout, on: tensor.backend)
    }

    /// Each C result holds exactly the Swift API's values.
    static func expectSame(
        _ results: [Tensor], _ expected: [Tensor?], sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        for (index, (result, expected)) in zip(results, expected).enumerated() {
            let expected = try #require(expected, "result \(index)", sourceLocation: sourceLocation)
            #expect(try result.toArray() == expected.toArray(), "result \(index) \(result.shape)", sourceLocation: sourceLocation)
        }
    }
}

/// `normcl_tensor` and `normcl_epilogue` structs for calls into the C API from Swift, in
/// memory of their own that lives as long as this object.
final class CArguments {
    /// The `normcl_runtime *` of the runtime (not retained: the caller keeps it alive).
    let runtime: OpaquePointer
    private var blocks: [UnsafeMutableRawPointer] = []

    init(_ runtime: OpenCLRuntime) {
        self.runtime = OpaquePointer(Unmanaged.passUnretained(runtime).toOpaque())
    }

    deinit { for block in blocks { block.deallocate() } }

    private func block(_ byteCount: Int) -> UnsafeMutableRawPointer {
        let block = UnsafeMutableRawPointer.allocate(byteCount: byteCount, alignment: 8)
        block.initializeMemory(as: UInt8.self, repeating: 0, count: byteCount)
        blocks.append(block)
        return block
    }

    /// A `normcl_tensor` describing `tensor`'s device memory (NULL for nil).
    func callAsFunction(_ tensor: Tensor?) -> UnsafeRawPointer? {
        guard let tensor, let memory = tensor.openCLMemory else { return nil }
        let descriptor = block(CTensorDescriptor.size)
        descriptor.storeBytes(of: memory.buffer, as: cl_mem.self)
        descriptor.storeBytes(of: UInt64(memory.byteOffset), toByteOffset: 8, as: UInt64.self)
        for (index, dim) in tensor.shape.enumerated() {
            descriptor.storeBytes(of: Int64(dim), toByteOffset: 16 + 8 * index, as: Int64.self)
        }
        descriptor.storeBytes(of: Int32(tensor.shape.count), toByteOffset: 80, as: Int32.self)
        descriptor.storeBytes(of: tensor.elementType == .float16 ? 1 : 0, toByteOffset: 84, as: Int32.self)
        descriptor.storeBytes(of: tensor.layout == .channelsLast ? 1 : 0, toByteOffset: 88, as: Int32.self)
        return UnsafeRawPointer(descriptor)
    }

    /// A `normcl_epilogue` (`size`: its `struct_size`).
    func epilogue(_ activation: Int32, weightOffset: Float = 0, size: UInt32 = UInt32(CEpilogue.size)) -> UnsafeRawPointer {
        let epilogue = block(CEpilogue.size)
        epilogue.storeBytes(of: size, as: UInt32.self)
        epilogue.storeBytes(of: activation, toByteOffset: 4, as: Int32.self)
        epilogue.storeBytes(of: weightOffset, toByteOffset: 8, as: Float.self)
        return UnsafeRawPointer(epilogue)
    }

    /// Runs one C call that must succeed, with an event out, and waits for its event.
    func expectSuccess(
        sourceLocation: SourceLocation = #_sourceLocation, _ call: (UnsafeMutablePointer<cl_event?>) -> Int32
    ) throws {
        var event: cl_event?
        let status = call(&event)
        #expect(status == CAPIStatus.success, "\(message)", sourceLocation: sourceLocation)
        _ = try #require(event, "no event", sourceLocation: sourceLocation)
        #expect(clWaitForEvents(1, &event) == CL_SUCCESS, sourceLocation: sourceLocation)
        clReleaseEvent(event)
    }

    /// A failed call's status and the thread's message.
    func expectError(
        _ status: Int32, _ expected: Int32, _ needle: String, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(status == expected, "\(message)", sourceLocation: sourceLocation)
        #expect(message.contains(needle), "\(message)", sourceLocation: sourceLocation)
    }

    /// `normcl_last_error_message()`.
    var message: String { String(cString: normcl_last_error_message()) }
}
