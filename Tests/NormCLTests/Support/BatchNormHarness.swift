import Testing
@testable import NormCL

/// Runs BatchNorm on a backend and on the reference with the same data, and checks
/// every output against the reference within stated tolerances.
struct BatchNormHarness: ChannelDataHolder, ChannelsAndSpatial {
    var shape: [Int]
    /// How `x` is laid out in memory (shape stays `(N, C, *S)`).
    var layout: TensorLayout = .channelsFirst
    /// x, γ, β and the running statistics.
    var data: ChannelData
    var momentum: Float? = 0.1
    var eps: Float = 1e-5
    /// Storage of x and y (statistics and parameters stay float32).
    var elementType: ElementType = .float32
    /// Batch Renorm's limits (training only; needs running statistics).
    var renorm: BatchRenormLimits?


    /// Random data `offset + scale·N(0,1)`, random affine parameters and running statistics.
    init(shape: [Int], offset: Double = 0, scale: Double = 1, affine: Bool = true, tracking: Bool = true, seed: UInt64 = 1) {
        self.shape = shape
        data = ChannelData(shape: shape, offset: offset, scale: scale, affine: affine, tracking: tracking, seed: seed)
    }

    /// The reference's arrays (with renormR/renormD), plus numBatchesTracked.
    typealias Result = ReadBack<ReferenceBatchNorm.Result>

    func run(on backend: Backend, training: Bool, strategy: BatchNormPlan.Strategy? = nil) throws -> Result {
        let input = try Tensor(data.x, shape: shape, layout: layout, elementType: elementType, on: backend)
        let w = try data.weight.map { try Tensor($0, on: backend) }
        let b = try data.bias.map { try Tensor($0, on: backend) }
        var running = try runningStatistics(data.runningMean, data.runningVar, on: backend)
        let out = try batchNorm(
            input, weight: w, bias: b, runningStatistics: &running, training: training,
            momentum: momentum, eps: eps, strategy: strategy, renorm: training ? renorm : nil)
        #expect(out.output.elementType == elementType)
        return Result(
            arrays: ReferenceBatchNorm.Result(
                output: try out.output.toArray(), saveMean: try out.saveMean?.toArray(), saveInvstd: try out.saveInvstd?.toArray(),
                runningMean: try running?.mean.toArray(), runningVar: try running?.variance.toArray(),
                renormR: try out.renormR?.toArray(), renormD: try out.renormD?.toArray()),
            numBatchesTracked: running?.numBatchesTracked)
    }

