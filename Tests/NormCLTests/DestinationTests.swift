import COpenCL
import Testing
@testable import NormCL

/// Every op inside the caller's OpenCL (issue #16): results written into the caller's
/// tensors (``ForwardDestinations``, ``BackwardDestinations``), after the caller's events.
///
/// Each case runs its forward and backward twice on the same data: once with new tensors,
/// once into destinations (pre-filled with NaN) and waiting for a caller's user event
/// that is still pending. The second run's kernels must not have run before the event
/// completes; then its results must equal the first run's bit for bit and be the
/// destinations themselves, and running statistics passed as their own destinations
/// must be updated in place to the values the functional update returns. A destination
/// that does not fit (shape, element type, runtime, or memory an input is read from)
/// throws the ``NormError`` naming `destinations.<field>`, before anything runs.
@Suite("Destinations and wait lists", .enabled(if: hasOpenCL))
struct DestinationTests {
    // MARK: - The ops

    /// Each op's forward forms, and the backward forms of each (from the forward's output,
    /// and from explicit statistics where the op has that form).
    static let cases: [DestinationCase] = [
        DestinationCase("LayerNorm", parameters: [5]) { o, into, _, wait in
            let f = try layerNorm(o.x, normalizedShape: [5], weight: o.weight, bias: o.bias, into: into, waitingFor: wait)
            return Run(f.events, output: f.output, saveMean: f.saveMean, saveInvstd: f.saveInvstd, backwards: [
                { Pass(try layerNormBackward(o.dy, forward: f, into: $0, waitingFor: $1)) },
                {
                    Pass(
                        try layerNormBackward(
                            o.dy, input: o.x, normalizedShape: [5], weight: o.weight, saveMean: f.saveMean,
                            saveInvstd: f.saveInvstd, into: $0, waitingFor: $1))
                },
            ])
        },
        DestinationCase("RMSNorm", parameters: [5]) { o, into, _, wait in
            let f = try rmsNorm(o.x, normalizedShape: [5], weight: o.weight, eps: 1e-5, into: into, waitingFor: wait)
            return Run(f.events, output: f.output, saveInvstd: f.saveInvRms, backwards: [
                { Pass(try rmsNormBackward(o.dy, forward: f, into: $0, waitingFor: $1)) }
            ])
        },
        DestinationCase("BatchNorm training", running: .updatedInPlace) { o, into, running, wait in
            let f = try batchNorm(
                o.x, weight: o.weight, bias: o.bias, runningStatistics: &running, training: true, into: into,
                waitingFor: wait)
            return Run(f.events, output: f.output, saveMean: f.saveMean, saveInvstd: f.saveInvstd, backwards: [
                { Pass(try batchNormBackward(o.dy, forward: f, into: $0, waitingFor: $1)) },
                {
                    Pass(
                        try batchNormBackward(
                            o.dy, input: o.x, weight: o.weight, saveMean: f.saveMean!, saveInvstd: f.saveInvstd!,
                            into: $0, waitingFor: $1))
                },
            ])
        },
        DestinationCase("BatchNorm, no running statistics") { o, into, _, wait in
            let f = try batchNorm(o.x, weight: o.weight, bias: o.bias, into: into, waitingFor: wait)
            return Run(f.events, output: f.output, saveMean: f.saveMean, saveInvstd: f.saveInvstd, backwards: [
                { Pass(try batchNormBackward(o.dy, forward: f, into: $0, waitingFor: $1)) }
            ])
        },
        DestinationCase("BatchNorm inference", running: .read) { o, into, running, wait in
            let f = try batchNorm(
                o.x, weight: o.weight, bias: o.bias, runningStatistics: &running, training: false, into: into,
                waitingFor: wait)
            return Run(f.events, output: f.output, backwards: [
                { Pass(try batchNormBackward(o.dy, forward: f, into: $0, waitingFor: $1)) },
                { [running] in
                    Pass(
                        try batchNormBackward(
                            o.dy, input: o.x, weight: o.weight, runningStatistics: running, into: $0, waitingFor: $1))
                },
            ])
        },
        DestinationCase("Batch Renorm", running: .updatedInPlace) { o, into, running, wait in
            let f = try batchRenorm(
                o.x, weight: o.weight, bias: o.bias, runningStatistics: &running,
                limits: BatchRenormLimits(rmax: 1.5, dmax: 0.5), into: into, waitingFor: wait)
            return Run(f.events, output: f.output, saveMean: f.saveMean, saveInvstd: f.saveInvstd, backwards: [
                { Pass(try batchNormBackward(o.dy, forward: f, into: $0, waitingFor: $1)) },
                {
                    Pass(
                        try batchRenormBackward(
                            o.dy, input: o.x, weight: o.weight, saveMean: f.saveMean!, saveInvstd: f.saveInvstd!,
                            renormR: f.renormR!, renormD: f.renormD!, into: $0, waitingFor: $1))
                },
            ])
        },
        DestinationCase("InstanceNorm training", running: .updatedInPlace) { o, into, running, wait in
            let f = try instanceNorm(
                o.x, weight: o.weight, bias: o.bias, runningStatistics: &running, into: into, waitingFor: wait)
            return Run(f.events, output: f.output, saveMean: f.saveMean, saveInvstd: f.saveInvstd, backwards: [
                { Pass(try instanceNormBackward(o.dy, forward: f, into: $0, waitingFor: $1)) },
                {
                    Pass(
                        try instanceNormBackward(
                            o.dy, input: o.x, weight: o.weight, saveMean: f.saveMean!, saveInvstd: f.saveInvstd!,
                            into: $0, waitingFor: $1))
                },
            ])
        },
        DestinationCase("InstanceNorm, no running statistics, channels-last half", layout: .channelsLast, elementType: .float16) {
            o, into, _, wait in
            let f = try instanceNorm(o.x, weight: o.weight, bias: o.bias, into: into, waitingFor: wait)
            return Run(f.events, output: f.output, saveMean: f.saveMean, saveInvstd: f.saveInvstd, backwards: [
                { Pass(try instanceNormBackward(o.dy, forward: f, into: $0, waitingFor: $1)) }
            ])
        },
        DestinationCase("InstanceNorm inference", running: .read) { o, into, running, wait in
            let f = try instanceNorm(
                o.x, weight: o.weight, bias: o.bias, runningStatistics: &running, useInputStatistics: false, into: into,
                waitingFor: wait)
            return Run(f.events, output: f.output, backwards: [
                { Pass(try instanceNormBackward(o.dy, forward: f, into: $0, waitingFor: $1)) },
                { [running] in
                    Pass(
                        try instanceNormBackward(
                            o.dy, input: o.x, weight: o.weight, runningStatistics: running, into: $0, waitingFor: $1))
                },
            ])
        },
        DestinationCase("GroupNorm") { o, into, _, wait in
            let f = try groupNorm(o.x, numGroups: 2, weight: o.weight, bias: o.bias, into: into, waitingFor: wait)
            return Run(f.events, output: f.output, saveMean: f.saveMean, saveInvstd: f.saveInvstd, backwards: [
                { Pass(try groupNormBackward(o.dy, forward: f, into: $0, waitingFor: $1)) },
                {
                    Pass(
                        try groupNormBackward(
                            o.dy, input: o.x, numGroups: 2, weight: o.weight, saveMean: f.saveMean!,
                            saveInvstd: f.saveInvstd!, into: $0, waitingFor: $1))
                },
            ])
        },
        DestinationCase("GroupNorm, channels-last half", layout: .channelsLast, elementType: .float16) { o, into, _, wait in
            let f = try groupNorm(o.x, numGroups: 2, weight: o.weight, bias: o.bias, into: into, waitingFor: wait)
            return Run(f.events, output: f.output, saveMean: f.saveMean, saveInvstd: f.saveInvstd, backwards: [
                { Pass(try groupNormBackward(o.dy, forward: f, into: $0, waitingFor: $1)) }
            ])
        },
        DestinationCase("Switchable Norm training", running: .updatedInPlace) { o, into, running, wait in
            let f = try switchableNorm(
                o.x, meanLogits: o.meanLogits, varianceLogits: o.varianceLogits, weight: o.weight, bias: o.bias,
                runningStatistics: &running, training: true, into: into, waitingFor: wait)
            return Run(switchable: f, o)
        },
        DestinationCase("Switchable Norm inference", running: .read) { o, into, running, wait in
            let f = try switchableNorm(
                o.x, meanLogits: o.meanLogits, varianceLogits: o.varianceLogits, weight: o.weight, bias: o.bias,
                runningStatistics: &running, training: false, into: into, waitingFor: wait)
            return Run(switchable: f, o)
        },
        DestinationCase("Switchable Norm, no running statistics") { o, into, _, wait in
            let f = try switchableNorm(
                o.x, meanLogits: o.meanLogits, varianceLogits: o.varianceLogits, weight: o.weight, bias: o.bias,
                training: true, into: into, waitingFor: wait)
            return Run(switchable: f, o)
        },
    ]

