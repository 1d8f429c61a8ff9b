import COpenCL

/// A `const normcl_tensor *` (NULL: absent); see ``CTensorDescriptor``.
@_spi(CAPI) public typealias CTensorArgument = UnsafeRawPointer?
/// A `const cl_event *event_wait_list`.
@_spi(CAPI) public typealias CWaitList = UnsafePointer<cl_event?>?
/// The `cl_event *event` an op's last event goes to (NULL: not wanted).
@_spi(CAPI) public typealias CEventOut = UnsafeMutablePointer<cl_event?>?

/// One op call through the C API: the runtime and the caller's wait list, the caller's
/// tensors made from descriptors, and the delivery of results into the caller's outputs.
///
/// Every `normcl_*` op function is ``run(_:_:_:_:_:)`` around its body, which returns the
/// op's events; ``run(_:_:_:_:_:)`` hands the last one (or a marker) to the caller.
struct CAPICall {
    let runtime: OpenCLRuntime
    /// The caller's `event_wait_list`.
    let waitList: [OpenCLEvent]

    /// Runs one op for the C API and returns its status: checks the runtime and the wait
    /// list, runs `body`, and stores the event of the op's last command, retained for the
    /// caller, in `event` (a marker after the wait list when the op enqueued nothing).
    static func run(
        _ runtime: OpaquePointer?, _ waitCount: cl_uint, _ waitEvents: CWaitList, _ event: CEventOut,
        _ body: (CAPICall) throws -> [KernelEvent]
    ) -> Int32 {
        event?.pointee = nil
        return CAPIStatus.catching {
            let call = CAPICall(runtime: try CAPICall.runtime(runtime), waitList: try waitList(waitCount, waitEvents))
            let events = try body(call)
            guard let event else { return }
            let last = try events.last ?? call.runtime.enqueueMarker(waitingFor: call.waitList)
            try check(clRetainEvent(last.handle), "clRetainEvent")
            event.pointee = last.handle
        }
    }

    /// The runtime behind a `normcl_runtime *`.
    static func runtime(_ handle: OpaquePointer?) throws -> OpenCLRuntime {
        guard let handle else { throw NormError.invalidArgument(argument: "runtime", reason: "is NULL") }
        return Unmanaged<OpenCLRuntime>.fromOpaque(UnsafeRawPointer(handle)).takeUnretainedValue()
    }

    /// The wait list, checked as OpenCL checks one (`CL_INVALID_EVENT_WAIT_LIST`).
    private static func waitList(_ count: cl_uint, _ events: CWaitList) throws -> [OpenCLEvent] {
        let argument = "event_wait_list"
        guard let events else {
            if count == 0 { return [] }
            throw NormError.invalidArgument(argument: argument, reason: "is NULL with num_events_in_wait_list = \(count)")
        }
        guard count > 0 else {
            throw NormError.invalidArgument(argument: argument, reason: "is not NULL with num_events_in_wait_list = 0")
        }
        return try (0..<Int(count)).map { index in
            var context: cl_context?
            guard let event = events[index],
                clGetEventInfo(event, cl_event_info(CL_EVENT_CONTEXT), MemoryLayout<cl_context?>.size, &context, nil)
                    == CL_SUCCESS
            else {
                throw NormError.invalidArgument(argument: "\(argument)[\(index)]", reason: "is not a valid OpenCL event")
            }
            return OpenCLEvent(event)
        }
    }

    // MARK: Tensors

    /// The caller's tensor at `descriptor`; nil when absent (a NULL pointer or buffer).
    func tensor(_ descriptor: CTensorArgument, _ name: String) throws -> Tensor? {
        guard let descriptor else { return nil }
        let parsed = try CTensorDescriptor(descriptor, name: name)
        return parsed.buffer == nil ? nil : try view(parsed, name)
    }

    /// The caller's tensor at `descriptor`, which must be present (its buffer may be NULL
    /// only when it has no elements).
    func required(_ descriptor: CTensorArgument, _ name: String) throws -> Tensor {
        guard let descriptor else { throw NormError.invalidArgument(argument: name, reason: "is NULL") }
        let parsed = try CTensorDescriptor(descriptor, name: name)
        guard parsed.buffer != nil || parsed.shape.contains(0) else {
            throw NormError.invalidArgument(argument: "\(name).buffer", reason: "is NULL")
        }
        return try view(parsed, name)
    }

