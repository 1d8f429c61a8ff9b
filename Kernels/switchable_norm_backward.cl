// Switchable Normalization backward (training, or inference where the BN statistics are
// the running constants), channels-first (NCHW) and channels-last (NHWC), float32 or
// half storage (float32 math). The math is derived in SwitchableNormBackward.swift.
//
// x and dy are viewed as (N, C, L). Three steps, no host round trip between them:
//   1. per-instance sums: one pass over x and dy gives, per (n, c) run r and slice of it,
//      S1 = sum dy and S2 = sum dy * (x - mean[r]) (centred on the saved mixed mean, so
//      1e4-offset data loses nothing), Kahan-compensated over blocks; the same geometry
//      as the forward's moment pass (snb_sums_items, snb_sums_groups for NCHW;
//      snb_sums_columns for NHWC). Skipped when L == 1 (DIRECT).
//   2. snb_coefficients, one work-group (or, for large N * C, snb_instances, snb_sets,
//      snb_mix, snb_logits over the device): merges each run's slices in order, forms the
//      adjoints of the mixed mean and variance, sums them per sample (LN) and per channel
//      (BN, with dgamma and dbeta), writes the per-run dx coefficients
//      dx = a * dy + b * (x - m) [+ b2 * (x - m2)] + c (see run_coefficients), and
//      reduces the logit gradients in a fixed order (deterministic, no atomics).
//   3. dx (snb_dx_rows, snb_dx_columns), one multiply-add chain per element.
//
// Build options, all set by SwitchableNormBackwardPlan:
//   BATCH, CHANNELS, SPATIAL, SLICES, WG, CHUNKED, INDEX_T, CVEC, TILE, DIRECT, HAS_IN,
//   HAS_BN, UNBIASED, TRAINING, HAS_WEIGHT   as in switchable_norm.cl
//   SUMS           the step-1 kernel compiled: 0 none (DIRECT), 1 items, 2 groups, 3 columns
//   SPLIT          1: the four device-wide step-2 kernels; 0: the one-work-group kernel
//   DX_COLUMNS     1: snb_dx_columns (NHWC with L > 1); 0: snb_dx_rows
// Only the kernels a plan launches are compiled (PoCL builds every kernel of a program).
// dweight and dbias are null when not wanted (the gradient mask is no build option).

#define RUNS (BATCH * CHANNELS)
#define BLOCK 64
#define K_BRANCHES (HAS_IN + 1 + HAS_BN)
#define K_LAYER HAS_IN
#define K_BATCH (HAS_IN + 1)
#define BATCH_FROM_X (HAS_BN && TRAINING)
// Without IN, dx has one centred term per set whose statistics come from x: LN, and BN
// in training (see run_coefficients).
#define TWO_CENTERS (!HAS_IN && BATCH_FROM_X)

#if STORAGE_HALF
#define VLOAD4(p, off) vload_half4(0, (p) + (off))
#define VSTORE4(v, p, off) vstore_half4((v), 0, (p) + (off))
#else
#define VLOAD4(p, off) vload4(0, (p) + (off))
#define VSTORE4(v, p, off) vstore4((v), 0, (p) + (off))
#endif
#define HSUM4(v) (((v).x + (v).y) + ((v).z + (v).w))

// Adds a block's (S1, S2) into a Kahan-compensated running pair: a work-item may add
// millions of blocks, and plain float recursion would drift by sqrt(blocks) ulps.
// (common.cl's KAHAN_ADD: an infinite sum keeps its Inf instead of a NaN carry.)
inline void kahan_add(float2 *sum, float2 *carry, float2 value) {
    KAHAN_ADD(float2, *sum, *carry, value);
}

// ---------------------------------------------------------------------------------------
// Step 1, channels-first: run r is x[r * L ..< (r + 1) * L].

