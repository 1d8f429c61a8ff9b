import Testing
@testable import NormCL

/// Runtimes and tensors across tasks: runtimes created at once, tensors produced by one
/// task and read back (or fed to further ops) by another, layers with running
/// statistics driven from several tasks.
@Suite("Concurrency runtimes", .enabled(if: hasOpenCL))
struct ConcurrencyRuntimeTests {
    /// Four tasks each create their own runtime on the shared runtime's device at the same
    /// moment (contexts, queues, program caches and builds in parallel) and run three ops
    /// on it, checked against the reference.
    @Test("tasks creating their own runtimes at once get correct results")
    func ownRuntimes() async throws {
        let device = try #require(sharedRuntime).device
        let cases = [0, 8, 16].map { ConcurrencyStressCase.all[$0] }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for task in 0..<4 {
                group.addTask {
                    let runtime = try OpenCLRuntime(device: device)
                    for (step, stressCase) in cases.enumerated() {
                        try stressCase.check(on: .openCL(runtime), seed: UInt64(100 * task + step))
                        await Task.yield()
                    }
                    try runtime.finish()
                }
            }
            try await group.waitForAll()
        }
    }

    /// Eight producer tasks enqueue GroupNorm forward and backward without reading
    /// anything back; eight consumer tasks, each waiting for another task's producer,
    /// read those tensors back and feed the output to a BatchNorm of their own. Producers
    /// and consumers overlap, so reads, new launches and buffer recycling interleave on
    /// the one queue.
    @Test("tensors produced in one task are read back and reused in another")
    func crossTaskReadback() async throws {
        let runtime = try #require(sharedRuntime)
        let shape = ConcurrencyStressCase.imageShape
        let count = shape.reduce(1, *)
        struct Produced: Sendable {
            var output: Tensor
            var dx: Tensor
        }
        func data(_ task: Int) -> (x: [Float], dy: [Float]) {
            var rng = SeededGenerator(seed: 7000 + UInt64(task))
            return (rng.normals(count, offset: Double(task), scale: 1 + Double(task) / 4), rng.normals(count))
        }
        func produce(_ task: Int, on backend: Backend) throws -> Produced {
            let (x, dy) = data(task)
            let input = try Tensor(x, shape: shape, on: backend)
            let forward = try groupNorm(input, numGroups: 3)
            let gradients = try groupNormBackward(
                try Tensor(dy, shape: shape, on: backend), input: input, numGroups: 3, weight: nil, forward: forward)
            return Produced(output: forward.output, dx: try #require(gradients.input))
        }
        let producers = (0..<8).map { task in
            Task { try produce(task, on: .openCL(runtime)) }
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for task in 0..<8 {
                group.addTask {
                    let source = (task + 3) % 8
                    let produced = try await producers[source].value
                    let expected = try produce(source, on: .reference)
                    let chained = try batchNorm(produced.output).output
                    let expectedChained = try batchNorm(expected.output).output.toArray()
                    let y = try expected.output.toArray(), dx = try expected.dx.toArray()
                    // As the GroupNorm harnesses: 2e-6·(1 + |y|); dx is O(1) per element.
                    expectClose(try produced.output.toArray(), y, "task \(task) reads \(source)'s output") { i in
                        2e-6 * (1 + Swift.abs(Double(y[i])))
                    }
                    expectClose(try produced.dx.toArray(), dx, "task \(task) reads \(source)'s dx") { i in
                        1e-5 * (1 + Swift.abs(Double(dx[i])))
                    }
                    expectClose(try chained.toArray(), expectedChained, "task \(task) BatchNorm of \(source)'s output") { i in
                        1e-5 * (1 + Swift.abs(Double(expectedChained[i])))
                    }
                }
            }
            try await group.waitForAll()
        }
    }

    /// Six tasks, each with its own BatchNorm (Batch Renorm in odd tasks), InstanceNorm
    /// and SwitchableNorm layers on OpenCL and their twins on the reference: three
    /// training steps and one inference step each, outputs and running statistics
    /// compared at the end.
    @Test("layers with running statistics, one set per task, match the reference")
    func layersPerTask() async throws {
        let runtime = try #require(sharedRuntime)
        let shape = ConcurrencyStressCase.imageShape
        try await withThrowingTaskGroup(of: Void.self) { group in
            for task in 0..<6 {
                group.addTask {
                    var layers = try TaskLayers(on: .openCL(runtime), renorm: task % 2 == 1)
                    var twins = try TaskLayers(on: .reference, renorm: task % 2 == 1)
                    var rng = SeededGenerator(seed: 9000 + UInt64(task))
                    for step in 0..<4 {
                        if step == 3 { layers.setTraining(false); twins.setTraining(false) }
                        let x = rng.normals(shape.reduce(1, *), offset: Double(step), scale: 1 + Double(task))
                        let actual = try layers.step(try Tensor(x, shape: shape, on: .openCL(runtime)))
                        let expected = try twins.step(try Tensor(x, shape: shape, on: .reference))
                        for (name, a, e) in zip3(["BatchNorm", "InstanceNorm", "SwitchableNorm"], actual, expected) {
                            // Outputs of order 1: 1e-5·(1 + |y|), as the layer tests.
                            expectClose(a, e, "task \(task) step \(step) \(name)") { i in 1e-5 * (1 + Swift.abs(Double(e[i]))) }
                        }
                        await Task.yield()
                    }
                    try layers.expectSameRunningStatistics(as: twins, "task \(task)")
                }
            }
            try await group.waitForAll()
        }
    }
}

