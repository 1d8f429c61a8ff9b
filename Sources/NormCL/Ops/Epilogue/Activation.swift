#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An elementwise activation fused after a normalization: `y = f(norm(x))`, as
/// `torch.nn.functional.relu`, `silu` and `gelu(approximate=)`.
///
/// The fused op writes `f(norm(x))` in one pass, and its backward recomputes the
/// activation's input `a = norm(x)` from `x` and the saved statistics (no stored copy
/// of `a` is read) and applies `f′(a)` to `dy` before the norm's own backward. Every
/// formula is PyTorch's CPU kernel's, so NaN and Inf propagate as they do there:
///
///     ReLU        f(a) = a < 0 ? 0 : a (NaN stays NaN)   f′: dy where a > 0 (or NaN), else 0
///     SiLU        f(a) = a / (1 + e^−a)                   f′(a) = s·(1 + a·(1 − s)), s = 1/(1 + e^−a)
///     GELU        f(a) = a/2 · (1 + erf(a/√2))           f′(a) = Φ(a) + a·φ(a)
///     GELU tanh   f(a) = a/2 · (1 + tanh(√(2/π)·(a + 0.044715·a³)))
///
/// On OpenCL the functions are the device's float32 `exp`, `erf` and `tanh` (a few ulps,
/// OpenCL 1.2's full profile); the CPU reference evaluates them in float64.
public enum Activation: String, Sendable, Hashable, CaseIterable {
    /// No activation: `f(a) = a`.
    case none
    /// `max(a, 0)`, NaN kept.
    case relu
    /// `a · sigmoid(a)` (also called swish).
    case silu
    /// `a · Φ(a)` with the exact normal CDF (`approximate="none"` in PyTorch).
    case gelu
    /// GELU's tanh approximation (`approximate="tanh"` in PyTorch).
    case geluTanh

    /// The kernels' `ACTIVATION` build option (`Kernels/epilogue.cl`).
    var kernelCode: Int {
        switch self {
        case .none: 0
        case .relu: 1
        case .silu: 2
        case .gelu: 3
        case .geluTanh: 4
        }
    }

    /// `f(a)` in float64 (the CPU reference).
    func callAsFunction(_ a: Double) -> Double {
        switch self {
        case .none: return a
        case .relu: return a < 0 ? 0 : a
        case .silu: return a / (1 + exp(-a))
        case .gelu: return 0.5 * a * (1 + erf(a * 0.5.squareRoot()))
        case .geluTanh:
            let k = (2 / Double.pi).squareRoot()
            return 0.5 * a * (1 + tanh(k * (a + 0.044715 * a * a * a)))
        }
    }

    /// `dy · f′(a)` in float64 (the CPU reference): the gradient at the activation's
    /// input `a` from the gradient `dy` at its output. ReLU passes `dy` where `a > 0` or
    /// `a` is NaN and gives 0 elsewhere (a select, not a product, so `dy = ∞` at `a ≤ 0`
    /// still gives 0, as PyTorch's `threshold_backward`).
    func gradient(_ dy: Double, at a: Double) -> Double {
        switch self {
        case .none: return dy
        case .relu: return a <= 0 ? 0 : dy
        case .silu:
            let s = 1 / (1 + exp(-a))
            return dy * s * (1 + a * (1 - s))
        case .gelu:
            let cdf = 0.5 * (1 + erf(a * 0.5.squareRoot()))
            let pdf = exp(-0.5 * a * a) / (2 * Double.pi).squareRoot()
            return dy * (cdf + a * pdf)
        case .geluTanh:
            let k = (2 / Double.pi).squareRoot(), c = 0.044715
            let t = tanh(k * (a + c * a * a * a))
            return dy * (0.5 * (1 + t) + 0.5 * a * (1 - t * t) * k * (1 + 3 * c * a * a))
        }
    }
}
