import COpenCL

/// A kernel launch in flight or finished, with its device-side timing.
///
/// Returned by every op that runs on OpenCL, so callers and the benchmark program can
/// read how long each kernel ran on the device (queue profiling is always on).
///
/// Why `@unchecked Sendable` is honest: its properties are `let`s; the `cl_event` is
/// only waited on and queried (thread-safe OpenCL calls) and released once, in `deinit`.
public final class KernelEvent: @unchecked Sendable {
    /// The kernel's function name in its `.cl` file.
    public let name: String
    let handle: cl_event
    /// Keeps the queue and context alive while the event can still be queried.
    let runtime: OpenCLRuntime

    /// Takes ownership of `handle`, which `deinit` releases.
    init(name: String, handle: cl_event, runtime: OpenCLRuntime) {
        self.name = name
        self.handle = handle
        self.runtime = runtime
        runtime.objects.created(.event)
    }

    deinit {
        clReleaseEvent(handle)
        runtime.objects.released(.event)
    }

    /// Blocks until the kernel has finished.
    public func wait() throws(OpenCLError) {
        var event: cl_event? = handle
        try check(clWaitForEvents(1, &event), "clWaitForEvents(\(name))")
        runtime.settleAfterWaiting()
    }

    /// Device time from the kernel's start to its end, in nanoseconds; waits for it first.
    public func durationNanoseconds() throws(OpenCLError) -> UInt64 {
        try wait()
        let start = try profilingCounter(CL_PROFILING_COMMAND_START)
        let end = try profilingCounter(CL_PROFILING_COMMAND_END)
        return end >= start ? end - start : 0
    }

    /// The device clock when the kernel started and ended, in nanoseconds; waits first.
    public func interval() throws(OpenCLError) -> (start: UInt64, end: UInt64) {
        try wait()
        return (try profilingCounter(CL_PROFILING_COMMAND_START), try profilingCounter(CL_PROFILING_COMMAND_END))
    }

    private func profilingCounter(_ parameter: Int32) throws(OpenCLError) -> UInt64 {
        var value: cl_ulong = 0
        try check(
            clGetEventProfilingInfo(handle, cl_profiling_info(parameter), MemoryLayout<cl_ulong>.size, &value, nil),
            "clGetEventProfilingInfo(\(name))")
        return value
    }
}

extension Array where Element == KernelEvent {
    /// Device time from the first kernel's start to the last one's end, in nanoseconds.
    ///
    /// The span, not the sum: on an in-order queue it includes the gaps between
    /// kernels, which is what a caller waits for.
    public func spanNanoseconds() throws(OpenCLError) -> UInt64 {
        guard !isEmpty else { return 0 }
        var first = UInt64.max
        var last: UInt64 = 0
        for event in self {
            let (start, end) = try event.interval()
            first = Swift.min(first, start)
            last = Swift.max(last, end)
        }
        return last >= first ? last - first : 0
    }
}
