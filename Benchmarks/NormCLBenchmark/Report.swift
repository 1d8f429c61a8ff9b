import NormCL

#if canImport(Glibc)
import Glibc
#endif

/// The table on stdout and the JSON file.
enum Report {
    /// One row per case; `peerName` heads the peer column ("× PyTorch").
    static func table(_ results: [CaseResult], peerName: String = "PyTorch") -> String {
        var rows = [[
            "case", "kernels", "kernel ms", "min ms", "host ms", "enqueue ms", "p90/p10", "first ms", "warm first ms", "built", "GB/s", "copy GB/s",
            "% copy", "× ref", "× \(peerName)", "\(peerName) ms", "p90/p10", "check",
        ]]
        for r in results {
            rows.append([
                r.name, String(r.launches),
                format(r.kernel?.median), format(r.kernel?.minimum), format(r.host.median), format(r.enqueue.median), spread(r.host),
                format(r.firstCallMilliseconds, digits: 1),
                format(r.warmFirstCallMilliseconds, digits: 1), r.programs.map { String($0.total) } ?? "–",
                format(r.gigabytesPerSecond, digits: 1),
                format(r.copyGigabytesPerSecond, digits: 1),
                r.fractionOfCopy.map { format(100 * $0, digits: 0) + "%" } ?? "–",
                r.speedupOverReference.map { format($0, digits: 1) + "×" } ?? "–",
                r.speedupOverPeer.map { format($0, digits: 2) + "×" } ?? "–",
                format(r.peerMilliseconds), r.peer.map(spread) ?? "–",
                r.matchesReference.map { $0 ? "ok" : "MISMATCH" } ?? "–",
            ])
        }
        let widths = rows[0].indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
        return rows.enumerated().map { index, row in
            let line = row.enumerated().map { column, cell in
                column == 0 ? cell.padding(to: widths[column]) : cell.leftPadding(to: widths[column])
            }.joined(separator: "  ")
            return index == 0 ? line + "\n" + String(repeating: "-", count: line.count) : line
        }.joined(separator: "\n")
    }

    /// A spread column: p90/p10, with "!" when it says the machine was busy.
    private static func spread(_ timing: TimingSummary) -> String {
        format(timing.spread, digits: 2) + (timing.looksBusy ? "!" : "")
    }

    /// The line after the table when any case's spread says other load took the cores
    /// (``TimingSummary/looksBusy``): its medians, and the × PyTorch ratio, may then say
    /// more about the machine than about the code.
    static func busyWarning(_ results: [CaseResult]) -> String? {
        let host = results.filter(\.host.looksBusy).map(\.name)
        let peer = results.filter { $0.peer?.looksBusy == true }.map(\.name)
        guard !host.isEmpty || !peer.isEmpty else { return nil }
        var text = "WARNING: the machine looked busy (\(TimingSummary.busyRule)) on \(Set(host + peer).count) of \(results.count) cases;"
        text += " rerun on an idle machine before comparing them"
        if !host.isEmpty { text += "\n  NormCL host times: " + host.joined(separator: "; ") }
        if !peer.isEmpty { text += "\n  peer times: " + peer.joined(separator: "; ") }
        return text
    }