    // MARK: - Destinations, events, in-place running statistics

    @Test("into destinations, after a caller's event: the same bits, in the destinations", arguments: cases)
    func destinations(_ op: DestinationCase) throws {
        let runtime = try #require(sharedRuntime)
        let o = try Operands(op, on: runtime)

        var fresh = try o.runningStatistics()
        let new = try op.run(o, ForwardDestinations(), &fresh, [])

        var running = try o.runningStatistics()
        var into = ForwardDestinations()
        for (field, result) in new.forward.results { into[keyPath: field.path] = try nanTensor(like: result) }
        if op.running == .updatedInPlace {
            (into.runningMean, into.runningVar) = (running.mean, running.variance)
        }
        // Each pass waits for a user event of its own (on an idle queue): its last kernel
        // can complete only after the event does.
        let written = try UserEvent.gating(on: runtime, "\(op) forward") { try op.run(o, into, &running, $0) }
        try expectWritten(
            op.results(of: written, running: running), into: into, equal: op.results(of: new, running: fresh),
            "\(op) forward")
        #expect(running.numBatchesTracked == fresh.numBatchesTracked)

        for (form, (newBackward, backward)) in zip(new.backwards, written.backwards).enumerated() {
            let label = "\(op) backward #\(form)"
            let newGradients = try newBackward(BackwardDestinations(), [])
            var backwardInto = BackwardDestinations()
            for (field, result) in newGradients.results { backwardInto[keyPath: field.path] = try nanTensor(like: result) }
            let gradients = try UserEvent.gating(on: runtime, label) { try backward(backwardInto, $0) }
            try expectWritten(gradients.results, into: backwardInto, equal: newGradients.results, label)
        }
    }

