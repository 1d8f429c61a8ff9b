import COpenCL

/// Where a forward pass writes its results: tensors the caller already holds (views of
/// their own memory, ``Tensor/init(wrapping:byteOffset:shape:layout:elementType:on:)``, or
/// NormCL tensors kept from an earlier call) instead of new ones, so that a steady-state
/// loop allocates nothing. A nil field gets a new tensor, as without destinations.
///
/// Each destination must have exactly the shape, layout and element type of the result
/// it receives, be on the op's runtime, and overlap neither the op's inputs (results are
/// written while inputs are still read) nor another destination; running statistics are
/// the exception to the first rule: pass the running tensors themselves to have them
/// updated in place, as PyTorch does.
///
/// On the reference backend destinations are not written: host tensors are values, and
/// the results come back as new tensors.
public struct ForwardDestinations: Sendable {
    /// y.
    public var output: Tensor?
    /// The saved mean (per row, channel or (n, g)).
    public var saveMean: Tensor?
    /// The saved `1/sqrt(var + eps)`, or RMSNorm's saved `1/rms`.
    public var saveInvstd: Tensor?
    /// Training with running statistics: where the updated running mean goes.
    public var runningMean: Tensor?
    /// Training with running statistics: where the updated running variance goes.
    public var runningVar: Tensor?
    /// LayerNorm and RMSNorm with a residual: where the sum `h = x + residual` goes when
    /// the op returns it.
    public var residualSum: Tensor?

    /// Destinations for the results given; the others are allocated.
    public init(
        output: Tensor? = nil, saveMean: Tensor? = nil, saveInvstd: Tensor? = nil, runningMean: Tensor? = nil,
        runningVar: Tensor? = nil, residualSum: Tensor? = nil
    ) {
        (self.output, self.saveMean, self.saveInvstd) = (output, saveMean, saveInvstd)
        (self.runningMean, self.runningVar, self.residualSum) = (runningMean, runningVar, residualSum)
    }
}

/// Where a backward pass writes dx, dγ and dβ (see ``ForwardDestinations`` for the rules).
/// A gradient the ``NormGradientMask`` leaves out is not written to its destination.
public struct BackwardDestinations: Sendable {
    /// dx.
    public var gradInput: Tensor?
    /// dγ.
    public var gradWeight: Tensor?
    /// dβ.
    public var gradBias: Tensor?
    /// dz, the gradient of the tensor added before a fused activation (BatchNorm's
    /// `relu(BN(x) + z)`).
    public var gradAddend: Tensor?
    /// The gradient of a row norm's input bias (float32, the bias's shape).
    public var gradInputBias: Tensor?

    /// Destinations for the gradients given; the others are allocated.
    public init(
        gradInput: Tensor? = nil, gradWeight: Tensor? = nil, gradBias: Tensor? = nil, gradAddend: Tensor? = nil,
        gradInputBias: Tensor? = nil
    ) {
        (self.gradInput, self.gradWeight, self.gradBias) = (gradInput, gradWeight, gradBias)
        (self.gradAddend, self.gradInputBias) = (gradAddend, gradInputBias)
    }
}

/// What the caller asked of one op call beyond its math: the events its first command
/// waits for, and where its results go. Ops hand it to their kernels' `run`, which takes
/// each result tensor from ``result(_:_:shape:layout:elementType:on:)`` and enqueues
/// through ``KernelLaunches`` made with ``waitList``.
struct OpCall {
    var waitList: [OpenCLEvent] = []
    var forward = ForwardDestinations()
    var backward = BackwardDestinations()
    /// The op's inputs, which no destination may overlap.
    var inputs: [Tensor?] = []

    /// This call with `inputs` as the tensors no destination may overlap.
    func reading(_ inputs: Tensor?...) -> OpCall {
        reading(inputs)
    }

    /// This call with `inputs` as the tensors no destination may overlap.
    func reading(_ inputs: [Tensor?]) -> OpCall {
        var call = self
        call.inputs = inputs
        return call
    }

