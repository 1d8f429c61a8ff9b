/// What an elementwise op returns: its output and the kernels it enqueued.
public struct ElementwiseOutput: Sendable {
    /// The result.
    public let output: Tensor
    /// The OpenCL kernels the op enqueued (empty on the reference path).
    public let events: [KernelEvent]
}

/// The residual add as an op of its own: `h = x + residual`, formed in float32 and
/// stored in the residual's element type (float32 for a float32 residual under half
/// storage, as PyTorch's type promotion gives).
///
/// This is the unfused piece that LayerNorm's and RMSNorm's `residual:` argument does in
/// the norm's own pass (``layerNorm(_:normalizedShape:weight:bias:eps:residual:inputBias:returnsResidualSum:weightOffset:activation:into:waitingFor:)``):
/// run on its own it reads both tensors and writes h, and the norm then reads h again.
///
/// - Parameters:
///   - input: x, float32 or half storage.
///   - residual: x's shape, layout and backend; x's element type or float32.
///   - destination: a tensor to write h into (OpenCL), or nil for a new one.
///   - waitList: events the kernel waits for; the op returns without waiting.
/// - Throws: ``NormError`` for a residual or destination that does not match.
public func residualSum(
    _ input: Tensor, _ residual: Tensor, into destination: Tensor? = nil, waitingFor waitList: [OpenCLEvent] = []
) throws -> ElementwiseOutput {
    try NormError.checkCompanion(residual, "residual", matches: input, allowsFloat32: true)
    switch input.backend {
    case .reference:
        let h = ReferenceEpilogue.sum(try input.toArray(), try residual.toArray(), as: residual.elementType)
        return ElementwiseOutput(
            output: Tensor(referenceValues: h, shape: input.shape, layout: input.layout, elementType: residual.elementType),
            events: [])
    case .openCL(let runtime):
        return try ElementwiseKernels.run(
            "elementwise_sum", input, output: "sum", outputType: residual.elementType, residualType: residual.elementType,
            arguments: ["x": .buffer(input.openCLBuffer), "residual": .buffer(residual.openCLBuffer)],
            call: OpCall(waitList: waitList, forward: ForwardDestinations(output: destination)).reading(input, residual),
            on: runtime)
    }
}

/// An activation as an op of its own: `y = f(x + addend)` (`f(x)` without an addend),
/// elementwise, in x's element type.
///
/// This is the unfused piece that the norms' `activation:` (and BatchNorm's `addend:`)
/// do in the norm's own pass: run on its own it reads the norm's output and writes it
/// again.
///
/// - Parameters:
///   - input: x, float32 or half storage.
///   - activation: f (``Activation``).
///   - addend: added before f, or nil: x's shape, layout, element type and backend.
///   - destination: a tensor to write y into (OpenCL; it may be `input` itself), or nil
///     for a new one.
///   - waitList: events the kernel waits for; the op returns without waiting.
/// - Throws: ``NormError`` for an addend or destination that does not match.
public func activate(
    _ input: Tensor, _ activation: Activation, adding addend: Tensor? = nil, into destination: Tensor? = nil,
    waitingFor waitList: [OpenCLEvent] = []
) throws -> ElementwiseOutput {
    try NormError.checkCompanion(addend, "addend", matches: input)
    switch input.backend {
    case .reference:
        var values = try input.toArray()
        if let addend { values = ReferenceEpilogue.sum(values, try addend.toArray(), as: input.elementType) }
        return ElementwiseOutput(
            output: Tensor(
                referenceValues: ReferenceEpilogue.activate(values, activation, as: input.elementType), shape: input.shape,
                layout: input.layout, elementType: input.elementType),
            events: [])
    case .openCL(let runtime):
        // y may overwrite x in place (each work-item reads its vector before it writes it).
        return try ElementwiseKernels.run(
            "elementwise_activate", input, output: "y", outputType: input.elementType, activation: activation,
            arguments: ["x": .buffer(input.openCLBuffer), "addend": .buffer(addend?.openCLBuffer)],
            call: OpCall(waitList: waitList, forward: ForwardDestinations(output: destination)).reading(addend),
            on: runtime)
    }
}

/// The backward of ``activate(_:_:adding:into:waitingFor:)``: `da = dy · f′(a)` at the
/// activation's input `a`, elementwise (ReLU passes dy where a > 0 or is NaN).
///
/// - Parameters:
///   - gradOutput: dy, float32 or half storage.
///   - activation: f (``Activation``).
///   - input: a, the activation's input (for ReLU its output serves as well): dy's
///     shape, layout, element type and backend.
///   - destination: a tensor to write da into (OpenCL; it may be `gradOutput` itself), or
///     nil for a new one.
///   - waitList: events the kernel waits for; the op returns without waiting.
/// - Throws: ``NormError`` for an input or destination that does not match.
public func activationBackward(
    _ gradOutput: Tensor, _ activation: Activation, input: Tensor, into destination: Tensor? = nil,
    waitingFor waitList: [OpenCLEvent] = []
) throws -> ElementwiseOutput {
    try NormError.checkCompanion(input, "input", matches: gradOutput)
    switch gradOutput.backend {
    case .reference:
        let type = gradOutput.elementType
        let gradient = ReferenceEpilogue.gradient(
            try gradOutput.toArray().map(Double.init), at: try input.toArray().map(Double.init), activation)
        return ElementwiseOutput(
            output: Tensor(
                referenceValues: gradient.map { type.rounded(Float($0)) }, shape: gradOutput.shape,
                layout: gradOutput.layout, elementType: type),
            events: [])
    case .openCL(let runtime):
        return try ElementwiseKernels.run(
            "elementwise_activation_grad", gradOutput, output: "da", outputType: gradOutput.elementType,
            activation: activation,
            arguments: ["dy": .buffer(gradOutput.openCLBuffer), "a": .buffer(input.openCLBuffer)],
            call: OpCall(waitList: waitList, forward: ForwardDestinations(output: destination)).reading(input),
            on: runtime)
    }
}

/// Enqueues one kernel of `Kernels/elementwise.cl` over every vector of `input`, its
/// result (of `outputType`) in the argument named `output`.
enum ElementwiseKernels {
    static func run(
        _ kernel: String, _ input: Tensor, output outputName: String, outputType: ElementType,
        residualType: ElementType? = nil, activation: Activation = .none,
        arguments: KeyValuePairs<String, KernelArgument>, call: OpCall, on runtime: OpenCLRuntime
    ) throws -> ElementwiseOutput {
        let output = try call.forward(
            \.output, "output", shape: input.shape, layout: input.layout, elementType: outputType, on: runtime)
        guard input.count > 0 else { return ElementwiseOutput(output: output, events: []) }
        let geometry = LaunchGeometry(device: runtime.device, tuning: runtime.tuning)
        let vectorWidth = geometry.vectorWidth(dividing: input.count)
        let vectors = input.count / vectorWidth
        let launch = geometry.elementwiseLaunch(vectors: vectors)
        var options = KernelSpecialization(
            elementType: input.elementType, geometry: geometry,
            wideIndices: LaunchGeometry.needsWideIndices(elements: vectors, workItems: launch.global[0]))
        options.define("VEC", vectorWidth)
        options.addResidual(residualType, storage: input.elementType)
        options.fuse(activation)
        let program = try runtime.program(.elementwise, options: options)
        var launches = KernelLaunches(program, on: runtime, waitingFor: call.waitList)
        try launches.enqueue(
            kernel, launch, arguments, [outputName: .buffer(output.deviceBuffer), "vectors": .ulong(UInt64(vectors))])
        return ElementwiseOutput(output: output, events: launches.events)
    }
}
