import Testing
@testable import NormCL

/// Shapes past 32-bit indexing: problems and plans are built from the shape alone
/// (a stand-in host tensor that holds no values, so nothing is allocated). Tensors
/// of 2^32 elements or more must get 64-bit element offsets (`wideIndices`, i.e.
/// `-D INDEX_T=ulong`); sizes the kernels take as 32-bit arguments that do not fit
/// are a typed ``NormError`` naming the input — never a trap.
@Suite("32-bit index limits")
struct IndexWidthTests {
    /// A tensor that claims `shape` but stores nothing: for validation and planning only.
    static func standIn(_ shape: [Int], layout: TensorLayout = .channelsFirst) -> Tensor {
        Tensor(shape: shape, layout: layout, storage: .host([]))
    }

    static func device() throws -> (OpenCLDevice, DeviceTuning) {
        let runtime = try #require(sharedRuntime)
        return (runtime.device, runtime.tuning)
    }

    /// `case(argument)` and whether the reason names `quantity`.
    static func rejection(_ quantity: String, _ call: () throws(NormError) -> Any) -> String {
        do { _ = try call() } catch {
            guard case .invalidShape("input", let reason) = error else { return "wrong error \(error)" }
            return reason.hasPrefix("\(quantity) = ") && reason.contains("2^32") ? "rejected" : "reason: \(reason)"
        }
        return "accepted"
    }

    @Test("LayerNorm/RMSNorm: (2^16, 2^16 + 1) is planned with 64-bit offsets; rows or D ≥ 2^32 are rejected", .enabled(if: hasOpenCL))
    func rowNorm() throws {
        let (device, tuning) = try Self.device()
        func problem(_ shape: [Int], _ normalized: [Int], _ kind: RowNormProblem.Kind = .layerNorm) throws(NormError) -> RowNormProblem {
            try RowNormProblem.validated(kind, input: Self.standIn(shape), normalizedShape: normalized, weight: nil, bias: nil, eps: 1e-5)
        }
        for kind in [RowNormProblem.Kind.layerNorm, .rmsNorm] {
            let huge = try problem([1 << 16, (1 << 16) + 1], [(1 << 16) + 1], kind)
            #expect(RowNormPlan(problem: huge, device: device, tuning: tuning).wideIndices)
            #expect(RowNormPlan(problem: huge, device: device, tuning: tuning).buildOptions(for: huge).text.contains("-D INDEX_T=ulong"))
            let small = try problem([64, 128], [128], kind)
            #expect(!RowNormPlan(problem: small, device: device, tuning: tuning).wideIndices)
            // The backward plan builds on the forward's, with the same problem.
            let statistics = try Tensor(repeating: 0, shape: [1 << 16], on: .reference)
            let backward = try RowNormBackwardProblem.validated(
                kind, gradOutput: Self.standIn([1 << 16, (1 << 16) + 1]), input: Self.standIn([1 << 16, (1 << 16) + 1]),
                normalizedShape: [(1 << 16) + 1], weight: nil, saveMean: statistics, saveScale: statistics,
                outputMask: .all)
            _ = RowNormBackwardPlan(problem: backward, device: device, tuning: tuning)
        }
        #expect(Self.rejection("rows") { () throws(NormError) -> Any in try problem([1 << 32, 2], [2]) } == "rejected")
        #expect(Self.rejection("D") { () throws(NormError) -> Any in try problem([1, 1 << 32], [1 << 32]) } == "rejected")
        #expect(Self.rejection("rows") { () throws(NormError) -> Any in try problem([1 << 16, 1 << 16, 3], [3]) } == "rejected")
        #expect(Self.rejection("rows") { () throws(NormError) -> Any in try problem([(1 << 32) - 1, 1], [1]) } == "accepted")
    }

