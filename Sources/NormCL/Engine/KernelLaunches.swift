/// The kernels of one op call, enqueued in order from one program, and their events
/// (which the op returns, in order, for its caller to time or wait on).
///
/// A launch's arguments are named and may come in parts (a literal list each, in the
/// kernel's parameter order: the sizes, the outputs, a set several kernels share); the
/// runtime checks them against the kernel's own parameter list as one list. The first
/// command waits for the caller's events (the op's ``OpCall/waitList``); the rest follow it
/// in the runtime's command order. A view of the caller's memory at an offset no
/// sub-buffer can start at (``DeviceBuffer/isStaged``) is copied in before the first launch
/// that uses it and back after each launch that may write it (the events include those
/// copies). Nothing here waits on the host.
struct KernelLaunches {
    typealias Launch = (global: [Int], local: [Int])

    let runtime: OpenCLRuntime
    let program: CompiledProgram
    /// The events of the launches so far, in order.
    private(set) var events: [KernelEvent] = []
    /// The caller's events, for the first command to wait for (emptied once it is submitted).
    private var waitList: [OpenCLEvent]
    /// The staged views of the caller's memory copied in so far (see ``DeviceBuffer/isStaged``).
    private var stagedIn: Set<ObjectIdentifier> = []

    init(_ program: CompiledProgram, on runtime: OpenCLRuntime, waitingFor waitList: [OpenCLEvent] = []) {
        self.program = program
        self.runtime = runtime
        self.waitList = waitList
    }

    /// Enqueues `kernel` over `launch` with `parts` as its arguments.
    @discardableResult
    mutating func enqueue(
        _ kernel: String, _ launch: Launch, _ parts: KeyValuePairs<String, KernelArgument>...
    ) throws -> KernelEvent {
        let arguments = parts.flatMap { $0 }
        var staged: [(Int, DeviceBuffer)] = []
        for (index, argument) in arguments.enumerated() {
            if case .buffer(let buffer?) = argument.value, buffer.isStaged { staged.append((index, buffer)) }
        }
        for (_, buffer) in staged where stagedIn.insert(ObjectIdentifier(buffer)).inserted {
            try buffer.stageIn(waitingFor: waitList)
            waitList = []
        }
        let event = try runtime.enqueue(
            kernel, from: program, global: launch.global, local: launch.local, named: arguments, waitingFor: waitList)
        waitList = []
        events.append(event)
        if !staged.isEmpty {
            // Back to the caller's memory after every launch that may write it: the last
            // such copy leaves the final values there, and is the op's last event.
            let writable = try program.writablePointers(of: kernel)
            var copiedOut: Set<ObjectIdentifier> = []
            for (index, buffer) in staged where writable[index] && copiedOut.insert(ObjectIdentifier(buffer)).inserted {
                events.append(try buffer.stageOut())
            }
        }
        return event
    }
}
