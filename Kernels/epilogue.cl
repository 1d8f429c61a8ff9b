// Fused epilogues (and their gradients) shared by every op: what a network does right
// after a normalization, done while the normalized value is still in a register, so the
// tensor is not written and read again by a separate elementwise op.
//
// Build options (set by an op's plan from its problem):
//   ACTIVATION     0: none (default), 1: ReLU, 2: SiLU, 3: GELU (erf), 4: GELU (tanh),
//                  applied to the normalized value before it is stored
//   HAS_RESIDUAL   1: a prologue, the norm's input is h = x + residual (LayerNorm and
//                  RMSNorm: the transformer's residual stream), formed in float32
//   HAS_INPUT_BIAS 1 (with HAS_RESIDUAL): h = (x + bias) + residual, bias per column
//   RESIDUAL_FLOAT 1: the residual (and the stored h) are float32 under half storage
//                  (`residual_in_fp32`); 0: the storage type
//   SUM_GRADIENT   1 (a backward reading the stored h as its input, HAS_RESIDUAL 0): the
//                  gradient of h from elsewhere is added to dx, of the storage type
//
// Every formula is PyTorch's CPU kernel's, so NaN and Inf come out as PyTorch's do:
//   ReLU       y = x < 0 ? 0 : x (NaN stays NaN)     dx = x <= 0 ? 0 : dy
//   SiLU       y = x / (1 + exp(-x))                 dx = dy * s * (1 + x * (1 - s)), s = 1 / (1 + exp(-x))
//   GELU       y = x/2 * (1 + erf(x / sqrt 2))       dx = dy * (Φ(x) + x * exp(-x²/2) / sqrt(2π))
//   GELU tanh  y = x/2 * (1 + tanh(k (x + 0.044715 x³))), k = sqrt(2/π)
//              dx = dy * (0.5 * (1 + t) + x/2 * (1 - t²) * k * (1 + 3 * 0.044715 x²)), t = tanh(...)
// The backward of an op with an activation recomputes the activation's input from x and
// the saved statistics (it is in registers anyway) and never reads a stored copy of it.
// ACTIVATE(T, x) and ACTIVATION_GRAD(T, dy, x) work lane by lane on every floatv and
// floatc.

#ifndef ACTIVATION
#define ACTIVATION 0
#endif

// ---- The residual prologue: h = x + residual ------------------------------------
#ifndef HAS_RESIDUAL
#define HAS_RESIDUAL 0
#endif
#ifndef SUM_GRADIENT
#define SUM_GRADIENT 0
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
#ifdef VEC
#define STORERV_STREAM(v, p, i) STREAM_STORE(floatv, VEC, STORERV, v, p, i)
#endif
// The residual's and the sum's (or the sum's gradient's) rows at element offset `base`
// (NULL stays NULL; neither is read without HAS_RESIDUAL or SUM_GRADIENT).
#if HAS_RESIDUAL || SUM_GRADIENT
#define RESIDUAL_ROW(p, base) ((p) ? (p) + (base) : (p))
#else
#define RESIDUAL_ROW(p, base) (p)
#endif

// What a row norm's input h is formed from besides x's row: the residual's row and the
// input bias (HAS_INPUT_BIAS, only with HAS_RESIDUAL: the preceding linear layer's bias,
// one float32 per column, as in bias-dropout-add), h = (x + bias) + residual in float32.
// Members that are not read (no residual, no bias) may be NULL.
typedef struct {
    __global const residual_t *res;
    __global const float *bias;
} RowInput;

inline RowInput row_input(__global const residual_t *residual, __global const float *input_bias, ulong base) {
    RowInput r = {RESIDUAL_ROW(residual, base), input_bias};
    return r;
}

// Element i and vector v of the norm's input h from x's row and a RowInput `p`.
// LayerNorm's backward recomputes it the same way.
#if HAS_RESIDUAL && HAS_INPUT_BIAS
#define INPUT1(x, p, i) ((LOAD1(x, i) + (p).bias[i]) + LOADR1((p).res, i))
#define INPUTV(x, p, v) ((LOADV(x, v) + LOADP((p).bias, v)) + LOADRV((p).res, v))
#elif HAS_RESIDUAL
#define INPUT1(x, p, i) (LOAD1(x, i) + LOADR1((p).res, i))
#define INPUTV(x, p, v) (LOADV(x, v) + LOADRV((p).res, v))
#else
#define INPUT1(x, p, i) LOAD1(x, i)
#define INPUTV(x, p, v) LOADV(x, v)
#endif

