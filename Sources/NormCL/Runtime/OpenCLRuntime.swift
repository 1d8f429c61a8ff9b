import COpenCL

/// One OpenCL device with its context, command queue and program cache: NormCL's own
/// (``init(device:programCache:)``), or the caller's (``init(adopting:queue:device:programCache:)``).
///
/// Every op on a device tensor enqueues its kernels on this queue without waiting;
/// reading a result back (``Tensor/toArray()``) is what waits. Exceptions for a safe
/// process exit on PoCL (see `ProcessExit`): the first launch of each kernel of a
/// program waits for that kernel unless it waits for a caller's event that is still
/// pending, and `exit` waits for the queue of every live runtime. Profiling is enabled
/// on NormCL's own queue, so each op's ``KernelEvent``s report device-side kernel times
/// (on an adopted queue, only if the caller enabled it).
///
/// NormCL's commands on one runtime run in the order they were submitted, also on an
/// out-of-order queue, where each waits for the one before through its event (see
/// `CommandOrder`).
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
    /// How NormCL's commands are ordered on ``queue`` and which caller events they wait for.
    let order: CommandOrder
    /// Whether the context and queue are the caller's (``init(adopting:queue:device:programCache:)``).
    public let isAdopted: Bool

    /// The `cl_context`, for the caller's own OpenCL calls (buffers for ``Tensor/init(wrapping:byteOffset:shape:layout:elementType:on:)``).
    /// Valid while the runtime lives; do not release it.
    public var contextHandle: cl_context { context }
    /// The `cl_command_queue` NormCL enqueues on. Valid while the runtime lives; do not release it.
    public var queueHandle: cl_command_queue { queue }
    /// The `cl_device_id`.
    public var deviceHandle: cl_device_id { device.id }
    /// Whether the queue executes out of order (NormCL then chains its own commands).
    public var isOutOfOrder: Bool { order.isOutOfOrder }
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
    public convenience init(device: OpenCLDevice, programCache: ProgramCacheConfiguration? = nil) throws(OpenCLError) {
        try self.init(device: device, tuning: nil, programCache: programCache)
    }

    /// Creates a context and a profiling-enabled in-order queue on `device` whose
    /// launches use `tuning` instead of the device's own (``DeviceTuning/init(for:)``
    /// and `NORMCL_TUNING`): for measuring candidate settings (`normcl-bench --tune`).
    ///
    /// - Parameters:
    ///   - device: The device to run on.
    ///   - tuning: The launch parameters every op of this runtime uses; nil for the
    ///     device's own, as ``init(device:programCache:)``.
    ///   - programCache: as in ``init(device:programCache:)``.
    /// - Throws: ``OpenCLError`` when the context or the queue cannot be created.
    public convenience init(
        device: OpenCLDevice, tuning: DeviceTuning?, programCache: ProgramCacheConfiguration? = nil
    ) throws(OpenCLError) {
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
        self.init(
            device: device, context: context, queue: queue, objects: objects, outOfOrder: false, adopted: false,
            programCache: programCache, tuning: tuning)
    }

    /// Takes the context and queue (each already counted in `objects`, held once).
    private init(
        device: OpenCLDevice, context: cl_context, queue: cl_command_queue, objects: OpenCLObjectCounts,
        outOfOrder: Bool, adopted: Bool, programCache: ProgramCacheConfiguration?, tuning: DeviceTuning? = nil
    ) {
        self.device = device
        self.tuning = tuning ?? Self.tuning(for: device)
        self.context = context
        self.queue = queue
        self.objects = objects
        self.order = CommandOrder(isOutOfOrder: outOfOrder, objects: objects)
        self.isAdopted = adopted
        self.programs = ProgramCache(objects: objects, configuration: programCache ?? .default(for: device))
        // Up to a quarter of the device's memory idle: enough for a training step's
        // activations on the benchmark shapes, little enough to leave room for others.
        // The limit is the whole device: beyond it PoCL aborts rather than failing.
        self.buffers = BufferPool(
            capacityBytes: device.globalMemoryBytes / 4, limitBytes: device.globalMemoryBytes, objects: objects)
        // Exit waits for this queue's work (see ProcessExit).
        ProcessExit.track(self)
    }

    /// A runtime on the caller's context and queue: NormCL enqueues its work on `queue`,
    /// allocates its buffers in `context`, and runs on `device`.
    ///
    /// It retains the context and queue, releases them when it goes, and never changes
    /// their properties. Both in-order and out-of-order queues work: on an out-of-order
    /// queue each NormCL command waits for the one NormCL submitted before it. Kernel
    /// timings (``KernelEvent/durationNanoseconds()``) need a queue created with
    /// `CL_QUEUE_PROFILING_ENABLE`; without it they throw `CL_PROFILING_INFO_NOT_AVAILABLE`.
    ///
    /// - Parameters:
    ///   - context: a context that contains `device`.
    ///   - queue: a command queue of `context` on `device`.
    ///   - device: the device of `queue`.
    ///   - programCache: as in ``init(device:programCache:)``.
    /// - Throws: ``OpenCLError`` when a handle is invalid (`CL_INVALID_CONTEXT`,
    ///   `CL_INVALID_COMMAND_QUEUE`, `CL_INVALID_DEVICE`) or the queue belongs to another
    ///   context or device (`CL_INVALID_CONTEXT` / `CL_INVALID_DEVICE`, naming the check).
    public convenience init(
        adopting context: cl_context, queue: cl_command_queue, device: cl_device_id,
        programCache: ProgramCacheConfiguration? = nil
    ) throws(OpenCLError) {
        var platform: cl_platform_id?
        try check(
            clGetDeviceInfo(device, cl_device_info(CL_DEVICE_PLATFORM), MemoryLayout<cl_platform_id?>.size, &platform, nil),
            "clGetDeviceInfo(CL_DEVICE_PLATFORM)")
        guard let platform else { throw OpenCLError(code: CL_INVALID_DEVICE, call: "clGetDeviceInfo(CL_DEVICE_PLATFORM)") }
        let known = (try? DeviceDiscovery.devices())?.first { $0.id == device }
        let openCLDevice: OpenCLDevice
        if let known { openCLDevice = known } else { openCLDevice = try OpenCLDevice(index: -1, id: device, platform: platform) }
        var queueContext: cl_context?
        try check(
            clGetCommandQueueInfo(queue, cl_command_queue_info(CL_QUEUE_CONTEXT), MemoryLayout<cl_context?>.size, &queueContext, nil),
            "clGetCommandQueueInfo(CL_QUEUE_CONTEXT)")
        guard queueContext == context else {
            throw OpenCLError(code: CL_INVALID_CONTEXT, call: "OpenCLRuntime(adopting:): the queue belongs to another context")
        }
        var queueDevice: cl_device_id?
        try check(
            clGetCommandQueueInfo(queue, cl_command_queue_info(CL_QUEUE_DEVICE), MemoryLayout<cl_device_id?>.size, &queueDevice, nil),
            "clGetCommandQueueInfo(CL_QUEUE_DEVICE)")
        guard queueDevice == device else {
            throw OpenCLError(code: CL_INVALID_DEVICE, call: "OpenCLRuntime(adopting:): the queue is on another device")
        }
        var properties: cl_command_queue_properties = 0
        try check(
            clGetCommandQueueInfo(
                queue, cl_command_queue_info(CL_QUEUE_PROPERTIES), MemoryLayout<cl_command_queue_properties>.size,
                &properties, nil),
            "clGetCommandQueueInfo(CL_QUEUE_PROPERTIES)")
        try check(clRetainContext(context), "clRetainContext")
        try check(clRetainCommandQueue(queue), "clRetainCommandQueue")
        let objects = OpenCLObjectCounts()
        objects.created(.context)
        objects.created(.commandQueue)
        let outOfOrder = properties & cl_command_queue_properties(CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE) != 0
        self.init(
            device: openCLDevice, context: context, queue: queue, objects: objects, outOfOrder: outOfOrder,
            adopted: true, programCache: programCache)
    }

    /// The device's tuning (its entry of the tuning database, else its kind's defaults)
    /// with `NORMCL_TUNING`'s overrides applied.
    private static func tuning(for device: OpenCLDevice) -> DeviceTuning {
        var tuning = DeviceTuning(for: device)
        if let overrides = environment(DeviceTuning.environmentVariable) {
            let (applied, rejected) = tuning.applying(overrides: overrides)
            if !rejected.isEmpty { printToStandardError("NormCL: ignoring \(DeviceTuning.environmentVariable) entries \(rejected)") }
            tuning = applied
        }
        return tuning
    }

    /// A runtime on ``DeviceDiscovery/defaultDevice()``.
    public convenience init() throws {
        try self.init(device: DeviceDiscovery.defaultDevice())
    }

    deinit {
        ProcessExit.untrack(self)
        // NormCL's work done before its buffers and programs go back (exit safety, see
        // ProcessExit) — unless it waits for a caller event still pending: the caller may
        // set it only later, so a wait could hang; OpenCL keeps what queued commands use
        // alive until they finish.
        if order.hasPendingCallerEvents { clFlush(queue) } else { clFinish(queue) }
        order.releaseAll()
        ProcessExit.settleDeferredFirstLaunches()
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
        settleAfterWaiting()
    }

    /// After a wait for NormCL's commands: forgets the caller events they waited for that
    /// have completed, and registers the exit handler after deferred first launches.
    func settleAfterWaiting() {
        order.releaseCompletedCallerEvents()
        ProcessExit.settleDeferredFirstLaunches()
    }

    /// Submits one command through ``order`` (and the exit gate): `enqueue(count, list,
    /// event)` is the OpenCL call. Returns its event when `returnsEvent`.
    func submit(
        _ call: @autoclosure () -> String, waitingFor events: [OpenCLEvent] = [], returnsEvent: Bool = false,
        _ enqueue: (cl_uint, UnsafePointer<cl_event?>?, UnsafeMutablePointer<cl_event?>?) -> cl_int
    ) throws(OpenCLError) -> cl_event? {
        let (status, event) = ProcessExit.gate.pass {
            order.submit(waitingFor: events, returnsEvent: returnsEvent, enqueue)
        }
        try check(status, call())
        return event
    }

    /// Enqueues a marker that completes once `events` and every NormCL command submitted
    /// before it have, and returns it: the event an op returns when it enqueued no kernel
    /// (an empty input), so that a caller always has one to wait for.
    public func enqueueMarker(waitingFor events: [OpenCLEvent] = []) throws(OpenCLError) -> KernelEvent {
        let queue = self.queue
        let event = try submit("clEnqueueMarkerWithWaitList", waitingFor: events, returnsEvent: true) { count, list, event in
            clEnqueueMarkerWithWaitList(queue, count, list, event)
        }
        guard let event else { throw OpenCLError(code: CL_INVALID_EVENT, call: "clEnqueueMarkerWithWaitList") }
        return KernelEvent(name: "marker", handle: event, runtime: self)
    }

    /// The compiled program for `source` (after the shared kernel library) with
    /// `options`: from memory, else loaded from the disk cache's binary, else built from
    /// source, and cached (see ``ProgramCacheConfiguration``). Every program keeps its
    /// kernels' parameter lists (`-cl-kernel-arg-info`) for ``KernelSignature``'s check.
    func program(_ source: KernelSource, options: KernelSpecialization) throws -> CompiledProgram {
        try programs.program(source: source, specialization: options, context: context, device: device)
    }

    /// The same for options given as one command-line text.
    func program(_ source: KernelSource, options: String) throws -> CompiledProgram {
        try program(source, options: KernelSpecialization(text: options))
    }

    /// Enqueues one kernel launch with named arguments: ``enqueue(_:from:global:local:arguments:names:waitingFor:)``,
    /// with the names checked against the kernel's parameter names on its first launch.
    @discardableResult
    func enqueue(
        _ kernelName: String, from program: CompiledProgram,
        global: [Int], local: [Int], arguments: KeyValuePairs<String, KernelArgument>,
        waitingFor events: [OpenCLEvent] = []
    ) throws -> KernelEvent {
        try enqueue(kernelName, from: program, global: global, local: local, named: Array(arguments), waitingFor: events)
    }

    /// The same with the named arguments as an array (``KernelLaunches``' form): the names
    /// are read only for the first launch's check, so a steady-state launch forms no other
    /// list.
    @discardableResult
    func enqueue(
        _ kernelName: String, from program: CompiledProgram,
        global: [Int], local: [Int], named arguments: [(key: String, value: KernelArgument)],
        waitingFor events: [OpenCLEvent] = []
    ) throws -> KernelEvent {
        try enqueue(
            kernelName, from: program, global: global, local: local, count: arguments.count,
            argument: { arguments[$0].value }, names: { arguments.map(\.key) }, waitingFor: events)
    }

    /// Enqueues one kernel launch, after `events` (the caller's), and returns its event
    /// without waiting for it — except, on PoCL, the first launch of each kernel of a
    /// program, which waits for the kernel to finish (PoCL compiles its work-group
    /// function then; see `ProcessExit` for why exit safety needs that compile done)
    /// unless a caller event it may wait for is still pending: then the wait is left to
    /// the next call that waits anyway. Later launches, the common case, never wait.
    ///
    /// `global` must be a multiple of `local` in every dimension (PoCL has no
    /// non-uniform work-groups); kernels guard their tails.
    @discardableResult
    func enqueue(
        _ kernelName: String, from program: CompiledProgram,
        global: [Int], local: [Int], arguments: [KernelArgument], names: [String]? = nil,
        waitingFor events: [OpenCLEvent] = []
    ) throws -> KernelEvent {
        try enqueue(
            kernelName, from: program, global: global, local: local, count: arguments.count,
            argument: { arguments[$0] }, names: { names }, waitingFor: events)
    }

    /// The launch itself, its `count` arguments read through `argument` (and their names,
    /// for the first launch's signature check, through `names`).
    private func enqueue(
        _ kernelName: String, from program: CompiledProgram, global: [Int], local: [Int], count: Int,
        argument: (Int) -> KernelArgument, names: () -> [String]?, waitingFor events: [OpenCLEvent]
    ) throws -> KernelEvent {
        precondition(global.count == local.count && (1...3).contains(global.count), "bad launch geometry")
        precondition(zip(global, local).allSatisfy { $0 % $1 == 0 }, "global size not a multiple of local size")
        let event = try program.withKernel(kernelName) { kernel throws -> KernelEvent in
            try program.checkSignatureOnce(
                of: kernelName, kernel: kernel, arguments: (0..<count).map(argument), names: names())
            for index in 0..<count {
                try argument(index).set(on: kernel, at: cl_uint(index))
            }
            let queue = self.queue
            let event = try global.withUnsafeBufferPointer { globalSizes throws(OpenCLError) in
                try local.withUnsafeBufferPointer { localSizes throws(OpenCLError) in
                    try submit("clEnqueueNDRangeKernel(\(kernelName))", waitingFor: events, returnsEvent: true) {
                        count, list, event in
                        clEnqueueNDRangeKernel(
                            queue, kernel, cl_uint(global.count), nil,
                            globalSizes.baseAddress, localSizes.baseAddress, count, list, event)
                    }
                }
            }
            guard let event else { throw OpenCLError(code: CL_INVALID_EVENT, call: "clEnqueueNDRangeKernel(\(kernelName))") }
            return KernelEvent(name: kernelName, handle: event, runtime: self)
        }
        // Exit safety: the first launch of a kernel waits for its compile (see ProcessExit).
        if device.compilesKernelsAtFirstLaunch && program.claimFirstLaunch(of: kernelName) {
            if order.hasPendingCallerEvents {
                ProcessExit.deferFirstLaunch(event.handle)
            } else {
                ProcessExit.firstLaunchEnqueued(event.handle)
            }
        }
        return event
    }
}
