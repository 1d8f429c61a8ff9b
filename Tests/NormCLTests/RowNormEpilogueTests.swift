import Testing
@testable import NormCL

/// LayerNorm and RMSNorm with what they fuse (a residual added before the norm, γ's
/// offset, β for RMSNorm, an activation after the norm), forward and backward, on
/// OpenCL against the reference, which runs the unfused sequence (an add stored in the
/// residual's type, the plain norm, the activation); the reference's own backward
/// against finite differences; bad input; NaN confined to its row; bit-identical reruns.
@Suite("LayerNorm and RMSNorm fused epilogues")
struct RowNormEpilogueTests {
    /// One fused call: what it fuses, its shape, and how the OpenCL side is forced to run.
    struct Case: CustomStringConvertible, Sendable {
        var kind: RowNormProblem.Kind
        var shape: [Int]
        var elementType: ElementType = .float32
        /// nil: no residual; else the residual's element type.
        var residual: ElementType? = nil
        var activation: Activation = .none
        var weightOffset: Float = 0
        var hasBias = true
        /// Whether a bias is added to x with the residual (h = (x + b) + residual).
        var inputBias = false
        var strategy: RowNormPlan.Strategy? = nil
        var tuning: DeviceTuning? = nil
        var fuseParameters: Bool? = nil

        var normalizedShape: [Int] { [shape.last!] }
        var description: String {
            "\(kind) \(shape) \(elementType) residual=\(residual.map(\.rawValue) ?? "none") \(activation) offset=\(weightOffset) bias=\(hasBias) inputBias=\(inputBias) strategy=\(strategy.map { "\($0)" } ?? "auto") gpu=\(tuning != nil) fuse=\(fuseParameters.map { "\($0)" } ?? "auto")"
        }
    }

    static let cases: [Case] = [
        Case(kind: .rmsNorm, shape: [5, 64], residual: .float32, activation: .none, hasBias: false),
        Case(kind: .rmsNorm, shape: [5, 64], elementType: .float16, residual: .float32, weightOffset: 1, hasBias: false),
        Case(kind: .rmsNorm, shape: [7, 13], elementType: .float16, residual: .float16, activation: .silu),
        Case(
            kind: .rmsNorm, shape: [37, 1000], residual: .float32, activation: .gelu,
            strategy: .fused(itemsPerRow: 16, rowsPerGroup: 2)),
        Case(
            kind: .rmsNorm, shape: [2, 4100], residual: .float32, activation: .relu, weightOffset: 1,
            strategy: .splitRows(slices: 7, itemsPerSlice: 4)),
        Case(kind: .rmsNorm, shape: [300, 12], residual: .float32, activation: .geluTanh, tuning: .gpuStyle),
        Case(kind: .layerNorm, shape: [5, 64], residual: .float32, activation: .gelu),
        Case(kind: .layerNorm, shape: [6, 257], elementType: .float16, residual: .float16, activation: .relu, hasBias: false),
        Case(
            kind: .layerNorm, shape: [3, 1023], elementType: .float16, residual: .float32, activation: .silu,
            weightOffset: 1, strategy: .fused(itemsPerRow: 1, rowsPerGroup: 4)),
        Case(
            kind: .layerNorm, shape: [2, 4100], activation: .geluTanh, strategy: .splitRows(slices: 5, itemsPerSlice: 1)),
        Case(kind: .layerNorm, shape: [40, 96], residual: .float32, activation: .silu, fuseParameters: false),
        Case(kind: .layerNorm, shape: [300, 13], residual: .float32, activation: .relu, tuning: .gpuStyle),
        Case(kind: .layerNorm, shape: [1, 1], residual: .float32, activation: .silu),
        // The input bias in every strategy: fused (private partials on the GPU-style path),
        // split rows, the unfused parameter pass (which the input bias's gradient turns
        // back into the fused one), half storage.
        Case(kind: .layerNorm, shape: [9, 64], residual: .float32, inputBias: true),
        Case(
            kind: .rmsNorm, shape: [6, 257], elementType: .float16, residual: .float16, activation: .gelu,
            inputBias: true),
        Case(
            kind: .layerNorm, shape: [3, 1023], elementType: .float16, residual: .float32, activation: .relu,
            inputBias: true, strategy: .fused(itemsPerRow: 4, rowsPerGroup: 2)),
        Case(
            kind: .rmsNorm, shape: [2, 4100], residual: .float32, activation: .silu, inputBias: true,
            strategy: .splitRows(slices: 7, itemsPerSlice: 4)),
        Case(kind: .layerNorm, shape: [300, 13], residual: .float32, activation: .geluTanh, inputBias: true, tuning: .gpuStyle),
        Case(kind: .rmsNorm, shape: [64, 32], residual: .float32, inputBias: true, tuning: .gpuStyle),
        Case(kind: .layerNorm, shape: [40, 96], residual: .float32, inputBias: true, fuseParameters: false),
    ]

