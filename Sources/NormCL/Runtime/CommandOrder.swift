import COpenCL

/// The order of the commands NormCL puts on a runtime's queue, and the caller's events
/// they wait for.
///
/// - On an in-order queue (NormCL's own, and most callers') the queue orders every
///   command; a command waits only for the caller's events handed to it.
/// - On an out-of-order queue NormCL chains its own commands: each waits for the
///   command NormCL submitted before it (and for the caller's events), so NormCL's work
///   runs in submission order exactly as on an in-order queue, while the caller's other
///   commands stay free to overlap it.
///
/// Either way NormCL's commands on one runtime run in the order they were submitted.
/// That is what makes the ``BufferPool``'s reuse of a freed buffer safe, and what lets an
/// op's second kernel read the first one's output without an event between them.
///
/// It also remembers the caller's events that commands wait for until they complete:
/// while one is pending, NormCL's queue may be stalled on the caller, and nothing on
/// the op path may wait for a NormCL command (see ``hasPendingCallerEvents``).
///
/// Why `@unchecked Sendable` is honest: the events it holds (retained) are reached only
/// under ``state``'s mutex; OpenCL events are thread-safe objects.
final class CommandOrder: @unchecked Sendable {
    /// Whether the queue was created with `CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE`.
    let isOutOfOrder: Bool
    private let objects: OpenCLObjectCounts

    private struct State: @unchecked Sendable {
        /// The event of the last command submitted (out-of-order queues only), retained.
        var last: cl_event?
        /// Caller events that a command waits for and that had not completed when last
        /// looked at, retained.
        var callerEvents: [cl_event] = []
    }

    private let state = PosixMutex(State())

    init(isOutOfOrder: Bool, objects: OpenCLObjectCounts) {
        self.isOutOfOrder = isOutOfOrder
        self.objects = objects
    }

    deinit { releaseAll() }

    /// Releases the events held; call once the queue is finished.
    func releaseAll() {
        let held = state.withLock { state in
            defer { state = State() }
            return (state.last.map { [$0] } ?? []) + state.callerEvents
        }
        for event in held {
            clReleaseEvent(event)
            objects.released(.event)
        }
    }

    /// Submits one command. `enqueue(count, waitList, event)` makes the OpenCL call with
    /// the wait list given (the caller's `events`, and on an out-of-order queue the last
    /// command NormCL submitted) and stores the new command's event in `event` when that
    /// is not nil. Returns the new event, owned by the caller, when `returnsEvent`.
    func submit(
        waitingFor events: [OpenCLEvent], returnsEvent: Bool,
        _ enqueue: (cl_uint, UnsafePointer<cl_event?>?, UnsafeMutablePointer<cl_event?>?) -> cl_int
    ) -> (status: cl_int, event: cl_event?) {
        if !isOutOfOrder && events.isEmpty {
            // The common case: no list, no lock.
            var event: cl_event?
            let status = returnsEvent ? enqueue(0, nil, &event) : enqueue(0, nil, nil)
            return (status, status == CL_SUCCESS ? event : nil)
        }
        return state.withLock { state in
            var waitList: [cl_event?] = events.map(\.handle)
            if let last = state.last { waitList.append(last) }
            var event: cl_event?
            // The chain needs every command's event even when the caller wants none.
            let needsEvent = returnsEvent || isOutOfOrder
            let status = waitList.withUnsafeBufferPointer { list in
                let (count, waits) = (cl_uint(list.count), list.isEmpty ? nil : list.baseAddress)
                return needsEvent ? enqueue(count, waits, &event) : enqueue(count, waits, nil)
            }
            guard status == CL_SUCCESS, let event else { return (status, nil) }
            if isOutOfOrder {
                if let last = state.last {
                    clReleaseEvent(last)
                    objects.released(.event)
                }
                clRetainEvent(event)
                objects.created(.event)
                state.last = event
            }
            // Dropping the completed ones here keeps a steady-state loop from growing the list.
            releaseCompleted(&state)
            for callerEvent in events where Self.isPending(callerEvent.handle) {
                clRetainEvent(callerEvent.handle)
                objects.created(.event)
                state.callerEvents.append(callerEvent.handle)
            }
            if returnsEvent { return (status, event) }
            clReleaseEvent(event)
            return (status, nil)
        }
    }

    /// Whether a caller event that a NormCL command waits for has not completed yet:
    /// then a wait for that command could wait for the caller forever (a user event the
    /// caller sets only after NormCL returns). Completed events are dropped here.
    var hasPendingCallerEvents: Bool {
        state.withLock { state in
            releaseCompleted(&state)
            return !state.callerEvents.isEmpty
        }
    }

    /// Releases the caller events that have completed; `finish` and reads call it, so
    /// that the events held never outgrow the work in flight.
    func releaseCompletedCallerEvents() {
        state.withLock { releaseCompleted(&$0) }
    }

    private func releaseCompleted(_ state: inout State) {
        state.callerEvents.removeAll { event in
            guard !Self.isPending(event) else { return false }
            clReleaseEvent(event)
            objects.released(.event)
            return true
        }
    }

    /// Whether `event` is still queued, submitted or running (not complete, not failed).
    static func isPending(_ event: cl_event) -> Bool {
        var status: cl_int = CL_COMPLETE
        let query = clGetEventInfo(
            event, cl_event_info(CL_EVENT_COMMAND_EXECUTION_STATUS), MemoryLayout<cl_int>.size, &status, nil)
        return query == CL_SUCCESS && status > CL_COMPLETE
    }
}

/// An OpenCL event from the caller's own OpenCL code, or one NormCL returned
/// (``KernelEvent/openCLEvent``), for an op to wait for.
///
/// It does not retain the event: keep it alive until the call that takes it returns
/// (NormCL retains what it needs to keep beyond that).
///
/// Why `@unchecked Sendable` is honest: it is an immutable handle to an OpenCL event,
/// a thread-safe object.
public struct OpenCLEvent: @unchecked Sendable, Hashable {
    /// The `cl_event`.
    public let handle: cl_event

    /// Wraps `handle` without retaining it.
    public init(_ handle: cl_event) {
        self.handle = handle
    }
}

extension KernelEvent {
    /// This kernel's event, for a later op or the caller's own commands to wait for.
    public var openCLEvent: OpenCLEvent { OpenCLEvent(handle) }
}