// (S1, S2) of the contiguous elements [lo, hi) about `center`.
inline float2 sums_contiguous(__global const storage_t *x, __global const storage_t *dy, INDEX_T lo, INDEX_T hi,
                              float center) {
    float2 acc = (float2)(0.0f, 0.0f), carry = (float2)(0.0f, 0.0f);
    INDEX_T i = lo;
    for (; i + 4 * BLOCK <= hi; i += 4 * BLOCK) {
        // Two independent chains per sum: the loop runs at load speed.
        float4 s0 = 0.0f, s1 = 0.0f, q0 = 0.0f, q1 = 0.0f;
        for (int j = 0; j < 4 * BLOCK; j += 8) {
            float4 g0 = VLOAD4(dy, i + j), g1 = VLOAD4(dy, i + j + 4);
            s0 += g0;
            s1 += g1;
            q0 += g0 * (VLOAD4(x, i + j) - center);
            q1 += g1 * (VLOAD4(x, i + j + 4) - center);
        }
        kahan_add(&acc, &carry, (float2)(HSUM4(s0 + s1), HSUM4(q0 + q1)));
    }
    if (i < hi) {
        float4 s4 = 0.0f, q4 = 0.0f;
        for (; i + 4 <= hi; i += 4) {
            float4 g = VLOAD4(dy, i);
            s4 += g;
            q4 += g * (VLOAD4(x, i) - center);
        }
        float s = HSUM4(s4), q = HSUM4(q4);
        for (; i < hi; ++i) {
            float g = LOAD1(dy, i);
            s += g;
            q += g * (LOAD1(x, i) - center);
        }
        kahan_add(&acc, &carry, (float2)(s, q));
    }
    return acc;
}

// (S1, S2) of [lo, hi) in 4-element chunks item, item + items, ... (neighbouring
// work-items read neighbouring chunks; GPUs coalesce them).
inline float2 sums_strided(__global const storage_t *x, __global const storage_t *dy, INDEX_T lo, INDEX_T hi,
                           uint item, uint items, float center) {
    float2 acc = (float2)(0.0f, 0.0f), carry = (float2)(0.0f, 0.0f);
    INDEX_T chunks = (hi - lo + 3) / 4;
    for (INDEX_T k = item; k < chunks;) {
        float s = 0.0f, q = 0.0f;
        for (int j = 0; j < BLOCK && k < chunks; ++j, k += items) {
            INDEX_T i = lo + 4 * k;
            if (i + 4 <= hi) {
                float4 g = VLOAD4(dy, i);
                s += HSUM4(g);
                q += HSUM4(g * (VLOAD4(x, i) - center));
            } else {
                for (; i < hi; ++i) {
                    float g = LOAD1(dy, i);
                    s += g;
                    q += g * (LOAD1(x, i) - center);
                }
            }
        }
        kahan_add(&acc, &carry, (float2)(s, q));
    }
    return acc;
}

// Slice g of G of a run of L elements, as the forward splits it.
inline void run_slice(uint g, INDEX_T *lo, INDEX_T *hi) {
    INDEX_T per = ((((INDEX_T)SPATIAL + SLICES - 1) / SLICES) + 3) / 4 * 4;
    *lo = min((INDEX_T)g * per, (INDEX_T)SPATIAL);
    *hi = min(*lo + per, (INDEX_T)SPATIAL);
}

#if SUMS == 1
// One work-item per (run, slice): global RUNS * SLICES (padded).
__kernel void snb_sums_items(__global const storage_t *x, __global const storage_t *dy, __global const float *mean,
                             __global float *partials) {
    size_t i = get_global_id(0);
    if (i >= (size_t)RUNS * SLICES) return;
    uint r = (uint)(i / SLICES), g = (uint)(i % SLICES);
    INDEX_T base = (INDEX_T)r * SPATIAL, lo, hi;
    run_slice(g, &lo, &hi);
    vstore2(sums_contiguous(x, dy, base + lo, base + hi, mean[r]), i, partials);
}

#endif

#if SUMS == 2
// One work-group of WG per (slice, run): global (SLICES * WG, RUNS), a local tree sum.
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void snb_sums_groups(__global const storage_t *x, __global const storage_t *dy, __global const float *mean,
                     __global float *partials) {
    __local float2 sums[WG];
    uint g = get_group_id(0), r = get_group_id(1), lid = get_local_id(0);
    INDEX_T base = (INDEX_T)r * SPATIAL, lo, hi;
    run_slice(g, &lo, &hi);
    float center = mean[r];
#if CHUNKED
    INDEX_T per = ((hi - lo + WG - 1) / WG + 3) / 4 * 4;
    INDEX_T a = min(lo + lid * per, hi), b = min(a + per, hi);
    sums[lid] = sums_contiguous(x, dy, base + a, base + b, center);
#else
    sums[lid] = sums_strided(x, dy, base + lo, base + hi, lid, WG, center);
#endif
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint width = WG / 2; width > 0; width >>= 1) {
        if (lid < width) sums[lid] += sums[lid + width];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (lid == 0) vstore2(sums[0], (size_t)r * SLICES + g, partials);
}