    /// The caller's destination at `path` after checking it, else a new tensor.
    ///
    /// - Throws: ``NormError`` naming `destinations.<name>` for a destination of another
    ///   shape, layout, element type or runtime, or one that overlaps an input or another
    ///   destination.
    func result<Destinations: DestinationSet>(
        _ destinations: Destinations, _ path: KeyPath<Destinations, Tensor?>, name: String, shape: [Int],
        layout: TensorLayout = .channelsFirst, elementType: ElementType = .float32, on runtime: OpenCLRuntime,
        mayAlias allowed: Tensor? = nil
    ) throws -> Tensor {
        guard let destination = destinations[keyPath: path] else {
            return try Tensor(uninitializedShape: shape, layout: layout, elementType: elementType, on: runtime)
        }
        let argument = "destinations.\(name)"
        guard destination.backend.runtime === runtime else {
            throw NormError.backendMismatch(argument, destination.backend, expected: .openCL(runtime))
        }
        guard destination.shape == shape else {
            throw NormError.shapeMismatch(argument: argument, expected: shape, actual: destination.shape)
        }
        guard destination.elementType == elementType, destination.layout == layout || shape.count < 3 else {
            throw NormError.unsupported(
                argument: argument,
                reason: "is \(destination.elementType) \(destination.layout), the result is \(elementType) \(layout)")
        }
        // In place only into exactly the allowed tensor's memory (a shifted view of it
        // would write one channel while another work-item still reads it).
        let inPlace = allowed.flatMap { destination.hasSameMemory(as: $0) ? $0 : nil }
        for input in inputs.compactMap({ $0 }) where input.overlaps(destination) && !(inPlace.map { input.overlaps($0) } ?? false) {
            throw NormError.invalidArgument(argument: argument, reason: "overlaps an input of the op, which is read while results are written")
        }
        // Two results written into the same memory: whichever kernel stored last would win.
        for other in destinations.all where other.path != path {
            if let tensor = other.tensor, tensor.overlaps(destination) {
                throw NormError.invalidArgument(
                    argument: argument, reason: "overlaps destinations.\(other.name): each result needs memory of its own")
            }
        }
        return destination
    }

    /// Where a forward result goes (see ``result(_:_:name:shape:layout:elementType:on:mayAlias:)``).
    func forward(
        _ path: KeyPath<ForwardDestinations, Tensor?>, _ name: String, shape: [Int], layout: TensorLayout = .channelsFirst,
        elementType: ElementType = .float32, on runtime: OpenCLRuntime, mayAlias allowed: Tensor? = nil
    ) throws -> Tensor {
        try result(
            forward, path, name: name, shape: shape, layout: layout, elementType: elementType, on: runtime,
            mayAlias: allowed)
    }

    /// Where a backward result goes.
    func backward(
        _ path: KeyPath<BackwardDestinations, Tensor?>, _ name: String, shape: [Int], layout: TensorLayout = .channelsFirst,
        elementType: ElementType = .float32, on runtime: OpenCLRuntime
    ) throws -> Tensor {
        try result(backward, path, name: name, shape: shape, layout: layout, elementType: elementType, on: runtime)
    }

    /// Where the gradients `mask` asks for go (nil for the others): dx with the input's
    /// `shape`, `layout` and `elementType`, dγ and dβ float32 of `parameterShape`.
    func gradients(
        _ mask: NormGradientMask, shape: [Int], layout: TensorLayout, elementType: ElementType, parameterShape: [Int],
        on runtime: OpenCLRuntime
    ) throws -> (input: Tensor?, weight: Tensor?, bias: Tensor?) {
        let input =
            mask.contains(.input)
            ? try backward(\.gradInput, "gradInput", shape: shape, layout: layout, elementType: elementType, on: runtime)
            : nil
        let weight = mask.contains(.weight) ? try backward(\.gradWeight, "gradWeight", shape: parameterShape, on: runtime) : nil
        let bias = mask.contains(.bias) ? try backward(\.gradBias, "gradBias", shape: parameterShape, on: runtime) : nil
        return (input, weight, bias)
    }

    /// Where a training forward that `updates` the running statistics `running` writes the
    /// updated ones (float32 `[channels]`; nil when it does not update them). Destinations
    /// that are `running`'s own tensors are updated in place: every kernel that updates
    /// them reads each channel's old value before it writes the new one, in the same
    /// work-item.
    func runningStatistics(
        _ running: RunningStatistics?, updated updates: Bool, channels: Int, on runtime: OpenCLRuntime
    ) throws -> (mean: Tensor, variance: Tensor)? {
        guard updates else { return nil }
        return (
            try forward(\.runningMean, "runningMean", shape: [channels], on: runtime, mayAlias: running?.mean),
            try forward(\.runningVar, "runningVar", shape: [channels], on: runtime, mayAlias: running?.variance)
        )
    }
}

/// A set of destinations, each field by name, so that ``OpCall`` can check that no two
/// overlap.
protocol DestinationSet {
    /// Every field: its key path, its name and its tensor (nil when not given).
    var all: [(path: PartialKeyPath<Self>, name: String, tensor: Tensor?)] { get }
}

extension ForwardDestinations: DestinationSet {
    var all: [(path: PartialKeyPath<Self>, name: String, tensor: Tensor?)] {
        [
            (\.output, "output", output), (\.saveMean, "saveMean", saveMean), (\.saveInvstd, "saveInvstd", saveInvstd),
            (\.runningMean, "runningMean", runningMean), (\.runningVar, "runningVar", runningVar),
            (\.residualSum, "residualSum", residualSum),
        ]
    }
}

