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
// Sizes are kernel arguments (batch N, channels C, spatial L, slices G; runs = N * C).
//
// Build options, all set by SwitchableNormBackwardPlan:
//   VEC, CVEC, TILE, WG, CHUNKED, INDEX_T, DIRECT, HAS_IN, HAS_BN
//                  as in switchable_norm.cl (so are the arguments unbiased and weight)
//   TRAINING       1: the BN set's statistics are the batch's, functions of x (terms of
//                  dx for every element); 0: the running statistics, constants
//   SUMS           the step-1 kernel compiled: 0 none (DIRECT), 1 items, 2 groups, 3 columns
//   SPLIT          1: the four device-wide step-2 kernels; 0: the one-work-group kernel
//   DX_COLUMNS     1: snb_dx_columns (NHWC with L > 1); 0: snb_dx_rows
// Only the kernels a plan launches are compiled (PoCL builds every kernel of a program).
// dweight and dbias are null when not wanted (the gradient mask is no build option).

#define K_LAYER HAS_IN
#define K_BATCH (HAS_IN + 1)
#define BATCH_FROM_X (HAS_BN && TRAINING)
// Without IN, dx has one centred term per set whose statistics come from x: LN, and BN
// in training (see run_coefficients).
#define TWO_CENTERS (!HAS_IN && BATCH_FROM_X)

// ---------------------------------------------------------------------------------------
// Step 1, channels-first: run r is x[r * L ..< (r + 1) * L].

// The parameters of the three step-1 kernels (one argument list on the host).
#define SUMS_PARAMETERS                                                                          \
    __global const storage_t *x, __global const storage_t *dy, __global const float *mean,      \
        __global float *partials, uint runs, uint channels, uint spatial, uint slices

#if SUMS == 1
// One work-item per (run, slice): global runs * slices (padded).
__kernel void snb_sums_items(SUMS_PARAMETERS) {
    size_t i = get_global_id(0);
    if (i >= (size_t)runs * slices) return;
    uint r = (uint)(i / slices), g = (uint)(i - (size_t)r * slices);
    vstore2(accumulate_vector_gradient_sums(dy, x, 0, sn_run_slice(r, g, slices, spatial, 0, 1), mean[r], NO_PRE, NULL), i, partials);
}
#endif

#if SUMS == 2
// One work-group of WG per (slice, run): global (slices * WG, runs), a local tree sum.
__kernel __attribute__((reqd_work_group_size(WG, 1, 1))) void snb_sums_groups(SUMS_PARAMETERS) {
    GROUP_REDUCTION(float2, slots, lid);
    uint g = get_group_id(0), r = get_group_id(1);
    float2 s = accumulate_vector_gradient_sums(dy, x, 0, sn_run_slice(r, g, slices, spatial, lid, WG), mean[r], NO_PRE, NULL);
    s = reduce_float2(s, slots, lid, WG);
    if (lid == 0) vstore2(s, (size_t)r * slices + g, partials);
}
#endif

