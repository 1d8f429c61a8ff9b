// Fused epilogues (and their gradients) shared by every op: what a network does right
// after a normalization, done while the normalized value is still in a register, so the
// tensor is not written and read again by a separate elementwise op.
//
// Build options (set by an op's plan from its problem's epilogue, Sources/NormCL/Ops/
// Epilogue/Epilogue.swift):
//   ACTIVATION   0: none (default), 1: ReLU, 2: SiLU, 3: GELU (erf), 4: GELU (tanh)
//
// Every formula is PyTorch's CPU kernel's, so NaN and Inf come out as PyTorch's do:
//   ReLU       y = x < 0 ? 0 : x (NaN stays NaN)     dx = x <= 0 ? 0 : dy
//   SiLU       y = x / (1 + exp(-x))                 dx = dy * s * (1 + x * (1 - s)), s = 1 / (1 + exp(-x))
//   GELU       y = x/2 * (1 + erf(x / sqrt 2))       dx = dy * (Φ(x) + x * exp(-x²/2) / sqrt(2π))
//   GELU tanh  y = x/2 * (1 + tanh(k (x + 0.044715 x³))), k = sqrt(2/π)
//              dx = dy * (0.5 * (1 + t) + x/2 * (1 - t²) * k * (1 + 3 * 0.044715 x²)), t = tanh(...)
// The backward of an op with an activation recomputes the activation's input from x and
// the saved statistics (it is in registers anyway) and never reads a stored copy of it.
// Both macros work lane by lane on float and on vector types T; arguments must be plain
// variables (they are read more than once). T may be a typedef (floatv, floatc): the
// helper functions are overloaded on float and float4 (OpenCL C's overloadable
// attribute), never named after T, since a pasted name like silu_grad_floatv would not
// exist.

#ifndef ACTIVATION
#define ACTIVATION 0
#endif

#define GELU_SQRT1_2 0.70710678118654752f  // 1 / sqrt(2)
#define GELU_INV_SQRT_2PI 0.39894228040143268f  // 1 / sqrt(2π)
#define GELU_TANH_K 0.79788456080286536f  // sqrt(2 / π)
#define GELU_TANH_C 0.044715f

#if ACTIVATION == 0
#define ACTIVATE(T, x) (x)
#define ACTIVATION_GRAD(T, dy, x) (dy)
#elif ACTIVATION == 1
#define ACTIVATE(T, x) select((x), (T)0.0f, (x) < (T)0.0f)
#define ACTIVATION_GRAD(T, dy, x) select((dy), (T)0.0f, (x) <= (T)0.0f)
#elif ACTIVATION == 2
#define ACTIVATE(T, x) ((x) / ((T)1.0f + exp(-(x))))
#define ACTIVATION_GRAD(T, dy, x) silu_grad((dy), (x))
#define DEFINE_SILU_GRAD(T)                                       \
    inline T __attribute__((overloadable)) silu_grad(T dy, T x) { \
        T s = (T)1.0f / ((T)1.0f + exp(-x));                      \
        return dy * s * ((T)1.0f + x * ((T)1.0f - s));            \
    }
DEFINE_SILU_GRAD(float)
DEFINE_SILU_GRAD(float4)
#elif ACTIVATION == 3
#define ACTIVATE(T, x) ((T)0.5f * (x) * ((T)1.0f + erf((x) * (T)GELU_SQRT1_2)))
#define ACTIVATION_GRAD(T, dy, x) gelu_grad((dy), (x))
#define DEFINE_GELU_GRAD(T)                                       \
    inline T __attribute__((overloadable)) gelu_grad(T dy, T x) { \
        T cdf = (T)0.5f * ((T)1.0f + erf(x * (T)GELU_SQRT1_2));   \
        T pdf = exp((T)-0.5f * x * x) * (T)GELU_INV_SQRT_2PI;     \
        return dy * (cdf + x * pdf);                              \
    }
DEFINE_GELU_GRAD(float)
DEFINE_GELU_GRAD(float4)
#elif ACTIVATION == 4
#define ACTIVATE(T, x) gelu_tanh(x)
#define ACTIVATION_GRAD(T, dy, x) gelu_tanh_grad((dy), (x))
#define DEFINE_GELU_TANH(T)                                                                                    \
    inline T __attribute__((overloadable)) gelu_tanh(T x) {                                                    \
        T inner = (T)GELU_TANH_K * (x + (T)GELU_TANH_C * x * x * x);                                           \
        return (T)0.5f * x * ((T)1.0f + tanh(inner));                                                          \
    }                                                                                                          \
    inline T __attribute__((overloadable)) gelu_tanh_grad(T dy, T x) {                                         \
        T x2 = x * x;                                                                                          \
        T t = tanh((T)GELU_TANH_K * (x + (T)GELU_TANH_C * x2 * x));                                            \
        T left = (T)0.5f * ((T)1.0f + t);                                                                      \
        T right = (T)0.5f * x * ((T)1.0f - t * t) * (T)GELU_TANH_K * ((T)1.0f + (T)(3.0f * GELU_TANH_C) * x2); \
        return dy * (left + right);                                                                            \
    }
DEFINE_GELU_TANH(float)
DEFINE_GELU_TANH(float4)
#else
#error "ACTIVATION must be 0 (none), 1 (ReLU), 2 (SiLU), 3 (GELU) or 4 (GELU tanh)"
#endif

// The gradient at the norm's output from the gradient dy at the epilogue's output, for
// the backward's sums and its dx: with an activation, dy * f'(a) where the activation's
// input a = (x - mu) * pre.x + pre.y (+ z, the addend of BatchNorm's relu(BN(x) + z),
// loaded by the caller as `zv`; 0 without one): pre is the channel's (or row's) affine
// map of x, recomputed from the saved statistics and γ, β. Without an activation, dy.
#if ACTIVATION
#define EPILOGUE_GRAD(T, dy, xv, mu, pre_scale, pre_shift, zv) \
    ACTIVATION_GRAD(T, (dy), ((xv) - (mu)) * (pre_scale) + (pre_shift) + (zv))
#else
#define EPILOGUE_GRAD(T, dy, xv, mu, pre_scale, pre_shift, zv) (dy)
#endif

// The `pre` of a gradient sum without an epilogue (or whose caller has none to give).
#define NO_PRE ((float2)(0.0f, 0.0f))