// ---- Activations -------------------------------------------------------------------

#define GELU_SQRT1_2 0.70710678118654752f  // 1 / sqrt(2)
#define GELU_INV_SQRT_2PI 0.39894228040143268f  // 1 / sqrt(2π)
#define GELU_TANH_K 0.79788456080286536f  // sqrt(2 / π)
#define GELU_TANH_C 0.044715f

// Functions overloaded on float, float4, float8 and float16 (every floatv and floatc is
// one of them);
// ACTIVATE and ACTIVATION_GRAD name them with the type for the reader only.
//
// PoCL's erf and tanh cost 8x and 3x its exp (8M floats here: erf 95 ms, tanh 31 ms,
// exp 12 ms, a copy 8 ms), so both are written with exp, and exp as exp2 of x·log2(e)
// (SiLU over 4M floats: 4.0 ms with exp, 2.8 ms with exp2; the product's rounding moves
// the result by |x|·2^-24 relative, a few ulps at most where the result is not 0 or ∞),
// and exp2 as exp2_fit below, not PoCL's exp2:
// - GELU's Φ(x) = erfc(-x/√2)/2, with erfc from Numerical Recipes' Chebyshev fit
//   (relative error below 1.2e-7 everywhere, so the left tail keeps its digits instead
//   of cancelling in 1 + erf);
// - tanh(u) = 2σ(2u) − 1, so GELU-tanh is x·σ(2u) and its derivative
//   σ(2u) + 2x·σ(2u)(1 − σ(2u))·k·(1 + 3c·x²), u = k(x + c·x³).
#define OVERLOAD __attribute__((overloadable))
#define DEFINE_FOR_FLOAT_TYPES(DEFINE) DEFINE(float) DEFINE(float4) DEFINE(float8) DEFINE(float16)

// 2^x for the activations, as accurate as PoCL's exp2 and cheaper. x = n + f with n an
// integer and |f| <= 1/2 (rounded by adding and subtracting 1.5·2^23, whose low bits are
// then n), 2^f = 1 + f·q(f) with q a degree-5 fit of relative error 2.0e-9 (near-minimax,
// reweighted least squares; 1 exact at f = 0), and 2^n added to the result's exponent
// bits. Measured against float64 over [-126, 128) on PoCL: at most 0.93 ulp (PoCL's
// exp2: 0.83). Results below 2^-126 are 0 (no subnormals; PoCL's exp2 keeps them, which
// moves no activation: they are added to 1 or multiplied into values below 1e-37),
// x >= 128 gives +Inf, -Inf 0, NaN NaN. Why: PoCL 3.1 inlines its exp2 as ~25 vector
// instructions (a second scaling step for subnormals, clamps and blends); this is ~17.
// Over 1.3M floats on PoCL (2 cores, float16): exp2 0.378 -> 0.309 ms, an elementwise
// SiLU 0.521 -> 0.427 ms, a copy-like pass 0.12 ms. (A degree-4 q was 0.40 ms for SiLU
// but 2.0 ulp.) native_exp, native_recip, native_divide and half_recip compile to the
// same code as exp and division on PoCL (SiLU 0.503-0.506 ms with each, 0.503 without),
// and division is cheap there (x / (1.5 + x²) 1.09x a copy), so neither is used.
#define DEFINE_EXP2_FIT(T, I)                                                                      \
    inline OVERLOAD T exp2_fit(T x) {                                                              \
        T big = x + (T)12582912.0f;                                                                \
        T n = big - (T)12582912.0f;                                                                \
        I bits = as_##I(big) - (I)0x4B400000;                                                     \
        T f = x - n;                                                                               \
        T q = (T)0.00015353361959569156f;                                                          \
        q = q * f + (T)0.0013398875016719103f;                                                     \
        q = q * f + (T)0.00961843691766262f;                                                       \
        q = q * f + (T)0.055503323674201965f;                                                      \
        q = q * f + (T)0.24022647738456726f;                                                       \
        q = q * f + (T)0.6931471824645996f;                                                        \
        T r = as_##T(as_##I(q * f + (T)1.0f) + (bits << 23));                                     \
        r = select(r, (T)INFINITY, x >= (T)128.0f);                                                \
        r = select(r, (T)0.0f, x < (T)-126.0f);                                                    \
        return select(r, x, isnan(x));                                                             \
    }