private func zip3<A, B, C>(_ a: [A], _ b: [B], _ c: [C]) -> [(A, B, C)] {
    zip(a, zip(b, c)).map { ($0, $1.0, $1.1) }
}

/// One task's layers: BatchNorm (or Batch Renorm), InstanceNorm with tracking, and
/// SwitchableNorm, all over 6 channels.
private struct TaskLayers {
    var batchNorm: BatchNorm
    var instanceNorm: InstanceNorm
    var switchableNorm: SwitchableNorm

    init(on backend: Backend, renorm: Bool) throws {
        batchNorm = try BatchNorm(numFeatures: 6, on: backend)
        if renorm { batchNorm.renorm = BatchRenormLimits(rmax: 3, dmax: 5) }
        instanceNorm = try InstanceNorm(numFeatures: 6, affine: true, trackRunningStats: true, on: backend)
        switchableNorm = try SwitchableNorm(numFeatures: 6, on: backend)
    }

    mutating func setTraining(_ training: Bool) {
        batchNorm.isTraining = training
        instanceNorm.isTraining = training
        switchableNorm.isTraining = training
    }

    /// Each layer's output for `x`, read back.
    mutating func step(_ x: Tensor) throws -> [[Float]] {
        [try batchNorm(x).toArray(), try instanceNorm(x).toArray(), try switchableNorm(x).toArray()]
    }

    /// Running statistics within relative 2e-5 plus 1e-6 (as the BatchNorm layer tests:
    /// a few float32 roundings per step).
    func expectSameRunningStatistics(as other: TaskLayers, _ label: String) throws {
        let pairs = [
            ("BatchNorm", batchNorm.runningStatistics, other.batchNorm.runningStatistics),
            ("InstanceNorm", instanceNorm.runningStatistics, other.instanceNorm.runningStatistics),
            ("SwitchableNorm", switchableNorm.runningStatistics, other.switchableNorm.runningStatistics),
        ]
        for (name, a, e) in pairs {
            let a = try #require(a), e = try #require(e)
            expectClose(try a.mean.toArray(), try e.mean.toArray(), "\(label) \(name) running mean", relative: 2e-5, absolute: 1e-6)
            expectClose(
                try a.variance.toArray(), try e.variance.toArray(), "\(label) \(name) running var", relative: 2e-5, absolute: 1e-6)
            #expect(a.numBatchesTracked == e.numBatchesTracked && a.numBatchesTracked == 3, "\(label) \(name) numBatchesTracked")
        }
    }
}