    /// Each result is its destination (the same memory), and equals `expected` bit for bit.
    func expectWritten<Field, Destinations>(
        _ results: [Field: Tensor], into destinations: Destinations, equal expected: [Field: Tensor], _ label: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws where Field: DestinationField, Field.Destinations == Destinations {
        #expect(Set(results.keys) == Set(expected.keys), "\(label): results", sourceLocation: sourceLocation)
        for (field, result) in results {
            let destination = try #require(destinations[keyPath: field.path], sourceLocation: sourceLocation)
            let (memory, wanted) = (result.openCLMemory, destination.openCLMemory)
            #expect(
                memory?.buffer == wanted?.buffer && memory?.byteOffset == wanted?.byteOffset,
                "\(label): \(field) is not its destination", sourceLocation: sourceLocation)
            let bits = try result.toArray().map(\.bitPattern)
            let expectedBits = try expected[field]?.toArray().map(\.bitPattern)
            #expect(bits == expectedBits, "\(label): \(field) differs from the run with new tensors", sourceLocation: sourceLocation)
        }
    }

    // MARK: - Destinations that do not fit

    /// How a destination can be wrong, and the error that names it.
    enum Flaw: CaseIterable {
        case shape, elementType, runtime, overlapsInput

        func matches(_ error: any Error, argument: String) -> Bool {
            switch (self, error as? NormError) {
            case (.shape, .shapeMismatch(let name, _, _)?), (.elementType, .unsupported(let name, _)?),
                (.runtime, .backendMismatch(let name, _, _)?), (.overlapsInput, .invalidArgument(let name, _)?):
                name == argument
            default: false
            }
        }
    }

