import Testing
@testable import NormCL

/// Many Swift tasks using one backend at once: every op forward and backward, drawn
/// with a seeded generator, each result checked against the reference (OpenCL) or
/// against the same op run alone (reference backend).
///
/// What they guard: the shared runtime's program cache and per-launch kernel checkout
/// (two launches sharing a `cl_kernel` set each other's arguments), the buffer pool
/// (a buffer recycled while another task still uses it), the in-order queue, and any
/// shared mutable state in the ops or the reference path.
@Suite("Concurrency stress")
struct ConcurrencyStressTests {
    static let tasks = 8
    static let opsPerTask = 50

    /// The (case, data seed) pairs task `task` runs, drawn with a seeded generator.
    static func schedule(task: Int, count: Int = opsPerTask) -> [(ConcurrencyStressCase, UInt64)] {
        var rng = SeededGenerator(seed: 0xC0C0 &+ UInt64(task))
        return (0..<count).map { _ in
            let index = Int.random(in: 0..<ConcurrencyStressCase.all.count, using: &rng)
            return (ConcurrencyStressCase.all[index], rng.next())
        }
    }

    /// 8 tasks × 50 ops drawn from every op × direction × mode × element type × layout
    /// (``ConcurrencyStressCase/all``) on the shared runtime; every result against the
    /// reference with the op harness's tolerances. Tasks yield between ops so their
    /// launches interleave on the cooperative pool.
    @Test("8 tasks × 50 mixed ops on the shared runtime match the reference", .enabled(if: hasOpenCL))
    func mixedOpsOnSharedRuntime() async throws {
        let runtime = try #require(sharedRuntime)
        // Every case at least once (a task draws 50 of ~30), so the stress covers every op.
        let drawn = Set((0..<Self.tasks).flatMap { Self.schedule(task: $0).map(\.0.description) })
        #expect(drawn.count == ConcurrencyStressCase.all.count, "cases never drawn")
        try await withThrowingTaskGroup(of: Void.self) { group in
            for task in 0..<Self.tasks {
                group.addTask {
                    for (stressCase, seed) in Self.schedule(task: task) {
                        try stressCase.check(on: .openCL(runtime), seed: seed)
                        await Task.yield()
                    }
                }
            }
            try await group.waitForAll()
        }
    }

    /// The same schedule on the reference backend: each task's results must be
    /// bit-identical to the same ops run one at a time (the reference is deterministic,
    /// so any difference is state shared between tasks).
    @Test("8 tasks × 50 mixed ops on the reference give the results of a serial run")
    func mixedOpsOnReference() async throws {
        let schedules = (0..<Self.tasks).map { Self.schedule(task: $0) }
        let serial = try schedules.map { schedule in try schedule.map { try $0.0.referenceFingerprint(seed: $0.1) } }
        let concurrent = try await withThrowingTaskGroup(of: (Int, [String]).self) { group in
            for task in 0..<Self.tasks {
                group.addTask {
                    var fingerprints: [String] = []
                    for (stressCase, seed) in schedules[task] {
                        fingerprints.append(try stressCase.referenceFingerprint(seed: seed))
                        await Task.yield()
                    }
                    return (task, fingerprints)
                }
            }
            var results = [[String]](repeating: [], count: Self.tasks)
            for try await (task, fingerprints) in group { results[task] = fingerprints }
            return results
        }
        for task in 0..<Self.tasks {
            for (step, (stressCase, _)) in schedules[task].enumerated() where concurrent[task][step] != serial[task][step] {
                Issue.record("task \(task) op \(step) (\(stressCase)): concurrent result differs from the serial one")
            }
        }
    }
}
