import Foundation
import Testing
@testable import NormCL

/// Synchronized BatchNorm: a batch split into parts (on OpenCL, the reference and mixed;
/// uneven, some empty) gives, part by part, what BatchNorm gives on the whole batch.
@Suite("Synchronized BatchNorm")
struct SyncBatchNormTests {
    /// One batch, its split into parts along N, and the whole batch's BatchNorm on OpenCL.
    struct Case: CustomStringConvertible {
        var shape: [Int]
        var layout: TensorLayout = .channelsFirst
        var elementType: ElementType = .float32
        var split: [Int]
        var offset: Double = 0.5

        var description: String { "\(shape) \(layout) \(elementType) split \(split)" }
        var channels: Int { shape[1] }
        /// Values per sample (C·M).
        var sampleSize: Int { shape.dropFirst().reduce(1, *) }

        func partShape(_ n: Int) -> [Int] { [n] + shape.dropFirst() }
        /// Part i's range of the flat (n-major, either layout) data.
        func range(_ part: Int) -> Range<Int> {
            let first = split.prefix(part).reduce(0, +)
            return first * sampleSize..<(first + split[part]) * sampleSize
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
        func tensor(_ values: [Float], _ shape: [Int], on backend: Backend) throws -> Tensor {
            try Tensor(values, shape: shape, layout: c.layout, elementType: c.elementType, on: backend)
        }
        var wholeRunning = RunningStatistics(
            mean: try Tensor(runningMean, on: wholeBackend), variance: try Tensor(runningVar, on: wholeBackend),
            numBatchesTracked: 3)
        let wholeX = try tensor(x, c.shape, on: wholeBackend)
        let whole = try batchNorm(
            wholeX, weight: try Tensor(gamma, on: wholeBackend), bias: try Tensor(beta, on: wholeBackend),
            runningStatistics: &wholeRunning, training: true, momentum: 0.1)
        let wholeGradients = try batchNormBackward(
            try tensor(dy, c.shape, on: wholeBackend), forward: whole)
        let (wholeY, wholeDx) = (try whole.output.toArray(), try #require(wholeGradients.input).toArray())

        for backends in Self.backends(parts: c.split.count) {
            let parts = c.split.indices
            let inputs = try parts.map { try tensor(Array(x[c.range($0)]), c.partShape(c.split[$0]), on: backends[$0]) }
            let grads = try parts.map { try tensor(Array(dy[c.range($0)]), c.partShape(c.split[$0]), on: backends[$0]) }
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

    @Test("the layer: training steps then inference equal one BatchNorm layer on the whole batch")
    func layer() throws {
        let backends = Self.backends(parts: 2).last!
        var sync = try SyncBatchNorm(numFeatures: 6, momentum: nil, on: backends)
        var single = try BatchNorm(numFeatures: 6, momentum: nil, on: .reference)
        var rng = SeededGenerator(seed: 77)
        for step in 0..<3 {
            if step == 2 {
                sync.isTraining = false
                single.isTraining = false
            }
            let x = rng.normals(5 * 6 * 4, offset: Double(step)), dy = rng.normals(5 * 6 * 4)
            let split = [2 * 24, 3 * 24]
            let parts = try [
                Tensor(Array(x[..<split[0]]), shape: [2, 6, 4], on: backends[0]),
                Tensor(Array(x[split[0]...]), shape: [3, 6, 4], on: backends[1]),
            ]
            let grads = try [
                Tensor(Array(dy[..<split[0]]), shape: [2, 6, 4], on: backends[0]),
                Tensor(Array(dy[split[0]...]), shape: [3, 6, 4], on: backends[1]),
            ]
            let outputs = try sync.forward(parts)
            let gradients = try sync.backward(grads, inputs: parts, forwards: outputs)
            let whole = try single.forward(try Tensor(x, shape: [5, 6, 4], on: .reference))
            let wholeGradients = try single.backward(try Tensor(dy, shape: [5, 6, 4], on: .reference), forward: whole)
            expectClose(
                try outputs.flatMap { try $0.output.toArray() }, try whole.output.toArray(), "y at step \(step)",
                relative: 1e-5, absolute: 1e-5)
            expectClose(
                try gradients.flatMap { try $0.input!.toArray() }, try wholeGradients.input!.toArray(),
                "dx at step \(step)", relative: 1e-5, absolute: 1e-5)
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
