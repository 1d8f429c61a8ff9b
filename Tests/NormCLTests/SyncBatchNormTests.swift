import Foundation
import Testing
@testable import NormCL

/// Synchronized BatchNorm: a batch split into parts (on OpenCL, the reference and mixed;
/// uneven, some empty) gives, part by part, what BatchNorm gives on the whole batch, also
/// with the fused epilogue `y = f(BN(x) + z)`.
@Suite("Synchronized BatchNorm")
struct SyncBatchNormTests {
    /// One batch, its split into parts along N, and the whole batch's BatchNorm on OpenCL.
    struct Case: CustomStringConvertible, ChannelsAndSpatial {
        var shape: [Int]
        var layout: TensorLayout = .channelsFirst
        var elementType: ElementType = .float32
        var split: [Int]
        var offset: Double = 0.5
        /// The fused epilogue `y = f(BN(x) + z)`: f, and whether there is a z.
        var activation: Activation = .none
        var addend = false

        var description: String {
            let epilogue = activation == .none && !addend ? "" : " \(activation)\(addend ? "+z" : "")"
            return "\(shape) \(layout) \(elementType)\(epilogue) split \(split)"
        }
        /// Values per sample (C·M).
        var sampleSize: Int { shape.dropFirst().reduce(1, *) }

        func partShape(_ n: Int) -> [Int] { [n] + shape.dropFirst() }
        /// Part i's range of the flat (n-major, either layout) data.
        func range(_ part: Int) -> Range<Int> {
            let first = split.prefix(part).reduce(0, +)
            return first * sampleSize..<(first + split[part]) * sampleSize
        }

        func tensor(_ values: [Float], _ shape: [Int], on backend: Backend) throws -> Tensor {
            try Tensor(values, shape: shape, layout: layout, elementType: elementType, on: backend)
        }

        /// The whole batch's `values` split into the parts, part i on `backends[i]`.
        func parts(_ values: [Float], on backends: [Backend]) throws -> [Tensor] {
            try split.indices.map { try tensor(Array(values[range($0)]), partShape(split[$0]), on: backends[$0]) }
        }
    }

    static let cases: [Case] = [
        Case(shape: [7, 5, 3, 4], split: [4, 3]),
        Case(shape: [7, 5, 3, 4], split: [5, 0, 2]),
        Case(shape: [7, 5, 3, 4], layout: .channelsLast, split: [2, 0, 5]),
        Case(shape: [9, 16, 5, 7], elementType: .float16, split: [1, 3, 5]),
        Case(shape: [9, 16, 5, 7], layout: .channelsLast, elementType: .float16, split: [4, 5]),
        Case(shape: [11, 64], split: [3, 8, 0]),
        // One value per channel in a part: fine, the whole batch has more.
        Case(shape: [3, 6, 1, 1], split: [1, 1, 1]),
        // Large mean: the moments keep their float64 digits across the parts.
        Case(shape: [8, 12, 9, 9], split: [5, 3], offset: 1e4),
        // Long reductions: each part takes the split paths.
        Case(shape: [2, 2, 128, 129], split: [1, 1]),
        Case(shape: [4, 4, 64, 64], layout: .channelsLast, split: [3, 1]),
    ]

    /// Each part's backend: OpenCL for all, the reference for all, and alternating.
    static func backends(parts: Int) -> [[Backend]] {
        guard let runtime = sharedRuntime else { return [Array(repeating: .reference, count: parts)] }
        return [
            Array(repeating: .openCL(runtime), count: parts),
            Array(repeating: .reference, count: parts),
            (0..<parts).map { $0 % 2 == 0 ? .reference : .openCL(runtime) },
        ]
    }

