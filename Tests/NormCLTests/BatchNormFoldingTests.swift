import Testing
@testable import NormCL

/// `BatchNormFolding`: inference BatchNorm as `x·scale + shift`, folded into the
/// weights and bias of the linear or convolution layer before it.
@Suite("BatchNorm folding")
struct BatchNormFoldingTests {
    /// Random BatchNorm parameters for `channels` channels.
    struct Parameters {
        var mean: [Float], variance: [Float], gamma: [Float], beta: [Float]
        var eps: Float = 1e-3

        init(channels: Int, seed: UInt64) {
            var rng = SeededGenerator(seed: seed)
            mean = rng.normals(channels, scale: 2)
            variance = (0..<channels).map { _ in Float.random(in: 0.3...3, using: &rng) }
            gamma = rng.normals(channels, offset: 1, scale: 0.5)
            beta = rng.normals(channels)
        }

        func folding() throws -> BatchNormFolding {
            try BatchNormFolding(runningMean: mean, runningVar: variance, weight: gamma, bias: beta, eps: eps)
        }

        /// Inference BatchNorm of `z` (shape `[N, C, *S]`) on the reference backend.
        func apply(_ z: [Float], shape: [Int]) throws -> [Float] {
            var running: RunningStatistics? = RunningStatistics(
                mean: try Tensor(mean, on: .reference), variance: try Tensor(variance, on: .reference))
            return try batchNorm(
                try Tensor(z, shape: shape, on: .reference), weight: try Tensor(gamma, on: .reference),
                bias: try Tensor(beta, on: .reference), runningStatistics: &running, training: false, eps: eps
            ).output.toArray()
        }
    }

    @Test("scale and shift match a hand computation")
    func scaleAndShift() throws {
        let mean: [Float] = [0.5, -2, 1e4], variance: [Float] = [4, 0.25, 1]
        let gamma: [Float] = [2, -1, 0.5], beta: [Float] = [0.1, 0.2, -3]
        let eps = 1e-5
        let expectedScale = [2 / (4 + eps).squareRoot(), -1 / (0.25 + eps).squareRoot(), 0.5 / (1 + eps).squareRoot()]
        let expectedShift = [0.1 - 0.5 * expectedScale[0], 0.2 + 2 * expectedScale[1], -3 - 1e4 * expectedScale[2]]
        // 2^-23 relative: one float32 rounding of a float64 result, with a factor 2 for the
        // float32 inputs (0.1, 0.2 are not exact) — far below any formula error (e.g. eps
        // outside the root, or μ·γ instead of μ·scale).
        func expectMatches(_ actual: [Float], _ expected: [Double], _ what: String) {
            for (a, e) in zip(actual, expected) {
                #expect(Swift.abs(Double(a) - e) <= 0x1p-23 * Swift.abs(e), "\(what): \(a) vs \(e)")
            }
        }
        let folding = try BatchNormFolding(runningMean: mean, runningVar: variance, weight: gamma, bias: beta, eps: 1e-5)
        expectMatches(folding.scale, expectedScale, "scale")
        expectMatches(folding.shift, expectedShift, "shift")

        // Without affine parameters: γ = 1, β = 0.
        let plain = try BatchNormFolding(runningMean: mean, runningVar: variance, eps: 1e-5)
        let plainScale = variance.map { 1 / (Double($0) + eps).squareRoot() }
        expectMatches(plain.scale, plainScale, "scale, no affine")
        expectMatches(plain.shift, zip(mean, plainScale).map { -Double($0) * $1 }, "shift, no affine")

        // From a layer: its running statistics, affine parameters and eps (1e-2 here).
        var layer = try BatchNorm(numFeatures: 3, eps: 1e-2, on: .reference)
        layer.runningStatistics = RunningStatistics(mean: try Tensor(mean, on: .reference), variance: try Tensor(variance, on: .reference))
        layer.weight = try Tensor(gamma, on: .reference)
        layer.bias = try Tensor(beta, on: .reference)
        let fromLayer = try BatchNormFolding(layer)
        let layerScale = zip(gamma, variance).map { Double($0) / (Double($1) + 1e-2).squareRoot() }
        expectMatches(fromLayer.scale, layerScale, "scale from a layer")
        expectMatches(fromLayer.shift, (0..<3).map { Double(beta[$0]) - Double(mean[$0]) * layerScale[$0] }, "shift from a layer")
    }