#if SUMS == 3
// ---------------------------------------------------------------------------------------
// Step 1, channels-last: sample n is a row-major (L, C) matrix from row n * L. A
// work-item owns TILE adjacent column vectors of CVEC channels and walks the rows of one
// slice of one sample. Global (column work-items padded, batch * slices): item
// (i, n * slices + g).
__kernel void snb_sums_columns(SUMS_PARAMETERS) {
    SnColumnSlice w;
    if (!sn_column_slice(channels, spatial, slices, &w)) return;
    floatc center[TILE], s_sum[TILE], q_sum[TILE];
    for (uint t = 0; t < w.width; ++t) center[t] = CLOAD(w.n * w.column_vecs + w.first + t, mean);
    // Kahan-compensated block sums, lane by lane (as accumulate_vector_gradient_sums).
    accumulate_column_gradient_sums(dy, x, w.row0, w.column_vecs, w.first, w.width, w.lo, w.hi, center, NULL, NULL, NULL, s_sum, q_sum);
    FOR_EACH_TILE_LANE(w.first, w.width, t, i, c, {
        size_t r = w.n * channels + c;
        vstore2((float2)(COLUMN_LANE(s_sum[t], i), COLUMN_LANE(q_sum[t], i)), r * slices + w.g, partials);
    })
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

// The set variances' coefficients (see set_variance in switchable_norm.cl), from the
// coefficient kernels' parameters batch, channels and spatial.
#define IN_DIVISOR SN_IN_DIVISOR(spatial, unbiased)
#if HAS_IN
#define ALPHA_LN (1.0f / ((float)channels * IN_DIVISOR))
#define BETA_LN_L (1.0f / ((float)channels * (float)spatial))
#define ALPHA_BN (1.0f / ((float)batch * IN_DIVISOR))
#define BETA_BN_L (1.0f / ((float)batch * (float)spatial))
#else
#define ALPHA_LN (1.0f / ((float)channels * (float)spatial - (float)unbiased))
#define BETA_LN_L ALPHA_LN
#define ALPHA_BN (1.0f / ((float)batch * (float)spatial - (float)unbiased))
#define BETA_BN_L ALPHA_BN
#endif

// Scratch layout: sums[2R] = (S1, S2) per run, adjoints[2R] = (adj_mean, adj_var) per
// run, set_adjoints[2N + 2C] = d_ln_mean, d_ln_var, d_bn_mean, d_bn_var; coefficients[4R or
// 6R] = a, b, c, m (b2, m2); logit_partials[2 * SN_BRANCHES per work-item].
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
    uint spatial, uint slices, uint partial_count, uint unbiased
#define COEFFICIENT_ARGUMENTS                                                                       \
    x, dy, partials, mean, invstd, instance_mean, instance_var, layer_mean, layer_var, batch_mean,  \
    batch_var, mean_logits, var_logits, weight, sums, adjoints, set_adjoints, coefficients,         \
    logit_partials, dweight, dbias, dmean_logits, dvar_logits, batch, channels, spatial, slices,   \
    partial_count, unbiased

// Phase A, run r: (S1, S2) from the slices in order (or the element itself with DIRECT),
// and the adjoints of the mixed mean and variance.
inline void instance_adjoints(uint r, uint c, COEFFICIENT_PARAMETERS) {
#if DIRECT
    float g = LOAD1(dy, r);
    float2 total = (float2)(g, g * (LOAD1(x, r) - mean[r]));
#else
    float2 total = sum_float2_partials((__global const float2 *)partials + (size_t)r * slices, slices, 1);
#endif
    float s = invstd[r], gs = gamma_of(weight, c) * s;
    vstore2(total, r, sums);
    vstore2((float2)(-gs * total.x, -0.5f * gs * s * s * total.y), r, adjoints);
}

// Phase B, sample n: the LN set adjoints, summed over its C runs in order.
inline void layer_adjoints(uint n, const float *pm, const float *pv, COEFFICIENT_PARAMETERS) {
    float2 acc = (float2)(0.0f, 0.0f);
    for (uint c = 0; c < channels; ++c) acc += vload2(n * channels + c, adjoints);
    set_adjoints[n] = pm[K_LAYER] * acc.x;
    set_adjoints[batch + n] = pv[K_LAYER] * acc.y;
}

// Phase B, channels c0 ..< c0 + SN_CHANNEL_TILE: the BN set adjoints, dgamma and dbeta,
// summed over the N runs in order, row by row so each read is a contiguous segment.
inline void channel_adjoints(uint tile, const float *pm, const float *pv, COEFFICIENT_PARAMETERS) {
    uint c0 = tile * SN_CHANNEL_TILE, width = min((uint)SN_CHANNEL_TILE, channels - c0);
    // Per channel, summed lane by lane: (adj_mean, adj_var), and (S1, S2 * invstd).
    float2 adj[SN_CHANNEL_TILE], sum[SN_CHANNEL_TILE];
    for (uint t = 0; t < width; ++t) adj[t] = sum[t] = (float2)(0.0f, 0.0f);
    for (uint n = 0; n < batch; ++n) {
        for (uint t = 0; t < width; ++t) {
            uint r = n * channels + c0 + t;
            float2 s = vload2(r, sums);
            adj[t] += vload2(r, adjoints);
            sum[t].x += s.x;
            sum[t].y += s.y * invstd[r];
        }
    }
    for (uint t = 0; t < width; ++t) {
        uint c = c0 + t;
#if HAS_BN
        set_adjoints[2 * batch + c] = pm[K_BATCH] * adj[t].x;
        set_adjoints[2 * batch + channels + c] = pv[K_BATCH] * adj[t].y;
#endif
        // Null when not wanted (a runtime test: no program variant per gradient mask).
        if (dweight) dweight[c] = sum[t].y;
        if (dbias) dbias[c] = sum[t].x;
    }
}

// Phase C, run r: the dx coefficients, and its terms of the logit gradients added to
// `logit` (mean logits at 0 ..< K, variance logits at K ..< 2K; not yet times p_k).
inline void run_coefficients(uint r, uint n, uint c, const float *pm, const float *pv, float *logit,
                             COEFFICIENT_PARAMETERS) {
    uint runs = batch * channels;
    float2 adj = vload2(r, adjoints);
    float d_ln_mean = set_adjoints[n], d_ln_var = set_adjoints[batch + n];
    float dmu = d_ln_mean / (float)channels;
#if BATCH_FROM_X
    float d_bn_mean = set_adjoints[2 * batch + c], d_bn_var = set_adjoints[2 * batch + channels + c];
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
    dmu += d_bn_mean / (float)batch;
    c_term += 2.0f * BETA_BN_L * d_bn_var * (mu_in - batch_mean[c]);
#endif
    coefficients[runs + r] = 2.0f * dm2;
    coefficients[2 * runs + r] = dmu / (float)spatial + c_term;
    coefficients[3 * runs + r] = mu_in;
#else
    // Centred on mu_ln (m, b) and, with BN from x, on mu_bn (m2, b2).
#if BATCH_FROM_X
    dmu += d_bn_mean / (float)batch;
    coefficients[4 * runs + r] = 2.0f * ALPHA_BN * d_bn_var;
    coefficients[5 * runs + r] = batch_mean[c];
#endif
    coefficients[runs + r] = 2.0f * ALPHA_LN * d_ln_var;
    coefficients[2 * runs + r] = dmu / (float)spatial;
    coefficients[3 * runs + r] = layer_mean[n];
#endif

    // Logit terms: adj * (stat_k - sum_j p_j stat_j), as the reference writes it,
    // adj * sum_{j != k} p_j (stat_k - stat_j) (equal, as sum_j p_j = 1): differences of
    // statistics (Sterbenz-exact when close, so large-mean data does not cancel) that are
    // 0 only where two statistics are equal, in float32 as in float64. (stat_k minus the
    // mixed statistic rounds to 0 when one weight all but dominates, and an infinite
    // adjoint would make that 0 * Inf = NaN in one precision and +-Inf in the other.)
    float stat_mean[SN_BRANCHES], stat_var[SN_BRANCHES];
    SN_BRANCH_VALUES(stat_mean, instance_mean[r], layer_mean[n], batch_mean[c]);
    SN_BRANCH_VALUES(stat_var, instance_var[r], layer_var[n], batch_var[c]);
    for (int j = 0; j < SN_BRANCHES; ++j) {
        float dm = 0.0f, dv = 0.0f;
        for (int i = 0; i < SN_BRANCHES; ++i) {
            if (i == j) continue;
            dm += pm[i] * (stat_mean[j] - stat_mean[i]);
            dv += pv[i] * (stat_var[j] - stat_var[i]);
        }
        logit[j] += adj.x * dm;
        logit[SN_BRANCHES + j] += adj.y * dv;
    }
}

// Phase D: the logit gradients from `count` partials, in order, times p_k.
inline void finish_logits(uint count, const float *pm, const float *pv, COEFFICIENT_PARAMETERS) {
    float total[2 * SN_BRANCHES];
    for (int j = 0; j < 2 * SN_BRANCHES; ++j) total[j] = 0.0f;
    for (uint i = 0; i < count; ++i) {
        for (int j = 0; j < 2 * SN_BRANCHES; ++j) total[j] += logit_partials[i * 2 * SN_BRANCHES + j];
    }
    for (int j = 0; j < SN_BRANCHES; ++j) {
        dmean_logits[j] = pm[j] * total[j];
        dvar_logits[j] = pv[j] * total[SN_BRANCHES + j];
    }
}

#if !SPLIT
// All of step 2 in one work-group (small N * C: one launch). Loop bounds come as
// arguments: PoCL 3.1 miscompiles `for (i = lid; i < CONST; i += items)` when CONST is 1.
__kernel void snb_coefficients(COEFFICIENT_PARAMETERS) {
    uint lid = get_local_id(0), items = get_local_size(0), runs = batch * channels;
    ItemRange all = item_range(0, runs, lid, items);
    float pm[SN_BRANCHES], pv[SN_BRANCHES];
    sn_softmax(mean_logits, pm);
    sn_softmax(var_logits, pv);
    SN_FOR_EACH_RUN(r, n, c, all, channels) instance_adjoints(r, c, COEFFICIENT_ARGUMENTS);
    barrier(CLK_GLOBAL_MEM_FENCE);
    for (uint n = lid; n < batch; n += items) layer_adjoints(n, pm, pv, COEFFICIENT_ARGUMENTS);
    for (uint t = lid; t < (channels + SN_CHANNEL_TILE - 1) / SN_CHANNEL_TILE; t += items)
        channel_adjoints(t, pm, pv, COEFFICIENT_ARGUMENTS);
    barrier(CLK_GLOBAL_MEM_FENCE);
    float logit[2 * SN_BRANCHES];
    for (int j = 0; j < 2 * SN_BRANCHES; ++j) logit[j] = 0.0f;
    SN_FOR_EACH_RUN(r, n, c, all, channels) run_coefficients(r, n, c, pm, pv, logit, COEFFICIENT_ARGUMENTS);
    for (int j = 0; j < 2 * SN_BRANCHES; ++j) logit_partials[lid * 2 * SN_BRANCHES + j] = logit[j];
    barrier(CLK_GLOBAL_MEM_FENCE);
    if (lid == 0) finish_logits(items, pm, pv, COEFFICIENT_ARGUMENTS);
}
#endif

#if SPLIT
// Step 2 over the whole device (large N * C): four launches, each work-item striding over
// its share of the grid (contiguous with CHUNKED, interleaved otherwise), the last one a
// single work-item that sums the per-work-item logit partials in order.

__kernel void snb_instances(COEFFICIENT_PARAMETERS) {
    SN_FOR_EACH_RUN(r, n, c, sn_device_share(batch * channels), channels) instance_adjoints(r, c, COEFFICIENT_ARGUMENTS);
}

__kernel void snb_sets(COEFFICIENT_PARAMETERS) {
    float pm[SN_BRANCHES], pv[SN_BRANCHES];
    sn_softmax(mean_logits, pm);
    sn_softmax(var_logits, pv);
    ItemRange share = sn_device_share(batch + (channels + SN_CHANNEL_TILE - 1) / SN_CHANNEL_TILE);
    for (uint i = share.first; i < share.end; i += share.stride) {
        if (i < batch) {
            layer_adjoints(i, pm, pv, COEFFICIENT_ARGUMENTS);
        } else {
            channel_adjoints(i - batch, pm, pv, COEFFICIENT_ARGUMENTS);
        }
    }
}

__kernel void snb_mix(COEFFICIENT_PARAMETERS) {
    float pm[SN_BRANCHES], pv[SN_BRANCHES];
    sn_softmax(mean_logits, pm);
    sn_softmax(var_logits, pv);
    float logit[2 * SN_BRANCHES];
    for (int j = 0; j < 2 * SN_BRANCHES; ++j) logit[j] = 0.0f;
    SN_FOR_EACH_RUN(r, n, c, sn_device_share(batch * channels), channels)
        run_coefficients(r, n, c, pm, pv, logit, COEFFICIENT_ARGUMENTS);
    for (int j = 0; j < 2 * SN_BRANCHES; ++j) logit_partials[get_global_id(0) * 2 * SN_BRANCHES + j] = logit[j];
}

__kernel void snb_logits(COEFFICIENT_PARAMETERS) {
    float pm[SN_BRANCHES], pv[SN_BRANCHES];
    sn_softmax(mean_logits, pm);
    sn_softmax(var_logits, pv);
    finish_logits(partial_count, pm, pv, COEFFICIENT_ARGUMENTS);
}
#endif

// ---------------------------------------------------------------------------------------
// Step 3: dx = a * dy + b * (x - m) [+ b2 * (x - m2)] + c, per run coefficients
// (coefficients[k * runs + r], k = 0 ..< 4 or 6: a, b, c, m, b2, m2; see run_coefficients).

// dx of one element (or lane vector) with dy g and x v from its run's coefficients.
#if TWO_CENTERS
#define DX(a, b, c, m, b2, m2, g, v) ((a) * (g) + (b) * ((v) - (m)) + (b2) * ((v) - (m2)) + (c))
#else
#define DX(a, b, c, m, b2, m2, g, v) ((a) * (g) + (b) * ((v) - (m)) + (c))
#endif

// The parameters of both dx kernels.
#define DX_PARAMETERS                                                                                 \
    __global const storage_t *x, __global const storage_t *dy, __global storage_t *dx,              \
        __global const float *coefficients, uint batch, uint channels, uint spatial

#if !DX_COLUMNS
// Channels-first (and L == 1): contiguous runs share their coefficients.
__kernel void snb_dx_rows(DX_PARAMETERS) {
    const bool stream = STREAMS_OVER((ulong)batch * channels * spatial, 3);
    uint runs = batch * channels;
    SN_FOR_EACH_RUN_SEGMENT(s, runs, spatial) {
        uint r = (uint)s.at.q;
        float a = coefficients[r], b = coefficients[runs + r], c = coefficients[2 * runs + r];
        float m = coefficients[3 * runs + r];
#if TWO_CENTERS
        float b2 = coefficients[4 * runs + r], m2 = coefficients[5 * runs + r];
#endif
        for (INDEX_T i = s.lo; i < s.hi; ++i) STOREV_STREAM(DX(a, b, c, m, b2, m2, LOADV(dy, i), LOADV(x, i)), dx, i);
    }
    STREAM_FENCE();
}
#endif

#if DX_COLUMNS
// Channels-last: rows of C channels; the coefficients of row (n, m) are those of sample n.
__kernel void snb_dx_columns(DX_PARAMETERS) {
    const bool stream = STREAMS_OVER((ulong)batch * channels * spatial, 3);
    uint runs = batch * channels;
#define K(slot) CLOAD(j, coefficients + (slot) * runs)
    SN_FOR_EACH_COLUMN_VECTOR(i, j, batch, channels, spatial,
                              STOREC_STREAM(DX(K(0), K(1), K(2), K(3), K(4), K(5), LOADC(dy, i), LOADC(x, i)), dx, i));
#undef K
    STREAM_FENCE();
}
#endif