    /// A tensor like `result` with `flaw`: one more element in its last dim, the other
    /// element type, on another runtime, or over `input`'s memory.
    static func flawed(_ result: Tensor, _ flaw: Flaw, overlapping input: Tensor) throws -> Tensor {
        switch flaw {
        case .shape:
            return try nanTensor(like: result, shape: Array(result.shape.dropLast()) + [result.shape.last! + 1])
        case .elementType:
            return try nanTensor(like: result, elementType: result.elementType == .float32 ? .float16 : .float32)
        case .runtime:
            return try nanTensor(like: result, on: try otherRuntime.get())
        case .overlapsInput:
            let memory = try #require(input.openCLMemory)
            let runtime = try #require(input.backend.runtime)
            return try Tensor(
                wrapping: memory.buffer, byteOffset: memory.byteOffset, shape: result.shape, layout: result.layout,
                elementType: result.elementType, on: runtime)
        }
    }

    /// A second runtime on the same device: its tensors are not the op's.
    static let otherRuntime = Result { try OpenCLRuntime(device: try #require(sharedRuntime).device) }

    @Test("a destination that does not fit throws the NormError naming it, and nothing is updated", arguments: cases)
    func misfits(_ op: DestinationCase) throws {
        let runtime = try #require(sharedRuntime)
        let o = try Operands(op, on: runtime)
        var running = try o.runningStatistics()
        let valid = try op.run(o, ForwardDestinations(), &running, [])
        for (field, result) in op.results(of: valid, running: running) {
            for flaw in Flaw.allCases {
                var into = ForwardDestinations()
                into[keyPath: field.path] = try Self.flawed(result, flaw, overlapping: o.x)
                var untouched = try o.runningStatistics()
                #expect("\(op) \(field) \(flaw)") {
                    _ = try op.run(o, into, &untouched, [])
                } throws: {
                    flaw.matches($0, argument: "destinations.\(field)")
                }
                #expect(untouched.numBatchesTracked == 0, "a failed call leaves the running statistics alone")
            }
        }
        for (form, backward) in valid.backwards.enumerated() {
            for (field, result) in try backward(BackwardDestinations(), []).results {
                for flaw in Flaw.allCases {
                    var into = BackwardDestinations()
                    into[keyPath: field.path] = try Self.flawed(result, flaw, overlapping: o.dy)
                    #expect("\(op) backward #\(form) \(field) \(flaw)") {
                        _ = try backward(into, [])
                    } throws: {
                        flaw.matches($0, argument: "destinations.\(field)")
                    }
                }
            }
        }
    }

