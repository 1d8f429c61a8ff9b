import Testing
@testable import NormCL

/// Every elementwise vector width the kernels take (`VEC` = 16, 8, 4, 1;
/// ``DeviceTuning/vectorWidth``): the plans pick the widest one the tuning allows that
/// divides the run, and each op matches the reference at each width, forward and
/// backward, with a fused epilogue, f32 and half storage. The suite's other tests run at
/// the device's own width (16 on this CPU) and at 4 (the GPU-style tunings).
@Suite("Elementwise vector widths")
struct VectorWidthTests {
    /// A runtime on the shared device whose tuning takes vectors of at most `width`.
    static func runtime(width: Int) throws -> OpenCLRuntime {
        let shared = try #require(sharedRuntime)
        var tuning = shared.tuning
        tuning.vectorWidth = width
        return try OpenCLRuntime(device: shared.device, tuning: tuning)
    }

    @Test("the plans pick the widest width that divides the run, up to the tuning's")
    func widthChoice() throws {
        let device = try #require(sharedRuntime).device
        for (maximum, length, expected) in [
            (16, 64, 16), (16, 24, 8), (16, 12, 4), (16, 13, 1), (8, 64, 8), (4, 64, 4), (1, 64, 1), (16, 0, 16),
        ] {
            var tuning = DeviceTuning(defaultsFor: .cpu)
            tuning.vectorWidth = maximum
            let geometry = LaunchGeometry(device: device, tuning: tuning)
            #expect(geometry.vectorWidth(dividing: length) == expected, "max \(maximum), length \(length)")
        }
        #expect(DeviceTuning(defaultsFor: .cpu).vectorWidth == 16)
        #expect(DeviceTuning(defaultsFor: .gpu).vectorWidth == 4)
        let (overridden, rejected) = DeviceTuning(defaultsFor: .cpu).applying(overrides: "vectorWidth=8,vectorWidth=3")
        #expect(overridden.vectorWidth == 8 && rejected == ["vectorWidth=3"])
    }

    /// Compares `body` on OpenCL at each width with the reference, all outputs.
    static func check(
        _ what: String, tolerance: Double, _ body: (Backend) throws -> [Tensor?]
    ) throws {
        let expected = try body(.reference).map { try $0?.toArray() }
        for width in [16, 8, 4, 1] {
            let actual = try body(.openCL(try runtime(width: width))).map { try $0?.toArray() }
            #expect(actual.count == expected.count)
            for (index, (a, e)) in zip(actual, expected).enumerated() {
                #expect((a == nil) == (e == nil), "\(what) output \(index) presence at VEC \(width)")
                guard let a, let e else { continue }
                let largest = Double(e.map { Swift.abs($0) }.filter(\.isFinite).max() ?? 0)
                expectClose(a, e, "\(what) output \(index) at VEC \(width)") { _ in tolerance * (1 + largest) }
            }
        }
    }

    @Test("row norms with a fused residual and activation", arguments: [ElementType.float32, .float16])
    func rowNorms(elementType: ElementType) throws {
        let tolerance = elementType == .float16 ? 1e-2 : 1e-4
        // D = 48: 16 divides it; 40: 8 does, 16 does not.
        for (rows, d) in [(7, 48), (5, 40)] {
            var rng = SeededGenerator(seed: UInt64(d))
            let count = rows * d
            let x = rng.normals(count, offset: 3).map { elementType.rounded($0) }
            let r = rng.normals(count).map { elementType.rounded($0) }
            let dy = rng.normals(count).map { elementType.rounded($0) }
            let w = rng.normals(d, offset: 1, scale: 0.3), b = rng.normals(d, scale: 0.3), c = rng.normals(d)
            try Self.check("LayerNorm+residual+GELU (\(rows),\(d)) \(elementType)", tolerance: tolerance) { backend in
                let input = try Tensor(x, shape: [rows, d], elementType: elementType, on: backend)
                let f = try layerNorm(
                    input, normalizedShape: [d], weight: Tensor(w, shape: [d], on: backend),
                    bias: Tensor(b, shape: [d], on: backend),
                    residual: Tensor(r, shape: [rows, d], elementType: elementType, on: backend),
                    inputBias: Tensor(c, shape: [d], on: backend), returnsResidualSum: true, activation: .gelu)
                let g = try layerNormBackward(
                    Tensor(dy, shape: [rows, d], elementType: elementType, on: backend), forward: f)
                return [f.output, f.residualSum, f.saveInvstd, g.input, g.weight, g.bias, g.inputBias]
            }
            try Self.check("RMSNorm+SiLU (\(rows),\(d)) \(elementType)", tolerance: tolerance) { backend in
                let input = try Tensor(x, shape: [rows, d], elementType: elementType, on: backend)
                let f = try rmsNorm(
                    input, normalizedShape: [d], weight: Tensor(w, shape: [d], on: backend), eps: 1e-5,
                    activation: .silu)
                let g = try rmsNormBackward(Tensor(dy, shape: [rows, d], elementType: elementType, on: backend), forward: f)
                return [f.output, f.saveInvRms, g.input, g.weight]
            }
            try Self.check("SiLU (\(rows),\(d)) \(elementType)", tolerance: tolerance) { backend in
                [try activate(Tensor(x, shape: [rows, d], elementType: elementType, on: backend), .silu).output]
            }
        }
    }