    /// `text` as a JSON string literal.
    static func jsonString(_ text: String) -> String {
        var escaped = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": escaped += "\\\""
            case "\\": escaped += "\\\\"
            case "\n": escaped += "\\n"
            case "\t": escaped += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                escaped += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: escaped.unicodeScalars.append(scalar)
            }
        }
        return escaped + "\""
    }

    /// How many programs the run built or loaded, against how many cases and distinct
    /// (op, direction, layout, element type) groups it ran: with sizes as kernel
    /// arguments the programs follow the groups, not the shapes.
    static func programSummary(_ results: [CaseResult], runtime: ProgramStatistics, coldCache: Bool) -> String {
        let groups = Set(results.map { "\($0.op)|\($0.layout)|\($0.dtype)" }).count
        let later = results.filter { ($0.programs?.total ?? 1) == 0 }.map(\.firstCallOverhead).sorted()
        let warm = results.compactMap(\.warmFirstCallOverhead).sorted()
        var text = "programs: \(runtime.builtFromSource) built from source, \(runtime.loadedFromDisk) loaded from the disk cache"
        text += " (\(coldCache ? "cold" : "existing") caches) for \(results.count) cases in \(groups) (op, layout, dtype) groups"
        // Overheads: a first call's time beyond the case's steady-state call.
        if let worst = later.last {
            text += "\nfirst calls that built nothing, overhead: \(later.count) cases, median \(format(later[later.count / 2], digits: 2)) ms, max \(format(worst, digits: 2)) ms"
        }
        if let worst = warm.last {
            text += "\nfirst calls in a new runtime (programs cached), overhead: median \(format(warm[warm.count / 2], digits: 2)) ms, max \(format(worst, digits: 2)) ms"
        }
        return text
    }

    static func json(
        _ results: [CaseResult], device: String, copyBandwidth: Double?, iterations: Int, peer: String?,
        peerAllocator: String? = nil, peerTiming: String? = nil, programs: ProgramStatistics? = nil, coldCache: Bool = false
    ) -> String {
        func number(_ value: Double?) -> String {
            guard let value, value.isFinite else { return "null" }
            return String(value)
        }
        let string = jsonString
        let cases = results.map { r in
            """
                {"name": \(string(r.name)), "op": \(string(r.op)), "shape": [\(r.shape.map(String.init).joined(separator: ", "))], \
            "layout": \(string(r.layout)), "dtype": \(string(r.dtype)), "ideal_bytes": \(r.idealBytes), "kernels": \(r.launches), \
            "first_call_ms": \(number(r.firstCallMilliseconds)), \
            "warm_first_call_ms": \(number(r.warmFirstCallMilliseconds)), \
            "first_call_overhead_ms": \(number(r.firstCallOverhead)), \
            "warm_first_call_overhead_ms": \(number(r.warmFirstCallOverhead)), \
            "programs_built": \(r.programs.map { String($0.builtFromSource) } ?? "null"), \
            "programs_loaded": \(r.programs.map { String($0.loadedFromDisk) } ?? "null"), "kernel_median_ms": \(number(r.kernel?.median)), \
            "kernel_min_ms": \(number(r.kernel?.minimum)), "host_median_ms": \(number(r.host.median)), \
            "host_min_ms": \(number(r.host.minimum)), "enqueue_median_ms": \(number(r.enqueue.median)), "host_p10_ms": \(number(r.host.p10)), \
            "host_p90_ms": \(number(r.host.p90)), "gb_per_s": \(number(r.gigabytesPerSecond)), \
            "copy_median_ms": \(number(r.copy?.median)), "copy_bytes": \(r.copyBytes.map(String.init) ?? "null"), \
            "copy_gb_per_s": \(number(r.copyGigabytesPerSecond)), "fraction_of_copy": \(number(r.fractionOfCopy)), \
            "reference_ms": \(number(r.referenceMilliseconds)), "speedup_over_reference": \(number(r.speedupOverReference)), \
            "max_error": \(number(r.maxError)), "matches_reference": \(r.matchesReference.map { $0 ? "true" : "false" } ?? "null"), \
            "peer_median_ms": \(number(r.peerMilliseconds)), "peer_min_ms": \(number(r.peer?.minimum)), \
            "peer_p10_ms": \(number(r.peer?.p10)), "peer_p90_ms": \(number(r.peer?.p90)), \
            "speedup_over_peer": \(number(r.speedupOverPeer)), "busy": \(r.looksBusy), \
            "kernel_breakdown": [\(r.kernelBreakdown.map { "{\"name\": \(string($0.name)), \"median_ms\": \(number($0.median))}" }.joined(separator: ", "))]}
            """
        }
        return """
            {
              "device": \(string(device)),
              "dram_copy_bandwidth_gb_per_s": \(number(copyBandwidth)),
              "peer": \(peer.map(string) ?? "null"),
              "peer_allocator": \(peerAllocator.map(string) ?? "null"),
              "peer_timing": \(peerTiming.map(string) ?? "null"),
              "busy_rule": \(string(TimingSummary.busyRule)),
              "iterations": \(iterations),
              "cold_cache": \(coldCache),
              "programs_built_from_source": \(programs.map { String($0.builtFromSource) } ?? "null"),
              "programs_loaded_from_disk": \(programs.map { String($0.loadedFromDisk) } ?? "null"),
              "cases": [
            \(cases.joined(separator: ",\n"))
              ]
            }

            """
    }

    static func format(_ value: Double?, digits: Int = 3) -> String {
        guard let value, value.isFinite else { return "–" }
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let rounded = (value * scale).rounded() / scale
        var text = String(rounded)
        if digits == 0, text.hasSuffix(".0") { text.removeLast(2) }
        if let dot = text.firstIndex(of: "."), digits > 0 {
            let decimals = text.distance(from: dot, to: text.endIndex) - 1
            if decimals < digits { text += String(repeating: "0", count: digits - decimals) }
        }
        return text
    }

    /// Writes `text` to `path`.
    static func write(_ text: String, to path: String) throws {
        guard let file = fopen(path, "w") else { throw BenchmarkError.cannotWrite(path) }
        defer { fclose(file) }
        _ = text.withCString { fputs($0, file) }
    }
}

enum BenchmarkError: Error, CustomStringConvertible {
    case cannotWrite(String)
    case cannotRead(String)
    var description: String {
        switch self {
        case .cannotWrite(let path): "cannot write \(path)"
        case .cannotRead(let path): "cannot read \(path)"
        }
    }
}

extension String {
    func padding(to width: Int) -> String { self + String(repeating: " ", count: max(0, width - count)) }
    func leftPadding(to width: Int) -> String { String(repeating: " ", count: max(0, width - count)) + self }
}
