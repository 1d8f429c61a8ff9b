import NormCL

#if canImport(Glibc)
import Glibc
#endif

/// `normcl-bench --tune`: measures launch parameters on the device it runs on and
/// writes the device's entry of NormCL's tuning database
/// (`Sources/NormCL/Runtime/TuningDatabase.swift`).
///
/// The search is one pass of coordinate descent. It starts from the device's current
/// tuning (its database entry, else its kind's defaults). For each parameter in turn it
/// tries every candidate value with the others held, measured beside the current best
/// in the order best, candidate, candidate, best, and keeps a candidate only when it
/// lowers the score by at least 3%, so that noise, drift and order do not choose. The score is the
/// geometric mean, over a fixed set of suite cases (every op family, both layouts,
/// forward and backward), of each case's median host time per call. Each candidate runs
/// on a fresh runtime made with that tuning, so its programs are built for it. A final
/// check compares the starting and the chosen tuning the same way, two rounds; the
/// entry records both scores from that check.
struct Tuner {
    let device: OpenCLDevice
    let iterations: Int
    let warmup: Int
    /// Median host milliseconds per call of a case on a backend.
    let measure: (BenchmarkCase, Backend) throws -> Double
    let log: (String) -> Void

    /// The cases the score is taken over: small and mid-sized, so that launch geometry
    /// matters, across every op family and both layouts.
    static func cases(quick: Bool) -> [BenchmarkCase] {
        let channels = quick ? [4, 32, 14, 14] : [8, 128, 28, 28]
        let rows = quick ? [256, 1024] : [2048, 1024]
        let groups = quick ? [2, 64, 16, 16] : [4, 320, 32, 32]
        return [
            .batchNorm(training: true, shape: channels, layout: .channelsFirst, elementType: .float32),
            .batchNorm(training: true, shape: channels, layout: .channelsLast, elementType: .float32),
            .batchNormBackward(training: true, shape: channels, layout: .channelsFirst, elementType: .float32),
            .batchNormBackward(training: true, shape: channels, layout: .channelsLast, elementType: .float32),
            .layerNorm(shape: rows, elementType: .float32),
            .layerNormBackward(shape: rows, elementType: .float32),
            .groupNorm(shape: groups, groups: 32, layout: .channelsFirst, elementType: .float32),
            .groupNorm(shape: groups, groups: 32, layout: .channelsLast, elementType: .float32),
            .groupNormBackward(shape: groups, groups: 32, layout: .channelsLast, elementType: .float32),
        ]
    }

    /// One tunable parameter: its name (as `NORMCL_TUNING` spells it), its candidate
    /// values, and how to set it.
    struct Parameter {
        let name: String
        let candidates: [Int]
        let value: (DeviceTuning) -> Int
        let set: (inout DeviceTuning, Int) -> Void
    }

    /// The parameters in the order they are tuned: the access pattern first (it changes
    /// which sizes suit), then work-group sizes, occupancy, the column tile and the
    /// split threshold. Work-group sizes stop at the device's maximum.
    var parameters: [Parameter] {
        let groupSizes = [8, 16, 32, 64, 128, 256, 512].filter { $0 <= device.maxWorkGroupSize }
        return [
            Parameter(
                name: "chunkedAccess", candidates: [1, 0], value: { $0.chunkedAccess ? 1 : 0 },
                set: { $0.chunkedAccess = $1 != 0 }),
            Parameter(
                name: "reductionWorkGroupSize", candidates: groupSizes, value: { $0.reductionWorkGroupSize },
                set: { $0.reductionWorkGroupSize = $1 }),
            Parameter(
                name: "elementwiseWorkGroupSize", candidates: groupSizes, value: { $0.elementwiseWorkGroupSize },
                set: { $0.elementwiseWorkGroupSize = $1 }),
            Parameter(
                name: "workGroupsPerComputeUnit", candidates: [1, 2, 4, 8, 16], value: { $0.workGroupsPerComputeUnit },
                set: { $0.workGroupsPerComputeUnit = $1 }),
            Parameter(
                name: "columnTile", candidates: [1, 2, 4, 8, 16, 32], value: { $0.columnTile }, set: { $0.columnTile = $1 }
            ),
            Parameter(
                name: "vectorWidth", candidates: [4, 8, 16], value: { $0.vectorWidth }, set: { $0.vectorWidth = $1 }),
            Parameter(
                name: "streamingStoreBytes", candidates: [0, 8 << 20, 32 << 20, 128 << 20],
                value: { $0.streamingStoreBytes }, set: { $0.streamingStoreBytes = $1 }),
            Parameter(
                name: "minimumVectorsPerWorkGroup", candidates: [1024, 2048, 4096, 8192, 16384],
                value: { $0.minimumVectorsPerWorkGroup }, set: { $0.minimumVectorsPerWorkGroup = $1 }),
        ]
    }

    /// The geometric mean of the cases' median host times with `tuning`, in ms.
    func score(_ tuning: DeviceTuning, cases: [BenchmarkCase]) throws -> Double {
        let runtime = try OpenCLRuntime(device: device, tuning: tuning)
        var logSum = 0.0
        for c in cases { logSum += Glibc.log(try measure(c, .openCL(runtime))) }
        return Glibc.exp(logSum / Double(cases.count))
    }

    struct Outcome {
        let start: DeviceTuning
        /// What the search kept, before the confirmation.
        let searched: DeviceTuning
        let chosen: DeviceTuning
        /// Medians over the final alternating rounds, in ms.
        let startScore: Double
        let chosenScore: Double
    }