#endif

// ---------------------------------------------------------------------------------------
// Step 1, channels-last: sample n is a row-major (L, C) matrix at x + n * L * C. A
// work-item owns TILE adjacent column vectors of CVEC channels and walks the rows of one
// slice of one sample.

#if CVEC == 4
typedef float4 floatc;
#define CVLOAD(p, off) VLOAD4(p, off)
#define CVSTORE(v, p, off) VSTORE4(v, p, off)
#define PLOAD(p, off) vload4(0, (p) + (off))
#else
typedef float floatc;
#define CVLOAD(p, off) LOAD1(p, off)
#define CVSTORE(v, p, off) STORE1(v, p, off)
#define PLOAD(p, off) ((p)[off])
#endif
#define COLUMN_VECS (CHANNELS / CVEC)

inline void column_lanes(floatc v, float *lanes) {
#if CVEC == 4
    vstore4(v, 0, lanes);
#else
    lanes[0] = v;
#endif
}

#if SUMS == 3
// Global (column items padded, BATCH * SLICES): item (i, n * SLICES + g).
__kernel void snb_sums_columns(__global const storage_t *x, __global const storage_t *dy, __global const float *mean,
                               __global float *partials) {
    uint first = get_global_id(0) * TILE;
    if (first >= COLUMN_VECS) return;
    uint width = min((uint)TILE, (uint)COLUMN_VECS - first);
    uint n = get_global_id(1) / SLICES, g = get_global_id(1) % SLICES;
    uint per = (SPATIAL + SLICES - 1) / SLICES;
    uint lo = min(g * per, (uint)SPATIAL), hi = min(lo + per, (uint)SPATIAL);
    __global const storage_t *xs = x + (INDEX_T)n * SPATIAL * CHANNELS;
    __global const storage_t *gs = dy + (INDEX_T)n * SPATIAL * CHANNELS;
    floatc center[TILE], s[TILE], q[TILE], s_sum[TILE], q_sum[TILE], s_carry[TILE], q_carry[TILE];
    for (uint t = 0; t < width; ++t) {
        center[t] = PLOAD(mean, n * CHANNELS + (first + t) * CVEC);
        s_sum[t] = 0.0f;
        q_sum[t] = 0.0f;
        s_carry[t] = 0.0f;
        q_carry[t] = 0.0f;
    }
    for (uint row = lo; row < hi;) {
        uint rows = min((uint)BLOCK, hi - row);
        for (uint t = 0; t < width; ++t) { s[t] = 0.0f; q[t] = 0.0f; }
        for (uint k = 0; k < rows; ++k) {
            INDEX_T offset = (INDEX_T)(row + k) * CHANNELS + first * CVEC;
            for (uint t = 0; t < width; ++t) {
                floatc gv = CVLOAD(gs, offset + t * CVEC);
                s[t] += gv;
                q[t] += gv * (CVLOAD(xs, offset + t * CVEC) - center[t]);
            }
        }
        // Kahan-compensated, lane by lane (as kahan_add).
        for (uint t = 0; t < width; ++t) {
            KAHAN_ADD(floatc, s_sum[t], s_carry[t], s[t]);
            KAHAN_ADD(floatc, q_sum[t], q_carry[t], q[t]);
        }
        row += rows;
    }
    for (uint t = 0; t < width; ++t) {
        float ls[CVEC], lq[CVEC];
        column_lanes(s_sum[t], ls);
        column_lanes(q_sum[t], lq);
        for (uint i = 0; i < CVEC; ++i) {
            uint r = n * CHANNELS + (first + t) * CVEC + i;
            vstore2((float2)(ls[i], lq[i]), (size_t)r * SLICES + g, partials);
        }
    }
}

#endif

