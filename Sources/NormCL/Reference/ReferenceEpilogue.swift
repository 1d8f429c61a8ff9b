/// The fused prologues and epilogues on the CPU, each literally the unfused op it
/// replaces: an elementwise add whose result is stored in its element type, an
/// activation applied to the stored output of the norm. The fused ops' reference paths
/// run these around the plain norms, and the tests compare the OpenCL kernels with that
/// sequence.
enum ReferenceEpilogue {
    /// `a + b` per element, stored as `elementType` (the unfused add's output: the
    /// residual stream's h).
    static func sum(_ a: [Float], _ b: [Float], as elementType: ElementType) -> [Float] {
        zip(a, b).map { elementType.rounded($0 + $1) }
    }

    /// `(a + bias) + b` per element in float32, stored as `elementType`: the fused
    /// bias-add and residual add of a row norm (`bias` repeats along the rows; nil: `a + b`).
    static func sum(_ a: [Float], _ b: [Float], bias: [Float]?, as elementType: ElementType) -> [Float] {
        guard let bias, !bias.isEmpty else { return sum(a, b, as: elementType) }
        return a.indices.map { elementType.rounded((a[$0] + bias[$0 % bias.count]) + b[$0]) }
    }

    /// `f(y)` per element in float64, stored as `elementType`; `y` is the norm's output
    /// as it would have been stored (rounded to `elementType` first).
    static func activate(_ y: [Float], _ activation: Activation, as elementType: ElementType) -> [Float] {
        guard activation != .none else { return y }
        return y.map { elementType.rounded(Float(activation(Double(elementType.rounded($0))))) }
    }

    /// `dy · f′(a)` per element in float64: the gradient at the activation's input `a`.
    static func gradient(_ dy: [Double], at a: [Double], _ activation: Activation) -> [Double] {
        guard activation != .none else { return dy }
        return zip(dy, a).map { activation.gradient($0, at: $1) }
    }
}