    @Test("every part's y, dx and statistics equal BatchNorm's on the whole batch", arguments: cases)
    func matchesWholeBatch(_ c: Case) throws {
        var rng = SeededGenerator(seed: UInt64(c.shape.reduce(1, *) + c.split.count))
        let count = c.shape.reduce(1, *)
        let x = rng.normals(count, offset: c.offset, scale: 2).map { c.elementType.rounded($0) }
        let dy = rng.normals(count).map { c.elementType.rounded($0) }
        let gamma = rng.normals(c.channels, offset: 1, scale: 0.5), beta = rng.normals(c.channels, scale: 0.5)
        let runningMean = rng.normals(c.channels), runningVar = (0..<c.channels).map { _ in Float.random(in: 0.5...2, using: &rng) }

        // The whole batch on the reference path (float64): what every part must give.
        let wholeBackend = Backend.reference
        var wholeRunning = RunningStatistics(
            mean: try Tensor(runningMean, on: wholeBackend), variance: try Tensor(runningVar, on: wholeBackend),
            numBatchesTracked: 3)
        let wholeX = try c.tensor(x, c.shape, on: wholeBackend)
        let whole = try batchNorm(
            wholeX, weight: try Tensor(gamma, on: wholeBackend), bias: try Tensor(beta, on: wholeBackend),
            runningStatistics: &wholeRunning, training: true, momentum: 0.1)
        let wholeGradients = try batchNormBackward(
            try c.tensor(dy, c.shape, on: wholeBackend), forward: whole)
        let (wholeY, wholeDx) = (try whole.output.toArray(), try #require(wholeGradients.input).toArray())

        for backends in Self.backends(parts: c.split.count) {
            let parts = c.split.indices
            let inputs = try c.parts(x, on: backends), grads = try c.parts(dy, on: backends)
            let weights = try parts.map { try Tensor(gamma, on: backends[$0]) }
            let biases = try parts.map { try Tensor(beta, on: backends[$0]) }
            var running = try parts.map {
                RunningStatistics(
                    mean: try Tensor(runningMean, on: backends[$0]), variance: try Tensor(runningVar, on: backends[$0]),
                    numBatchesTracked: 3)
            }
            let outputs = try syncBatchNorm(
                inputs, weights: weights, biases: biases, runningStatistics: &running, momentum: 0.1)
            let gradients = try syncBatchNormBackward(grads, inputs: inputs, weights: weights, forwards: outputs)
            let what = "\(c) on \(backends.map(\.name))"
            // Half storage: y and dx round once to half; the reference's rounding and the
            // device's may differ by one half ulp.
            let storage = c.elementType == .float16 ? 1e-3 : 2e-6
            for i in parts {
                expectClose(
                    try outputs[i].output.toArray(), Array(wholeY[c.range(i)]), "\(what): y of part \(i)",
                    relative: storage, absolute: storage)
                expectClose(
                    try #require(gradients[i].input).toArray(), Array(wholeDx[c.range(i)]), "\(what): dx of part \(i)",
                    relative: storage, absolute: storage * 4)
                expectClose(
                    try #require(outputs[i].saveMean).toArray(), try #require(whole.saveMean).toArray(),
                    "\(what): saveMean of part \(i)", relative: 1e-6, absolute: 1e-6)
                expectClose(
                    try #require(outputs[i].saveInvstd).toArray(), try #require(whole.saveInvstd).toArray(),
                    "\(what): saveInvstd of part \(i)", relative: 1e-5)
                expectClose(
                    try running[i].mean.toArray(), try wholeRunning.mean.toArray(), "\(what): running mean of part \(i)",
                    relative: 1e-6, absolute: 1e-6)
                expectClose(
                    try running[i].variance.toArray(), try wholeRunning.variance.toArray(),
                    "\(what): running variance of part \(i)", relative: 1e-5)
                #expect(running[i].numBatchesTracked == 4)
                let n = Double(c.shape[0] * c.shape.dropFirst(2).reduce(1, *))
                expectClose(
                    try #require(gradients[i].weight).toArray(), try #require(wholeGradients.weight).toArray(),
                    "\(what): dγ of part \(i)", relative: 1e-5, absolute: 1e-5 * n.squareRoot())
                expectClose(
                    try #require(gradients[i].bias).toArray(), try #require(wholeGradients.bias).toArray(),
                    "\(what): dβ of part \(i)", relative: 1e-5, absolute: 1e-5 * n.squareRoot())
            }
        }
    }

    @Test("merging parts gives the whole batch's moments, in a fixed order, skipping empty parts")
    func mergeMatchesWhole() throws {
        var rng = SeededGenerator(seed: 5)
        let channels = 3
        let sizes = [17, 0, 1, 40, 2]
        let values = sizes.map { n in (0..<channels).map { _ in rng.normals(n, offset: 1e4).map(Double.init) } }
        func moments(_ columns: [[Double]]) throws -> BatchNormMoments {
            let n = columns[0].count
            let mean = columns.map { n == 0 ? 0 : $0.reduce(0, +) / Double(n) }
            let m2 = zip(columns, mean).map { column, m in column.reduce(0) { $0 + ($1 - m) * ($1 - m) } }
            return try BatchNormMoments(count: n, mean: mean, m2: m2)
        }
        let parts = try values.map(moments)
        let whole = try moments((0..<channels).map { c in values.flatMap { $0[c] } })
        let merged = try BatchNormMoments.merged(parts)
        #expect(merged.count == whole.count)
        for c in 0..<channels {
            #expect(abs(merged.mean[c] - whole.mean[c]) <= 1e-12 * abs(whole.mean[c]))
            #expect(abs(merged.m2[c] - whole.m2[c]) <= 1e-9 * whole.m2[c])
        }
        // The same parts in the same order give the same bits; an empty part changes nothing.
        #expect(try BatchNormMoments.merged(parts) == merged)
        #expect(try BatchNormMoments.merged(parts.filter { $0.count > 0 }) == merged)
        #expect(try BatchNormMoments.merged([.empty(channels: channels)]).count == 0)
        // The packed form round-trips.
        #expect(try BatchNormMoments(packed: merged.packed, channels: channels) == merged)
        let sums = try BatchNormGradientSums(count: 4, sumGradOutput: [1, 2], sumGradOutputCentered: [3, -4])
        #expect(try BatchNormGradientSums(packed: sums.packed, channels: 2) == sums)
        #expect(try BatchNormGradientSums.merged([sums, sums]).sumGradOutputCentered == [6, -8])
    }

    @Test("NaN in one part poisons only its channel, in every part")
    func nonFinite() throws {
        for backend in allBackends {
            var rng = SeededGenerator(seed: 9)
            var first = rng.normals(2 * 3 * 4)
            first[5] = .nan  // channel 1 of sample 0 (NCHW, M = 4)
            let inputs = [
                try Tensor(first, shape: [2, 3, 2, 2], on: backend),
                try Tensor(rng.normals(3 * 3 * 4), shape: [3, 3, 2, 2], on: backend),
            ]
            let outputs = try syncBatchNorm(inputs)
            for output in outputs {
                let y = try output.output.toArray()
                for (i, v) in y.enumerated() {
                    let channel = (i / 4) % 3
                    #expect(v.isNaN == (channel == 1), "\(backend.name): element \(i) of channel \(channel) is \(v)")
                }
            }
        }
    }

    @Test("bad input: typed errors, nothing updated")
    func badInput() throws {
        let backend = allBackends[0]
        let a = try Tensor(repeating: 1, shape: [2, 3, 4], on: backend)
        let b = try Tensor(repeating: 1, shape: [2, 4, 4], on: backend)
        #expect(throws: NormError.self) { try syncBatchNorm([a, b]) }
        #expect(throws: NormError.self) { try syncBatchNorm([]) }
        #expect(throws: NormError.self) { try syncBatchNorm([a, a], weights: [try Tensor(repeating: 1, shape: [3], on: backend)]) }
        // One value per channel over the whole batch.
        let single = try Tensor(repeating: 1, shape: [1, 3], on: backend)
        let empty = try Tensor(repeating: 1, shape: [0, 3], on: backend)
        #expect(throws: NormError.tooFewValuesPerChannel(valuesPerChannel: 1, shape: [1, 3])) {
            try syncBatchNorm([single, empty])
        }
        // Whole-batch statistics that do not cover the part.
        let moments = try batchNormMoments(single)
        #expect(throws: NormError.self) { try batchNorm(a, moments: moments) }
        var running = [try RunningStatistics(channels: 3, on: backend), try RunningStatistics(channels: 3, on: backend)]
        let before = try running[0].mean.toArray()
        #expect(throws: NormError.self) {
            try syncBatchNorm([a, a], runningStatistics: &running, momentum: 2)
        }
        #expect(try running[0].mean.toArray() == before)
        #expect(running[0].numBatchesTracked == 0)
    }

    @Test("every part empty: empty outputs, running statistics kept, the step counted")
    func allEmpty() throws {
        for backend in allBackends {
            let empty = try Tensor(repeating: 0, shape: [0, 2, 3], on: backend)
            var running = [try RunningStatistics(channels: 2, on: backend), try RunningStatistics(channels: 2, on: backend)]
            let outputs = try syncBatchNorm([empty, empty], runningStatistics: &running)
            #expect(outputs.allSatisfy { $0.output.isEmpty })
            #expect(try running[1].variance.toArray() == [1, 1])
            #expect(running[1].numBatchesTracked == 1)
        }
    }

    @Test(
        "the layer: training steps then inference equal one BatchNorm layer on the whole batch, also with an activation and z",
        arguments: zip([Activation.none, .relu, .gelu], [false, true, false]))
    func layer(activation: Activation, addend: Bool) throws {
        let backends = Self.backends(parts: 2).last!
        var sync = try SyncBatchNorm(numFeatures: 6, momentum: nil, on: backends)
        var single = try BatchNorm(numFeatures: 6, momentum: nil, on: .reference)
        sync.activation = activation
        single.activation = activation
        var rng = SeededGenerator(seed: 77)
        for step in 0..<3 {
            if step == 2 {
                sync.isTraining = false
                single.isTraining = false
            }
            let x = rng.normals(5 * 6 * 4, offset: Double(step)), dy = rng.normals(5 * 6 * 4), z = rng.normals(5 * 6 * 4)
            let split = [2 * 24, 3 * 24]
            func parts(_ values: [Float]) throws -> [Tensor] {
                try [
                    Tensor(Array(values[..<split[0]]), shape: [2, 6, 4], on: backends[0]),
                    Tensor(Array(values[split[0]...]), shape: [3, 6, 4], on: backends[1]),
                ]
            }
            let inputs = try parts(x)
            let outputs = try sync.forward(inputs, addends: addend ? try parts(z) : nil)
            let gradients = try sync.backward(try parts(dy), inputs: inputs, forwards: outputs)
            let whole = try single.forward(
                try Tensor(x, shape: [5, 6, 4], on: .reference),
                addend: addend ? try Tensor(z, shape: [5, 6, 4], on: .reference) : nil)
            let wholeGradients = try single.backward(try Tensor(dy, shape: [5, 6, 4], on: .reference), forward: whole)
            expectClose(
                try outputs.flatMap { try $0.output.toArray() }, try whole.output.toArray(), "y at step \(step)",
                relative: 1e-5, absolute: 1e-5)
            expectClose(
                try gradients.flatMap { try $0.input!.toArray() }, try wholeGradients.input!.toArray(),
                "dx at step \(step)", relative: 1e-5, absolute: 1e-5)
            if addend {
                expectClose(
                    try gradients.flatMap { try #require($0.addend).toArray() },
                    try #require(wholeGradients.addend).toArray(), "dz at step \(step)", relative: 1e-5, absolute: 1e-5)
            } else {
                #expect(gradients.allSatisfy { $0.addend == nil })
            }
            for i in 0..<2 {
                expectClose(
                    try sync.replicas[i].runningStatistics!.variance.toArray(),
                    try single.runningStatistics!.variance.toArray(), "running variance at step \(step)", relative: 1e-5)
                expectClose(
                    try gradients[i].weight!.toArray(), try wholeGradients.weight!.toArray(), "dγ at step \(step)",
                    relative: 1e-5, absolute: 1e-5)
            }
        }
        #expect(sync.replicas[1].runningStatistics!.numBatchesTracked == 2)
    }

    // MARK: The fused epilogue y = f(BN(x) + z)

    /// Every activation in both layouts and both element types, each with and without the
    /// addend (a half fraction of activation × layout × element type × addend that meets
    /// every pair per activation), the addend alone in two of them, and one long batch on
    /// the split paths; splits uneven, each with an empty part in another place.
    static let epilogueCases: [Case] = {
        let splits = [[4, 0, 3], [2, 5, 0], [0, 1, 6]]
        var cases: [Case] = []
        func add(
            _ activation: Activation, addend: Bool, _ layout: TensorLayout, _ elementType: ElementType, wide: Bool
        ) {
            // float4 loads in half the cases: M % 4 == 0 (NCHW), C % 4 == 0 (NHWC).
            let shape = layout == .channelsFirst ? (wide ? [7, 5, 4, 3] : [7, 5, 3, 3]) : (wide ? [7, 8, 5] : [7, 6, 5])
            cases.append(
                Case(
                    shape: shape, layout: layout, elementType: elementType, split: splits[cases.count % splits.count],
                    activation: activation, addend: addend))
        }
        for (k, activation) in BatchNormEpilogueTests.activations.enumerated() {
            for layout in TensorLayout.allCases {
                for elementType in ElementType.allCases {
                    let mixed = (layout == .channelsLast) != (elementType == .float16)
                    add(activation, addend: mixed != (k % 2 == 1), layout, elementType, wide: mixed == (k % 2 == 0))
                }
            }
        }
        add(.none, addend: true, .channelsFirst, .float32, wide: true)
        add(.none, addend: true, .channelsLast, .float16, wide: false)
        cases.append(Case(shape: [2, 3, 64, 65], split: [1, 1], activation: .gelu, addend: true))
        return cases
    }()

    @Test(
        "fused epilogue: every part's y, dx and dz are the slices of BatchNorm's on the whole batch, dγ and dβ its",
        arguments: epilogueCases)
    func epilogueMatchesWholeBatch(_ c: Case) throws {
        let seed = c.shape.reduce(1, *) + 16 * c.activation.kernelCode + (c.addend ? 8 : 0)
        var rng = SeededGenerator(seed: UInt64(seed))
        let count = c.shape.reduce(1, *)
        let stored = { (values: [Float]) in values.map { c.elementType.rounded($0) } }
        let x = stored(rng.normals(count, offset: 0.5, scale: 2)), z = stored(rng.normals(count))
        let dy = stored(rng.normals(count))
        let gamma = rng.normals(c.channels, offset: 1, scale: 0.5), beta = rng.normals(c.channels, scale: 0.5)
        let runningMean = rng.normals(c.channels), runningVar = (0..<c.channels).map { Float($0 % 3) + 0.5 }

        // The whole batch on the reference path, non-synchronized: what every part must give.
        func whole(fused: Bool) throws -> (BatchNormOutput, RunningStatistics) {
            var running = try #require(try runningStatistics(runningMean, runningVar, on: .reference))
            let output = try batchNorm(
                c.tensor(x, c.shape, on: .reference), weight: Tensor(gamma, on: .reference),
                bias: Tensor(beta, on: .reference), runningStatistics: &running, training: true, momentum: 0.1,
                activation: fused ? c.activation : .none,
                addend: fused && c.addend ? c.tensor(z, c.shape, on: .reference) : nil)
            return (output, running)
        }
        let (wholeOutput, wholeRunning) = try whole(fused: true)
        let bn = try whole(fused: false).0.output.toArray()
        let wholeGradients = try batchNormBackward(c.tensor(dy, c.shape, on: .reference), forward: wholeOutput)
        let wholeY = try wholeOutput.output.toArray(), wholeDx = try #require(wholeGradients.input).toArray()
        let wholeDz = try wholeGradients.addend?.toArray()
        #expect((wholeDz != nil) == c.addend)
        let index = ReferenceBatchNorm.Indexing(
            batch: c.shape[0], channels: c.channels, spatial: c.spatial, layout: c.layout)
        let bounds = EpilogueGradientTolerance(
            x: x, dy: dy, addend: c.addend ? z : nil, weight: gamma, bias: beta,
            mean: try #require(wholeOutput.saveMean).toArray(),
            invstd: try #require(wholeOutput.saveInvstd).toArray().map(Double.init), r: nil, d: nil, index: index,
            elementType: c.elementType)

        for backends in Self.backends(parts: c.split.count) {
            let inputs = try c.parts(x, on: backends), grads = try c.parts(dy, on: backends)
            let addends = c.addend ? try c.parts(z, on: backends) : nil
            let weights = try backends.map { try Tensor(gamma, on: $0) }
            let biases = try backends.map { try Tensor(beta, on: $0) }
            var running = try backends.map { try #require(try runningStatistics(runningMean, runningVar, on: $0)) }
            let outputs = try syncBatchNorm(
                inputs, weights: weights, biases: biases, runningStatistics: &running, momentum: 0.1,
                activation: c.activation, addends: addends)
            let gradients = try syncBatchNormBackward(grads, inputs: inputs, weights: weights, forwards: outputs)
            let what = "\(c) on \(backends.map(\.name))"
            for i in c.split.indices {
                // Part i's element j is the whole batch's element first + j (n-major in both layouts).
                let first = c.range(i).lowerBound
                let y = try outputs[i].output.toArray()
                expectClose(y, Array(wholeY[c.range(i)]), "\(what): y of part \(i)") { j in
                    EpilogueHarness.outputTolerance(
                        bn: bn[first + j], addend: c.addend ? z[first + j] : nil, expected: wholeY[first + j],
                        elementType: c.elementType)
                }
                expectClose(
                    try #require(gradients[i].input).toArray(), Array(wholeDx[c.range(i)]), "\(what): dx of part \(i)"
                ) { bounds.dx(first + $0, expected: wholeDx[first + $0]) }
                if let wholeDz {
                    let dz = try #require(gradients[i].addend)
                    #expect(dz.shape == inputs[i].shape && dz.layout == c.layout && dz.elementType == c.elementType)
                    expectClose(try dz.toArray(), Array(wholeDz[c.range(i)]), "\(what): dz of part \(i)") {
                        bounds.dz(first + $0, expected: wholeDz[first + $0])
                    }
                } else {
                    #expect(gradients[i].addend == nil, "\(what): dz of part \(i) without an addend")
                }
                expectClose(
                    try #require(gradients[i].weight).toArray(), try #require(wholeGradients.weight).toArray(),
                    "\(what): dγ of part \(i)") { bounds.dWeight($0) }
                expectClose(
                    try #require(gradients[i].bias).toArray(), try #require(wholeGradients.bias).toArray(),
                    "\(what): dβ of part \(i)") { bounds.dBias($0) }
                expectClose(
                    try #require(outputs[i].saveInvstd).toArray(), try #require(wholeOutput.saveInvstd).toArray(),
                    "\(what): saveInvstd of part \(i)", relative: 1e-5)
                expectClose(
                    try running[i].variance.toArray(), try wholeRunning.variance.toArray(),
                    "\(what): running variance of part \(i)", relative: 1e-5)
            }
        }
    }

    @Test("fused epilogue over an exchange: each participant gets what one process gets with every part, bit for bit")
    func epilogueOverExchange() throws {
        // ReLU + z in NCHW half, SiLU + z in NHWC.
        let cases = try [
            #require(Self.epilogueCases.first { $0.activation == .relu && $0.addend && $0.elementType == .float16 }),
            #require(Self.epilogueCases.first { $0.activation == .silu && $0.addend && $0.layout == .channelsLast }),
        ]
        for c in cases {
            var rng = SeededGenerator(seed: 41)
            let count = c.shape.reduce(1, *)
            let x = rng.normals(count, offset: 1).map { c.elementType.rounded($0) }
            let z = rng.normals(count).map { c.elementType.rounded($0) }
            let dy = rng.normals(count).map { c.elementType.rounded($0) }
            let backends = Self.backends(parts: c.split.count).last!
            let inputs = try c.parts(x, on: backends), addends = try c.parts(z, on: backends)
            let grads = try c.parts(dy, on: backends)
            let weights = try backends.map { try Tensor(rng.normals(c.channels, offset: 1, scale: 0.5), on: $0) }
            let biases = try backends.map { try Tensor(Array(repeating: -0.25, count: c.channels), on: $0) }
            let expected = try syncBatchNorm(
                inputs, weights: weights, biases: biases, activation: c.activation, addends: addends)
            let expectedGradients = try syncBatchNormBackward(grads, inputs: inputs, weights: weights, forwards: expected)

            let results = Self.onThreads(c.split.count) { rank, exchange in
                var running = try RunningStatistics(channels: c.channels, on: backends[rank])
                let forward = try syncBatchNorm(
                    inputs[rank], weight: weights[rank], bias: biases[rank], runningStatistics: &running,
                    activation: c.activation, addend: addends[rank], over: exchange)
                let gradients = try syncBatchNormBackward(
                    grads[rank], input: inputs[rank], weight: weights[rank], forward: forward, over: exchange)
                return try [forward.output, gradients.input!, gradients.addend!, gradients.weight!, gradients.bias!]
                    .map { try $0.toArray() }
            }
            for rank in c.split.indices {
                let got = try results[rank].get()
                let want = try [
                    expected[rank].output, expectedGradients[rank].input!, expectedGradients[rank].addend!,
                    expectedGradients[rank].weight!, expectedGradients[rank].bias!,
                ].map { try $0.toArray() }
                for (k, name) in ["y", "dx", "dz", "dγ", "dβ"].enumerated() {
                    #expect(got[k].map(\.bitPattern) == want[k].map(\.bitPattern), "\(c): \(name) of rank \(rank)")
                }
            }
        }
    }

    @Test("fused epilogue: BatchNorm layers over an exchange equal one layer on the whole batch")
    func epilogueLayersOverExchange() throws {
        let sizes = [3, 2], channels = 4, sample = channels * 6
        var rng = SeededGenerator(seed: 23)
        // One BatchNorm layer per participant (SiLU + z, training).
        let x = rng.normals(5 * sample, offset: 1), z = rng.normals(5 * sample), dy = rng.normals(5 * sample)
        let backend = allBackends[0]
        let results = Self.onThreads(2) { rank, exchange in
            var layer = try BatchNorm(numFeatures: channels, on: backend)
            layer.activation = .silu
            let range = rank == 0 ? 0..<(sizes[0] * sample) : (sizes[0] * sample)..<(5 * sample)
            let shape = [sizes[rank], channels, 6]
            let part = try Tensor(Array(x[range]), shape: shape, on: backend)
            let forward = try layer.forward(
                part, addend: try Tensor(Array(z[range]), shape: shape, on: backend), synchronizedOver: exchange)
            let gradients = try layer.backward(
                try Tensor(Array(dy[range]), shape: shape, on: backend), input: part, forward: forward,
                synchronizedOver: exchange)
            return try [forward.output, gradients.input!, gradients.addend!, gradients.weight!].map { try $0.toArray() }
        }
        var wholeLayer = try BatchNorm(numFeatures: channels, on: .reference)
        wholeLayer.activation = .silu
        let shape = [5, channels, 6]
        let whole = try wholeLayer.forward(
            try Tensor(x, shape: shape, on: .reference), addend: try Tensor(z, shape: shape, on: .reference))
        let wholeGradients = try wholeLayer.backward(try Tensor(dy, shape: shape, on: .reference), forward: whole)
        let got = try (0..<2).map { try results[$0].get() }
        for (k, (name, expected)) in [
            ("y", whole.output), ("dx", wholeGradients.input!), ("dz", wholeGradients.addend!),
        ].enumerated() {
            expectClose(got[0][k] + got[1][k], try expected.toArray(), name, relative: 1e-5, absolute: 1e-5)
        }
        expectClose(got[0][3], try wholeGradients.weight!.toArray(), "dγ", relative: 1e-5, absolute: 1e-5)
        #expect(got[0][3] == got[1][3])
    }

    @Test("fused epilogue: typed errors; BatchNorm's own backward still refuses a synchronized part")
    func epilogueErrors() throws {
        for backend in allBackends {
            let x = try Tensor((0..<30).map { Float($0 % 7) }, shape: [2, 3, 5], on: backend)
            let z = try Tensor(zerosLike: x)
            let wrongShape = try Tensor(repeating: 0, shape: [2, 3, 4], on: backend)
            let wrongType = try Tensor(repeating: 0, shape: [2, 3, 5], elementType: .float16, on: backend)
            #expect(
                thrown { try syncBatchNorm([x, x], activation: .relu, addends: [z, wrongShape]) } == "shapeMismatch(addend)")
            #expect(
                thrown { try syncBatchNorm([x, x], activation: .relu, addends: [wrongType, z]) } == "unsupported(addend)")
            #expect(thrown { try syncBatchNorm([x, x], addends: [z]) } == "invalidArgument(addends)")
            let moments = try batchNormMoments(x)
            #expect(
                thrown { try batchNorm(x, moments: moments, activation: .gelu, addend: wrongShape) }
                    == "shapeMismatch(addend)")

            let parts = try syncBatchNorm([x, x], activation: .silu, addends: [z, z])
            let mean = try #require(parts[0].saveMean), invstd = try #require(parts[0].saveInvstd)
            // An activation's input needs the saved invstd; an addend must match the part.
            #expect(
                thrown { try batchNormGradientSums(x, input: x, saveMean: mean, activation: .silu) }
                    == "invalidArgument(saveInvstd)")
            #expect(thrown {
                try batchNormGradientSums(
                    x, input: x, saveMean: mean, saveInvstd: invstd, activation: .silu, addend: wrongType)
            } == "unsupported(addend)")
            let sums = try batchNormGradientSums(
                x, input: x, saveMean: mean, saveInvstd: invstd, activation: .silu, addend: z)
            #expect(thrown {
                try batchNormBackward(
                    x, input: x, weight: nil, saveMean: mean, saveInvstd: invstd, gradientSums: sums, activation: .silu,
                    addend: wrongShape)
            } == "shapeMismatch(addend)")
            // Without an activation the sums need no invstd: the old call still works.
            #expect(try batchNormGradientSums(x, input: x, saveMean: mean).count == 10)

            // A part's output saves nothing for BatchNorm's own backward: its gradients
            // would be the part's alone.
            for part in [parts[0], try syncBatchNorm([x, x])[1], try batchNorm(x, moments: moments, addend: z)] {
                #expect(thrown { try batchNormBackward(x, forward: part) } == "forwardMismatch(forward)")
            }

            // The layers: renorm is not synchronized, replicas must share their activation.
            var sync = try SyncBatchNorm(numFeatures: 3, on: [backend, backend])
            sync.replicas[1].activation = .gelu
            #expect(thrown { try sync.forward([x, x]) } == "invalidArgument(activation)")
            sync.activation = .gelu
            sync.replicas[0].renorm = BatchRenormLimits(rmax: 2, dmax: 1)
            #expect(thrown { try sync.forward([x, x]) } == "unsupported(renorm)")
            #expect(thrown { try sync.forward([x, x], addends: [z]) } == "invalidArgument(addends)")
            var layer = try BatchNorm(numFeatures: 3, on: backend)
            layer.activation = .relu
            layer.renorm = BatchRenormLimits(rmax: 2, dmax: 1)
            #expect(thrown { try layer.forward(x, addend: z, synchronizedOver: SoloExchange()) } == "unsupported(renorm)")

            // One participant: BatchNorm's own forward is the whole batch, and the
            // synchronized backward of it takes its epilogue.
            let fused = try batchNorm(x, bias: try Tensor([0.5, -1, 0], on: backend), activation: .silu, addend: z)
            let own = try batchNormBackward(x, forward: fused)
            let synchronized = try syncBatchNormBackward(x, input: x, weight: nil, forward: fused, over: SoloExchange())
            for (a, b, name) in [(synchronized.input, own.input, "dx"), (synchronized.addend, own.addend, "dz")] {
                expectClose(try #require(a).toArray(), try #require(b).toArray(), name, relative: 1e-5, absolute: 1e-5)
            }
        }
    }

    /// Part `i`'s error (a wrong addend) reaches every participant as a typed error.
    @Test("fused epilogue over an exchange: a participant's bad addend is its NormError, the others' participantsFailed")
    func epilogueFailureOverExchange() throws {
        let backend = allBackends[0]
        let results = Self.onThreads(2) { rank, exchange in
            let x = try Tensor(repeating: Float(rank), shape: [2, 3, 4], on: backend)
            let z = try Tensor(repeating: 0, shape: rank == 1 ? [2, 3, 3] : [2, 3, 4], on: backend)
            return try syncBatchNorm(x, activation: .relu, addend: z, over: exchange).output.count
        }
        #expect(throws: NormError.shapeMismatch(argument: "addend", expected: [2, 3, 4], actual: [2, 3, 3])) {
            try results[1].get()
        }
        #expect(throws: SyncBatchNormError.participantsFailed(ranks: [1])) { try results[0].get() }
    }

    // MARK: Over an exchange: participants on threads

    /// Participants on threads of this process, exchanging through shared memory: the
    /// stand-in for processes over MPI.
    final class ThreadExchangeHub: @unchecked Sendable {
        let participants: Int
        private let condition = NSCondition()
        private var slots: [[Double]?]
        private var generation = 0
        private var result: [[Double]] = []
        private var collected = 0

        init(participants: Int) {
            self.participants = participants
            slots = Array(repeating: nil, count: participants)
        }

        func allGather(_ values: [Double], rank: Int) -> [[Double]] {
            condition.lock()
            defer { condition.unlock() }
            let mine = generation
            slots[rank] = values
            collected += 1
            if collected == participants {
                result = slots.map { $0! }
                slots = Array(repeating: nil, count: participants)
                collected = 0
                generation += 1
                condition.broadcast()
            } else {
                while generation == mine { condition.wait() }
            }
            return result
        }
    }

    struct ThreadExchange: StatisticsExchange {
        let hub: ThreadExchangeHub
        let rank: Int
        var participants: Int { hub.participants }
        func allGather(_ values: [Double]) throws -> [[Double]] { hub.allGather(values, rank: rank) }
    }

    /// Runs `body(rank, exchange)` on one thread per participant and returns each one's
    /// result (a value, or the error it threw).
    static func onThreads<T: Sendable>(
        _ participants: Int, _ body: @escaping @Sendable (Int, ThreadExchange) throws -> T
    ) -> [Result<T, any Error>] {
        let hub = ThreadExchangeHub(participants: participants)
        let results = ResultBox<T>(count: participants)
        let threads = (0..<participants).map { rank in
            Thread {
                results.set(rank, Result { try body(rank, ThreadExchange(hub: hub, rank: rank)) })
            }
        }
        threads.forEach { $0.start() }
        return results.wait()
    }

    final class ResultBox<T: Sendable>: @unchecked Sendable {
        private let condition = NSCondition()
        private var results: [Result<T, any Error>?]
        init(count: Int) { results = Array(repeating: nil, count: count) }
        func set(_ i: Int, _ r: Result<T, any Error>) {
            condition.lock()
            results[i] = r
            condition.broadcast()
            condition.unlock()
        }
        func wait() -> [Result<T, any Error>] {
            condition.lock()
            defer { condition.unlock() }
            while results.contains(where: { $0 == nil }) { condition.wait() }
            return results.map { $0! }
        }
    }

    @Test("over an exchange, participants get what one process gets with every part")
    func overExchange() throws {
        let split = [3, 0, 2]
        let shape = [5, 4, 3, 3]
        var rng = SeededGenerator(seed: 31)
        let x = rng.normals(shape.reduce(1, *), offset: 3), dy = rng.normals(shape.reduce(1, *))
        let sample = 4 * 9
        let backend = allBackends[0]
        let inputs = try (0..<3).map { i in
            let first = split.prefix(i).reduce(0, +)
            return try Tensor(Array(x[first * sample..<(first + split[i]) * sample]), shape: [split[i], 4, 3, 3], on: backend)
        }
        let grads = try (0..<3).map { i in
            let first = split.prefix(i).reduce(0, +)
            return try Tensor(Array(dy[first * sample..<(first + split[i]) * sample]), shape: [split[i], 4, 3, 3], on: backend)
        }
        var inProcessRunning = try (0..<3).map { _ in try RunningStatistics(channels: 4, on: backend) }
        let expected = try syncBatchNorm(inputs, runningStatistics: &inProcessRunning)
        let expectedGradients = try syncBatchNormBackward(grads, inputs: inputs, forwards: expected)

        let results = Self.onThreads(3) { rank, exchange in
            var running = try RunningStatistics(channels: 4, on: backend)
            let forward = try syncBatchNorm(inputs[rank], runningStatistics: &running, over: exchange)
            let gradients = try syncBatchNormBackward(
                grads[rank], input: inputs[rank], weight: nil, forward: forward, over: exchange)
            return [
                try forward.output.toArray(), try running.variance.toArray(), try gradients.input!.toArray(),
                try gradients.weight!.toArray(),
            ]
        }
        for rank in 0..<3 {
            let got = try results[rank].get()
            #expect(got[0] == (try expected[rank].output.toArray()))
            #expect(got[1] == (try inProcessRunning[rank].variance.toArray()))
            #expect(got[2] == (try expectedGradients[rank].input!.toArray()))
            #expect(got[3] == (try expectedGradients[rank].weight!.toArray()))
        }
    }

    @Test("BatchNorm layers synchronized over an exchange keep equal running statistics and get the whole batch's dγ")
    func layerOverExchange() throws {
        let backend = allBackends[0]
        var rng = SeededGenerator(seed: 12)
        let x = rng.normals(6 * 5 * 7, offset: 1), dy = rng.normals(6 * 5 * 7)
        let sizes = [4, 2], sample = 5 * 7
        let results = Self.onThreads(2) { rank, exchange in
            var layer = try BatchNorm(numFeatures: 5, on: backend)
            let first = rank == 0 ? 0 : sizes[0] * sample
            let part = try Tensor(Array(x[first..<(first + sizes[rank] * sample)]), shape: [sizes[rank], 5, 7], on: backend)
            let gradient = try Tensor(Array(dy[first..<(first + sizes[rank] * sample)]), shape: part.shape, on: backend)
            let forward = try layer.forward(part, synchronizedOver: exchange)
            let gradients = try layer.backward(gradient, input: part, forward: forward, synchronizedOver: exchange)
            return [try layer.runningStatistics!.variance.toArray(), try gradients.weight!.toArray()]
        }
        var whole = try BatchNorm(numFeatures: 5, on: .reference)
        let wholeForward = try whole.forward(try Tensor(x, shape: [6, 5, 7], on: .reference))
        let wholeGradients = try whole.backward(try Tensor(dy, shape: [6, 5, 7], on: .reference), forward: wholeForward)
        for rank in 0..<2 {
            let got = try results[rank].get()
            expectClose(got[0], try whole.runningStatistics!.variance.toArray(), "running variance", relative: 1e-5)
            expectClose(got[1], try wholeGradients.weight!.toArray(), "dγ", relative: 1e-5, absolute: 1e-5)
        }
        #expect(try results[0].get() == results[1].get())
    }

    @Test("a participant with bad input or other channels: a typed error on every participant, no hang")
    func failuresReachEveryone() throws {
        let backend = allBackends[0]
        // Participant 1 passes a negative eps: its own NormError, the others participantsFailed.
        let badEps = Self.onThreads(3) { rank, exchange in
            let x = try Tensor(repeating: Float(rank), shape: [2, 3, 4], on: backend)
            return try syncBatchNorm(x, eps: rank == 1 ? -1 : 1e-5, over: exchange).output.count
        }
        #expect(throws: NormError.self) { try badEps[1].get() }
        for rank in [0, 2] {
            #expect(throws: SyncBatchNormError.participantsFailed(ranks: [1])) { try badEps[rank].get() }
        }
        // Participant 2 has 5 channels, the others 3.
        let channels = Self.onThreads(3) { rank, exchange in
            let x = try Tensor(repeating: 1, shape: [2, rank == 2 ? 5 : 3, 4], on: backend)
            return try syncBatchNorm(x, over: exchange).output.count
        }
        for rank in 0..<3 {
            #expect(throws: SyncBatchNormError.self) { try channels[rank].get() }
        }
        // One participant in the backward pass while the others run a forward.
        let outOfStep = Self.onThreads(2) { rank, exchange in
            let x = try Tensor(repeating: 1, shape: [2, 3, 4], on: backend)
            let stats = try Tensor(repeating: 0, shape: [3], on: backend)
            if rank == 0 { return try syncBatchNorm(x, over: exchange).output.count }
            return try syncBatchNormBackward(
                x, input: x, weight: nil, saveMean: stats, saveInvstd: stats, over: exchange
            ).input!.count
        }
        for rank in 0..<2 {
            #expect(throws: SyncBatchNormError.self) { try outOfStep[rank].get() }
        }
    }
}

/// A single participant: synchronized BatchNorm's calls with nobody else.
struct SoloExchange: StatisticsExchange {
    var rank: Int { 0 }
    var participants: Int { 1 }
    func allGather(_ values: [Double]) throws -> [[Double]] { [values] }
}
