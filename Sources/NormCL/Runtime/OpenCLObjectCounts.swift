import Synchronization

/// The OpenCL objects one runtime holds now (created or retained, not yet released), by kind.
///
/// Each `clCreate…` in the runtime layer counts its object up and each `clRelease…`
/// counts it down, so dropping a runtime and everything made on it must bring every
/// count back to zero: that is the library's leak check (LeakTests). One relaxed
/// atomic add per object, next to an OpenCL call that costs far more.
final class OpenCLObjectCounts: Sendable {
    /// The kinds of OpenCL object the library creates.
    enum Kind: String, CaseIterable, Sendable {
        case context, commandQueue, program, kernel, memory, event
    }

    private let contexts = Atomic<Int>(0)
    private let commandQueues = Atomic<Int>(0)
    private let programs = Atomic<Int>(0)
    private let kernels = Atomic<Int>(0)
    private let memoryObjects = Atomic<Int>(0)
    private let events = Atomic<Int>(0)

    /// One more live object of `kind`.
    func created(_ kind: Kind) { add(1, kind) }

    /// One object of `kind` released.
    func released(_ kind: Kind) { add(-1, kind) }

    /// The live count of each kind now.
    var snapshot: [Kind: Int] {
        Dictionary(uniqueKeysWithValues: Kind.allCases.map { ($0, count($0)) })
    }

    func count(_ kind: Kind) -> Int {
        switch kind {
        case .context: contexts.load(ordering: .relaxed)
        case .commandQueue: commandQueues.load(ordering: .relaxed)
        case .program: programs.load(ordering: .relaxed)
        case .kernel: kernels.load(ordering: .relaxed)
        case .memory: memoryObjects.load(ordering: .relaxed)
        case .event: events.load(ordering: .relaxed)
        }
    }

    private func add(_ delta: Int, _ kind: Kind) {
        switch kind {
        case .context: contexts.wrappingAdd(delta, ordering: .relaxed)
        case .commandQueue: commandQueues.wrappingAdd(delta, ordering: .relaxed)
        case .program: programs.wrappingAdd(delta, ordering: .relaxed)
        case .kernel: kernels.wrappingAdd(delta, ordering: .relaxed)
        case .memory: memoryObjects.wrappingAdd(delta, ordering: .relaxed)
        case .event: events.wrappingAdd(delta, ordering: .relaxed)
        }
    }
}