    /// The inputs of one case, rounded to their element types.
    struct Data {
        var x, residual, dy, gradSum: [Float]
        var weight, bias, inputBias: [Float]

        init(_ c: Case, seed: UInt64) {
            var rng = SeededGenerator(seed: seed)
            let count = c.shape.reduce(1, *), d = c.shape.last!
            x = rng.normals(count, offset: 0.5).map { c.elementType.rounded($0) }
            let residualType = c.residual ?? c.elementType
            residual = rng.normals(count, scale: 2).map { residualType.rounded($0) }
            dy = rng.normals(count).map { c.elementType.rounded($0) }
            gradSum = rng.normals(count, scale: 0.5).map { residualType.rounded($0) }
            // Zero-centred γ around 0 with the offset, around 1 without.
            weight = rng.normals(d, offset: c.weightOffset == 0 ? 1 : 0, scale: 0.5)
            bias = rng.normals(d, scale: 0.5)
            inputBias = rng.normals(d, scale: 0.5)
        }
    }

    struct Run {
        var output: Tensor
        var residualSum: Tensor?
        var mean: Tensor?
        var scale: Tensor
        var gradients: NormGradients
    }

    /// The forward (returning h when there is a residual) and its backward (with dL/dh
    /// when there is a residual) of `c` on `backend`.
    static func run(_ c: Case, _ data: Data, on backend: Backend, forcing: Bool) throws -> Run {
        let layout = TensorLayout.channelsFirst
        let x = try Tensor(data.x, shape: c.shape, layout: layout, elementType: c.elementType, on: backend)
        let residual = try c.residual.map {
            try Tensor(data.residual, shape: c.shape, layout: layout, elementType: $0, on: backend)
        }
        let gradSum = try c.residual.map {
            try Tensor(data.gradSum, shape: c.shape, layout: layout, elementType: $0, on: backend)
        }
        let dy = try Tensor(data.dy, shape: c.shape, layout: layout, elementType: c.elementType, on: backend)
        let weight = try Tensor(data.weight, shape: c.normalizedShape, on: backend)
        let bias = c.hasBias ? try Tensor(data.bias, shape: c.normalizedShape, on: backend) : nil
        let inputBias = c.inputBias ? try Tensor(data.inputBias, shape: c.normalizedShape, on: backend) : nil
        let fused = RowNormFusionArguments(
            residual: residual, inputBias: inputBias, returnsResidualSum: residual != nil, weightOffset: c.weightOffset,
            activation: c.activation)
        let backwardFused = RowNormBackwardFusionArguments(forward: fused, bias: bias, gradResidualSum: gradSum)
        let (strategy, tuning, fuse) = forcing ? (c.strategy, c.tuning, c.fuseParameters) : (nil, nil, nil)
        switch c.kind {
        case .layerNorm:
            let f = try layerNorm(
                x, normalizedShape: c.normalizedShape, weight: weight, bias: bias, eps: 1e-5, fusing: fused,
                strategy: strategy, tuning: tuning)
            return Run(
                output: f.output, residualSum: f.residualSum, mean: f.saveMean, scale: f.saveInvstd,
                gradients: try layerNormBackward(
                    dy, input: x, normalizedShape: c.normalizedShape, weight: weight, saveMean: f.saveMean,
                    saveInvstd: f.saveInvstd, outputMask: .all, fusing: backwardFused, strategy: strategy,
                    fuseParameters: fuse, tuning: tuning))
        case .rmsNorm:
            let f = try rmsNorm(
                x, normalizedShape: c.normalizedShape, weight: weight, bias: bias, eps: 1e-5, fusing: fused,
                strategy: strategy, tuning: tuning)
            return Run(
                output: f.output, residualSum: f.residualSum, mean: nil, scale: f.saveInvRms,
                gradients: try rmsNormBackward(
                    dy, input: x, normalizedShape: c.normalizedShape, weight: weight, saveInvRms: f.saveInvRms,
                    outputMask: .all, fusing: backwardFused, strategy: strategy, fuseParameters: fuse, tuning: tuning))
        }
    }