// ---------------------------------------------------------------------------------------
// Step 2: adjoints, set sums, coefficients and logit gradients.
//
// Per run r = n * C + c with s = invstd[r] and g = gamma_c:
//   adj_mean[r] = -g * s * S1,   adj_var[r] = -g * s^3 * S2 / 2
// Per sample and channel (the set adjoints), with softmax weights pm, pv:
//   d_ln_mean[n] = pm_LN * sum_c adj_mean,  d_ln_var[n] = pv_LN * sum_c adj_var  (BN alike over n)
// Then with sigma^2_set = ALPHA * sum M2_in + BETA * sum (mu_in - mu_set)^2:
//   dM2 = pv_IN adj_var / D_in + ALPHA_LN d_ln_var + ALPHA_BN d_bn_var
//   dx  = g s dy + 2 dM2 (x - mu_in) + (pm_IN adj_mean + d_ln_mean / C + d_bn_mean / N) / L
//         + 2 (BETA_LN / L) d_ln_var (mu_in - mu_ln) + 2 (BETA_BN / L) d_bn_var (mu_in - mu_bn)
// Without IN the LN and BN statistics are those of their C * L and N * L values
// (BETA / L == ALPHA), and mu_in drops out:
//   dx  = g s dy + (d_ln_mean / C + d_bn_mean / N) / L
//         + 2 ALPHA_LN d_ln_var (x - mu_ln) + 2 ALPHA_BN d_bn_var (x - mu_bn)
// Both are evaluated in exactly this form, product by product, as the float64 reference
// does: an Inf in dy makes several adjoints infinite at once, and an algebraically equal
// regrouping (e.g. centring on another mean, b * (x - mu) + b * (mu - mu_in)) would add
// infinities of opposite signs, NaN where the reference has +-Inf.

#if HAS_IN
#define IN_DIVISOR ((float)SPATIAL - (float)UNBIASED)
#define ALPHA_LN (1.0f / ((float)CHANNELS * IN_DIVISOR))
#define BETA_LN_L (1.0f / ((float)CHANNELS * (float)SPATIAL))
#define ALPHA_BN (1.0f / ((float)BATCH * IN_DIVISOR))
#define BETA_BN_L (1.0f / ((float)BATCH * (float)SPATIAL))
#else
#define ALPHA_LN (1.0f / ((float)CHANNELS * (float)SPATIAL - (float)UNBIASED))
#define BETA_LN_L ALPHA_LN
#define ALPHA_BN (1.0f / ((float)BATCH * (float)SPATIAL - (float)UNBIASED))
#define BETA_BN_L ALPHA_BN
#endif

inline void softmax(__global const float *logits, float *w) {
    float top = logits[0];
    for (int k = 1; k < K_BRANCHES; ++k) top = fmax(top, logits[k]);
    float sum = 0.0f;
    for (int k = 0; k < K_BRANCHES; ++k) {
        w[k] = exp(logits[k] - top);
        sum += w[k];
    }
    for (int k = 0; k < K_BRANCHES; ++k) w[k] /= sum;
}

// Scratch layout: sums[2R] = (S1, S2) per run, adjoints[2R] = (adj_mean, adj_var) per
// run, set_adjoints[2N + 2C] = d_ln_mean, d_ln_var, d_bn_mean, d_bn_var; coefficients[3R]
// = a, b, c; logit_partials[2 * K_BRANCHES per work-item].
#define COEFFICIENT_PARAMETERS                                                                      \
    __global const storage_t *x, __global const storage_t *dy, __global const float *partials,      \
    __global const float *mean, __global const float *invstd, __global const float *instance_mean,  \
    __global const float *instance_var, __global const float *layer_mean,                           \
    __global const float *layer_var, __global const float *batch_mean,                              \
    __global const float *batch_var, __global const float *mean_logits,                             \
    __global const float *var_logits, __global const float *weight, __global float *sums,           \
    __global float *adjoints, __global float *set_adjoints, __global float *coefficients,            \
    __global float *logit_partials, __global float *dweight, __global float *dbias,                 \
    __global float *dmean_logits, __global float *dvar_logits, uint batch, uint channels,           \
    uint partial_count
#define COEFFICIENT_ARGUMENTS                                                                       \
    x, dy, partials, mean, invstd, instance_mean, instance_var, layer_mean, layer_var, batch_mean,  \
    batch_var, mean_logits, var_logits, weight, sums, adjoints, set_adjoints, coefficients,         \
    logit_partials, dweight, dbias, dmean_logits, dvar_logits, batch, channels, partial_count

inline float gamma_of(__global const float *weight, uint c) {
#if HAS_WEIGHT
    return weight[c];
#else
    return 1.0f;
#endif
}

