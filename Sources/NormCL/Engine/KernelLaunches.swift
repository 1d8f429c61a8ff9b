/// The kernels of one op call, enqueued in order from one program, and their events
/// (which the op returns, in order, for its caller to time or wait on).
///
/// A launch's arguments are named and may come in parts (a literal list each, in the
/// kernel's parameter order: the sizes, the outputs, a set several kernels share); the
/// runtime checks them against the kernel's own parameter list as one list. The first
/// launch waits for the caller's events (the op's ``OpCall/waitList``); the rest follow it
/// in the runtime's command order. Nothing here waits on the host.
struct KernelLaunches {
    typealias Launch = (global: [Int], local: [Int])

    let runtime: OpenCLRuntime
    let program: CompiledProgram
    /// The events of the launches so far, in order.
    private(set) var events: [KernelEvent] = []
    /// The caller's events, for the first launch to wait for.
    private var waitList: [OpenCLEvent]

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
        let event = try runtime.enqueue(
            kernel, from: program, global: launch.global, local: launch.local, arguments: arguments.map(\.value),
            names: arguments.map(\.key), waitingFor: events.isEmpty ? waitList : [])
        events.append(event)
        return event
    }
}