    /// Tolerances: y within `base·(1 + |y|)` (float32: device `exp`/`erf`/`tanh` of a few
    /// ulps on a normalized value of ~1e-6 error; half: the reference rounds the norm's
    /// output to half before the activation, the kernel does not, so a step of 2^-10 more);
    /// h exactly (both add in float32 and round once to the residual's type); the
    /// statistics to 1e-5 (half: h is rounded to half in the reference's sequence and
    /// kept in float32 by the kernels); gradients to a fraction of their largest magnitude
    /// (dx is a difference of nearly cancelling terms, dγ/dβ sums over rows).
    @Test("OpenCL matches the unfused reference, forward and backward", arguments: cases.indices)
    func matchesReference(index: Int) throws {
        let backend = Backend.openCL(try #require(sharedRuntime))
        let c = Self.cases[index]
        let data = Data(c, seed: UInt64(index + 11))
        let actual = try Self.run(c, data, on: backend, forcing: true)
        let expected = try Self.run(c, data, on: .reference, forcing: false)
        let half = c.elementType == .float16 || c.residual == .float16
        expectOutputClose(
            try actual.output.toArray(), try expected.output.toArray(), "y \(c)", base: half ? 2e-3 : 1e-5,
            half: half, halfFloor: 1e-4)
        #expect(actual.output.elementType == c.elementType && actual.output.shape == c.shape, "y type \(c)")
        if let residualType = c.residual {
            let h = try #require(actual.residualSum, "h \(c)")
            #expect(h.elementType == residualType && h.shape == c.shape, "h type \(c)")
            #expect(try h.toArray() == expected.residualSum?.toArray(), "h \(c)")
        } else {
            #expect(actual.residualSum == nil)
        }
        let statisticsTolerance = c.elementType == .float16 && c.residual == .float16 ? 2e-3 : 1e-5
        if let mean = actual.mean, let reference = expected.mean {
            expectClose(try mean.toArray(), try reference.toArray(), "mean \(c)", relative: statisticsTolerance, absolute: statisticsTolerance)
        }
        expectClose(try actual.scale.toArray(), try expected.scale.toArray(), "scale \(c)", relative: statisticsTolerance)

        let relative = half ? 1e-2 : 1e-4
        for (name, a, e) in [
            ("dx", actual.gradients.input, expected.gradients.input),
            ("dγ", actual.gradients.weight, expected.gradients.weight),
            ("dβ", actual.gradients.bias, expected.gradients.bias),
            ("d inputBias", actual.gradients.inputBias, expected.gradients.inputBias),
        ] {
            #expect((a == nil) == (e == nil), "\(name) presence \(c)")
            guard let a, let e else { continue }
            let reference = try e.toArray()
            let largest = Double(reference.map { Swift.abs($0) }.max() ?? 0)
            expectClose(try a.toArray(), reference, "\(name) \(c)") { _ in relative * largest + 1e-6 }
        }
        #expect((actual.gradients.bias != nil) == c.hasBias || c.kind == .layerNorm, "dβ exists with β \(c)")
        #expect((actual.gradients.inputBias != nil) == c.inputBias, "d inputBias exists with the input bias \(c)")
    }

    /// The float64 forward the finite differences differentiate: h = (x + c) + r,
    /// a = norm(h)·(w + offset) + b, y = f(a).
    static func forward64(
        _ kind: RowNormProblem.Kind, rows: Int, d: Int, x: [Double], residual: [Double], inputBias: [Double],
        weight: [Double], bias: [Double], offset: Double, activation: Activation
    ) -> [Double] {
        var y = [Double](repeating: 0, count: x.count)
        for r in 0..<rows {
            let h = (0..<d).map { x[r * d + $0] + inputBias[$0] + residual[r * d + $0] }
            let mean = kind == .layerNorm ? h.reduce(0, +) / Double(d) : 0
            let spread = h.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(d)
            let scale = 1 / (spread + 1e-5).squareRoot()
            for j in 0..<d { y[r * d + j] = activation((h[j] - mean) * scale * (weight[j] + offset) + bias[j]) }
        }
        return y
    }

    @Test("the reference backward matches finite differences of the fused forward", arguments: Activation.allCases)
    func gradientCheck(activation: Activation) throws {
        let (rows, d) = (3, 8)
        for kind in [RowNormProblem.Kind.layerNorm, .rmsNorm] {
            var rng = SeededGenerator(seed: 5)
            let x = rng.normals(rows * d).map(Double.init), r = rng.normals(rows * d).map(Double.init)
            let w = rng.normals(d, scale: 0.5).map(Double.init), b = rng.normals(d, scale: 0.5).map(Double.init)
            let upstream = rng.normals(rows * d).map(Double.init), gradSum = rng.normals(rows * d).map(Double.init)
            let inputBias = rng.normals(d, scale: 0.5).map(Double.init)
            let offset = 1.0
            let c = Case(
                kind: kind, shape: [rows, d], residual: .float32, activation: activation, weightOffset: 1, inputBias: true)
            var data = Data(c, seed: 1)
            (data.x, data.residual, data.weight, data.bias, data.inputBias) = (
                x.map(Float.init), r.map(Float.init), w.map(Float.init), b.map(Float.init), inputBias.map(Float.init)
            )
            (data.dy, data.gradSum) = (upstream.map(Float.init), gradSum.map(Float.init))
            let g = try Self.run(c, data, on: .reference, forcing: false).gradients
            func y(_ x: [Double], _ w: [Double], _ b: [Double], _ c: [Double] = inputBias) -> [Double] {
                Self.forward64(
                    kind, rows: rows, d: d, x: x, residual: r, inputBias: c, weight: w, bias: b, offset: offset,
                    activation: activation)
            }
            // L = Σ y·dy + Σ h·gradSum (h = (x + c) + r reaches the loss directly too).
            func loss(_ x: [Double], _ c: [Double]) -> Double {
                let h = x.indices.map { x[$0] + c[$0 % d] + r[$0] }
                return GradientCheck.dot(y(x, w, b, c), upstream) + GradientCheck.dot(h, gradSum)
            }
            GradientCheck.expectGradient(
                try #require(g.input).toArray().map(Double.init), of: { loss($0, inputBias) }, at: x,
                "dx \(kind) \(activation)", relative: 1e-4)
            GradientCheck.expectGradient(
                try #require(g.inputBias).toArray().map(Double.init), of: { loss(x, $0) }, at: inputBias,
                "d inputBias \(kind) \(activation)", relative: 1e-4)
            GradientCheck.expectGradient(
                try #require(g.weight).toArray().map(Double.init), of: { y(x, $0, b) }, weightedBy: upstream, at: w,
                "dγ \(kind) \(activation)", relative: 1e-4)
            GradientCheck.expectGradient(
                try #require(g.bias).toArray().map(Double.init), of: { y(x, w, $0) }, weightedBy: upstream, at: b,
                "dβ \(kind) \(activation)", relative: 1e-4)
        }
    }

    @Test("backward(forward:) reads the stored h: the same gradients as from x and the residual")
    func backwardFromStoredSum() throws {
        for backend in allBackends {
            for (kind, type, residualType, hasInputBias) in [
                (RowNormProblem.Kind.rmsNorm, ElementType.float32, ElementType.float32, false),
                (.layerNorm, .float16, .float16, false), (.rmsNorm, .float16, .float32, false),
                (.layerNorm, .float32, .float32, true),
            ] {
                let c = Case(
                    kind: kind, shape: [6, 40], elementType: type, residual: residualType, activation: .silu,
                    inputBias: hasInputBias)
                let data = Data(c, seed: 21)
                // The explicit form recomputes h from x and the residual.
                let explicit = try Self.run(c, data, on: backend, forcing: false).gradients
                let x = try Tensor(data.x, shape: c.shape, elementType: type, on: backend)
                let residual = try Tensor(data.residual, shape: c.shape, elementType: residualType, on: backend)
                let dy = try Tensor(data.dy, shape: c.shape, elementType: type, on: backend)
                let dh = try Tensor(data.gradSum, shape: c.shape, elementType: residualType, on: backend)
                let w = try Tensor(data.weight, shape: c.normalizedShape, on: backend)
                let b = try Tensor(data.bias, shape: c.normalizedShape, on: backend)
                let inputBias = hasInputBias ? try Tensor(data.inputBias, shape: c.normalizedShape, on: backend) : nil
                let stored: NormGradients
                switch kind {
                case .layerNorm:
                    let f = try layerNorm(
                        x, normalizedShape: c.normalizedShape, weight: w, bias: b, residual: residual,
                        inputBias: inputBias, returnsResidualSum: true, activation: .silu)
                    stored = try layerNormBackward(dy, forward: f, gradResidualSum: dh)
                case .rmsNorm:
                    let f = try rmsNorm(
                        x, normalizedShape: c.normalizedShape, weight: w, bias: b, eps: 1e-5, residual: residual,
                        inputBias: inputBias, returnsResidualSum: true, activation: .silu)
                    stored = try rmsNormBackward(dy, forward: f, gradResidualSum: dh)
                }
                for (name, a, e) in [
                    ("dx", stored.input, explicit.input), ("dγ", stored.weight, explicit.weight),
                    ("dβ", stored.bias, explicit.bias), ("d inputBias", stored.inputBias, explicit.inputBias),
                ] {
                    #expect((a == nil) == (e == nil), "\(name) presence \(kind) \(backend.name)")
                    guard e != nil else { continue }
                    let reference = try #require(e).toArray()
                    let largest = Double(reference.map { Swift.abs($0) }.max() ?? 0)
                    // Half: the stored h is rounded to half, the explicit form's is not.
                    let relative = type == .float16 && residualType == .float16 ? 1e-2 : 1e-5
                    expectClose(try #require(a).toArray(), reference, "\(name) \(kind) \(type) \(backend.name)") { _ in
                        relative * largest + 1e-6
                    }
                }
            }
        }
    }

    @Test("bad fused arguments give typed errors")
    func errors() throws {
        for backend in allBackends {
            let x = try Tensor([Float](repeating: 1, count: 12), shape: [3, 4], on: backend)
            let w = try Tensor([Float](repeating: 1, count: 4), shape: [4], on: backend)
            let other = try Tensor([Float](repeating: 1, count: 8), shape: [2, 4], on: backend)
            let half = try Tensor([Float](repeating: 1, count: 12), shape: [3, 4], elementType: .float16, on: backend)
            func argument(_ body: () throws -> Any) -> String? {
                do {
                    _ = try body()
                    return nil
                } catch let error as NormError {
                    return error.argument
                } catch {
                    return "\(error)"
                }
            }
            #expect(argument { try rmsNorm(x, normalizedShape: [4], residual: other) } == "residual")
            // A half residual under float32 storage would lose the stream's precision.
            #expect(argument { try layerNorm(x, normalizedShape: [4], residual: half) } == "residual")
            #expect(argument { try rmsNorm(x, normalizedShape: [4], returnsResidualSum: true) } == "returnsResidualSum")
            #expect(argument { try rmsNorm(x, normalizedShape: [4], weightOffset: 1) } == "weightOffset")
            // The input bias is added with the residual, is float32 of normalizedShape.
            #expect(argument { try layerNorm(x, normalizedShape: [4], inputBias: w) } == "inputBias")
            #expect(argument { try rmsNorm(x, normalizedShape: [4], residual: x, inputBias: other) } == "inputBias")
            let halfBias = try Tensor([Float](repeating: 1, count: 4), shape: [4], elementType: .float16, on: backend)
            #expect(argument { try rmsNorm(x, normalizedShape: [4], residual: x, inputBias: halfBias) } == "inputBias")
            #expect(argument { try rmsNorm(x, normalizedShape: [4], weight: w, weightOffset: .nan) } == "weightOffset")
            let f = try rmsNorm(x, normalizedShape: [4], weight: w)
            #expect(argument { try rmsNormBackward(x, forward: f, gradResidualSum: x) } == "gradResidualSum")
            let fused = try rmsNorm(x, normalizedShape: [4], weight: w, residual: x, returnsResidualSum: true)
            #expect(argument { try rmsNormBackward(x, forward: fused, gradResidualSum: half) } == "gradResidualSum")
            #expect(argument { try rmsNormBackward(x, forward: fused, gradResidualSum: other) } == "gradResidualSum")
            if case .openCL = backend {
                // h may not be written over its own input.
                #expect(
                    argument {
                        try layerNorm(
                            x, normalizedShape: [4], residual: fused.output, returnsResidualSum: true,
                            into: ForwardDestinations(residualSum: fused.output))
                    } == "destinations.residualSum")
            }
        }
    }