    /// The view of `parsed`; its errors (an invalid buffer, an offset past its end) name `name`.
    private func view(_ parsed: CTensorDescriptor, _ name: String) throws -> Tensor {
        do {
            return try parsed.tensor(on: runtime)
        } catch {
            throw CAPIArgumentError(argument: name, underlying: error)
        }
    }

    /// The running statistics given as `running_mean` and `running_var` (both or neither),
    /// with `num_batches_tracked` (0 when NULL).
    func runningStatistics(
        _ mean: CTensorArgument, _ variance: CTensorArgument, tracked: UnsafeMutablePointer<Int64>? = nil
    ) throws -> RunningStatistics? {
        let (mean, variance) = (try tensor(mean, "running_mean"), try tensor(variance, "running_var"))
        guard let mean, let variance else {
            guard mean == nil, variance == nil else {
                throw NormError.invalidArgument(
                    argument: mean == nil ? "running_mean" : "running_var",
                    reason: "is absent while the other running statistic is given: pass both or neither")
            }
            return nil
        }
        let count = tracked?.pointee ?? 0
        guard count >= 0 else {
            throw NormError.invalidArgument(argument: "num_batches_tracked", reason: "is \(count), negative")
        }
        return RunningStatistics(mean: mean, variance: variance, numBatchesTracked: Int(count))
    }

    /// Destinations for a forward's results; running statistics are updated in place.
    func forward(
        y: CTensorArgument, saveMean: CTensorArgument, saveInvstd: CTensorArgument,
        saveName: String = "save_invstd", running: RunningStatistics? = nil
    ) throws -> ForwardDestinations {
        ForwardDestinations(
            output: try required(y, "y"), saveMean: try tensor(saveMean, "save_mean"),
            saveInvstd: try tensor(saveInvstd, saveName), runningMean: running?.mean, runningVar: running?.variance)
    }

    /// `normalized_rank` trailing dims of `input`, as LayerNorm's and RMSNorm's `normalizedShape`.
    func normalizedShape(of input: Tensor, rank: Int32) throws -> [Int] {
        guard rank >= 1, rank <= input.shape.count else {
            throw NormError.invalidArgument(
                argument: "normalized_rank", reason: "\(rank) is not in 1...\(input.shape.count) (the rank of x)")
        }
        return Array(input.shape.suffix(Int(rank)))
    }

    /// `momentum` as the Swift API takes it: nil for `NORMCL_MOMENTUM_CUMULATIVE`, which
    /// needs `num_batches_tracked` when running statistics are updated.
    func momentum(_ value: Float, running: RunningStatistics?, tracked: UnsafeMutablePointer<Int64>?) throws -> Float? {
        guard value == -1 else { return value }
        if running != nil && tracked == nil {
            throw NormError.invalidArgument(
                argument: "num_batches_tracked", reason: "is NULL: momentum NORMCL_MOMENTUM_CUMULATIVE needs the count")
        }
        return nil
    }

    /// Stores the updated count of batches tracked (after the op succeeded).
    func store(_ running: RunningStatistics?, into tracked: UnsafeMutablePointer<Int64>?) {
        if let running, let tracked { tracked.pointee = Int64(running.numBatchesTracked) }
    }

    /// ``deliver(_:_:)`` for a forward's results (running statistics where updated in place).
    func deliver(
        _ events: [KernelEvent], output: Tensor, saveMean: Tensor?, saveInvstd: Tensor?,
        running: RunningStatistics? = nil, into destinations: ForwardDestinations, saveName: String = "save_invstd"
    ) throws -> [KernelEvent] {
        try deliver(
            events,
            [(output, destinations.output, "y"), (saveMean, destinations.saveMean, "save_mean"),
             (saveInvstd, destinations.saveInvstd, saveName), (running?.mean, destinations.runningMean, "running_mean"),
             (running?.variance, destinations.runningVar, "running_var")])
    }

