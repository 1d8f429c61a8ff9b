import COpenCL

/// One OpenCL device with its context, in-order command queue and program cache.
///
/// Every op on a device tensor enqueues its kernels on this queue without waiting;
/// reading a result back (``Tensor/toArray()``) is what waits. Exceptions for a safe
/// process exit (see `ProcessExit`): the first launch of each kernel of a program waits
/// for that kernel, and `exit` waits for the queue of every live runtime. Profiling is enabled on
/// the queue, so each op's ``KernelEvent``s report device-side kernel times.
///
/// Thread safety: OpenCL 1.2 makes contexts, queues, programs and buffers safe to use
/// from several threads; the one unsafe call, `clSetKernelArg`, only ever runs on a
/// kernel object checked out of `ProgramCache` by one launch at a time.
///
/// Why `@unchecked Sendable` is honest: every stored property is a `let`; `device`,
/// `tuning`, `programs` and `buffers` are themselves `Sendable` (the caches keep their
/// state behind a `PosixMutex`), and the context and queue handles, which Swift cannot
/// check, are thread-safe OpenCL objects released only in `deinit`.
public final class OpenCLRuntime: @unchecked Sendable {
    /// The device this runtime runs on.
    public let device: OpenCLDevice
    /// Launch parameters tuned per kind of device (see ``DeviceTuning``).
    public let tuning: DeviceTuning
    /// The program cache's memory limit and disk directory (see ``ProgramCacheConfiguration``).
    public var programCache: ProgramCacheConfiguration { programs.configuration }
    let context: cl_context
    let queue: cl_command_queue
    let programs: ProgramCache
    /// The device allocator: a byte limit, and freed allocations kept for reuse (see ``BufferPool``).
    let buffers: BufferPool
    /// The OpenCL objects this runtime holds, for the leak check.
    let objects: OpenCLObjectCounts

    /// Creates a context and a profiling-enabled in-order queue on `device`.
    ///
    /// - Parameters:
    ///   - device: The device to run on (see ``DeviceDiscovery``).
    ///   - programCache: How many compiled programs to keep in memory, and the directory
    ///     their binaries are kept in for later processes (nil: none). The default,
    ///     ``ProgramCacheConfiguration/default(for:)``, reads `NORMCL_PROGRAM_CACHE_LIMIT`
    ///     and `NORMCL_CACHE_DIR`, and leaves the disk cache to a driver that keeps its own.
    /// - Throws: ``OpenCLError`` when the context or the queue cannot be created.
    public init(device: OpenCLDevice, programCache: ProgramCacheConfiguration? = nil) throws(OpenCLError) {
        let programCache = programCache ?? .default(for: device)
        let objects = OpenCLObjectCounts()
        var status: cl_int = CL_SUCCESS
        var deviceID: cl_device_id? = device.id
        guard let context = clCreateContext(nil, 1, &deviceID, nil, nil, &status), status == CL_SUCCESS else {
            throw OpenCLError(code: status, call: "clCreateContext")
        }
        objects.created(.context)
        var properties: [cl_queue_properties] = [
            cl_queue_properties(CL_QUEUE_PROPERTIES), cl_queue_properties(CL_QUEUE_PROFILING_ENABLE), 0,
        ]
        guard let queue = clCreateCommandQueueWithProperties(context, device.id, &properties, &status),
            status == CL_SUCCESS
        else {
            clReleaseContext(context)
            objects.released(.context)
            throw OpenCLError(code: status, call: "clCreateCommandQueueWithProperties")
        }
        objects.created(.commandQueue)
        self.device = device
        var tuning = DeviceTuning(for: device)
        if let overrides = environment(DeviceTuning.environmentVariable) {
            let (applied, rejected) = tuning.applying(overrides: overrides)
            if !rejected.isEmpty { printToStandardError("NormCL: ignoring \(DeviceTuning.environmentVariable) entries \(rejected)") }
            tuning = applied
        }
        self.tuning = tuning
        self.context = context
        self.queue = queue
        self.objects = objects
        self.programs = ProgramCache(objects: objects, configuration: programCache)
        // Up to a quarter of the device's memory idle: enough for a training step's
        // activations on the benchmark shapes, little enough to leave room for others.
        // The limit is the whole device: beyond it PoCL aborts rather than failing.
        self.buffers = BufferPool(
            capacityBytes: device.globalMemoryBytes / 4, limitBytes: device.globalMemoryBytes, objects: objects)
        // Exit waits for this queue's work (see ProcessExit).
        ProcessExit.track(self)
    }

