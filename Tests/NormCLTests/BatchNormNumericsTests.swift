import Testing
@testable import NormCL

/// The numerical pitfalls users report for BatchNorm: large-mean data,
/// constant channels at large magnitude, very long reductions, many tiny channels.
@Suite("BatchNorm numerics")
struct BatchNormNumericsTests {
    /// Both training strategies forced, and the plan's own choice.
    static let strategies: [BatchNormPlan.Strategy?] = [
        nil, .fusedPerChannel, .channelItems, .splitReduction(groupsPerChannel: 2), .splitReduction(groupsPerChannel: 37),
    ]

    // MARK: Large mean

    /// `1e4 + N(0,1)`: where `E[x²] − E[x]²` in float32 is off by O(1) or negative.
    /// Odd sizes (scalar loads), multiples of 4 (float4 loads), 1d/2d/3d.
    @Test(
        "1e4 + N(0,1) matches the reference with every strategy",
        arguments: [[8, 3, 32, 32], [64, 16], [2, 5, 1001], [4, 2, 17, 19], [3, 4, 2, 5, 7], [1, 2, 65_540]])
    func largeMean(shape: [Int]) throws {
        let runtime = try #require(sharedRuntime)
        let harness = BatchNormHarness(shape: shape, offset: 1e4, seed: UInt64(shape.reduce(1, *)) &+ 17)
        for strategy in Self.strategies {
            // The harness's tolerances: 1e-6 relative on invstd and 2e-6·(1 + |y|) on
            // outputs, with no allowance for the 1e4 offset (statistics are pilot-relative).
            try harness.check(on: .openCL(runtime), training: true, strategy: strategy)
        }
    }

    /// A negative offset and a large mean with a small spread: `-3e4 + N(0,1)` and
    /// `1e4 + 0.01·N(0,1)` (var 1e-4 against mean² 1e8, a 1e12 cancellation for the naïve formula).
    @Test("negative offsets and small spreads around a large mean")
    func largeMeanSmallSpread() throws {
        let runtime = try #require(sharedRuntime)
        for (offset, scale) in [(-3e4, 1.0), (1e4, 0.01)] {
            let harness = BatchNormHarness(shape: [4, 3, 33, 33], offset: offset, scale: scale, seed: 4242)
            for strategy in Self.strategies {
                try harness.check(on: .openCL(runtime), training: true, strategy: strategy)
            }
        }
    }

