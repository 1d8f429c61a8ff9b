import Glibc

/// The largest difference between two arrays, and the largest ratio of a difference
/// to its element's tolerance (≤ 1 passes).
struct Difference {
    var maximum: Double = 0
    var ratio: Double = 0

    /// `actual` against `expected`, element `i` within `tolerance(i)`. Arrays of
    /// different lengths, and NaN, give an infinite ratio.
    init(_ actual: [Float], _ expected: [Float], tolerance: (Int) -> Double) {
        guard actual.count == expected.count else {
            maximum = .infinity
            ratio = .infinity
            return
        }
        for i in actual.indices {
            let difference = abs(Double(actual[i]) - Double(expected[i]))
            guard !difference.isNaN else {
                maximum = .infinity
                ratio = .infinity
                return
            }
            maximum = max(maximum, difference)
            ratio = max(ratio, difference / tolerance(i))
        }
    }

    init() {}

    var passed: Bool { ratio <= 1 }
}

/// Machine epsilon of float32 (2^-23).
let epsilon32 = Double(Float.ulpOfOne)

/// One unit in the last place of `value` stored as half (2^-24 below half's normal range).
func halfULP(_ value: Float) -> Double { Double(Float(Float16(value).magnitude.ulp)) }

func maxAbs(_ values: [Float]) -> Double { values.reduce(0) { max($0, Double(abs($1))) } }

/// Formats a number in scientific notation with 2 decimals, without Foundation.
func sci(_ value: Double) -> String {
    guard value.isFinite else { return value.isNaN ? "nan" : (value > 0 ? "inf" : "-inf") }
    guard value != 0 else { return "0" }
    var exponent = Int((log10(abs(value))).rounded(.down))
    var mantissa = value / pow(10, Double(exponent))
    if abs(mantissa) >= 9.995 {
        mantissa /= 10
        exponent += 1
    }
    let hundredths = Int((mantissa * 100).rounded())
    let sign = hundredths < 0 ? "-" : ""
    let magnitude = abs(hundredths)
    let fraction = magnitude % 100
    return "\(sign)\(magnitude / 100).\(fraction < 10 ? "0" : "")\(fraction)e\(exponent >= 0 ? "+" : "-")\(abs(exponent) < 10 ? "0" : "")\(abs(exponent))"
}

/// Formats a number with `decimals` decimals (fixed point), without Foundation.
func fixed(_ value: Double, _ decimals: Int = 2) -> String {
    guard value.isFinite else { return "\(value)" }
    let scale = pow(10, Double(decimals))
    let scaled = Int((abs(value) * scale).rounded())
    let whole = scaled / Int(scale)
    var fraction = String(scaled % Int(scale))
    while fraction.count < decimals { fraction = "0" + fraction }
    return "\(value < 0 ? "-" : "")\(whole)\(decimals > 0 ? "." + fraction : "")"
}

func padded(_ text: String, _ width: Int) -> String {
    text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
}