    /// Compares `backend` (with `strategy`) against the reference.
    ///
    /// Tolerances, and why they can be this tight:
    /// - every statistic is accumulated relative to a per-channel pilot value, so
    ///   float32 rounds quantities of the size of the data's spread, never of its
    ///   offset: invstd agrees with float64 to 1e-6 relative (about 17 float32 ulps),
    ///   also for `1e4 + N(0,1)`, and the variance, whose relative error is twice
    ///   invstd's, to 2e-6 (reached when a few outliers dominate a channel);
    /// - outputs are formed as `((x − pilot) − (mean − pilot))·scale + β` on every
    ///   path (inference: `(x − running_mean)·scale + β`), so they
    ///   carry no error proportional to |mean| either: `2e-6·(1 + |y|)` covers the
    ///   invstd error times |x̂| plus the final multiply-add. (Formed as
    ///   `(x − mean)·scale` with a float32 mean, 1e4-offset data would be off by
    ///   ~5e-4; with the naïve `E[x²] − E[x]²`, by O(1) or NaN.)
    /// - the mean itself: `2e-6` of the spread (1/invstd) plus 2 ulps of its own value.
    ///
    /// `pilotDistance` (in data units, per channel) is for data built so that the pilot
    /// is an outlier: the float32 `mean − pilot` then rounds at that magnitude, whatever
    /// the formula, so the mean and output bounds widen by 4 ulps of `|mean − pilot|`;
    /// and the sums of squares hold terms far above σ², so the relative bounds widen to
    /// 4e-6 on invstd and outputs and 8e-6 on the variance.
    ///
    /// Half storage: both sides read the same half inputs, so statistics keep their
    /// float32 bounds; each output is rounded to half once more, and the float32 and
    /// float64 results may round to neighbouring halves: 2^-10·|y| on top. Batch Renorm
    /// multiplies the normalised value by r ≤ rmax and adds γ·d, whose error is the
    /// mean's over σ: the output bound doubles.
    func check(
        on backend: Backend, training: Bool, strategy: BatchNormPlan.Strategy? = nil, pilotDistance: [Double]? = nil,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let expected = try run(on: .reference, training: training)
        let actual = try run(on: backend, training: training, strategy: strategy)
        let label = "\(shape) \(layout) \(backend.name) training=\(training) strategy=\(strategy.map { "\($0)" } ?? "auto")"
        let relative = (pilotDistance == nil ? 2e-6 : 4e-6) * (renorm == nil ? 1 : 2)
        let halfRounding = elementType == .float16 ? 0x1p-10 : 0
        // 4 ulps of |mean − pilot|, in data units, per channel (0 unless pilotDistance is given).
        let slack = (0..<channels).map { 4 * 0x1p-24 * (pilotDistance?[$0] ?? 0) }
        func channel(ofElement i: Int) -> Int { layout == .channelsFirst ? (i / spatial) % channels : i % channels }
        expectClose(actual.output, expected.output, "output \(label)", sourceLocation: sourceLocation) { i in
            let c = channel(ofElement: i)
            let scale = Double(expected.saveInvstd?[c] ?? 1) * Swift.abs(Double(data.weight?[c] ?? 1))
            return relative * (1 + Swift.abs(Double(expected.output[i]))) + slack[c] * scale
                + halfRounding * Swift.abs(Double(expected.output[i]))
        }
        if elementType == .float16 {
            // Neighbouring halves only where float32 and float64 straddle a rounding
            // boundary: rare (float32 error ~1e-6 of a half ulp ~1e-3). Round-to-zero
            // stores, or arithmetic in half, would differ on a large share.
            let differing = zip(actual.output, expected.output).filter { $0 != $1 }.count
            #expect(differing <= 2 + actual.output.count / 100, "\(differing) of \(actual.output.count) halves differ \(label)")
        }
        if training {
            // The mean is compared on the scale of the data's spread (1/invstd), plus its own ulp.
            if let m = actual.saveMean, let e = expected.saveMean, let s = expected.saveInvstd {
                expectClose(m, e, "saveMean \(label)", sourceLocation: sourceLocation) { c in
                    2e-6 / Double(s[c]) + 2 * 0x1p-24 * Swift.abs(Double(e[c])) + slack[c]
                }
            } else {
                Issue.record("saveMean missing \(label)", sourceLocation: sourceLocation)
            }
            if let s = actual.saveInvstd, let e = expected.saveInvstd {
                expectClose(s, e, "saveInvstd \(label)", relative: pilotDistance == nil ? 1e-6 : 4e-6)
            } else {
                Issue.record("saveInvstd missing \(label)", sourceLocation: sourceLocation)
            }
        } else {
            #expect(actual.saveMean == nil && actual.saveInvstd == nil, "inference returns no saved statistics")
        }
        if training, renorm != nil {
            if let r = actual.renormR, let er = expected.renormR, let d = actual.renormD, let ed = expected.renormD {
                expectClose(r, er, "renorm r \(label)", relative: 2e-6)
                expectClose(d, ed, "renorm d \(label)", relative: 2e-6, absolute: 4e-6)
            } else {
                Issue.record("renorm r/d missing \(label)", sourceLocation: sourceLocation)
            }
        } else {
            #expect(actual.renormR == nil && actual.renormD == nil, "r and d only for Batch Renorm")
        }
        if let e = expected.runningMean, let a = actual.runningMean, let s = expected.saveInvstd {
            expectClose(a, e, "runningMean \(label)", sourceLocation: sourceLocation) { c in
                2e-6 / Double(s[c]) + 4 * 0x1p-24 * (Swift.abs(Double(e[c])) + 1) + slack[c]
            }
            expectClose(actual.runningVar ?? [], expected.runningVar ?? [], "runningVar \(label)", relative: 2 * relative, absolute: 1e-7)
            #expect(actual.numBatchesTracked == expected.numBatchesTracked)
        } else {
            #expect(actual.runningMean == expected.runningMean, "running statistics presence \(label)")
        }
    }
}