    @Test("BatchNorm: (1, 3, 2^16, 2^15) is planned with 64-bit offsets, (1, 3, 2^16, 2^16) has N·M = 2^32 and is rejected", .enabled(if: hasOpenCL))
    func batchNorm() throws {
        let (device, tuning) = try Self.device()
        func problem(_ shape: [Int], _ layout: TensorLayout) throws(NormError) -> BatchNormProblem {
            try BatchNormProblem.validated(
                input: Self.standIn(shape, layout: layout), weight: nil, bias: nil, running: nil,
                mode: .training(updatesRunningStatistics: false), momentum: 0.1, eps: 1e-5)
        }
        let channels = try Tensor(repeating: 1, shape: [3], on: .reference)
        for layout in TensorLayout.allCases {
            let shape = [1, 3, 1 << 16, 1 << 15]  // 3·2^31 elements
            let forward = try problem(shape, layout)
            #expect(BatchNormPlan(problem: forward, device: device, tuning: tuning).wideIndices, "\(layout)")
            let backward = try BatchNormBackwardProblem.validated(
                gradOutput: Self.standIn(shape, layout: layout), input: Self.standIn(shape, layout: layout), weight: nil,
                statistics: .batch(mean: channels, invstd: channels), outputMask: .all)
            #expect(BatchNormPlan(problem: backward, device: device, tuning: tuning).wideIndices, "\(layout)")
            let small = try problem([2, 3, 8, 8], layout)
            #expect(!BatchNormPlan(problem: small, device: device, tuning: tuning).wideIndices)

            #expect(Self.rejection("N·M") { () throws(NormError) -> Any in try problem([1, 3, 1 << 16, 1 << 16], layout) } == "rejected")
            #expect(Self.rejection("C") { () throws(NormError) -> Any in try problem([1, 1 << 32], layout) } == "rejected")
            #expect(Self.rejection("N·M") { () throws(NormError) -> Any in
                try BatchNormBackwardProblem.validated(
                    gradOutput: Self.standIn([1 << 33, 1]), input: Self.standIn([1 << 33, 1]), weight: nil,
                    statistics: .running(mean: channels, variance: channels, eps: 1e-5), outputMask: .all)
            } == "rejected")
        }
    }

    @Test("GroupNorm/InstanceNorm: 2^33 elements are planned with 64-bit offsets; N·M or N·C ≥ 2^32 are rejected", .enabled(if: hasOpenCL))
    func groupNorm() throws {
        let (device, tuning) = try Self.device()
        func problem(_ shape: [Int], groups: Int, layout: TensorLayout = .channelsFirst, op: String = "GroupNorm") throws(NormError) -> GroupNormProblem {
            try GroupNormProblem.validated(
                input: Self.standIn(shape, layout: layout), groups: groups, weight: nil, bias: nil,
                statistics: .input(savesVariance: false), eps: 1e-5, op: op)
        }
        for layout in TensorLayout.allCases {
            let shape = [1, 32, 1 << 16, 1 << 12]  // 2^33 elements, (C/G)·M = 2^30 per group
            let gn = try problem(shape, groups: 8, layout: layout)
            #expect(GroupNormPlan(problem: gn, device: device, tuning: tuning).wideIndices, "\(layout)")
            #expect(GroupNormBackwardPlan(problem: gn, mask: .all, device: device, tuning: tuning).wideIndices, "\(layout)")
            let instance = try problem(shape, groups: 32, layout: layout, op: "InstanceNorm")
            #expect(GroupNormPlan(problem: instance, device: device, tuning: tuning).wideIndices, "\(layout)")
            let small = try problem([2, 8, 16], groups: 2, layout: layout)
            #expect(!GroupNormPlan(problem: small, device: device, tuning: tuning).wideIndices)
        }
        #expect(Self.rejection("N·M") { () throws(NormError) -> Any in try problem([1, 1, 1 << 32], groups: 1) } == "rejected")
        #expect(Self.rejection("N·C") { () throws(NormError) -> Any in try problem([1 << 17, 1 << 16, 1], groups: 1) } == "rejected")
    }

    @Test("Switchable Norm: 2^33 elements are planned with 64-bit offsets; N·L ≥ 2^32 is rejected", .enabled(if: hasOpenCL))
    func switchableNorm() throws {
        let (device, tuning) = try Self.device()
        let logits = try Tensor(repeating: 1, shape: [3], on: .reference)
        func problem(_ shape: [Int]) throws(NormError) -> SwitchableNormProblem {
            try SwitchableNormProblem.validated(
                input: Self.standIn(shape), meanLogits: logits, varianceLogits: logits, weight: nil, bias: nil,
                running: nil, training: true, options: SwitchableNormOptions())
        }
        let huge = try problem([2, 4, 1 << 30])
        #expect(SwitchableNormPlan(problem: huge, device: device, tuning: tuning).wideIndices)
        #expect(SwitchableNormBackwardPlan(problem: huge, device: device, tuning: tuning).geometry.wideIndices)
        #expect(!SwitchableNormPlan(problem: try problem([2, 4, 16]), device: device, tuning: tuning).wideIndices)
        #expect(Self.rejection("N·L") { () throws(NormError) -> Any in try problem([2, 2, 1 << 31]) } == "rejected")
    }

    @Test("a 32-bit kernel size that does not fit throws instead of trapping")
    func kernelArgumentCount() throws {
        guard case .uint(let value) = try KernelArgument.count(Int(UInt32.max)) else {
            Issue.record("not a uint argument")
            return
        }
        #expect(value == UInt32.max)
        for bad in [1 << 32, -1, Int.max] {
            #expect(throws: NormError.self) { try KernelArgument.count(bad) }
        }
    }
}