    @Test("the input bias's gradient alone: dx is formed for it but not returned, the sums match")
    func inputBiasGradientAlone() throws {
        for backend in allBackends {
            for strategy in [RowNormPlan.Strategy.splitRows(slices: 3, itemsPerSlice: 2), .fused(itemsPerRow: 2, rowsPerGroup: 2)] {
                let c = Case(kind: .layerNorm, shape: [10, 48], residual: .float32, activation: .relu, inputBias: true)
                let data = Data(c, seed: 4)
                let full = try Self.run(c, data, on: backend, forcing: false).gradients
                let x = try Tensor(data.x, shape: c.shape, on: backend)
                let w = try Tensor(data.weight, shape: [48], on: backend), b = try Tensor(data.bias, shape: [48], on: backend)
                let fused = RowNormFusionArguments(
                    residual: try Tensor(data.residual, shape: c.shape, on: backend),
                    inputBias: try Tensor(data.inputBias, shape: [48], on: backend), activation: .relu)
                let f = try layerNorm(
                    x, normalizedShape: c.normalizedShape, weight: w, bias: b, eps: 1e-5, fusing: fused, strategy: nil,
                    tuning: nil)
                let dy = try Tensor(data.dy, shape: c.shape, on: backend)
                // The backward forced to each strategy, asked for the input bias's gradient only.
                let alone = try layerNormBackward(
                    dy, input: x, normalizedShape: c.normalizedShape, weight: w, saveMean: f.saveMean,
                    saveInvstd: f.saveInvstd, outputMask: .inputBias,
                    fusing: RowNormBackwardFusionArguments(
                        forward: fused, bias: b, gradResidualSum: try Tensor(data.gradSum, shape: c.shape, on: backend)),
                    strategy: strategy, fuseParameters: false, tuning: nil)
                #expect(alone.input == nil && alone.weight == nil && alone.bias == nil)
                let reference = try #require(full.inputBias).toArray()
                let largest = Double(reference.map { Swift.abs($0) }.max() ?? 0)
                expectClose(try #require(alone.inputBias).toArray(), reference, "d inputBias \(strategy) \(backend.name)") { _ in
                    1e-5 * largest + 1e-6
                }
            }
        }
    }