// Phase A, run r: (S1, S2) from the slices in order (or the element itself with DIRECT),
// and the adjoints of the mixed mean and variance.
inline void instance_adjoints(uint r, COEFFICIENT_PARAMETERS) {
#if DIRECT
    float g = LOAD1(dy, r);
    float2 total = (float2)(g, g * (LOAD1(x, r) - mean[r]));
#else
    float2 total = vload2((size_t)r * SLICES, partials);
    for (uint k = 1; k < SLICES; ++k) total += vload2((size_t)r * SLICES + k, partials);
#endif
    float s = invstd[r], gs = gamma_of(weight, r % CHANNELS) * s;
    vstore2(total, r, sums);
    vstore2((float2)(-gs * total.x, -0.5f * gs * s * s * total.y), r, adjoints);
}

// Phase B, sample n: the LN set adjoints, summed over its C runs in order.
inline void layer_adjoints(uint n, const float *pm, const float *pv, COEFFICIENT_PARAMETERS) {
    float2 acc = (float2)(0.0f, 0.0f);
    for (uint c = 0; c < CHANNELS; ++c) acc += vload2(n * CHANNELS + c, adjoints);
    set_adjoints[n] = pm[K_LAYER] * acc.x;
    set_adjoints[BATCH + n] = pv[K_LAYER] * acc.y;
}

// Phase B, channels c0 ..< c0 + CH_TILE: the BN set adjoints, dgamma and dbeta, summed
// over the N runs in order, row by row so each read is a contiguous segment.
#define CH_TILE 8
#define CH_TILES ((CHANNELS + CH_TILE - 1) / CH_TILE)
inline void channel_adjoints(uint tile, const float *pm, const float *pv, COEFFICIENT_PARAMETERS) {
    uint c0 = tile * CH_TILE, width = min((uint)CH_TILE, (uint)CHANNELS - c0);
    float am[CH_TILE], av[CH_TILE], s1[CH_TILE], s2[CH_TILE];
    for (uint t = 0; t < width; ++t) {
        am[t] = 0.0f;
        av[t] = 0.0f;
        s1[t] = 0.0f;
        s2[t] = 0.0f;
    }
    for (uint n = 0; n < BATCH; ++n) {
        for (uint t = 0; t < width; ++t) {
            uint r = n * CHANNELS + c0 + t;
            float2 a = vload2(r, adjoints), s = vload2(r, sums);
            am[t] += a.x;
            av[t] += a.y;
            s1[t] += s.x;
            s2[t] += s.y * invstd[r];
        }
    }
    for (uint t = 0; t < width; ++t) {
        uint c = c0 + t;
#if HAS_BN
        set_adjoints[2 * BATCH + c] = pm[K_BATCH] * am[t];
        set_adjoints[2 * BATCH + CHANNELS + c] = pv[K_BATCH] * av[t];
#endif
        // Null when not wanted (a runtime test: no program variant per gradient mask).
        if (dweight) dweight[c] = s2[t];
        if (dbias) dbias[c] = s1[t];
    }
}

