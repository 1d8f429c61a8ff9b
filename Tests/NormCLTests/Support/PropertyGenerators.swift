import PropertyBased
@testable import NormCL

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Generators of ``PropertyCase``s, one per op family and direction.
///
/// Every choice is drawn as an index into a short list whose first entry is the
/// simplest (smallest dim, NCHW, float32, no affine, default eps, …), so PropertyBased's
/// shrinker, which moves integers towards 0 and booleans towards false, shrinks a
/// failing case towards the simplest shape and parameters that still fail. Dims come
/// from a few distinct values because every new shape is an OpenCL program build
/// (0.1–1 s on PoCL cold, cached on disk afterwards).
enum PropertyGenerators {
    /// The sizes a dimension is drawn from: 1, small primes, a power of two, one prime above 16.
    static let dims = [1, 2, 3, 5, 7, 8, 17]
    static let epsilons: [Float] = [1e-5, 1e-3, 0.1]
    static let momenta: [Float?] = [0.1, nil, 1]
    static let masks: [NormGradientMask] = [.all, .input, [.weight, .bias]]

    /// Iterations per property: `NORMCL_PROPERTY_ITERATIONS`, default 5. Each run draws
    /// new cases, most of them new kernel builds: 40 cases took 66 s on 2 shared CPU
    /// cores with PoCL (8 per property: 150 s); without OpenCL, 240 cases take 2 s.
    static var iterations: Int {
        guard let raw = getenv("NORMCL_PROPERTY_ITERATIONS"), let n = Int(String(cString: raw)), n >= 0 else { return 5 }
        return n
    }

    static func index(_ list: some Collection) -> Generator<Int, Shrink.Integer<Int>> {
        Gen.int(in: 0...(list.count - 1))
    }

    static var dim: Generator<Int, Shrink.Integer<Int>> { index(dims) }
    static var seed: Generator<Int, Shrink.Integer<Int>> { Gen.int(in: 1...999) }

    /// `(N, C, *S)` with 0, 1 or 2 spatial dims, from five indices.
    static func shape(_ n: Int, _ c: Int, _ rank: Int, _ s1: Int, _ s2: Int, minimumSpatialDims: Int = 0) -> [Int] {
        let spatialCount = Swift.max(rank, minimumSpatialDims)
        return [dims[n], dims[c]] + [dims[s1], dims[s2]].prefix(spatialCount)
    }

    static var shapeIndices: Generator<(Int, Int, Int, Int, Int), Shrink.Tuple<(Int, Int, Int, Int, Int)>> {
        zip(dim, dim, Gen.int(in: 0...2), dim, dim)
    }

    /// Common parameters: layout, half, affine, eps, momentum, mask, seed.
    static var parameters:
        Generator<(Bool, Bool, Bool, Int, Int, Int, Int), Shrink.Tuple<(Bool, Bool, Bool, Int, Int, Int, Int)>>
    {
        zip(Gen.bool, Gen.bool, Gen.bool, index(epsilons), index(momenta), index(masks), seed)
    }

    static func makeCase(
        _ op: PropertyCase.Op, backward: Bool, shape: [Int], normalizedDims: Int = 0,
        _ p: (Bool, Bool, Bool, Int, Int, Int, Int)
    ) -> PropertyCase {
        PropertyCase(
            op: op, backward: backward, shape: shape, normalizedDims: normalizedDims,
            layout: p.0 ? .channelsLast : .channelsFirst, elementType: p.1 ? .float16 : .float32, affine: p.2,
            eps: epsilons[p.3], momentum: momenta[p.4], mask: backward ? masks[p.5] : .all, seed: UInt64(p.6))
    }

    /// BatchNorm: training, inference, Batch Renorm with two sets of limits; (N, C),
    /// (N, C, L), (N, C, H, W). Training needs N·M > 1: such draws take N = 2.
    static func batchNorm(backward: Bool) -> Generator<PropertyCase, some SendableSequenceType> {
        let modes: [PropertyCase.BatchNormMode] = [
            .training, .inference, .renorm(rmax: 3, dmax: 5), .renorm(rmax: 1.5, dmax: 0.5),
        ]
        return zip(shapeIndices, index(modes), parameters).map { v in
            let (s, m, p) = v
            var shape = Self.shape(s.0, s.1, s.2, s.3, s.4)
            let mode = modes[m]
            if mode != .inference && shape[0] * shape.dropFirst(2).reduce(1, *) == 1 { shape[0] = 2 }
            return makeCase(.batchNorm(mode), backward: backward, shape: shape, p)
        }
    }

    /// LayerNorm and RMSNorm over 1, 2 or 3 trailing dims of a rank-2…4 tensor.
    /// Row-major only (the layout flag is ignored).
    static func rowNorm(backward: Bool) -> Generator<PropertyCase, some SendableSequenceType> {
        zip(shapeIndices, Gen.bool, Gen.int(in: 0...2), parameters).map { v in
            let (s, rms, k, p) = v
            let shape = Self.shape(s.0, s.1, s.2, s.3, s.4)
            var c = makeCase(rms ? .rmsNorm : .layerNorm, backward: backward, shape: shape, normalizedDims: Swift.min(k + 1, shape.count - 1), p)
            c.layout = .channelsFirst
            return c
        }
    }

    /// GroupNorm with G a divisor of C (drawn by index among C's divisors), and
    /// InstanceNorm with input or running statistics; at least one spatial dim, and
    /// more than one value per instance for InstanceNorm's input statistics.
    static func groupNorm(backward: Bool) -> Generator<PropertyCase, some SendableSequenceType> {
        zip(shapeIndices, Gen.int(in: 0...2), Gen.int(in: 0...3), parameters).map { v in
            let (s, kind, g, p) = v
            var shape = Self.shape(s.0, s.1, s.2, s.3, s.4, minimumSpatialDims: 1)
            // InstanceNorm with its input's statistics needs more than one value per instance.
            if kind == 1 && shape.dropFirst(2).reduce(1, *) == 1 { shape[2] = 2 }
            let channels = shape[1]
            let divisors = (1...channels).filter { channels % $0 == 0 }
            let op: PropertyCase.Op =
                switch kind {
                case 0: .groupNorm(groups: divisors[g % divisors.count])
                case 1: .instanceNorm(running: false)
                default: .instanceNorm(running: true)
                }
            return makeCase(op, backward: backward, shape: shape, p)
        }
    }

    /// Switchable Norm: every branch set, training and inference. IN needs spatial dims;
    /// the unbiased estimator needs more than one value per instance, so spatial size 1
    /// takes the biased one (set in the harness); BN training needs N·L > 1.
    static func switchableNorm(backward: Bool) -> Generator<PropertyCase, some SendableSequenceType> {
        let branchSets: [SwitchableNormOptions.Branches] = [.instanceLayerBatch, .instanceLayer, .layerBatch]
        return zip(shapeIndices, index(branchSets), Gen.bool, parameters).map { v in
            let (s, b, inference, p) = v
            let branches = branchSets[b]
            var shape = Self.shape(s.0, s.1, s.2, s.3, s.4, minimumSpatialDims: branches.hasInstance ? 1 : 0)
            if branches.hasBatch && !inference && shape[0] * shape.dropFirst(2).reduce(1, *) == 1 { shape[0] = 2 }
            return makeCase(.switchableNorm(branches, training: !inference), backward: backward, shape: shape, p)
        }
    }
}