    @Test("two results into one tensor: a typed error, not a silent race between their kernels", arguments: cases)
    func destinationsOverlapEachOther(_ op: DestinationCase) throws {
        let runtime = try #require(sharedRuntime)
        let o = try Operands(op, on: runtime)
        var running = try o.runningStatistics()
        let valid = try op.run(o, ForwardDestinations(), &running, [])
        func isOverlap(_ error: any Error) -> Bool {
            if case .invalidArgument(_, let reason)? = error as? NormError { reason.contains("overlaps destinations.") } else { false }
        }
        var pairs = 0
        let forward = op.results(of: valid, running: running).sorted { "\($0.key)" < "\($1.key)" }
        for (i, (first, result)) in forward.enumerated() {
            for (second, other) in forward[(i + 1)...] where other.shape == result.shape && other.elementType == result.elementType {
                let shared = try nanTensor(like: result)
                var into = ForwardDestinations()
                into[keyPath: first.path] = shared
                into[keyPath: second.path] = shared
                var untouched = try o.runningStatistics()
                #expect("\(op) \(first) and \(second)") { _ = try op.run(o, into, &untouched, []) } throws: { isOverlap($0) }
                pairs += 1
            }
        }
        for backward in valid.backwards {
            let results = try backward(BackwardDestinations(), []).results.sorted { "\($0.key)" < "\($1.key)" }
            for (i, (first, result)) in results.enumerated() {
                for (second, other) in results[(i + 1)...] where other.shape == result.shape {
                    let shared = try nanTensor(like: result)
                    var into = BackwardDestinations()
                    into[keyPath: first.path] = shared
                    into[keyPath: second.path] = shared
                    #expect("\(op) backward \(first) and \(second)") { _ = try backward(into, []) } throws: { isOverlap($0) }
                    pairs += 1
                }
            }
        }
        // Every op has two results of one shape (saved mean and invstd, or dγ and dβ)
        // but RMSNorm, whose dx is its only result the shape of another.
        #expect(pairs > 0 || op.name.hasPrefix("RMSNorm"), "\(op): no two results of one shape to alias")
    }

    @Test("running statistics: in place into themselves, never into each other or a view beside them")
    func runningStatisticsAliases() throws {
        let runtime = try #require(sharedRuntime)
        let op = try #require(Self.cases.first { $0.name == "BatchNorm training" })
        let o = try Operands(op, on: runtime)
        var running = try o.runningStatistics()
        let into = ForwardDestinations(runningMean: running.variance, runningVar: running.mean)
        #expect(throws: NormError.invalidArgument(argument: "destinations.runningMean", reason: overlapReason)) {
            _ = try op.run(o, into, &running, [])
        }
        // A view of the running mean's buffer that starts elsewhere is not the running mean.
        let base = try Tensor(repeating: 0, shape: [2 * alignedFloats], on: .openCL(runtime))
        let memory = try #require(base.openCLMemory)
        let shifted = try Tensor(wrapping: memory.buffer, byteOffset: alignedFloats * 4, shape: [4], on: runtime)
        let whole = try Tensor(wrapping: memory.buffer, shape: [alignedFloats + 4], on: runtime)
        #expect(base.overlaps(shifted) && shifted.overlaps(whole) && !base.hasSameMemory(as: shifted))
        let call = OpCall(forward: ForwardDestinations(runningMean: shifted)).reading(whole)
        #expect(throws: NormError.invalidArgument(argument: "destinations.runningMean", reason: overlapReason)) {
            _ = try call.forward(\.runningMean, "runningMean", shape: [4], on: runtime, mayAlias: whole)
        }
        #expect(try call.forward(\.runningMean, "runningMean", shape: [4], on: runtime, mayAlias: shifted).overlaps(shifted))
    }

    let overlapReason = "overlaps an input of the op, which is read while results are written"
    /// Floats in the device's sub-buffer alignment.
    var alignedFloats: Int { (sharedRuntime?.device.baseAddressAlignmentBytes ?? 128) / 4 }
}

// MARK: - Cases

/// How a case uses running statistics.
enum RunningUse: Sendable { case none, read, updatedInPlace }

/// One op's forward (into the given destinations, after the given events) and the
/// backward of that forward.
struct DestinationCase: Sendable, CustomTestStringConvertible {
    typealias Body = @Sendable (Operands, ForwardDestinations, inout RunningStatistics, [OpenCLEvent]) throws -> Run

