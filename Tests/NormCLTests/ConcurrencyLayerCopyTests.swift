import Testing
@testable import NormCL

/// Layers are values: a copy's running statistics are its own. Tensors are immutable
/// and every op writes the updated statistics to new tensors, so two copies share
/// device buffers only until one of them trains; a kernel that updated a running
/// buffer in place would change every copy holding it.
@Suite("Concurrency: layer copies")
struct ConcurrencyLayerCopyTests {
    static let shape = ConcurrencyStressCase.imageShape

    static func batch(_ seed: UInt64, on backend: Backend) throws -> Tensor {
        var rng = SeededGenerator(seed: seed)
        return try Tensor(rng.normals(shape.reduce(1, *), offset: Double(seed % 5), scale: 2), shape: shape, on: backend)
    }

    /// The running statistics as host values, for exact comparisons.
    struct Snapshot: Equatable {
        var mean: [Float]
        var variance: [Float]
        var numBatchesTracked: Int

        init(_ statistics: RunningStatistics?) throws {
            let statistics = try #require(statistics)
            mean = try statistics.mean.toArray()
            variance = try statistics.variance.toArray()
            numBatchesTracked = statistics.numBatchesTracked
        }
    }

    /// Trains `original` one step, copies it twice, trains the copies concurrently on
    /// different data: the original keeps its statistics exactly, each copy gets what
    /// training a copy alone gives, and the two copies differ.
    static func checkCopies<Layer: Sendable>(
        _ make: () throws -> Layer, train: @escaping @Sendable (inout Layer, Tensor) throws -> Void,
        statistics: @escaping @Sendable (Layer) -> RunningStatistics?, on backend: Backend, _ label: String
    ) async throws {
        var original = try make()
        try train(&original, try batch(1, on: backend))
        let before = try Snapshot(statistics(original))
        let first = original, second = original
        async let trainedFirst: Layer = {
            var layer = first
            for seed: UInt64 in [2, 3] { try train(&layer, try batch(seed, on: backend)) }
            return layer
        }()
        async let trainedSecond: Layer = {
            var layer = second
            for seed: UInt64 in [4, 5] { try train(&layer, try batch(seed, on: backend)) }
            return layer
        }()
        let (a, b) = try await (trainedFirst, trainedSecond)
        #expect(try Snapshot(statistics(original)) == before, "\(label): training copies changed the original")
        #expect(try Snapshot(statistics(first)) == before, "\(label): training a copy of a copy changed it")
        var alone = original
        for seed: UInt64 in [2, 3] { try train(&alone, try batch(seed, on: backend)) }
        let (sa, sb, salone) = (try Snapshot(statistics(a)), try Snapshot(statistics(b)), try Snapshot(statistics(alone)))
        #expect(sa.numBatchesTracked == 3 && sb.numBatchesTracked == 3, "\(label): steps counted per copy")
        expectClose(sa.mean, salone.mean, "\(label) concurrent copy vs alone, mean", relative: 1e-6, absolute: 1e-7)
        expectClose(sa.variance, salone.variance, "\(label) concurrent copy vs alone, var", relative: 1e-6, absolute: 1e-7)
        #expect(sa.mean != sb.mean, "\(label): copies trained on different data share statistics")
    }

    @Test("BatchNorm copies keep their own running statistics", arguments: allBackends)
    func batchNorm(backend: Backend) async throws {
        try await Self.checkCopies(
            { try BatchNorm(numFeatures: 6, on: backend) }, train: { (layer: inout BatchNorm, x) in _ = try layer(x) },
            statistics: \.runningStatistics, on: backend, "BatchNorm \(backend.name)")
    }

    @Test("Batch Renorm copies keep their own running statistics", arguments: allBackends)
    func batchRenorm(backend: Backend) async throws {
        try await Self.checkCopies(
            {
                var layer = try BatchNorm(numFeatures: 6, on: backend)
                layer.renorm = BatchRenormLimits(rmax: 3, dmax: 5)
                return layer
            }, train: { (layer: inout BatchNorm, x) in _ = try layer(x) }, statistics: \.runningStatistics, on: backend, "BatchRenorm \(backend.name)")
    }

    @Test("InstanceNorm copies keep their own running statistics", arguments: allBackends)
    func instanceNorm(backend: Backend) async throws {
        try await Self.checkCopies(
            { try InstanceNorm(numFeatures: 6, affine: true, trackRunningStats: true, on: backend) },
            train: { (layer: inout InstanceNorm, x) in _ = try layer(x) },
            statistics: \.runningStatistics, on: backend, "InstanceNorm \(backend.name)")
    }

    @Test("SwitchableNorm copies keep their own running statistics", arguments: allBackends)
    func switchableNorm(backend: Backend) async throws {
        try await Self.checkCopies(
            { try SwitchableNorm(numFeatures: 6, on: backend) }, train: { (layer: inout SwitchableNorm, x) in _ = try layer(x) },
            statistics: \.runningStatistics, on: backend, "SwitchableNorm \(backend.name)")
    }
}
