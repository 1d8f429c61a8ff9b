import COpenCL
import Testing
@testable import NormCL

/// Tensors, statistics and layers sized beyond what a backend can hold are typed errors
/// thrown before any memory is taken — never a trap, an abort or a huge allocation.
///
/// No test here allocates much: every size is far beyond the limit it meets (4 PiB
/// against the machine's RAM or the device's memory), or overflows `Int`, and a size
/// that only might be beyond a limit (the issue's 256 GiB) is tried only where it is.
/// OpenCL cases run on a private runtime, whose allocator must hold nothing afterwards.
@Suite("Allocation limits")
struct AllocationLimitTests {
    /// 2^50 elements: 4 PiB of Floats, beyond any machine's RAM and any device.
    static let huge = 1 << 50

    /// A private runtime (its allocator's counts are this test's alone) and the reference.
    private func backends() throws -> [Backend] {
        guard let shared = sharedRuntime else { return [.reference] }
        return [.openCL(try OpenCLRuntime(device: shared.device)), .reference]
    }

    /// `call` throws the size error its backend gives: on the reference
    /// `invalidShape(argument)`, on OpenCL an out-of-resources ``OpenCLError`` from the
    /// allocator (`overflow: true`: `invalidShape(argument)` on both); and an OpenCL
    /// runtime holds no memory afterwards.
    private func expectSizeError(
        _ label: String, on backend: Backend, argument: String, overflow: Bool = false,
        sourceLocation: SourceLocation = #_sourceLocation, _ call: () throws -> Any
    ) {
        do {
            _ = try call()
            Issue.record("\(label) on \(backend.name): no error", sourceLocation: sourceLocation)
        } catch let error as NormError {
            let expectNormError = overflow || backend.runtime == nil
            #expect(expectNormError, "\(label) on \(backend.name): \(error)", sourceLocation: sourceLocation)
            #expect(
                BatchNormErrorTests.caseAndArgument(error) == "invalidShape(\(argument))", "\(label): \(error)",
                sourceLocation: sourceLocation)
        } catch let error as OpenCLError {
            #expect(!overflow && backend.runtime != nil, "\(label) on \(backend.name): \(error)", sourceLocation: sourceLocation)
            #expect(error.isOutOfResources, "\(label): \(error)", sourceLocation: sourceLocation)
            #expect(error.call.hasPrefix("clCreateBuffer("), "\(label): \(error)", sourceLocation: sourceLocation)
        } catch {
            Issue.record("\(label) on \(backend.name): unexpected \(error)", sourceLocation: sourceLocation)
        }
        if let runtime = backend.runtime {
            #expect(runtime.buffers.allocatedBytes == runtime.buffers.idleBytes, "\(label): memory held", sourceLocation: sourceLocation)
            #expect(runtime.objects.count(.event) == 0, sourceLocation: sourceLocation)
        }
    }

    /// The storage bytes `count` elements take on `backend`, and whether that is beyond
    /// what the backend can hold (so trying it allocates nothing).
    private func isBeyondLimit(_ count: Int, _ elementType: ElementType, on backend: Backend) -> Bool {
        switch backend {
        case .reference: count.multipliedReportingOverflow(by: 4).partialValue > Tensor.hostByteLimit || count > Int.max / 4
        case .openCL(let runtime): count > runtime.device.maxAllocationBytes / elementType.byteCount
        }
    }

    @Test("Tensor(repeating:) beyond the backend's memory, the issue's [1 << 36] included")
    func repeatingBeyondMemory() throws {
        for backend in try backends() {
            var tried = 0
            for count in [1 << 36, Self.huge] where isBeyondLimit(count, .float16, on: backend) {
                tried += 1
                expectSizeError("[\(count)]", on: backend, argument: "shape") {
                    try Tensor(repeating: 0, shape: [count], on: backend)
                }
                expectSizeError("[\(count)] half", on: backend, argument: "shape") {
                    try Tensor(repeating: 1, shape: [count / 1024, 1024], elementType: .float16, on: backend)
                }
            }
            #expect(tried >= 1, "4 PiB fits on \(backend.name)?")
            // The process survived; the backend still makes tensors.
            #expect(try Tensor(repeating: 2, shape: [3], on: backend).toArray() == [2, 2, 2])
        }
    }

    @Test("the reference backend's limit is the machine's physical memory")
    func hostLimitIsPhysicalMemory() throws {
        let limit = Tensor.hostByteLimit
        #expect(limit > 1 << 26 && limit < Int.max, "\(limit)")
        let justAbove = limit / 4 + 1
        expectSizeError("one element past the limit", on: .reference, argument: "shape") {
            try Tensor(repeating: 0, shape: [justAbove], on: .reference)
        }
        let error = #expect(throws: NormError.self) { try Tensor(repeating: 0, shape: [justAbove], on: .reference) }
        #expect(error?.description.contains("physical memory, \(limit) bytes") == true, "\(String(describing: error))")
    }

    @Test("shapes whose element or byte count overflows Int, and negative dims, on both backends")
    func overflowingShapes() throws {
        for backend in try backends() {
            for shape in [[1 << 40, 1 << 40], [0, 1 << 40, 1 << 40], [1 << 40, 1 << 40, 0], [3, Int.max]] {
                let message = NormError.invalidShape(argument: "shape", reason: "\(shape) has more elements than Int can count")
                #expect(throws: message, "\(shape)") { try Tensor(repeating: 1, shape: shape, on: backend) }
                #expect(throws: message, "\(shape)") { try Tensor([], shape: shape, on: backend) }
                #expect(throws: message, "\(shape)") {
                    try Tensor(zerosLike: Tensor(shape: shape, layout: .channelsFirst, storage: .host([])))
                }
            }
            // Elements that Int counts, bytes that it does not.
            for (shape, elementType) in [([1 << 62], ElementType.float32), ([1 << 61, 2], .float16), ([Int.max], .float32)] {
                let error = #expect(throws: NormError.self, "\(shape)") {
                    try Tensor(repeating: 1, shape: shape, elementType: elementType, on: backend)
                }
                #expect(BatchNormErrorTests.caseAndArgument(error) == "invalidShape(shape)")
                #expect(error?.description.contains("more bytes than Int can count") == true, "\(String(describing: error))")
            }
            for shape in [[2, -1], [-3], [0, -1]] {
                let message = NormError.invalidShape(argument: "shape", reason: "dimension \(shape.min()!) is negative in \(shape)")
                #expect(throws: message) { try Tensor(repeating: 1, shape: shape, on: backend) }
                #expect(throws: message) { try Tensor([], shape: shape, on: backend) }
            }
            if let runtime = backend.runtime {
                #expect(runtime.buffers.allocatedBytes == 0)
                // Internal outputs are checked the same way.
                #expect(throws: NormError.self) { try Tensor(uninitializedShape: [1 << 40, 1 << 40], on: runtime) }
                #expect(throws: NormError.self) { try Tensor(uninitializedShape: [1 << 62], on: runtime) }
            }
            // A zero dimension beside dimensions that Int can count is an empty tensor.
            #expect(try Tensor(repeating: 1, shape: [0, 1 << 40], on: backend).isEmpty)
        }
    }

    @Test("zeros like an empty or a huge tensor")
    func zerosLike() throws {
        for backend in try backends() {
            let storage: Tensor.Storage = backend.runtime.map { .emptyDevice($0) } ?? .host([])
            let empty = try Tensor(zerosLike: Tensor(shape: [0, 4], layout: .channelsLast, storage: storage))
            #expect(empty.isEmpty && empty.shape == [0, 4] && empty.layout == .channelsLast)
            // A stand-in with a huge shape and no data: zerosLike must not build its array.
            let standIn = Tensor(shape: [Self.huge], layout: .channelsFirst, storage: storage)
            expectSizeError("zerosLike [2^50]", on: backend, argument: "shape") { try Tensor(zerosLike: standIn) }
        }
    }

    @Test("RunningStatistics(channels:) beyond the backend's memory names channels")
    func runningStatistics() throws {
        for backend in try backends() {
            expectSizeError("channels 2^50", on: backend, argument: "channels") {
                try RunningStatistics(channels: Self.huge, on: backend)
            }
            expectSizeError("channels Int.max", on: backend, argument: "channels", overflow: true) {
                try RunningStatistics(channels: .max, on: backend)
            }
            let small = try RunningStatistics(channels: 3, on: backend)
            #expect(try small.mean.toArray() == [0, 0, 0])
            #expect(try small.variance.toArray() == [1, 1, 1])
        }
    }

    @Test("layer initialisers with parameters or statistics beyond the backend's memory")
    func layers() throws {
        let n = Self.huge
        for backend in try backends() {
            expectSizeError("BatchNorm", on: backend, argument: "numFeatures") { try BatchNorm(numFeatures: n, on: backend) }
            expectSizeError("BatchNorm, statistics only", on: backend, argument: "channels") {
                try BatchNorm(numFeatures: n, affine: false, on: backend)
            }
            expectSizeError("BatchNorm Int.max", on: backend, argument: "numFeatures", overflow: true) {
                try BatchNorm(numFeatures: .max, on: backend)
            }
            expectSizeError("InstanceNorm affine", on: backend, argument: "numFeatures") {
                try InstanceNorm(numFeatures: n, affine: true, on: backend)
            }
            expectSizeError("InstanceNorm tracking", on: backend, argument: "channels") {
                try InstanceNorm(numFeatures: n, trackRunningStats: true, on: backend)
            }
            expectSizeError("SwitchableNorm", on: backend, argument: "numFeatures") {
                try SwitchableNorm(numFeatures: n, on: backend)
            }
            expectSizeError("GroupNorm", on: backend, argument: "numChannels") {
                try GroupNorm(numGroups: 1, numChannels: n, on: backend)
            }
            expectSizeError("LayerNorm", on: backend, argument: "normalizedShape") {
                try LayerNorm(normalizedShape: [1 << 25, 1 << 25], on: backend)
            }
            expectSizeError("LayerNorm overflow", on: backend, argument: "normalizedShape", overflow: true) {
                try LayerNorm(normalizedShape: [1 << 40, 1 << 40], on: backend)
            }
            expectSizeError("RMSNorm", on: backend, argument: "normalizedShape") {
                try RMSNorm(normalizedShape: [n], on: backend)
            }
            expectSizeError("RMSNorm overflow", on: backend, argument: "normalizedShape", overflow: true) {
                try RMSNorm(normalizedShape: [1 << 40, 1 << 40], on: backend)
            }
            // Without parameters there is nothing to allocate (the ops check inputs).
            #expect(throws: Never.self) { try InstanceNorm(numFeatures: n, on: backend) }
            #expect(throws: Never.self) { try LayerNorm(normalizedShape: [n], elementwiseAffine: false, on: backend) }
        }
    }

    /// Filled on the device: the element's bits for float32, the half's for float16
    /// (rounded to nearest even as an upload rounds), special values kept, and the fill is
    /// ordered before what reads the tensor next on the queue.
    @Test("filled tensors hold the value on both backends and storage types")
    func filledValues() throws {
        for backend in allBackends {
            for value: Float in [0, -0.0, 1, 0.1, -3.75, 65519, 1e-8, .infinity, -.infinity] {
                for elementType in ElementType.allCases {
                    for shape in [[1], [3], [2, 5, 3], [1027]] {
                        let filled = try Tensor(repeating: value, shape: shape, elementType: elementType, on: backend)
                        let uploaded = try Tensor(
                            [Float](repeating: value, count: shape.reduce(1, *)), shape: shape, elementType: elementType, on: backend)
                        let values = try filled.toArray()
                        #expect(values.map(\.bitPattern) == (try uploaded.toArray()).map(\.bitPattern), "\(value) \(elementType) \(shape)")
                        #expect(values.allSatisfy { $0.bitPattern == elementType.rounded(value).bitPattern })
                    }
                }
            }
            let nan = try Tensor(repeating: .nan, shape: [5], elementType: .float16, on: backend).toArray()
            #expect(nan.allSatisfy { $0.isNaN })
            // Parameters filled by a layer are read by the op right after, on the same queue.
            var layer = try BatchNorm(numFeatures: 3, on: backend)
            layer.isTraining = false
            let x = try Tensor((0..<12).map(Float.init), shape: [2, 3, 2], on: backend)
            let y = try layer(x).toArray()
            let expected = (0..<12).map { Float(Double($0) / (1 + 1e-5).squareRoot()) }
            for (actual, wanted) in zip(y, expected) { #expect(Swift.abs(actual - wanted) <= 1e-5 * (1 + Swift.abs(wanted))) }
        }
    }

    /// A size near `Int.max` added to the bytes already held used to wrap to a negative
    /// total that passed the limit (and went to the driver).
    @Test("the device allocator refuses a size that would wrap its byte count", .enabled(if: hasOpenCL))
    func allocatorWrap() throws {
        let runtime = try OpenCLRuntime(device: try #require(sharedRuntime).device)
        let held = try DeviceBuffer(byteCount: 4096, on: runtime)
        let byteCount = Int.max - 1024
        #expect(throws: OpenCLError(code: CL_MEM_OBJECT_ALLOCATION_FAILURE, call: "clCreateBuffer(\(byteCount) bytes)")) {
            try DeviceBuffer(byteCount: byteCount, on: runtime)
        }
        #expect(runtime.buffers.allocatedBytes == 4096)
        #expect(runtime.objects.count(.memory) == 1)
        _ = held
    }

    @Test("the copy probe and bandwidth sizes that overflow are argument errors", .enabled(if: hasOpenCL))
    func copyProbeSizes() throws {
        let runtime = try OpenCLRuntime(device: try #require(sharedRuntime).device)
        let probeError = #expect(throws: NormError.self) { try CopyProbe(bytes: .max, on: runtime) }
        #expect(BatchNormErrorTests.caseAndArgument(probeError) == "invalidArgument(bytes)")
        let bandwidthError = #expect(throws: NormError.self) { try runtime.measureCopyBandwidth(megabytes: .max) }
        #expect(BatchNormErrorTests.caseAndArgument(bandwidthError) == "invalidArgument(megabytes)")
        #expect(throws: OpenCLError.self) { try CopyProbe(bytes: Self.huge * 8, on: runtime) }
        #expect(runtime.buffers.allocatedBytes == runtime.buffers.idleBytes)
    }

    /// Every device allocation an op makes — output, saved statistics, and the partial
    /// sums of a split plan — fails as a typed error when memory runs out at that point,
    /// holds nothing afterwards, and the op runs once there is room.
    @Test("each allocation of a split-plan op fails typed, then the op runs", .enabled(if: hasOpenCL))
    func splitPlanWorkspaces() throws {
        let runtime = try OpenCLRuntime(device: try #require(sharedRuntime).device)
        let harness = BatchNormHarness(shape: [2, 1, 4096], seed: 301)
        let input = try Tensor(harness.x, shape: harness.shape, on: .openCL(runtime))
        let expected = try batchNorm(try Tensor(harness.x, shape: harness.shape, on: .reference)).output.toArray()
        for strategy in [BatchNormPlan.Strategy.splitReduction(groupsPerChannel: 4)] {
            var failures = 0
            var room = 0
            var output: [Float]?
            while output == nil && room < 1 << 20 {
                runtime.buffers.releaseAll()
                runtime.buffers.limitBytes = runtime.buffers.allocatedBytes + room
                do {
                    var running: RunningStatistics? = nil
                    let result = try batchNorm(
                        input, weight: nil, bias: nil, runningStatistics: &running, training: true, momentum: 0.1, eps: 1e-5,
                        strategy: strategy)
                    output = try result.output.toArray()
                } catch let error as OpenCLError {
                    failures += 1
                    #expect(error.code == CL_MEM_OBJECT_ALLOCATION_FAILURE, "\(error)")
                    #expect(runtime.objects.count(.event) == 0)
                    room += 64
                }
            }
            runtime.buffers.limitBytes = runtime.device.globalMemoryBytes
            // Output, mean, invstd, partials, pilots, coefficients: each failed at least once.
            #expect(failures > 5, "\(strategy): \(failures) failures")
            let values = try #require(output)
            expectClose(values, expected, "\(strategy)") { i in 1e-4 * (1 + Swift.abs(Double(expected[i]))) }
        }
    }
}
