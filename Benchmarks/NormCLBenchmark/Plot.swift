/// The `--plot` chart: GB/s per case as horizontal bars, NormCL beside the peer, with the
/// device's DRAM copy bandwidth as a dashed line and, on each case's row, a red tick at
/// the speed of a copy of that case's own bytes (the ceiling its "% copy" is measured
/// against: small cases fit in the cache and copy faster than DRAM allows).
///
/// Plain SVG written by hand (no dependencies); one row per case, in the table's order.
enum Plot {
    static func svg(_ results: [CaseResult], device: String, copyBandwidth: Double?, peer: String?) -> String {
        // Case names in 12 px sans-serif take about 7 px a character.
        let longestName = results.map(\.name.count).max() ?? 0
        let labelWidth = max(200, 7.2 * Double(longestName) + 16), chartWidth = 560.0, rowHeight = 26.0, top = 88.0, bottom = 44.0
        let hasPeer = results.contains { $0.peerGigabytesPerSecond != nil }
        let values: [Double] =
            results.flatMap { [$0.gigabytesPerSecond, $0.peerGigabytesPerSecond ?? 0, $0.copyGigabytesPerSecond ?? 0] } + [copyBandwidth ?? 0]
        let maximum = niceCeiling(values.filter { $0.isFinite }.max() ?? 1)
        let height = top + rowHeight * Double(results.count) + bottom
        let width = labelWidth + chartWidth + 40
        func x(_ value: Double) -> Double { labelWidth + chartWidth * min(max(value, 0), maximum) / maximum }

        var svg = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" \
            font-family="sans-serif" font-size="12">
            <rect width="100%" height="100%" fill="white"/>
            <text x="10" y="20" font-size="15" font-weight="bold">NormCL effective bandwidth (GB/s, higher is better)</text>
            <text x="10" y="38" fill="#444">\(escape(device))</text>

            """
        // Legend.
        var legendX = 10.0
        for (label, color) in [("NormCL", normclColor)] + (hasPeer ? [(peer ?? "peer", peerColor)] : []) {
            svg += "<rect x=\"\(legendX)\" y=\"48\" width=\"12\" height=\"10\" fill=\"\(color)\"/>"
            svg += "<text x=\"\(legendX + 16)\" y=\"57\">\(escape(label))</text>\n"
            legendX += 40 + 7.5 * Double(label.count)
        }
        if results.contains(where: { $0.copyGigabytesPerSecond != nil }) {
            svg += "<line x1=\"\(legendX + 5)\" y1=\"46\" x2=\"\(legendX + 5)\" y2=\"60\" stroke=\"#c00\" stroke-width=\"2\"/>"
            svg += "<text x=\"\(legendX + 12)\" y=\"57\">copy of the same bytes</text>\n"
        }
        // Grid and axis.
        let ticks = 5
        for tick in 0...ticks {
            let value = maximum * Double(tick) / Double(ticks)
            let position = x(value)
            svg += "<line x1=\"\(position)\" y1=\"\(top - 4)\" x2=\"\(position)\" y2=\"\(height - bottom + 4)\" stroke=\"#ddd\"/>"
            svg += "<text x=\"\(position)\" y=\"\(height - bottom + 18)\" text-anchor=\"middle\">\(Report.format(value, digits: 0))</text>\n"
        }
        svg += "<text x=\"\(labelWidth + chartWidth / 2)\" y=\"\(height - 8)\" text-anchor=\"middle\">GB/s (ideal bytes / time)</text>\n"
        // Bars.
        for (index, result) in results.enumerated() {
            let y = top + rowHeight * Double(index)
            let barHeight = hasPeer ? 10.0 : 16.0
            svg += "<text x=\"\(labelWidth - 8)\" y=\"\(y + 16)\" text-anchor=\"end\">\(escape(result.name))</text>"
            svg += bar(x0: x(0), x1: x(result.gigabytesPerSecond), y: y + 3, height: barHeight, color: normclColor,
                       label: Report.format(result.gigabytesPerSecond, digits: 1))
            if let copyAtSize = result.copyGigabytesPerSecond {
                // The copy of this case's own bytes: the ceiling for this bar.
                let position = x(copyAtSize)
                svg += "<line x1=\"\(position)\" y1=\"\(y + 1)\" x2=\"\(position)\" y2=\"\(y + 5 + 2 * barHeight)\" stroke=\"#c00\" stroke-width=\"2\"/>"
            }
            if let peerBandwidth = result.peerGigabytesPerSecond {
                svg += bar(x0: x(0), x1: x(peerBandwidth), y: y + 3 + barHeight, height: barHeight, color: peerColor,
                           label: Report.format(peerBandwidth, digits: 1))
            }
            svg += "\n"
        }
        if let copyBandwidth {
            let position = x(copyBandwidth)
            svg += "<line x1=\"\(position)\" y1=\"\(top - 6)\" x2=\"\(position)\" y2=\"\(height - bottom)\" stroke=\"#c00\" stroke-dasharray=\"5,3\" stroke-width=\"1.5\"/>"
            svg += "<text x=\"\(position + 4)\" y=\"\(top - 8)\" fill=\"#c00\">DRAM copy \(Report.format(copyBandwidth, digits: 1)) GB/s</text>\n"
        }
        return svg + "</svg>\n"
    }

    private static let normclColor = "#1f77b4", peerColor = "#ff7f0e"

    private static func bar(x0: Double, x1: Double, y: Double, height: Double, color: String, label: String) -> String {
        "<rect x=\"\(x0)\" y=\"\(y)\" width=\"\(max(x1 - x0, 0.5))\" height=\"\(height)\" fill=\"\(color)\"/>"
            + "<text x=\"\(x1 + 3)\" y=\"\(y + height - 1)\" font-size=\"10\" fill=\"#333\">\(label)</text>"
    }

    /// The smallest 1, 2 or 5 × 10^k at or above `value`: a round axis end.
    static func niceCeiling(_ value: Double) -> Double {
        guard value > 0, value.isFinite else { return 1 }
        var scale = 1.0
        while scale * 10 <= value { scale *= 10 }
        while scale > value { scale /= 10 }
        for step in [1.0, 2.0, 5.0, 10.0] where step * scale >= value { return step * scale }
        return 10 * scale
    }

    private static func escape(_ text: String) -> String {
        var escaped = ""
        for character in text {
            switch character {
            case "&": escaped += "&amp;"
            case "<": escaped += "&lt;"
            case ">": escaped += "&gt;"
            case "\"": escaped += "&quot;"
            default: escaped.append(character)
            }
        }
        return escaped
    }
}