    @Test("channel norms over NCHW planes and NHWC rows", arguments: [ElementType.float32, .float16])
    func channelNorms(elementType: ElementType) throws {
        let tolerance = elementType == .float16 ? 1e-2 : 1e-4
        // NCHW planes of 4·4 = 16 and 2·4 = 8 values; NHWC rows of 16 and 24 channels (the
        // column kernels' channel vectors: 16 and 8 wide).
        for (shape, layout) in [
            ([3, 4, 4, 4], TensorLayout.channelsFirst), ([2, 6, 2, 4], .channelsFirst), ([2, 16, 3, 5], .channelsLast),
            ([3, 24, 2, 3], .channelsLast),
        ] {
            var rng = SeededGenerator(seed: UInt64(shape[1]))
            let count = shape.reduce(1, *), channels = shape[1]
            let x = rng.normals(count, offset: 2).map { elementType.rounded($0) }
            let z = rng.normals(count).map { elementType.rounded($0) }
            let dy = rng.normals(count).map { elementType.rounded($0) }
            let w = rng.normals(channels, offset: 1, scale: 0.3), b = rng.normals(channels, scale: 0.3)
            try Self.check("BatchNorm+add+ReLU \(shape) \(layout) \(elementType)", tolerance: tolerance) { backend in
                let f = try batchNorm(
                    Tensor(x, shape: shape, layout: layout, elementType: elementType, on: backend),
                    weight: Tensor(w, shape: [channels], on: backend), bias: Tensor(b, shape: [channels], on: backend),
                    activation: .relu, addend: Tensor(z, shape: shape, layout: layout, elementType: elementType, on: backend))
                let g = try batchNormBackward(Tensor(dy, shape: shape, layout: layout, elementType: elementType, on: backend), forward: f)
                return [f.output, f.saveMean, f.saveInvstd, g.input, g.weight, g.bias, g.addend]
            }
            try Self.check("GroupNorm+SiLU \(shape) \(layout) \(elementType)", tolerance: tolerance) { backend in
                let f = try groupNorm(
                    Tensor(x, shape: shape, layout: layout, elementType: elementType, on: backend), numGroups: 2,
                    weight: Tensor(w, shape: [channels], on: backend), bias: Tensor(b, shape: [channels], on: backend),
                    activation: .silu)
                let g = try groupNormBackward(Tensor(dy, shape: shape, layout: layout, elementType: elementType, on: backend), forward: f)
                return [f.output, f.saveMean, f.saveInvstd, g.input, g.weight, g.bias]
            }
            try Self.check("InstanceNorm \(shape) \(layout) \(elementType)", tolerance: tolerance) { backend in
                let f = try instanceNorm(
                    Tensor(x, shape: shape, layout: layout, elementType: elementType, on: backend),
                    weight: Tensor(w, shape: [channels], on: backend), bias: Tensor(b, shape: [channels], on: backend))
                let g = try instanceNormBackward(Tensor(dy, shape: shape, layout: layout, elementType: elementType, on: backend), forward: f)
                return [f.output, g.input, g.weight, g.bias]
            }
        }
    }
}