    let name: String
    /// `(N, C, L)`, small: every field is a handful of values.
    let shape = [3, 4, 5]
    /// γ and β's shape (`[C]` unless given).
    let parameters: [Int]
    let layout: TensorLayout
    let elementType: ElementType
    let running: RunningUse
    let run: Body

    init(
        _ name: String, parameters: [Int] = [4], layout: TensorLayout = .channelsFirst, elementType: ElementType = .float32,
        running: RunningUse = .none, _ run: @escaping Body
    ) {
        (self.name, self.parameters, self.layout, self.elementType, self.running, self.run) =
            (name, parameters, layout, elementType, running, run)
    }

    var testDescription: String { name }

    /// A forward's results by field, with the running statistics it updated.
    func results(of run: Run, running: RunningStatistics) -> [ForwardField: Tensor] {
        guard self.running == .updatedInPlace else { return run.forward.results }
        return run.forward.results.merging([.runningMean: running.mean, .runningVar: running.variance]) { $1 }
    }
}

/// A case's inputs on the device, from fixed seeded data.
struct Operands {
    let x, dy, weight, bias, meanLogits, varianceLogits: Tensor
    let runningValues: (mean: [Float], variance: [Float])
    let runtime: OpenCLRuntime

    init(_ op: DestinationCase, on runtime: OpenCLRuntime) throws {
        var rng = SeededGenerator(seed: 16)
        let count = op.shape.reduce(1, *), parameters = op.parameters.reduce(1, *), channels = op.shape[1]
        let backend = Backend.openCL(runtime)
        func tensor(_ values: [Float], _ shape: [Int]) throws -> Tensor {
            try Tensor(values, shape: shape, layout: op.layout, elementType: op.elementType, on: backend)
        }
        x = try tensor(rng.normals(count, offset: 2, scale: 1.5), op.shape)
        dy = try tensor(rng.normals(count), op.shape)
        weight = try Tensor(rng.normals(parameters, offset: 1, scale: 0.3), shape: op.parameters, on: backend)
        bias = try Tensor(rng.normals(parameters, scale: 0.5), shape: op.parameters, on: backend)
        meanLogits = try Tensor([0.5, 1, 1.5], on: backend)
        varianceLogits = try Tensor([1.2, 0.8, 1], on: backend)
        runningValues = (rng.normals(channels, offset: 2, scale: 0.5), (0..<channels).map { 1 + Float($0) / 4 })
        self.runtime = runtime
    }

    /// New running statistics with the case's values.
    func runningStatistics() throws -> RunningStatistics {
        RunningStatistics(
            mean: try Tensor(runningValues.mean, on: .openCL(runtime)),
            variance: try Tensor(runningValues.variance, on: .openCL(runtime)))
    }
}

/// A result's field in its destinations struct.
protocol DestinationField: Hashable, CustomStringConvertible {
    associatedtype Destinations
    var path: WritableKeyPath<Destinations, Tensor?> { get }
}

enum ForwardField: String, DestinationField {
    case output, saveMean, saveInvstd, runningMean, runningVar

    var description: String { rawValue }
    var path: WritableKeyPath<ForwardDestinations, Tensor?> {
        switch self {
        case .output: \.output
        case .saveMean: \.saveMean
        case .saveInvstd: \.saveInvstd
        case .runningMean: \.runningMean
        case .runningVar: \.runningVar
        }
    }
}

enum BackwardField: String, DestinationField {
    case gradInput, gradWeight, gradBias

    var description: String { rawValue }
    var path: WritableKeyPath<BackwardDestinations, Tensor?> {
        switch self {
        case .gradInput: \.gradInput
        case .gradWeight: \.gradWeight
        case .gradBias: \.gradBias
        }
    }
}

/// One pass's results by destination field, and its events.
struct Pass<Field: DestinationField> {
    var results: [Field: Tensor]
    var events: [KernelEvent]
}

