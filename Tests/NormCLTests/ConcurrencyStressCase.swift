import Testing
@testable import NormCL

/// One kind of op for the concurrency stress tests: an op, its direction and mode, an
/// element type and a layout on a fixed small shape. ``check(on:seed:)`` runs it with
/// fresh data from `seed` through the op's harness (device against the float64
/// reference, the harness's own tolerances); ``referenceFingerprint(seed:)`` is the
/// reference result as text, for bit-exact comparisons.
///
/// Two shapes only, so PoCL compiles each program variant once (the build options carry
/// the shape): every case is one or two programs, ~30 in all.
struct ConcurrencyStressCase: Sendable, CustomStringConvertible {
    let description: String
    private let checkBody: @Sendable (Backend, UInt64) throws -> Void
    private let fingerprintBody: @Sendable (UInt64) throws -> String

    /// Runs the op on `backend` and on the reference with data from `seed` and records
    /// an issue for every value out of tolerance.
    func check(on backend: Backend, seed: UInt64) throws { try checkBody(backend, seed) }

    /// The op's reference result for `seed`, every value printed (shortest round-trip
    /// form, so two fingerprints are equal exactly when the results are bit-identical).
    func referenceFingerprint(seed: UInt64) throws -> String { try fingerprintBody(seed) }

    /// `(N, C, H, W)` for the channel ops: C = 6 takes 3 groups, 25 spatial values.
    static let imageShape = [4, 6, 5, 5]
    /// `(4, 6, 10)` normalised over the trailing `[10]` for LayerNorm and RMSNorm.
    static let rowShape = [4, 6, 10]
    static let rowNormalizedShape = [10]
    static let renormLimits = BatchRenormLimits(rmax: 3, dmax: 5)

    /// Every op forward and backward, each mode, both element types and both layouts
    /// (row norms have no layout), spread so each op meets each type and layout.
    static let all: [ConcurrencyStressCase] = batchNorm + groupNorm + instanceNorm + rowNorms + switchableNorm

    private static let batchNorm: [ConcurrencyStressCase] = [
        forward(.float32, .channelsFirst, training: true, renorm: false),
        forward(.float16, .channelsLast, training: true, renorm: false),
        forward(.float32, .channelsLast, training: false, renorm: false),
        forward(.float16, .channelsFirst, training: false, renorm: false),
        forward(.float32, .channelsFirst, training: true, renorm: true),
        forward(.float16, .channelsLast, training: true, renorm: true),
        backward(.float32, .channelsFirst, mode: .training),
        backward(.float16, .channelsLast, mode: .training),
        backward(.float32, .channelsLast, mode: .inference),
        backward(.float32, .channelsFirst, mode: .renorm(renormLimits)),
    ]

    /// A case that builds its harness from the seed, checks it on a backend, and
    /// prints its reference result as the fingerprint.
    private init<Harness>(
        _ description: String, harness: @escaping @Sendable (UInt64) throws -> Harness,
        check: @escaping @Sendable (Harness, Backend) throws -> Void, reference: @escaping @Sendable (Harness) throws -> Any
    ) {
        self.description = description
        checkBody = { backend, seed in try check(try harness(seed), backend) }
        fingerprintBody = { seed in "\(try reference(try harness(seed)))" }
    }

    private static func forward(_ type: ElementType, _ layout: TensorLayout, training: Bool, renorm: Bool) -> Self {
        let name = renorm ? "BatchRenorm" : "BatchNorm \(training ? "training" : "inference")"
        return Self(
            "\(name) forward \(type) \(layout)",
            harness: { seed in
                var harness = BatchNormHarness(shape: imageShape, seed: seed).stored(as: type, layout)
                if renorm { harness.renorm = renormLimits }
                return harness
            },
            check: { (h: BatchNormHarness, backend: Backend) in try h.check(on: backend, training: training) },
            reference: { (h: BatchNormHarness) in try h.run(on: .reference, training: training) })
    }

    private static func backward(_ type: ElementType, _ layout: TensorLayout, mode: BatchNormBackwardHarness.Mode) -> Self {
        Self(
            "BatchNorm backward \(mode) \(type) \(layout)",
            harness: { seed in
                var harness = BatchNormBackwardHarness(shape: imageShape, seed: seed).stored(as: type, layout)
                harness.mode = mode
                return harness
            },
            check: { (h: BatchNormBackwardHarness, backend: Backend) in try h.check(on: backend) },
            reference: { (h: BatchNormBackwardHarness) in try h.run(on: .reference) })
    }

    private static let groupNorm: [ConcurrencyStressCase] = [
        groupForward(.group(3), .float32, .channelsFirst),
        groupForward(.group(3), .float16, .channelsLast),
        groupBackward(.group(3), .float32, .channelsLast),
        groupBackward(.group(3), .float16, .channelsFirst),
    ]