    @Test("a NaN in the residual stays in its row, forward and backward; reruns are bit-identical")
    func nanAndDeterminism() throws {
        let backend = Backend.openCL(try #require(sharedRuntime))
        for kind in [RowNormProblem.Kind.layerNorm, .rmsNorm] {
            let c = Case(kind: kind, shape: [3, 64], residual: .float32, activation: .silu)
            var data = Data(c, seed: 9)
            data.residual[64 + 5] = .nan
            let first = try Self.run(c, data, on: backend, forcing: false)
            let second = try Self.run(c, data, on: backend, forcing: false)
            let y = try first.output.toArray(), dx = try #require(first.gradients.input).toArray()
            for row in 0..<3 {
                let slice = (row * 64)..<(row * 64 + 64)
                let nans = y[slice].filter(\.isNaN).count, gradientNaNs = dx[slice].filter(\.isNaN).count
                #expect(row == 1 ? nans == 64 : nans == 0, "\(kind) row \(row): \(nans) NaN outputs")
                #expect(row == 1 ? gradientNaNs == 64 : gradientNaNs == 0, "\(kind) row \(row): \(gradientNaNs) NaN dx")
            }
            // Bit patterns: the NaNs (row 1, and every column of dγ and dβ) compare too.
            func bits(_ t: Tensor?) throws -> [UInt32]? { try t?.toArray().map(\.bitPattern) }
            #expect(try bits(first.output) == bits(second.output))
            #expect(try bits(first.gradients.input) == bits(second.gradients.input))
            #expect(try bits(first.gradients.weight) == bits(second.gradients.weight))
            #expect(try bits(first.gradients.bias) == bits(second.gradients.bias))
        }
    }
}

/// The unfused pieces as ops of their own (the fused ops' baseline): `residualSum` and
/// `activate` on OpenCL against the reference, in place, bad input.
@Suite("Elementwise residual add and activation")
struct ElementwiseTests {
    @Test("match the reference: every activation, f32 and half, a float32 residual, odd sizes")
    func matchesReference() throws {
        let backend = Backend.openCL(try #require(sharedRuntime))
        for (shape, type) in [([3, 64], ElementType.float32), ([5, 7], .float16), ([1], .float32)] {
            var rng = SeededGenerator(seed: 3)
            let count = shape.reduce(1, *)
            let x = rng.normals(count).map { type.rounded($0) }, z = rng.normals(count).map { type.rounded($0) }
            let r = rng.normals(count, scale: 3)
            for residualType in [type, .float32] {
                let values = r.map { residualType.rounded($0) }
                let on = { (b: Backend) in
                    try residualSum(
                        Tensor(x, shape: shape, elementType: type, on: b),
                        Tensor(values, shape: shape, elementType: residualType, on: b)).output
                }
                let h = try on(backend)
                #expect(h.elementType == residualType)
                #expect(try h.toArray() == on(.reference).toArray(), "h \(shape) \(type) + \(residualType)")
            }
            for activation in Activation.allCases {
                for withAddend in [false, true] {
                    let on = { (b: Backend) in
                        try activate(
                            Tensor(x, shape: shape, elementType: type, on: b), activation,
                            adding: withAddend ? Tensor(z, shape: shape, elementType: type, on: b) : nil).output.toArray()
                    }
                    let reference = try on(.reference)
                    expectClose(try on(backend), reference, "\(activation) \(shape) \(type) addend=\(withAddend)") { i in
                        (type == .float16 ? 2e-3 : 2e-6) * (1 + Swift.abs(Double(reference[i])))
                    }
                }
                let backward = { (b: Backend) in
                    try activationBackward(
                        Tensor(z, shape: shape, elementType: type, on: b), activation,
                        input: Tensor(x, shape: shape, elementType: type, on: b)).output.toArray()
                }
                let reference = try backward(.reference)
                expectClose(try backward(backend), reference, "\(activation) backward \(shape) \(type)") { i in
                    (type == .float16 ? 2e-3 : 2e-6) * (1 + Swift.abs(Double(reference[i])))
                }
            }
        }
    }

    @Test("in place, and typed errors for inputs that do not match")
    func inPlaceAndErrors() throws {
        let backend = Backend.openCL(try #require(sharedRuntime))
        let x = try Tensor([-1, 2, -3, 4, 5], shape: [5], on: backend)
        _ = try activate(x, .relu, into: x)
        #expect(try x.toArray() == [0, 2, 0, 4, 5])
        let other = try Tensor([Float](repeating: 1, count: 4), shape: [4], on: backend)
        let half = try Tensor([Float](repeating: 1, count: 5), shape: [5], elementType: .float16, on: backend)
        #expect(throws: NormError.self) { try residualSum(x, other) }
        #expect(throws: NormError.self) { try residualSum(x, half) }
        #expect(throws: NormError.self) { try activate(x, .silu, adding: half) }
        #expect(throws: NormError.self) { try activate(x, .silu, into: other) }
    }
}