    /// The folded map is what the layer computes in inference, on OpenCL too, after
    /// the layer has trained (running statistics that are not the initial 0 and 1).
    @Test("the map equals the layer's inference output", arguments: BackendChoice.allCases)
    func mapEqualsLayerInference(choice: BackendChoice) throws {
        let backend = try choice.backend()
        var rng = SeededGenerator(seed: 77)
        var layer = try BatchNorm(numFeatures: 4, momentum: 0.5, on: backend)
        layer.weight = try Tensor(rng.normals(4, offset: 1), on: backend)
        layer.bias = try Tensor(rng.normals(4), on: backend)
        for _ in 0..<3 { _ = try layer(try Tensor(rng.normals(6 * 4 * 5, offset: 3, scale: 2), shape: [6, 4, 5], on: backend)) }
        let folding = try BatchNormFolding(layer)
        layer.isTraining = false
        let x = rng.normals(2 * 4 * 5, scale: 4)
        let y = try layer(try Tensor(x, shape: [2, 4, 5], on: backend)).toArray()
        for i in x.indices {
            let c = (i / 5) % 4
            let expected = Double(x[i]) * Double(folding.scale[c]) + Double(folding.shift[c])
            // 1e-5·(1 + |x·scale|): the layer subtracts the mean before scaling, the map
            // does not; both round in float32 on values of order 10.
            #expect(
                Swift.abs(Double(y[i]) - expected) <= 1e-5 * (1 + Swift.abs(Double(x[i]) * Double(folding.scale[c])) + Swift.abs(expected)),
                "element \(i): \(y[i]) vs \(expected)")
        }
    }

    /// Linear layer `z = W·x + b` (weight `[out = C, in = K]`), then inference BatchNorm,
    /// against the folded linear layer alone.
    @Test("folding into a linear layer", arguments: [true, false])
    func linear(withBias: Bool) throws {
        let (channels, inputs, batch) = (5, 7, 4)
        var rng = SeededGenerator(seed: withBias ? 10 : 11)
        let w = rng.normals(channels * inputs, scale: 0.5)
        let b: [Float]? = withBias ? rng.normals(channels) : nil
        let x = (0..<batch).map { _ in rng.normals(inputs, scale: 2) }
        let parameters = Parameters(channels: channels, seed: 12)

        func linear(_ weight: [Float], _ bias: [Float]?, _ v: [Float], _ o: Int) -> (value: Double, magnitude: Double) {
            var sum = Double(bias?[o] ?? 0), magnitude = Swift.abs(sum)
            for k in 0..<inputs {
                sum += Double(weight[o * inputs + k]) * Double(v[k])
                magnitude += Swift.abs(Double(weight[o * inputs + k]) * Double(v[k]))
            }
            return (sum, magnitude)
        }
        // The unfolded pair: linear in float64 (rounded to float32 as a layer's output
        // would be), then BatchNorm on [batch, C].
        let z = x.flatMap { v in (0..<channels).map { Float(linear(w, b, v, $0).value) } }
        let y = try parameters.apply(z, shape: [batch, channels])

        let folding = try parameters.folding()
        let folded = try folding.fold(weight: w, bias: b)
        #expect(folded.weight.count == w.count)
        #expect(folded.bias.count == channels)
        if b == nil { #expect(folded.bias == folding.shift, "without a bias, b' = shift") }
        for n in 0..<batch {
            for o in 0..<channels {
                let (value, magnitude) = linear(folded.weight, folded.bias, x[n], o)
                // 1e-6 · (the sum of |terms| + |z·scale| + |y|): each term and z, W', b'
                // carry a few float32 roundings (2^-24 ≈ 6e-8 each).
                let tolerance = 1e-6 * (magnitude + Swift.abs(Double(z[n * channels + o]) * Double(folding.scale[o])) + Swift.abs(value) + 1e-3)
                #expect(
                    Swift.abs(value - Double(y[n * channels + o])) <= tolerance,
                    "sample \(n) channel \(o): folded \(value) vs linear+BN \(y[n * channels + o])")
            }
        }
    }

    /// A 3×3 convolution (weight `[C, Cin, 3, 3]`; each output channel owns its
    /// contiguous `Cin·3·3` slice), then inference BatchNorm on `[N, C, H', W']`.
    @Test("folding into a convolution", arguments: [true, false])
    func convolution(withBias: Bool) throws {
        let (channels, inChannels, size, k) = (4, 3, 6, 3)
        let outSize = size - k + 1
        let batch = 2
        var rng = SeededGenerator(seed: withBias ? 20 : 21)
        let w = rng.normals(channels * inChannels * k * k, scale: 0.3)
        let b: [Float]? = withBias ? rng.normals(channels) : nil
        let images = rng.normals(batch * inChannels * size * size, offset: 0.5)
        let parameters = Parameters(channels: channels, seed: 22)

        func convolve(_ weight: [Float], _ bias: [Float]?) -> (values: [Double], magnitudes: [Double]) {
            var values: [Double] = [], magnitudes: [Double] = []
            for n in 0..<batch {
                for o in 0..<channels {
                    for i in 0..<outSize {
                        for j in 0..<outSize {
                            var sum = Double(bias?[o] ?? 0), magnitude = Swift.abs(sum)
                            for ci in 0..<inChannels {
                                for di in 0..<k {
                                    for dj in 0..<k {
                                        let term = Double(weight[((o * inChannels + ci) * k + di) * k + dj])
                                            * Double(images[((n * inChannels + ci) * size + i + di) * size + j + dj])
                                        sum += term
                                        magnitude += Swift.abs(term)
                                    }
                                }
                            }
                            values.append(sum)
                            magnitudes.append(magnitude)
                        }
                    }
                }
            }
            return (values, magnitudes)
        }
        let z = convolve(w, b).values.map { Float($0) }
        let y = try parameters.apply(z, shape: [batch, channels, outSize, outSize])
        let folding = try parameters.folding()
        let folded = try folding.fold(weight: w, bias: b)
        let (values, magnitudes) = convolve(folded.weight, folded.bias)
        var worst = 0.0
        for i in values.indices {
            let c = (i / (outSize * outSize)) % channels
            // As for the linear layer: a few float32 roundings per term.
            let tolerance = 1e-6 * (magnitudes[i] + Swift.abs(Double(z[i]) * Double(folding.scale[c])) + Swift.abs(values[i]) + 1e-3)
            worst = Swift.max(worst, Swift.abs(values[i] - Double(y[i])) / tolerance)
        }
        #expect(worst <= 1, "worst error / tolerance = \(worst)")
    }

    @Test("bad arguments")
    func errors() throws {
        let folding = try BatchNormFolding(runningMean: [0, 1, 2], runningVar: [1, 1, 1])
        #expect(throws: NormError.shapeMismatch(argument: "weight", expected: [3, -1], actual: [7])) {
            try folding.fold(weight: [Float](repeating: 1, count: 7), bias: nil)
        }
        #expect(throws: NormError.shapeMismatch(argument: "weight", expected: [3, -1], actual: [0])) {
            try folding.fold(weight: [], bias: nil)
        }
        #expect(throws: NormError.shapeMismatch(argument: "bias", expected: [3], actual: [2])) {
            try folding.fold(weight: [Float](repeating: 1, count: 6), bias: [1, 2])
        }
        #expect(throws: NormError.shapeMismatch(argument: "runningVar", expected: [3], actual: [2])) {
            try BatchNormFolding(runningMean: [0, 1, 2], runningVar: [1, 1])
        }
        #expect(throws: NormError.shapeMismatch(argument: "weight", expected: [3], actual: [4])) {
            try BatchNormFolding(runningMean: [0, 1, 2], runningVar: [1, 1, 1], weight: [1, 1, 1, 1])
        }
        #expect(throws: NormError.shapeMismatch(argument: "bias", expected: [3], actual: [1])) {
            try BatchNormFolding(runningMean: [0, 1, 2], runningVar: [1, 1, 1], bias: [1])
        }
        #expect(throws: NormError.emptyTensor(argument: "runningMean", shape: [0])) {
            try BatchNormFolding(runningMean: [], runningVar: [])
        }
        for eps: Float in [-1e-5, .nan, .infinity] {
            let error = #expect(throws: NormError.self) { try BatchNormFolding(runningMean: [0], runningVar: [1], eps: eps) }
            guard case .invalidArgument(argument: "eps", _)? = error else {
                Issue.record("eps \(eps): \(String(describing: error))")
                continue
            }
        }
        let untracked = try BatchNorm(numFeatures: 3, trackRunningStats: false, on: .reference)
        let error = #expect(throws: NormError.self) { try BatchNormFolding(untracked) }
        guard case .invalidArgument(argument: "layer", _)? = error else {
            Issue.record("untracked layer: \(String(describing: error))")
            return
        }
    }
}