    /// Shows what the large-mean tests guard against: the naïve one-pass formula in
    /// float32 gets the variance of `1e4 + N(0,1)` badly wrong (the premise, checked
    /// with `#require`), while our kernels' variance agrees with float64.
    @Test("the naïve float32 E[x²] − E[x]² fails on 1e4 + N(0,1); ours does not")
    func naiveFormulaWouldFail() throws {
        let runtime = try #require(sharedRuntime)
        let shape = [16, 4, 32, 32]
        let harness = BatchNormHarness(shape: shape, offset: 1e4, seed: 99)
        let (batch, channels, spatial) = (shape[0], shape[1], shape[2] * shape[3])
        let n = batch * spatial

        // Float64 two-pass statistics, computed here independently of the library.
        var exactVariance = [Double](repeating: 0, count: channels)
        var naiveVariance = [Float](repeating: 0, count: channels)
        for c in 0..<channels {
            var values: [Float] = []
            for b in 0..<batch { values += harness.x[((b * channels + c) * spatial)..<((b * channels + c + 1) * spatial)] }
            let mean = values.reduce(0.0) { $0 + Double($1) } / Double(n)
            exactVariance[c] = values.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / Double(n)
            // The naïve formula, float32 throughout.
            var sum: Float = 0, sumOfSquares: Float = 0
            for v in values {
                sum += v
                sumOfSquares += v * v
            }
            let naiveMean = sum / Float(n)
            naiveVariance[c] = sumOfSquares / Float(n) - naiveMean * naiveMean
        }
        let naiveWorst = (0..<channels).map { c in
            Swift.abs(Double(naiveVariance[c]) - exactVariance[c]) / exactVariance[c]
        }.max()!
        // Premise: the data defeats the naïve formula (relative error above 50%, often a
        // negative "variance"). Even a correctly rounded E[x²] ≈ 1e8 has an ulp of 8.
        try #require(naiveWorst > 0.5, "the data should defeat the naïve float32 formula (its error is only \(naiveWorst))")

        for strategy: BatchNormPlan.Strategy in [.fusedPerChannel, .channelItems, .splitReduction(groupsPerChannel: 8)] {
            let result = try harness.run(on: .openCL(runtime), training: true, strategy: strategy)
            let invstd = try #require(result.saveInvstd)
            for c in 0..<channels {
                let ours = 1 / (Double(invstd[c]) * Double(invstd[c])) - Double(harness.eps)
                // 2e-6 relative: the harness's invstd tolerance (1e-6) carried to the variance
                // (var ∝ invstd⁻²); the naïve formula is off by more than 5e-1.
                #expect(
                    Swift.abs(ours - exactVariance[c]) <= 2e-6 * exactVariance[c],
                    "channel \(c) \(strategy): variance \(ours) vs float64 \(exactVariance[c]) (naïve float32: \(naiveVariance[c]))")
            }
        }
    }

    // MARK: Constant channels

    /// Channels whose every element is the same large value: the exact answer is
    /// `y = β` (x − mean = 0) and invstd = 1/sqrt(eps). Any error in the mean, even one
    /// float32 ulp of the constant (~1e-3 at 12345.678), is multiplied by
    /// invstd ≈ 316 into an offset ≥ 0.3, so the outputs must be essentially exact.
    @Test(
        "constant channels at large magnitude normalise to β with invstd = 1/sqrt(eps)",
        arguments: [[4, 4, 5, 7], [2, 4, 20_001], [64, 4], [3, 4, 16, 16]])
    func constantChannels(shape: [Int]) throws {
        // Channels 0...2 constant; channel 3 is N(0,1), to show its neighbours do not disturb it
        // (large-mean random data has tests of its own above).
        let constants: [Float] = [12345.678, -3e4, 1e6]
        var harness = BatchNormHarness(shape: shape, seed: 7)
        let channels = shape[1], spatial = shape.dropFirst(2).reduce(1, *)
        for i in harness.x.indices {
            let c = (i / spatial) % channels
            if c < constants.count { harness.x[i] = constants[c] }
        }
        let eps = harness.eps
        let expectedInvstd = 1 / Double(eps).squareRoot()
        var runs: [(String, HarnessResult)] = [("reference", try harness.run(on: .reference, training: true))]
        if let runtime = sharedRuntime {
            for strategy in Self.strategies {
                runs.append(("\(strategy.map { "\($0)" } ?? "auto")", try harness.run(on: .openCL(runtime), training: true, strategy: strategy)))
            }
            // The non-constant channel (and the rest) still match the reference.
            try harness.check(on: .openCL(runtime), training: true)
        } else {
            Issue.record("no OpenCL device: only the reference was checked")
        }
        let bias = try #require(harness.bias)
        for (label, result) in runs {
            let saveMean = try #require(result.saveMean)
            let saveInvstd = try #require(result.saveInvstd)
            let runningVar = try #require(result.runningVar)
            for (c, constant) in constants.enumerated() {
                // 1e-4 absolute: room for rounding β itself, none for a mean error (see above).
                let worst = result.output.indices.filter { ($0 / spatial) % channels == c }
                    .map { Swift.abs(Double(result.output[$0]) - Double(bias[c])) }.max()!
                #expect(worst < 1e-4, "\(label) \(shape) channel \(c) = \(constant): |y − β| up to \(worst)")
                #expect(Swift.abs(saveMean[c] - constant) <= constant.ulp, "\(label) channel \(c): mean \(saveMean[c]) vs \(constant)")
                #expect(saveInvstd[c].isFinite)
                // 1e-6 relative: one float32 rounding of 1/sqrt(eps).
                #expect(
                    Swift.abs(Double(saveInvstd[c]) - expectedInvstd) <= 1e-6 * expectedInvstd,
                    "\(label) channel \(c): invstd \(saveInvstd[c]) vs 1/sqrt(eps) = \(expectedInvstd)")
                // Unbiased batch variance 0: running_var = (1 − m)·running_var exactly, to float rounding.
                let expectedRunningVar = 0.9 * Double(harness.runningVar![c])
                #expect(
                    Swift.abs(Double(runningVar[c]) - expectedRunningVar) <= 1e-6 * expectedRunningVar,
                    "\(label) channel \(c): running var \(runningVar[c]) vs \(expectedRunningVar)")
            }
        }
    }

    // MARK: Long reductions

    /// Over 4M values per channel (4,194,308 here, in four batch slices of an odd
    /// length so loads are scalar) with a large mean: partial moments of many blocks
    /// and work-groups are merged; the count stays exact in float32 (< 2^24).
    @Test("a reduction of 4,194,308 values per channel, 1e4 + noise, scalar loads")
    func longReductionScalar() throws {
        let runtime = try #require(sharedRuntime)
        try Self.checkLong(shape: [4, 1, 1_048_577], offset: 1e4, seed: 31, on: runtime, strategies: [nil, .fusedPerChannel])
    }

    /// 4,194,304 values in each of 2 channels with float4 loads: 8.4M elements in all.
    @Test("a reduction of 4,194,304 values per channel over two channels, float4 loads")
    func longReductionVector() throws {
        let runtime = try #require(sharedRuntime)
        try Self.checkLong(shape: [2, 2, 2_097_152], offset: -2e3, seed: 37, on: runtime, strategies: [nil])
    }

    /// Millions of values make the harness's generic generator and per-element
    /// comparison too slow in a debug build (~25 s per run), so this draws cheap
    /// approximately normal noise (Irwin–Hall: the sum of four uniforms, variance 1
    /// after scaling) and compares with the harness's tolerances in a plain loop.
    static func checkLong(
        shape: [Int], offset: Double, seed: UInt64, on runtime: OpenCLRuntime, strategies: [BatchNormPlan.Strategy?]
    ) throws {
        let channels = shape[1]
        var harness = BatchNormHarness(shape: [2, channels], seed: seed)  // parameters only
        harness.shape = shape
        var rng = SeededGenerator(seed: seed)
        let count = shape.reduce(1, *)
        harness.x = [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            for i in 0..<count {
                let r = rng.next()
                let sum = Double(r & 0xFFFF) + Double((r >> 16) & 0xFFFF) + Double((r >> 32) & 0xFFFF) + Double(r >> 48)
                // Four uniforms on [0, 65536): mean 2·65536, variance 4·65536²/12.
                buffer[i] = Float(offset + (sum - 131_072) / 37_837.2)
            }
            initialized = count
        }
        let expected = try harness.run(on: .reference, training: true)
        let e = try #require(expected.saveMean), eInvstd = try #require(expected.saveInvstd)
        for strategy in strategies {
            let label = "\(shape) strategy=\(strategy.map { "\($0)" } ?? "auto")"
            let actual = try harness.run(on: .openCL(runtime), training: true, strategy: strategy)
            // The harness's tolerances (see BatchNormHarness.check).
            expectClose(actual.saveMean ?? [], e, "saveMean \(label)") { c in
                2e-6 / Double(eInvstd[c]) + 2 * 0x1p-24 * Swift.abs(Double(e[c]))
            }
            expectClose(actual.saveInvstd ?? [], eInvstd, "saveInvstd \(label)", relative: 1e-6)
            expectClose(actual.runningVar ?? [], expected.runningVar ?? [], "runningVar \(label)", relative: 2e-6, absolute: 1e-7)
            var mismatches = 0
            var first = ""
            for i in 0..<count {
                let y = Double(expected.output[i])
                let tolerance = 2e-6 * (1 + Swift.abs(y))
                let a = Double(actual.output[i])
                if !(Swift.abs(a - y) <= tolerance) {
                    if mismatches == 0 { first = "element \(i): \(a) vs reference \(y) (tolerance \(tolerance))" }
                    mismatches += 1
                }
            }
            #expect(mismatches == 0, "output \(label): \(mismatches) mismatches, first \(first)")
        }
    }

    // MARK: Many tiny channels

    /// Thousands of channels with 2–6 values each: most work-items of a reduction
    /// work-group (and, split, most work-groups) see no data at all.
    @Test("many channels with tiny reductions", arguments: [[2, 4096], [3, 4096], [2, 4096, 1, 1], [2, 1000, 3], [6, 2049]])
    func manyTinyChannels(shape: [Int]) throws {
        let runtime = try #require(sharedRuntime)
        let harness = BatchNormHarness(shape: shape, offset: 5, scale: 2, seed: UInt64(shape.reduce(1, +)))
        for strategy in Self.strategies {
            try harness.check(on: .openCL(runtime), training: true, strategy: strategy)
        }
    }

    /// Two values per channel that differ by one float32 ulp at 1e4: the variance is
    /// (ulp/2)², far below eps, so invstd ≈ 1/sqrt(eps) and y = ±ulp/2·invstd·γ + β.
    @Test("two values one ulp apart at a large magnitude")
    func oneUlpApart() throws {
        let runtime = try #require(sharedRuntime)
        let a: Float = 10_000, b = a.nextUp
        var harness = BatchNormHarness(shape: [2, 3], seed: 5)
        harness.x = [a, -a, 1, b, -b.nextUp, 2]
        for strategy in Self.strategies {
            try harness.check(on: .openCL(runtime), training: true, strategy: strategy)
        }
    }
}