    /// A runtime on ``DeviceDiscovery/defaultDevice()``.
    public convenience init() throws {
        try self.init(device: DeviceDiscovery.defaultDevice())
    }

    deinit {
        ProcessExit.untrack(self)
        clFinish(queue)
        programs.releaseAll()
        buffers.releaseAll()
        clReleaseCommandQueue(queue)
        objects.released(.commandQueue)
        clReleaseContext(context)
        objects.released(.context)
    }

    /// Blocks until every command enqueued so far has finished.
    public func finish() throws(OpenCLError) {
        try check(clFinish(queue), "clFinish")
    }

    /// The compiled program for `source` (after the shared kernel library) with
    /// `options`: from memory, else loaded from the disk cache's binary, else built from
    /// source, and cached (see ``ProgramCacheConfiguration``). Every program keeps its
    /// kernels' parameter lists (`-cl-kernel-arg-info`) for ``KernelSignature``'s check.
    func program(_ source: KernelSource, options: String) throws -> CompiledProgram {
        try programs.program(source: source, options: options, context: context, device: device)
    }

    /// Enqueues one kernel launch with named arguments: ``enqueue(_:from:global:local:arguments:)``,
    /// with the names checked against the kernel's parameter names on its first launch.
    @discardableResult
    func enqueue(
        _ kernelName: String, from program: CompiledProgram,
        global: [Int], local: [Int], arguments: KeyValuePairs<String, KernelArgument>
    ) throws -> KernelEvent {
        try enqueue(
            kernelName, from: program, global: global, local: local,
            arguments: arguments.map(\.value), names: arguments.map(\.key))
    }

    /// Enqueues one kernel launch and returns its event without waiting for it — except
    /// the first launch of each kernel of a program, which waits for the kernel to finish
    /// (PoCL compiles its work-group function then; see `ProcessExit` for why exit safety
    /// needs that compile done). Later launches, the common case, never wait.
    ///
    /// `global` must be a multiple of `local` in every dimension (PoCL has no
    /// non-uniform work-groups); kernels guard their tails.
    @discardableResult
    func enqueue(
        _ kernelName: String, from program: CompiledProgram,
        global: [Int], local: [Int], arguments: [KernelArgument], names: [String]? = nil
    ) throws -> KernelEvent {
        precondition(global.count == local.count && (1...3).contains(global.count), "bad launch geometry")
        precondition(zip(global, local).allSatisfy { $0 % $1 == 0 }, "global size not a multiple of local size")
        let event = try program.withKernel(kernelName) { kernel throws -> KernelEvent in
            try program.checkSignatureOnce(of: kernelName, kernel: kernel, arguments: arguments, names: names)
            for (index, argument) in arguments.enumerated() {
                try argument.set(on: kernel, at: cl_uint(index))
            }
            var event: cl_event?
            try global.withUnsafeBufferPointer { globalSizes throws(OpenCLError) in
                try local.withUnsafeBufferPointer { localSizes throws(OpenCLError) in
                    let status = ProcessExit.gate.pass {
                        clEnqueueNDRangeKernel(
                            queue, kernel, cl_uint(global.count), nil,
                            globalSizes.baseAddress, localSizes.baseAddress, 0, nil, &event)
                    }
                    try check(status, "clEnqueueNDRangeKernel(\(kernelName))")
                }
            }
            guard let event else { throw OpenCLError(code: CL_INVALID_EVENT, call: "clEnqueueNDRangeKernel(\(kernelName))") }
            return KernelEvent(name: kernelName, handle: event, runtime: self)
        }
        // Exit safety: the first launch of a kernel waits for its compile (see ProcessExit).
        if program.claimFirstLaunch(of: kernelName) { ProcessExit.firstLaunchEnqueued(event.handle) }
        return event
    }
}