// Phase C, run r: the dx coefficients, and its terms of the logit gradients added to
// `logit` (mean logits at 0 ..< K, variance logits at K ..< 2K; not yet times p_k).
inline void run_coefficients(uint r, const float *pm, const float *pv, float *logit, COEFFICIENT_PARAMETERS) {
    uint n = r / CHANNELS, c = r - n * CHANNELS;
    float2 adj = vload2(r, adjoints);
    float d_ln_mean = set_adjoints[n], d_ln_var = set_adjoints[BATCH + n];
    float dmu = d_ln_mean / (float)CHANNELS;
#if BATCH_FROM_X
    float d_bn_mean = set_adjoints[2 * BATCH + c], d_bn_var = set_adjoints[2 * BATCH + CHANNELS + c];
#endif
    // dx = a * dy + b * (x - m) [+ b2 * (x - m2)] + c, in the form of the comment above.
    coefficients[r] = gamma_of(weight, c) * invstd[r];
#if HAS_IN
    // Centred on mu_in: m = mu_in, b = 2 dM2, c = the rest over L.
    float mu_in = instance_mean[r];
    float dm2 = ALPHA_LN * d_ln_var;
    float c_term = 2.0f * BETA_LN_L * d_ln_var * (mu_in - layer_mean[n]);
    dm2 += pv[0] * adj.y / IN_DIVISOR;
    dmu += pm[0] * adj.x;
#if BATCH_FROM_X
    dm2 += ALPHA_BN * d_bn_var;
    dmu += d_bn_mean / (float)BATCH;
    c_term += 2.0f * BETA_BN_L * d_bn_var * (mu_in - batch_mean[c]);
#endif
    coefficients[RUNS + r] = 2.0f * dm2;
    coefficients[2 * RUNS + r] = dmu / (float)SPATIAL + c_term;
    coefficients[3 * RUNS + r] = mu_in;
#else
    // Centred on mu_ln (m, b) and, with BN from x, on mu_bn (m2, b2).
#if BATCH_FROM_X
    dmu += d_bn_mean / (float)BATCH;
    coefficients[4 * RUNS + r] = 2.0f * ALPHA_BN * d_bn_var;
    coefficients[5 * RUNS + r] = batch_mean[c];
#endif
    coefficients[RUNS + r] = 2.0f * ALPHA_LN * d_ln_var;
    coefficients[2 * RUNS + r] = dmu / (float)SPATIAL;
    coefficients[3 * RUNS + r] = layer_mean[n];
#endif

    // Logit terms: adj * (stat_k - sum_j p_j stat_j), as the reference writes it,
    // adj * sum_{j != k} p_j (stat_k - stat_j) (equal, as sum_j p_j = 1): differences of
    // statistics (Sterbenz-exact when close, so large-mean data does not cancel) that are
    // 0 only where two statistics are equal, in float32 as in float64. (stat_k minus the
    // mixed statistic rounds to 0 when one weight all but dominates, and an infinite
    // adjoint would make that 0 * Inf = NaN in one precision and +-Inf in the other.)
    float stat_mean[K_BRANCHES], stat_var[K_BRANCHES];
    int k = 0;
#if HAS_IN
    stat_mean[k] = instance_mean[r];
    stat_var[k] = instance_var[r];
    ++k;
#endif
    stat_mean[k] = layer_mean[n];
    stat_var[k] = layer_var[n];
    ++k;
#if HAS_BN
    stat_mean[k] = batch_mean[c];
    stat_var[k] = batch_var[c];
#endif
    for (int j = 0; j < K_BRANCHES; ++j) {
        float dm = 0.0f, dv = 0.0f;
        for (int i = 0; i < K_BRANCHES; ++i) {
            if (i == j) continue;
            dm += pm[i] * (stat_mean[j] - stat_mean[i]);
            dv += pv[i] * (stat_var[j] - stat_var[i]);
        }
        logit[j] += adj.x * dm;
        logit[K_BRANCHES + j] += adj.y * dv;
    }
}

// Phase D: the logit gradients from `count` partials, in order, times p_k.
inline void finish_logits(uint count, const float *pm, const float *pv, COEFFICIENT_PARAMETERS) {
    float total[2 * K_BRANCHES];
    for (int j = 0; j < 2 * K_BRANCHES; ++j) total[j] = 0.0f;
    for (uint i = 0; i < count; ++i) {
        for (int j = 0; j < 2 * K_BRANCHES; ++j) total[j] += logit_partials[i * 2 * K_BRANCHES + j];
    }
    for (int j = 0; j < K_BRANCHES; ++j) {
        dmean_logits[j] = pm[j] * total[j];
        dvar_logits[j] = pv[j] * total[K_BRANCHES + j];
    }
}

