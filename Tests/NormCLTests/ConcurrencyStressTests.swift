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

    /// The (case, data seed) pairs task `task` runs: a seeded shuffle of every case, then
    /// seeded draws up to 50, with data seeds of its own. Tasks 0–3 run the cases in that
    /// order and tasks 4–7 half a sequence later: tasks yield after each op, so they
    /// advance round-robin and threads often launch the same kernels at the same moment
    /// (what kernel checkout guards) as well as different ones.
    static func schedule(task: Int) -> [(ConcurrencyStressCase, UInt64)] {
        let all = ConcurrencyStressCase.all
        var order = SeededGenerator(seed: 0xC0C0)
        var kinds = Array(all.indices).shuffled(using: &order)
        kinds += (kinds.count..<max(kinds.count, opsPerTask)).map { _ in Int.random(in: all.indices, using: &order) }
        let rotation = task < tasks / 2 ? 0 : kinds.count / 2
        var data = SeededGenerator(seed: 0xDA7A &+ UInt64(task))
        return (kinds[rotation...] + kinds[..<rotation]).map { (all[$0], data.next()) }
    }

    /// 8 tasks × 50 ops drawn from every op × direction × mode × element type × layout
    /// (``ConcurrencyStressCase/all``) on the shared runtime; every result against the
    /// reference with the op harness's tolerances. Each task runs on OS threads of its own
    /// (``ThreadPerJobExecutor``), so the eight are preempted at any instruction.
    @Test("8 tasks × 50 mixed ops on the shared runtime match the reference", .enabled(if: hasOpenCL))
    func mixedOpsOnSharedRuntime() async throws {
        let runtime = try #require(sharedRuntime)
        // Every task runs every case at least once.
        let drawn = Set(Self.schedule(task: Self.tasks - 1).map(\.0.description))
        #expect(drawn.count == ConcurrencyStressCase.all.count, "cases never drawn")
        let executor = ThreadPerJobExecutor()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for task in 0..<Self.tasks {
                group.addTask(executorPreference: executor) {
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
        let executor = ThreadPerJobExecutor()
        let concurrent = try await withThrowingTaskGroup(of: (Int, [String]).self) { group in
            for task in 0..<Self.tasks {
                group.addTask(executorPreference: executor) {
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