private typealias HarnessResult = BatchNormHarness.Result

/// Statistics are taken relative to a per-channel pilot value; an outlier must not
/// become that pilot, nor leak NaN or Inf into other channels.
@Suite("BatchNorm pilot and non-finite values")
struct BatchNormPilotTests {
    /// Outliers of 1e4 at the positions the pilot is sampled from (first element, and
    /// the 1/4 mark too). With a pilot of 1e4, `x − pilot` and `mean − pilot` would
    /// round at ulp(1e4) and miss the harness's 2e-6 tolerance by orders of magnitude.
    @Test("outliers where the pilot is sampled", arguments: [[64, 3, 9, 9], [512, 16], [4, 2, 4099]])
    func outlierPilot(shape: [Int]) throws {
        let runtime = try #require(sharedRuntime)
        var harness = BatchNormHarness(shape: shape, seed: 77)
        let channels = shape[1], spatial = shape.dropFirst(2).reduce(1, *), perChannel = shape[0] * spatial
        for c in 0..<channels {
            // Positions 0 and (perChannel − 1)/4 of channel c in its (n, m) order.
            for v in [0, (perChannel - 1) / 4] {
                let n = v / spatial, m = v % spatial
                harness.x[(n * channels + c) * spatial + m] = c % 2 == 0 ? 1e4 : -1e4
            }
        }
        var strategies: [BatchNormPlan.Strategy?] = [nil, .fusedPerChannel, .channelItems, .splitReduction(groupsPerChannel: 5)]
        if spatial == 1 { strategies.append(.columns) }
        for strategy in strategies {
            try harness.check(on: .openCL(runtime), training: true, strategy: strategy)
        }
    }

