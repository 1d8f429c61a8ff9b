// Fused epilogues (and their gradients) shared by every op: what a network does right
// after a normalization, done while the normalized value is still in a register, so the
// tensor is not written and read again by a separate elementwise op.
//
// Build options (set by an op's plan from its problem):
//   ACTIVATION     0: none (default), 1: ReLU, 2: SiLU, 3: GELU (erf), 4: GELU (tanh),
//                  applied to the normalized value before it is stored
//   HAS_RESIDUAL   1: a prologue, the norm's input is h = x + residual (LayerNorm and
//                  RMSNorm: the transformer's residual stream), formed in float32
//   RESIDUAL_FLOAT 1: the residual (and the stored h) are float32 under half storage
//                  (`residual_in_fp32`); 0: the storage type
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
// variables (they are read more than once).

#ifndef ACTIVATION
#define ACTIVATION 0
#endif

// ---- The residual prologue: h = x + residual ------------------------------------
#ifndef HAS_RESIDUAL
#define HAS_RESIDUAL 0
#endif
#if HAS_RESIDUAL && RESIDUAL_FLOAT
typedef float residual_t;
#define LOADR1(p, i) ((p)[i])
#define LOADRV(p, i) LOADP(p, i)
#define STORERV(v, p, i) STOREP(v, p, i)
#else
typedef storage_t residual_t;
#define LOADR1(p, i) LOAD1(p, i)
#define LOADRV(p, i) LOADV(p, i)
#define STORERV(v, p, i) STOREV(v, p, i)
#endif
// Element i and vector v of the norm's input: x, or x + residual (`res`, the residual's
// row, is not read without HAS_RESIDUAL). LayerNorm's backward recomputes it the same way.
#if HAS_RESIDUAL
#define INPUT1(x, res, i) (LOAD1(x, i) + LOADR1(res, i))
#define INPUTV(x, res, v) (LOADV(x, v) + LOADRV(res, v))
#else
#define INPUT1(x, res, i) LOAD1(x, i)
#define INPUTV(x, res, v) LOADV(x, v)
#endif

// The residual's and the sum's rows at element offset `base` (NULL without a residual).
#if HAS_RESIDUAL
#define RESIDUAL_ROW(p, base) ((p) ? (p) + (base) : (p))
#else
#define RESIDUAL_ROW(p, base) (p)
#endif

// ---- Activations -------------------------------------------------------------------

#define GELU_SQRT1_2 0.70710678118654752f  // 1 / sqrt(2)
#define GELU_INV_SQRT_2PI 0.39894228040143268f  // 1 / sqrt(2π)
#define GELU_TANH_K 0.79788456080286536f  // sqrt(2 / π)
#define GELU_TANH_C 0.044715f

// Expressions, not functions: T may be a typedef (floatv) and OpenCL C 1.2 has no
// portable overloading. Repeated subexpressions (exp(-x), tanh(...)) are pure builtins,
// computed once by the compiler.
#if ACTIVATION == 0
#define ACTIVATE(T, x) (x)
#define ACTIVATION_GRAD(T, dy, x) (dy)
#elif ACTIVATION == 1
#define ACTIVATE(T, x) select((x), (T)0.0f, (x) < (T)0.0f)
#define ACTIVATION_GRAD(T, dy, x) select((dy), (T)0.0f, (x) <= (T)0.0f)
#elif ACTIVATION == 2
#define SIGMOID(T, x) ((T)1.0f / ((T)1.0f + exp(-(x))))
#define ACTIVATE(T, x) ((x) / ((T)1.0f + exp(-(x))))
#define ACTIVATION_GRAD(T, dy, x) ((dy) * SIGMOID(T, x) * ((T)1.0f + (x) * ((T)1.0f - SIGMOID(T, x))))
#elif ACTIVATION == 3
#define GELU_CDF(T, x) ((T)0.5f * ((T)1.0f + erf((x) * (T)GELU_SQRT1_2)))
#define ACTIVATE(T, x) ((x) * GELU_CDF(T, x))
#define ACTIVATION_GRAD(T, dy, x) \
    ((dy) * (GELU_CDF(T, x) + (x) * exp((T)-0.5f * (x) * (x)) * (T)GELU_INV_SQRT_2PI))
#elif ACTIVATION == 4
#define GELU_TANH_T(T, x) tanh((T)GELU_TANH_K * ((x) + (T)GELU_TANH_C * (x) * (x) * (x)))
#define ACTIVATE(T, x) ((T)0.5f * (x) * ((T)1.0f + GELU_TANH_T(T, x)))
#define ACTIVATION_GRAD(T, dy, x)                                                                   \
    ((dy) * ((T)0.5f * ((T)1.0f + GELU_TANH_T(T, x)) +                                              \
             (T)0.5f * (x) * ((T)1.0f - GELU_TANH_T(T, x) * GELU_TANH_T(T, x)) * (T)GELU_TANH_K *   \
                 ((T)1.0f + (T)(3.0f * GELU_TANH_C) * (x) * (x))))
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