#if !SPLIT
// All of step 2 in one work-group (small N * C: one launch). Loop bounds come as
// arguments: PoCL 3.1 miscompiles `for (i = lid; i < CONST; i += items)` when CONST is 1.
__kernel void snb_coefficients(COEFFICIENT_PARAMETERS) {
    uint lid = get_local_id(0), items = get_local_size(0), runs = batch * channels;
    float pm[K_BRANCHES], pv[K_BRANCHES];
    softmax(mean_logits, pm);
    softmax(var_logits, pv);
    for (uint r = lid; r < runs; r += items) instance_adjoints(r, COEFFICIENT_ARGUMENTS);
    barrier(CLK_GLOBAL_MEM_FENCE);
    for (uint n = lid; n < batch; n += items) layer_adjoints(n, pm, pv, COEFFICIENT_ARGUMENTS);
    for (uint t = lid; t < (channels + CH_TILE - 1) / CH_TILE; t += items)
        channel_adjoints(t, pm, pv, COEFFICIENT_ARGUMENTS);
    barrier(CLK_GLOBAL_MEM_FENCE);
    float logit[2 * K_BRANCHES];
    for (int j = 0; j < 2 * K_BRANCHES; ++j) logit[j] = 0.0f;
    for (uint r = lid; r < runs; r += items) run_coefficients(r, pm, pv, logit, COEFFICIENT_ARGUMENTS);
    for (int j = 0; j < 2 * K_BRANCHES; ++j) logit_partials[lid * 2 * K_BRANCHES + j] = logit[j];
    barrier(CLK_GLOBAL_MEM_FENCE);
    if (lid == 0) finish_logits(items, pm, pv, COEFFICIENT_ARGUMENTS);
}

#endif

// Step 2 over the whole device (large N * C): four launches, each work-item striding over
// its share of the grid (contiguous with CHUNKED, interleaved otherwise), the last one a
// single work-item that sums the per-work-item logit partials in order.
#if CHUNKED
#define FOR_SHARE(i, total)                                                                      \
    for (uint per_ = ((total) + get_global_size(0) - 1) / get_global_size(0),                  \
              i = min((uint)get_global_id(0) * per_, (uint)(total)), end_ = min(i + per_, (uint)(total)); \
         i < end_; ++i)
#else
#define FOR_SHARE(i, total) for (uint i = get_global_id(0); i < (total); i += get_global_size(0))
#endif

#if SPLIT
__kernel void snb_instances(COEFFICIENT_PARAMETERS) {
    FOR_SHARE(r, batch * channels) instance_adjoints(r, COEFFICIENT_ARGUMENTS);
}

__kernel void snb_sets(COEFFICIENT_PARAMETERS) {
    float pm[K_BRANCHES], pv[K_BRANCHES];
    softmax(mean_logits, pm);
    softmax(var_logits, pv);
    FOR_SHARE(i, batch + CH_TILES) {
        if (i < batch) {
            layer_adjoints(i, pm, pv, COEFFICIENT_ARGUMENTS);
        } else {
            channel_adjoints(i - batch, pm, pv, COEFFICIENT_ARGUMENTS);
        }
    }
}

__kernel void snb_mix(COEFFICIENT_PARAMETERS) {
    float pm[K_BRANCHES], pv[K_BRANCHES];
    softmax(mean_logits, pm);
    softmax(var_logits, pv);
    float logit[2 * K_BRANCHES];
    for (int j = 0; j < 2 * K_BRANCHES; ++j) logit[j] = 0.0f;
    FOR_SHARE(r, batch * channels) run_coefficients(r, pm, pv, logit, COEFFICIENT_ARGUMENTS);
    for (int j = 0; j < 2 * K_BRANCHES; ++j) logit_partials[get_global_id(0) * 2 * K_BRANCHES + j] = logit[j];
}

__kernel void snb_logits(COEFFICIENT_PARAMETERS) {
    float pm[K_BRANCHES], pv[K_BRANCHES];
    softmax(mean_logits, pm);
    softmax(var_logits, pv);
    finish_logits(partial_count, pm, pv, COEFFICIENT_ARGUMENTS);
}

#endif

// ---------------------------------------------------------------------------------------
// Step 3: dx = a * dy + b * (x - m) [+ b2 * (x - m2)] + c, per run coefficients
// (coefficients[k * RUNS + r], k = 0 ..< 4 or 6: a, b, c, m, b2, m2; see run_coefficients).

// A work-item's share [first, end) of `total`, chunked (CPUs) or interleaved (GPUs).
inline void item_share(INDEX_T total, INDEX_T unit, INDEX_T *first, INDEX_T *end, INDEX_T *stride) {
    INDEX_T item = get_global_id(0), items = get_global_size(0);
#if CHUNKED
    INDEX_T units = (total + unit - 1) / unit;
    INDEX_T per = (units + items - 1) / items * unit;
    *first = min(item * per, total);
    *end = min(*first + per, total);
    *stride = 1;
#else
    *first = item * unit;
    *end = total;
    *stride = items * unit;
#endif
}