extension Pass<BackwardField> {
    init(_ g: NormGradients) {
        let results: [BackwardField: Tensor?] = [.gradInput: g.input, .gradWeight: g.weight, .gradBias: g.bias]
        self.init(results: results.compactMapValues { $0 }, events: g.events)
    }

    /// dx, dγ, dβ (the logit gradients have no destination).
    init(_ g: SwitchableNormGradients) {
        self.init(NormGradients(input: g.input, weight: g.weight, bias: g.bias, events: g.events))
    }
}

/// What a pass returns: its kernels' events.
protocol GatedPass { var events: [KernelEvent] { get } }
extension Pass: GatedPass {}
extension Run: GatedPass {
    var events: [KernelEvent] { forward.events }
}

/// A forward's results (the running statistics are the caller's), and its backward forms.
struct Run {
    typealias Backward = (BackwardDestinations, [OpenCLEvent]) throws -> Pass<BackwardField>

    var forward: Pass<ForwardField>
    var backwards: [Backward]

    init(
        _ events: [KernelEvent], output: Tensor, saveMean: Tensor? = nil, saveInvstd: Tensor? = nil,
        backwards: [Backward]
    ) {
        let results: [ForwardField: Tensor?] = [.output: output, .saveMean: saveMean, .saveInvstd: saveInvstd]
        forward = Pass(results: results.compactMapValues { $0 }, events: events)
        self.backwards = backwards
    }

    /// A Switchable Norm forward (the mixed statistics are its destination fields) and its backward.
    init(switchable f: SwitchableNormOutput, _ o: Operands) {
        self.init(
            f.events, output: f.output, saveMean: f.saveMean, saveInvstd: f.saveInvstd,
            backwards: [{ Pass(try switchableNormBackward(o.dy, forward: f, into: $0, waitingFor: $1)) }])
    }
}

/// A tensor of NaN like `tensor` (so a result that was not written shows), with the changes given.
func nanTensor(
    like tensor: Tensor, shape: [Int]? = nil, elementType: ElementType? = nil, on runtime: OpenCLRuntime? = nil
) throws -> Tensor {
    try Tensor(
        repeating: .nan, shape: shape ?? tensor.shape, layout: tensor.layout, elementType: elementType ?? tensor.elementType,
        on: runtime.map { .openCL($0) } ?? tensor.backend)
}

/// A user event that blocks what waits for it until ``complete()``.
final class UserEvent {
    let handle: cl_event
    private var completed = false

    init(on runtime: OpenCLRuntime) throws {
        var status: cl_int = CL_SUCCESS
        guard let event = clCreateUserEvent(runtime.contextHandle, &status), status == CL_SUCCESS else {
            throw OpenCLError(code: status, call: "clCreateUserEvent")
        }
        handle = event
    }

    var event: OpenCLEvent { OpenCLEvent(handle) }

    /// Runs `pass` waiting for a new user event (after everything queued so far), expects
    /// its last kernel still pending, then completes the event.
    static func gating<P: GatedPass>(
        on runtime: OpenCLRuntime, _ label: String, sourceLocation: SourceLocation = #_sourceLocation,
        _ pass: ([OpenCLEvent]) throws -> P
    ) throws -> P {
        try runtime.finish()
        let gate = try UserEvent(on: runtime)
        defer { gate.complete() }  // also when something throws: the queue must not stay blocked
        let result = try pass([gate.event])
        let last = try #require(result.events.last, "\(label) returns its kernels' events", sourceLocation: sourceLocation)
        #expect(CommandOrder.isPending(last.handle), "\(label) waits for the caller's event", sourceLocation: sourceLocation)
        return result
    }

    func complete() {
        guard !completed else { return }
        completed = true
        clSetUserEventStatus(handle, CL_COMPLETE)
    }

    deinit {
        complete()
        clReleaseEvent(handle)
    }
}