    private static let instanceNorm: [ConcurrencyStressCase] = [
        groupForward(.instance(useInputStats: true), .float32, .channelsLast),
        groupForward(.instance(useInputStats: false), .float16, .channelsFirst),
        groupBackward(.instance, .float32, .channelsFirst),
        groupBackward(.instanceRunning, .float16, .channelsLast),
    ]

    /// GroupNorm, or InstanceNorm with running statistics tracked (updated in training,
    /// used in inference).
    private static func groupForward(_ op: GroupNormHarness.Op, _ type: ElementType, _ layout: TensorLayout) -> Self {
        let tracking = if case .instance = op { true } else { false }
        return Self(
            "\(op) forward \(type) \(layout)",
            harness: { GroupNormHarness(op: op, shape: imageShape, tracking: tracking, seed: $0).stored(as: type, layout) },
            check: { (h: GroupNormHarness, backend: Backend) in try h.check(on: backend) },
            reference: { (h: GroupNormHarness) in try h.run(on: .reference) })
    }

    private static func groupBackward(_ op: GroupNormBackwardHarness.Op, _ type: ElementType, _ layout: TensorLayout) -> Self {
        Self(
            "\(op) backward \(type) \(layout)",
            harness: { GroupNormBackwardHarness(op: op, shape: imageShape, seed: $0).stored(as: type, layout) },
            check: { (h: GroupNormBackwardHarness, backend: Backend) in try h.check(on: backend) },
            reference: { (h: GroupNormBackwardHarness) in try h.run(on: .reference, statistics: try h.savedStatistics()) })
    }

    private static let rowNorms: [ConcurrencyStressCase] = [RowNormProblem.Kind.layerNorm, .rmsNorm].flatMap { kind in
        [ElementType.float32, .float16].flatMap { type in [rowForward(kind, type), rowBackward(kind, type)] }
    }

    private static func rowForward(_ kind: RowNormProblem.Kind, _ type: ElementType) -> Self {
        Self(
            "\(kind) forward \(type)",
            harness: { RowNormHarness(kind, shape: rowShape, normalizedShape: rowNormalizedShape, elementType: type, seed: $0) },
            check: { (h: RowNormHarness, backend: Backend) in try h.check(on: backend) },
            reference: { (h: RowNormHarness) in try h.run(on: .reference) })
    }

    private static func rowBackward(_ kind: RowNormProblem.Kind, _ type: ElementType) -> Self {
        Self(
            "\(kind) backward \(type)",
            harness: {
                try RowNormBackwardHarness(kind, shape: rowShape, normalizedShape: rowNormalizedShape, elementType: type, seed: $0)
            },
            check: { (h: RowNormBackwardHarness, backend: Backend) in try h.check(on: backend) },
            reference: { (h: RowNormBackwardHarness) in
                let result = try h.run(on: .reference)
                return "\(try result.dx?.toArray() ?? []) \(try result.dWeight?.toArray() ?? []) \(try result.dBias?.toArray() ?? [])"
            })
    }

    private static let switchableNorm: [ConcurrencyStressCase] = [
        switchableForward(.float32, .channelsFirst, training: true),
        switchableForward(.float16, .channelsLast, training: false),
        switchableBackward(.float32, .channelsLast, training: true),
        switchableBackward(.float16, .channelsFirst, training: true),
    ]

    private static func switchableForward(_ type: ElementType, _ layout: TensorLayout, training: Bool) -> Self {
        Self(
            "SwitchableNorm forward training=\(training) \(type) \(layout)",
            harness: { SwitchableNormHarness(shape: imageShape, layout: layout, elementType: type, seed: $0) },
            check: { (h: SwitchableNormHarness, backend: Backend) in try h.check(on: backend, training: training) },
            reference: { (h: SwitchableNormHarness) in try h.run(on: .reference, training: training) })
    }

    /// The backward harness takes a runtime: on the reference backend it compares the
    /// reference with itself, which still runs both paths concurrently with the rest.
    private static func switchableBackward(_ type: ElementType, _ layout: TensorLayout, training: Bool) -> Self {
        Self(
            "SwitchableNorm backward training=\(training) \(type) \(layout)",
            harness: { SwitchableNormBackwardHarness(shape: imageShape, layout: layout, elementType: type, seed: $0) },
            check: { (h: SwitchableNormBackwardHarness, backend: Backend) in
                if let runtime = backend.runtime {
                    try h.check(on: runtime, training: training)
                } else {
                    _ = try h.run(on: .reference, training: training)
                }
            },
            reference: { (h: SwitchableNormBackwardHarness) in try h.run(on: .reference, training: training) })
    }
}