// dx of one element (or lane vector) with dy g and x v, from the coefficients at k read
// with LOADK (a scalar or vector load).
#if TWO_CENTERS
#define DX_OF(LOADK, k, g, v)                                                                  \
    (LOADK(coefficients, k) * (g) + LOADK(coefficients + RUNS, k) * ((v) - LOADK(coefficients + 3 * RUNS, k)) \
     + LOADK(coefficients + 4 * RUNS, k) * ((v) - LOADK(coefficients + 5 * RUNS, k)) + LOADK(coefficients + 2 * RUNS, k))
#else
#define DX_OF(LOADK, k, g, v)                                                                  \
    (LOADK(coefficients, k) * (g) + LOADK(coefficients + RUNS, k) * ((v) - LOADK(coefficients + 3 * RUNS, k)) \
     + LOADK(coefficients + 2 * RUNS, k))
#endif
#define SCALAR_AT(p, k) ((p)[k])

#if !DX_COLUMNS
// Channels-first (and L == 1): contiguous runs share their coefficients.
__kernel void snb_dx_rows(__global const storage_t *x, __global const storage_t *dy, __global storage_t *dx,
                          __global const float *coefficients) {
    INDEX_T total = (INDEX_T)RUNS * SPATIAL, first, end, stride;
    item_share(total, 4, &first, &end, &stride);
#if CHUNKED
    for (INDEX_T i = first; i < end;) {
        uint r = (uint)(i / SPATIAL);
        INDEX_T stop = min((INDEX_T)(r + 1) * SPATIAL, end);
        float a = coefficients[r], b = coefficients[RUNS + r], c = coefficients[2 * RUNS + r];
        float m = coefficients[3 * RUNS + r];
#if TWO_CENTERS
        float b2 = coefficients[4 * RUNS + r], m2 = coefficients[5 * RUNS + r];
#define DX_RUN(g, v) (a * (g) + b * ((v) - m) + b2 * ((v) - m2) + c)
#else
#define DX_RUN(g, v) (a * (g) + b * ((v) - m) + c)
#endif
        for (; i + 4 <= stop; i += 4) VSTORE4(DX_RUN(VLOAD4(dy, i), VLOAD4(x, i)), dx, i);
        for (; i < stop; ++i) STORE1(DX_RUN(LOAD1(dy, i), LOAD1(x, i)), dx, i);
#undef DX_RUN
    }
#else
    for (INDEX_T i = first; i < end; i += stride) {
        for (INDEX_T j = i; j < min(i + 4, end); ++j) {
            uint r = (uint)(j / SPATIAL);
            STORE1(DX_OF(SCALAR_AT, r, LOAD1(dy, j), LOAD1(x, j)), dx, j);
        }
    }
#endif
}

#endif

#if DX_COLUMNS
// Channels-last: rows of C channels; the coefficients of row (n, m) are those of sample n.
__kernel void snb_dx_columns(__global const storage_t *x, __global const storage_t *dy, __global storage_t *dx,
                             __global const float *coefficients) {
    INDEX_T total = (INDEX_T)BATCH * SPATIAL * COLUMN_VECS, first, end, stride;
    item_share(total, 1, &first, &end, &stride);
#if CHUNKED
    // Row segment by row segment: the sample, and so the coefficients' base, is fixed.
    for (INDEX_T v = first; v < end;) {
        INDEX_T row = v / COLUMN_VECS;
        uint column = (uint)(v - row * COLUMN_VECS);
        uint len = (uint)(min((row + 1) * COLUMN_VECS, end) - v);
        uint base = (uint)(row / SPATIAL) * CHANNELS;
        for (uint j = 0; j < len; ++j) {
            uint k = base + (column + j) * CVEC;
            INDEX_T i = (v + j) * CVEC;
            CVSTORE(DX_OF(PLOAD, k, CVLOAD(dy, i), CVLOAD(x, i)), dx, i);
        }
        v += len;
    }
#else
    for (INDEX_T v = first; v < end; v += stride) {
        INDEX_T row = v / COLUMN_VECS;
        uint k = (uint)(row / SPATIAL) * CHANNELS + (uint)(v - row * COLUMN_VECS) * CVEC;
        INDEX_T i = v * CVEC;
        CVSTORE(DX_OF(PLOAD, k, CVLOAD(dy, i), CVLOAD(x, i)), dx, i);
    }
#endif
}
#endif