    /// `a`'s and `b`'s scores, measured in rounds of a, b, b, a so that both see the same
    /// machine and neither always goes first: each is the mean of its two scores per
    /// round, the median over rounds. Lone scores drift by more than the 3% asked of a
    /// candidate (PoCL here: a start of 1.25 ms scored 0.75–1.3 ms over one search), and
    /// in a, b pairs the second scored 5–8% lower whichever it was.
    func paired(_ a: DeviceTuning, _ b: DeviceTuning, cases: [BenchmarkCase], rounds: Int) throws -> (Double, Double) {
        var scoresA: [Double] = [], scoresB: [Double] = []
        for _ in 0..<rounds {
            let a1 = try score(a, cases: cases), b1 = try score(b, cases: cases)
            let b2 = try score(b, cases: cases), a2 = try score(a, cases: cases)
            scoresA.append((a1 + a2) / 2)
            scoresB.append((b1 + b2) / 2)
        }
        return (TimingSummary(scoresA).median, TimingSummary(scoresB).median)
    }

    func run(from start: DeviceTuning, cases: [BenchmarkCase]) throws -> Outcome {
        var best = start
        log("tune: start \(describe(start))")
        for parameter in parameters {
            for candidate in parameter.candidates where candidate != parameter.value(best) {
                var trial = best
                parameter.set(&trial, candidate)
                let (bestScore, trialScore) = try paired(best, trial, cases: cases, rounds: 1)
                let kept = trialScore < bestScore * 0.97
                log(
                    "tune: \(parameter.name)=\(candidate): \(Report.format(trialScore)) ms against \(Report.format(bestScore)) ms\(kept ? "  (kept)" : "")")
                if kept { best = trial }
            }
        }
        // Each step compared two neighbours; compare the end with the start, alternating.
        let (startScore, bestScore) = try paired(start, best, cases: cases, rounds: 2)
        log("tune: confirmation, start \(Report.format(startScore)) ms, chosen \(Report.format(bestScore)) ms")
        let chosen = best != start && bestScore < startScore * 0.97 ? best : start
        return Outcome(start: start, searched: best, chosen: chosen, startScore: startScore, chosenScore: bestScore)
    }

    func describe(_ t: DeviceTuning) -> String {
        parameters.map { "\($0.name)=\($0.value(t))" }.joined(separator: ",")
    }

    /// The database entry for this device, as Swift source (the form of
    /// `TuningDatabase.entries`).
    func entry(_ outcome: Outcome, date: String) -> String {
        let t = outcome.chosen
        let (chosenScore, startScore) = (Report.format(outcome.chosenScore), Report.format(outcome.startScore))
        let gain =
            outcome.searched == outcome.start
            ? "no candidate beat the starting values by 3% (\(startScore) ms)"
            : outcome.chosen == outcome.start
                ? "the search's pick (\(describe(outcome.searched))) did not hold up when alternated with these values: \(chosenScore) vs \(startScore) ms"
                : "geometric mean \(chosenScore) ms vs \(startScore) ms before"
        return """
                    Entry(
                        deviceName: \(quoted(device.name)), platformName: \(quoted(device.platformName)),
                        driverVersion: \(quoted(device.driverVersion)),
                        tuning: DeviceTuning(
                            reductionWorkGroupSize: \(t.reductionWorkGroupSize), elementwiseWorkGroupSize: \(t.elementwiseWorkGroupSize), workGroupsPerComputeUnit: \(t.workGroupsPerComputeUnit),
                            minimumVectorsPerWorkGroup: \(t.minimumVectorsPerWorkGroup), chunkedAccess: \(t.chunkedAccess), columnTile: \(t.columnTile), vectorWidth: \(t.vectorWidth),
                            streamingStoreBytes: \(t.streamingStoreBytes)),
                        measured: \(quoted("normcl-bench --tune, \(date): \(gain)"))),

            """
    }

    private func quoted(_ text: String) -> String {
        "\"" + text.replacingAll("\\", with: "\\\\").replacingAll("\"", with: "\\\"") + "\""
    }

    /// `database` (TuningDatabase.swift's text) with `entry` in place of the entry for
    /// this device and platform, or before the end marker when there is none.
    func updating(_ database: String, with entry: String) throws -> String {
        var lines = database.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard let end = lines.firstIndex(where: { $0.contains("// END OF ENTRIES") }) else {
            throw BenchmarkError.cannotWrite("the tuning database has no '// END OF ENTRIES' line")
        }
        let nameLine = "deviceName: \(quoted(device.name)), platformName: \(quoted(device.platformName)),"
        var insertAt = end
        if let name = lines.firstIndex(where: { $0.contains(nameLine) }), name > 0, lines[name - 1].contains("Entry(") {
            // The old entry runs from its `Entry(` line to the line ending in `),` at its indentation.
            let start = name - 1
            let indent = lines[start].prefix { $0 == " " }
            guard let close = lines[start...].firstIndex(where: { $0.hasPrefix(indent) && $0.hasSuffix("),") && $0.contains("measured:") })
            else { throw BenchmarkError.cannotWrite("cannot find the end of this device's entry") }
            lines.removeSubrange(start...close)
            insertAt = start
        }
        lines.insert(contentsOf: entry.split(separator: "\n").map(String.init), at: insertAt)
        return lines.joined(separator: "\n")
    }
}

extension String {
    fileprivate func replacingAll(_ target: Character, with replacement: String) -> String {
        var result = ""
        for character in self { if character == target { result += replacement } else { result.append(character) } }
        return result
    }
}

/// Today's date in UTC, `YYYY-MM-DD`.
func todayUTC() -> String {
    var now = time(nil)
    var parts = tm()
    gmtime_r(&now, &parts)
    var buffer = [CChar](repeating: 0, count: 16)
    let length = strftime(&buffer, buffer.count, "%Y-%m-%d", &parts)
    return String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