extension BackwardDestinations: DestinationSet {
    var all: [(path: PartialKeyPath<Self>, name: String, tensor: Tensor?)] {
        [
            (\.gradInput, "gradInput", gradInput), (\.gradWeight, "gradWeight", gradWeight),
            (\.gradBias, "gradBias", gradBias), (\.gradAddend, "gradAddend", gradAddend),
            (\.gradInputBias, "gradInputBias", gradInputBias),
        ]
    }
}

extension Tensor {
    /// Whether the two tensors' device memory overlaps (same `cl_mem`, or byte ranges of
    /// one buffer that intersect: views of the same caller buffer, or a view of a NormCL
    /// tensor's buffer and that tensor).
    func overlaps(_ other: Tensor) -> Bool {
        guard let a = deviceBuffer, let b = other.deviceBuffer else { return false }
        if a === b || a.handle == b.handle { return true }
        let (ra, rb) = (a.region, b.region)
        guard ra.memory == rb.memory else { return false }
        return ra.byteOffset < rb.byteOffset + b.byteCount && rb.byteOffset < ra.byteOffset + a.byteCount
    }

    /// Whether the two tensors' device memory is the same bytes of the same buffer.
    func hasSameMemory(as other: Tensor) -> Bool {
        guard let a = deviceBuffer, let b = other.deviceBuffer else { return false }
        return a.region.memory == b.region.memory && a.region.byteOffset == b.region.byteOffset
            && a.byteCount == b.byteCount
    }
}

extension DeviceBuffer {
    /// The buffer whose bytes these are and where they start: the caller's buffer and the
    /// view's offset for a view, the buffer itself and 0 otherwise.
    fileprivate var region: (memory: cl_mem, byteOffset: Int) { borrowed ?? (handle, 0) }
}

// A loop that writes each call's results over the previous call's: `into: previous.destinations`.
extension LayerNormOutput {
    /// These results' tensors as the destinations of a later call of the same shapes.
    public var destinations: ForwardDestinations {
        ForwardDestinations(output: output, saveMean: saveMean, saveInvstd: saveInvstd, residualSum: residualSum)
    }
}

extension RMSNormOutput {
    /// These results' tensors as the destinations of a later call of the same shapes.
    public var destinations: ForwardDestinations {
        ForwardDestinations(output: output, saveInvstd: saveInvRms, residualSum: residualSum)
    }
}

/// A forward's results with an output and optional saved statistics (BatchNorm, GroupNorm,
/// InstanceNorm, Switchable Norm's mixed statistics).
public protocol NormForwardResults {
    /// y.
    var output: Tensor { get }
    /// The saved mean, where the call saved one.
    var savedMean: Tensor? { get }
    /// The saved inverse standard deviation, where the call saved one.
    var savedInvstd: Tensor? { get }
}

extension NormForwardResults {
    /// These results' tensors (output and saved statistics) as the destinations of a later
    /// call of the same shapes; running statistics go to the running tensors themselves.
    public var destinations: ForwardDestinations {
        ForwardDestinations(output: output, saveMean: savedMean, saveInvstd: savedInvstd)
    }
}

extension BatchNormOutput: NormForwardResults {
    /// ``saveMean``.
    public var savedMean: Tensor? { saveMean }
    /// ``saveInvstd``.
    public var savedInvstd: Tensor? { saveInvstd }
}

extension GroupNormOutput: NormForwardResults {
    /// ``saveMean``.
    public var savedMean: Tensor? { saveMean }
    /// ``saveInvstd``.
    public var savedInvstd: Tensor? { saveInvstd }
}

extension InstanceNormOutput: NormForwardResults {
    /// ``saveMean``.
    public var savedMean: Tensor? { saveMean }
    /// ``saveInvstd``.
    public var savedInvstd: Tensor? { saveInvstd }
}

extension SwitchableNormOutput: NormForwardResults {
    /// ``saveMean``.
    public var savedMean: Tensor? { saveMean }
    /// ``saveInvstd``.
    public var savedInvstd: Tensor? { saveInvstd }
}

extension NormGradients {
    /// These gradients' tensors as the destinations of a later backward call of the same shapes.
    public var destinations: BackwardDestinations {
        BackwardDestinations(
            gradInput: input, gradWeight: weight, gradBias: bias, gradAddend: addend, gradInputBias: inputBias)
    }
}

extension SwitchableNormGradients {
    /// dx, dγ and dβ as the destinations of a later backward call of the same shapes (the
    /// logit gradients are allocated).
    public var destinations: BackwardDestinations {
        BackwardDestinations(gradInput: input, gradWeight: weight, gradBias: bias)
    }
}