    /// A NaN in one channel and an Inf in another make those channels NaN (as in the
    /// reference); every other channel is unaffected.
    @Test("NaN and Inf stay in their channel", arguments: [[6, 5, 7, 7], [40, 8]])
    func nonFiniteStayInChannel(shape: [Int]) throws {
        let runtime = try #require(sharedRuntime)
        var harness = BatchNormHarness(shape: shape, seed: 5)
        let channels = shape[1], spatial = shape.dropFirst(2).reduce(1, *)
        harness.x[(2 * channels + 1) * spatial] = .nan  // channel 1, n = 2
        harness.x[(3 * channels + 3) * spatial] = .infinity  // channel 3, n = 3
        var strategies: [BatchNormPlan.Strategy?] = [nil, .fusedPerChannel, .channelItems, .splitReduction(groupsPerChannel: 3)]
        if spatial == 1 { strategies.append(.columns) }
        let expected = try harness.run(on: .reference, training: true)
        for strategy in strategies {
            let actual = try harness.run(on: .openCL(runtime), training: true, strategy: strategy)
            for i in actual.output.indices {
                let c = (i / spatial) % channels
                if c == 1 || c == 3 {
                    #expect(actual.output[i].isNaN, "element \(i) of channel \(c) should be NaN (\(strategy.map { "\($0)" } ?? "auto"))")
                } else {
                    let e = Double(expected.output[i])
                    #expect(
                        Swift.abs(Double(actual.output[i]) - e) <= 2e-6 * (1 + Swift.abs(e)),
                        "element \(i) of clean channel \(c): \(actual.output[i]) vs \(e)")
                }
            }
            let invstd = try #require(actual.saveInvstd)
            for c in 0..<channels where c != 1 && c != 3 { #expect(invstd[c].isFinite) }
            // The poisoned channels' statistics are the reference's: mean NaN and +Inf (a
            // float64 sum over +Inf), invstd NaN.
            let mean = try #require(actual.saveMean), expectedMean = try #require(expected.saveMean)
            #expect(mean[1].isNaN && expectedMean[1].isNaN, "NaN channel mean \(mean[1])")
            #expect(mean[3] == .infinity && expectedMean[3] == .infinity, "Inf channel mean \(mean[3])")
            #expect(invstd[1].isNaN && invstd[3].isNaN)
        }
    }
}