    /// Runs a backward body with destinations for the gradients whose tensor is given and
    /// the mask of those, and delivers them (and the `extra` results, such as Switchable
    /// Norm's logit gradients, to theirs); with no tensor given, runs nothing. `dz` is a
    /// fused BatchNorm's addend gradient (``NormGradientMask/addend``), `dInputBias` a
    /// fused row norm's input bias's (``NormGradientMask/inputBias``).
    func backward<Gradients: CAPIGradients>(
        dx: CTensorArgument, dweight: CTensorArgument, dbias: CTensorArgument, dz: CTensorArgument = nil,
        dInputBias: CTensorArgument = nil,
        extra: [(result: (Gradients) -> Tensor?, descriptor: CTensorArgument, name: String)] = [],
        _ body: (BackwardDestinations, NormGradientMask) throws -> Gradients
    ) throws -> [KernelEvent] {
        let destinations = BackwardDestinations(
            gradInput: try tensor(dx, "dx"), gradWeight: try tensor(dweight, "dweight"), gradBias: try tensor(dbias, "dbias"),
            gradAddend: try tensor(dz, "dz"), gradInputBias: try tensor(dInputBias, "dinput_bias"))
        let extraDestinations = try extra.map { try tensor($0.descriptor, $0.name) }
        var mask: NormGradientMask = []
        if destinations.gradInput != nil { mask.insert(.input) }
        if destinations.gradWeight != nil { mask.insert(.weight) }
        if destinations.gradBias != nil { mask.insert(.bias) }
        if destinations.gradAddend != nil { mask.insert(.addend) }
        if destinations.gradInputBias != nil { mask.insert(.inputBias) }
        guard !mask.isEmpty || extraDestinations.contains(where: { $0 != nil }) else { return [] }
        let gradients = try body(destinations, mask)
        return try deliver(
            gradients.events,
            [(gradients.input, destinations.gradInput, "dx"), (gradients.weight, destinations.gradWeight, "dweight"),
             (gradients.bias, destinations.gradBias, "dbias"), (gradients.addend, destinations.gradAddend, "dz"),
             (gradients.inputBias, destinations.gradInputBias, "dinput_bias")]
                + zip(extra, extraDestinations).map { ($0.result(gradients), $1, $0.name) })
    }

    /// The op's call context: the caller's wait list and destinations.
    func op(
        _ forward: ForwardDestinations = ForwardDestinations(), backward: BackwardDestinations = BackwardDestinations()
    ) -> OpCall {
        OpCall(waitList: waitList, forward: forward, backward: backward)
    }

    // MARK: Results

    /// Puts each result into the caller's tensor for it and returns `events` plus the
    /// copies that took: a result the op wrote into its destination needs nothing; one in
    /// NormCL's memory (an op without destinations, or an empty input's statistics) is
    /// copied. Every destination is checked (shape, element type, layout, runtime) before
    /// anything is copied; a destination for a result the op does not produce is an error.
    func deliver(
        _ events: [KernelEvent], _ results: [(result: Tensor?, destination: Tensor?, name: String)]
    ) throws -> [KernelEvent] {
        var copies: [(from: DeviceBuffer, to: DeviceBuffer)] = []
        for case let (result, destination?, name) in results {
            guard let result else {
                throw NormError.invalidArgument(argument: name, reason: "is not computed by this call: pass NULL")
            }
            let checked = try OpCall().result(
                BackwardDestinations(gradInput: destination), \.gradInput, name: name, shape: result.shape,
                layout: result.layout, elementType: result.elementType, on: runtime)
            guard let from = result.deviceBuffer, let to = checked.deviceBuffer, !result.isSameMemory(as: checked)
            else { continue }
            copies.append((from, to))
        }
        let queue = runtime.queue
        return try events + copies.map { from, to in
            let (source, destination, bytes) = (from.handle, to.handle, from.byteCount)
            let event = try runtime.submit("clEnqueueCopyBuffer", returnsEvent: true) { count, list, event in
                clEnqueueCopyBuffer(queue, source, destination, 0, 0, bytes, count, list, event)
            }
            guard let event else { throw OpenCLError(code: CL_INVALID_EVENT, call: "clEnqueueCopyBuffer") }
            return KernelEvent(name: "copy", handle: event, runtime: runtime)
        }
    }
}

/// What a backward pass returns, for ``CAPICall/backward(dx:dweight:dbias:extra:_:)``.
protocol CAPIGradients {
    var input: Tensor? { get }
    var weight: Tensor? { get }
    var bias: Tensor? { get }
    /// dz, a fused BatchNorm's addend gradient (nil where the op has none).
    var addend: Tensor? { get }
    /// A fused row norm's input bias's gradient (nil where the op has none).
    var inputBias: Tensor? { get }
    var events: [KernelEvent] { get }
}

extension CAPIGradients {
    var addend: Tensor? { nil }
    var inputBias: Tensor? { nil }
}

extension NormGradients: CAPIGradients {}

extension Tensor {
    /// Whether both tensors' elements are the same device memory (buffer and offset).
    func isSameMemory(as other: Tensor) -> Bool {
        guard let a = openCLMemory, let b = other.openCLMemory else { return false }
        return a.buffer == b.buffer && a.byteOffset == b.byteOffset
    }
}