DEFINE_EXP2_FIT(float, int)
DEFINE_EXP2_FIT(float4, int4)
DEFINE_EXP2_FIT(float8, int8)
DEFINE_EXP2_FIT(float16, int16)

#define DEFINE_ACTIVATION_HELPERS(T)                                                              \
    inline OVERLOAD T exp_of(T x) { return exp2_fit(x * (T)1.44269504088896341f); }           \
    inline OVERLOAD T sigmoid_of(T x) { return (T)1.0f / ((T)1.0f + exp_of(-x)); }             \
    inline OVERLOAD T erfc_of(T x) {                                                           \
        T t = (T)1.0f / ((T)1.0f + (T)0.5f * fabs(x));                                         \
        T p = (T)-0.82215223f + t * (T)0.17087277f;                                            \
        p = (T)1.48851587f + t * p;                                                            \
        p = (T)-1.13520398f + t * p;                                                           \
        p = (T)0.27886807f + t * p;                                                            \
        p = (T)-0.18628806f + t * p;                                                           \
        p = (T)0.09678418f + t * p;                                                            \
        p = (T)0.37409196f + t * p;                                                            \
        p = (T)1.00002368f + t * p;                                                            \
        T r = t * exp_of(-x * x - (T)1.26551223f + t * p);                                     \
        return select((T)2.0f - r, r, x >= (T)0.0f);                                           \
    }                                                                                          \
    inline OVERLOAD T normal_cdf(T x) { return (T)0.5f * erfc_of(-x * (T)GELU_SQRT1_2); }
DEFINE_FOR_FLOAT_TYPES(DEFINE_ACTIVATION_HELPERS)

#if ACTIVATION == 0
#define DEFINE_ACTIVATION(T) \
    inline OVERLOAD T activate(T x) { return x; } \
    inline OVERLOAD T activation_grad(T dy, T x) { return dy; }
#elif ACTIVATION == 1
#define DEFINE_ACTIVATION(T)                                                                          \
    inline OVERLOAD T activate(T x) { return select(x, (T)0.0f, x < (T)0.0f); }                    \
    inline OVERLOAD T activation_grad(T dy, T x) { return select(dy, (T)0.0f, x <= (T)0.0f); }
#elif ACTIVATION == 2
#define DEFINE_ACTIVATION(T)                                                                          \
    inline OVERLOAD T activate(T x) { return x / ((T)1.0f + exp_of(-x)); }                        \
    inline OVERLOAD T activation_grad(T dy, T x) {                                                 \
        T s = sigmoid_of(x);                                                                       \
        return dy * s * ((T)1.0f + x * ((T)1.0f - s));                                             \
    }
#elif ACTIVATION == 3
#define DEFINE_ACTIVATION(T)                                                                          \
    inline OVERLOAD T activate(T x) { return x * normal_cdf(x); }                                  \
    inline OVERLOAD T activation_grad(T dy, T x) {                                                 \
        return dy * (normal_cdf(x) + x * exp_of((T)-0.5f * x * x) * (T)GELU_INV_SQRT_2PI);         \
    }
#elif ACTIVATION == 4
#define DEFINE_ACTIVATION(T)                                                                          \
    inline OVERLOAD T gelu_tanh_sigmoid(T x) {                                                     \
        return sigmoid_of((T)(2.0f * GELU_TANH_K) * (x + (T)GELU_TANH_C * x * x * x));              \
    }                                                                                              \
    inline OVERLOAD T activate(T x) { return x * gelu_tanh_sigmoid(x); }                           \
    inline OVERLOAD T activation_grad(T dy, T x) {                                                 \
        T s = gelu_tanh_sigmoid(x);                                                                \
        T slope = (T)GELU_TANH_K * ((T)1.0f + (T)(3.0f * GELU_TANH_C) * x * x);                    \
        return dy * (s + (T)2.0f * x * s * ((T)1.0f - s) * slope);                                 \
    }
#else
#error "ACTIVATION must be 0 (none), 1 (ReLU), 2 (SiLU), 3 (GELU) or 4 (GELU tanh)"
#endif
DEFINE_FOR_FLOAT_TYPES(DEFINE_ACTIVATION)
#define ACTIVATE(T, x) activate(x)
#define ACTIVATION_GRAD(T, dy, x) activation_grad((dy), (x))

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
