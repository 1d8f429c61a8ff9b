import COpenCL
import NormCL

/// `--caller-buffers`: each case run as an application's steady-state loop on its own
/// OpenCL objects. The benchmark makes a context and a profiling queue with raw OpenCL calls
/// and hands them to NormCL (`OpenCLRuntime(adopting:queue:device:)`); inputs live in
/// buffers it created (zero-copy views); each call writes into the previous call's results
/// and waits for its last event. The host time per call is then the op's overhead in that loop.
enum CallerBuffers {
    /// A runtime on a new context and profiling queue of `device`'s, made as a caller would.
    static func adoptedRuntime(on runtime: OpenCLRuntime) throws -> OpenCLRuntime {
        var status: cl_int = CL_SUCCESS
        var device: cl_device_id? = runtime.deviceHandle
        guard let context = clCreateContext(nil, 1, &device, nil, nil, &status) else {
            throw OpenCLError(code: status, call: "clCreateContext")
        }
        defer { clReleaseContext(context) }  // the runtime retains what it keeps
        var properties: [cl_queue_properties] = [
            cl_queue_properties(CL_QUEUE_PROPERTIES), cl_queue_properties(CL_QUEUE_PROFILING_ENABLE), 0,
        ]
        guard let queue = clCreateCommandQueueWithProperties(context, device, &properties, &status) else {
            throw OpenCLError(code: status, call: "clCreateCommandQueueWithProperties")
        }
        defer { clReleaseCommandQueue(queue) }
        return try OpenCLRuntime(adopting: context, queue: queue, device: runtime.deviceHandle)
    }

    /// `values` in a buffer of the runtime's context that the benchmark created, as a view;
    /// NormCL's own tensor on any other backend.
    static func tensor(
        _ values: [Float], shape: [Int], layout: TensorLayout, elementType: ElementType, on backend: Backend
    ) throws -> Tensor {
        let staged = try Tensor(values, shape: shape, layout: layout, elementType: elementType, on: backend)
        guard let runtime = backend.runtime, runtime.isAdopted, let source = staged.openCLMemory else { return staged }
        let bytes = values.count * elementType.byteCount
        var status: cl_int = CL_SUCCESS
        guard let memory = clCreateBuffer(runtime.contextHandle, cl_mem_flags(CL_MEM_READ_WRITE), bytes, nil, &status) else {
            throw OpenCLError(code: status, call: "clCreateBuffer")
        }
        defer { clReleaseMemObject(memory) }  // the view retains it
        let copy = clEnqueueCopyBuffer(runtime.queueHandle, source.buffer, memory, 0, 0, bytes, 0, nil, nil)
        guard copy == CL_SUCCESS else { throw OpenCLError(code: copy, call: "clEnqueueCopyBuffer") }
        try runtime.finish()
        return try Tensor(wrapping: memory, shape: shape, layout: layout, elementType: elementType, on: runtime)
    }
}

/// One case's loop state in `--caller-buffers` mode: the previous call's results (the next
/// call's destinations) and its last event (the next call's wait list). On NormCL's own
/// runtime it keeps nothing, and every call allocates its results as before.
final class SteadyState<Output: Sendable>: @unchecked Sendable {
    private let enabled: Bool
    private var previous: Output?
    private var lastEvent: KernelEvent?

    init(on backend: Backend) {
        enabled = backend.runtime?.isAdopted ?? false
    }

    /// Runs `op` with the previous results (nil the first time, and always on NormCL's own
    /// runtime) and the events to wait for; keeps what it returns for the next call.
    func call(_ op: (_ previous: Output?, _ waitList: [OpenCLEvent]) throws -> Output, events: (Output) -> [KernelEvent]) rethrows -> Output {
        let output = try op(previous, lastEvent.map { [$0.openCLEvent] } ?? [])
        if enabled {
            previous = output
            lastEvent = events(output).last
        }
        return output
    }
}

extension BenchmarkCase {
    /// A backward call in the steady state: into the previous call's gradients, after its
    /// last event (see ``SteadyState``).
    static func steadyBackward<Gradients: TimedGradients>(
        on backend: Backend,
        _ backward: @escaping (_ destinations: BackwardDestinations, _ waitList: [OpenCLEvent]) throws -> Gradients
    ) -> () throws -> Gradients {
        let steady = SteadyState<Gradients>(on: backend)
        return {
            try steady.call({ previous, waitList in try backward(previous?.destinations ?? .init(), waitList) }, events: \.events)
        }
    }

    /// A forward call in the steady state: into the previous call's output and saved
    /// statistics, after its last event.
    static func steadyForward<Output: NormForwardResults & Sendable>(
        on backend: Backend,
        _ forward: @escaping (_ destinations: ForwardDestinations, _ waitList: [OpenCLEvent]) throws -> Output,
        events: @escaping (Output) -> [KernelEvent]
    ) -> Run {
        let steady = SteadyState<Output>(on: backend)
        return {
            let out = try steady.call({ previous, waitList in try forward(previous?.destinations ?? .init(), waitList) }, events: events)
            return (out.output, events(out))
        }
    }
}
