// Switchable Normalization forward (Luo et al., 2018), channels-first (NCHW) and
// channels-last (NHWC), training and inference, float32 or half storage.
//
// x is viewed as (N, C, L) with L = M, the product of the spatial dims. Three steps, no
// host round trip between them:
//   1. instance moments: one pass over x gives, per (n, c) "run", a pilot (the median of
//      five of its elements) and (count, mean - pilot, M2) partials over G slices of the
//      run (sn_moments_items, sn_moments_groups for NCHW; sn_moments_columns for NHWC).
//      Skipped when L == 1 (DIRECT): each element is its own instance then.
//   2. sn_statistics, one work-group (or, for large N * C, sn_merge_partials,
//      sn_set_statistics and sn_mix over the device): merges each run's partials, derives the LN
//      statistics per n and the BN statistics per c from the instance moments with the
//      law of total variance (no E[x^2] - mean^2), updates the running statistics, mixes
//      IN/LN/BN with the two softmaxes, and writes per (n, c) the saved mean and invstd
//      and the apply coefficients (offset = mixed mean - pilot, scale = gamma * invstd,
//      beta). With DIRECT it writes y itself.
//   3. apply: y = ((x - pilot) - offset) * scale + beta (sn_apply_rows, sn_apply_columns).
//
// Sizes are kernel arguments (batch N, channels C, spatial L, slices G; runs = N * C).
// Per-run scratch `coefficients` [4 * runs]: pilot, offset, scale, beta.
//
// Build options, all set by SwitchableNormPlan (Sources/NormCL/Ops/SwitchableNorm/):
//   VEC            elements per load along an NCHW run: 16, 8, 4 or 1 (divides L)
//   CVEC, TILE     channels per load (16, 8, 4 or 1, dividing C) and column vectors per work-item
//                  of the NHWC kernels (Kernels/reduction.cl)
//   WG             work-group size of sn_moments_groups (a power of two)
//   CHUNKED        1: each work-item walks one contiguous chunk (CPUs); 0: interleaved (GPUs)
//   INDEX_T        uint or ulong: wide enough for every element offset
//   DIRECT         1 when L == 1: no moments pass, the statistics kernel writes y
//   HAS_IN, HAS_BN 1 when the branch is mixed in (LN always is)
// Decided at run time (one program for every combination): the argument `training`
// (1: BN statistics from the batch; 0: from the running statistics), the argument
// `unbiased` (1: the variance divides by count - 1, of the instance when HAS_IN, else
// of the LN and BN sets themselves; 0: by count), and from NULL arguments weight and bias
// (gamma = 1, beta = 0 without) and the running update (running_mean_out given when
// training updates the running statistics). Each acts once per statistic or channel.
// The branch helpers (softmax, branch order, IN divisor) and the walkers are in the
// SwitchableNorm section of Kernels/reduction.cl.

// ---------------------------------------------------------------------------------------
// Step 1, channels-first: each run x[r * L ..< (r + 1) * L] is contiguous.

// The run's pilot: the median of five elements spread over it (0, 1/4, 1/2, 3/4, end),
// the same value in every work-item and slice; 0 if that is Inf or NaN (see common.cl
// on non-finite values).
inline float run_pilot(__global const storage_t *x, uint r, uint spatial) {
    INDEX_T base = (INDEX_T)r * spatial, last = spatial - 1;
    float a = LOAD1(x, base), b = LOAD1(x, base + last / 4), c = LOAD1(x, base + last / 2);
    float d = LOAD1(x, base + last - last / 4), e = LOAD1(x, base + last);
    return FINITE_OR_ZERO(float, MEDIAN5(a, b, c, d, e));
}

// The parameters of the three step-1 kernels (one argument list on the host).
#define MOMENTS_PARAMETERS                                                                     \
    __global const storage_t *x, __global float *partials, __global float *coefficients, uint runs, \
        uint channels, uint spatial, uint slices

// One work-item per (run, slice): global runs * slices (padded), no local memory.
__kernel void sn_moments_items(MOMENTS_PARAMETERS) {
    size_t i = get_global_id(0);
    if (i >= (size_t)runs * slices) return;
    uint r = (uint)(i / slices), g = (uint)(i - (size_t)r * slices);
    float pilot = run_pilot(x, r, spatial);
    store_moments(partials + i * 3, accumulate_vector_moments(x, 0, sn_run_slice(r, g, slices, spatial, 0, 1), pilot));
    if (g == 0) coefficients[r] = pilot;
}

// One work-group of WG per (slice, run): global (slices * WG, runs), a local tree merge.
__kernel __attribute__((reqd_work_group_size(WG, 1, 1))) void sn_moments_groups(MOMENTS_PARAMETERS) {
    GROUP_REDUCTION(Moments, slots, lid);
    uint g = get_group_id(0), r = get_group_id(1);
    float pilot = run_pilot(x, r, spatial);
    Moments m = accumulate_vector_moments(x, 0, sn_run_slice(r, g, slices, spatial, lid, WG), pilot);
    m = reduce_moments(m, slots, lid, WG);
    if (lid == 0) store_moment_partial(partials, coefficients, r, g, slices, m, pilot);
}

// ---------------------------------------------------------------------------------------
// Step 1, channels-last: sample n is a row-major (L, C) matrix from row n * L. A
// work-item owns TILE adjacent column vectors of CVEC channels and walks the rows of
// one slice of one sample (reduction.cl's column machinery).

// Global (column work-items padded, batch * slices): item (i, n * slices + g).
__kernel void sn_moments_columns(MOMENTS_PARAMETERS) {
    SnColumnSlice w;
    if (!sn_column_slice(channels, spatial, slices, &w)) return;
    floatc pilot[TILE], mean[TILE], m2[TILE];
    for (uint t = 0; t < w.width; ++t) pilot[t] = column_pilot(x, w.row0, spatial, w.column_vecs, w.first + t);
    float count = accumulate_column_moments(x, w.row0, w.column_vecs, w.first, w.width, w.lo, w.hi, pilot, mean, m2);
    FOR_EACH_TILE_LANE(w.first, w.width, t, i, c, {
        store_moment_partial(partials, coefficients, w.n * channels + c, w.g, slices,
                             lane_moments(count, mean[t], m2[t], i), COLUMN_LANE(pilot[t], i));
    })
}

// ---------------------------------------------------------------------------------------
// Step 2: statistics, mixing and coefficients, in one work-group.
//
// Instance r = n * C + c has pilot P(r), mean P(r) + REL(r) and M2(r) over L values.
// Means are kept relative: the LN mean of sample n relative to P(n * C) (ln_rel[n]), the
// BN mean of channel c relative to P(c) (bn_rel[c]); differences of pilots are exact when
// they are close (Sterbenz), so 1e4-offset data keeps the precision of its spread.
// These macros read the statistics kernels' parameters.

#if DIRECT
// Each element is its instance. Its pilot is itself while finite (0 otherwise: pilots
// are subtracted from other values), and its M2 is the reference's (x - mean)^2 with
// mean = x: 0, or NaN for Inf and NaN (see common.cl on non-finite values).
#define P(r) FINITE_OR_ZERO(float, LOAD1(x, (r)))
#define REL(r) (LOAD1(x, (r)) - P(r))
#define M2(r) (isfinite(LOAD1(x, (r))) ? 0.0f : NAN)
#else
#define P(r) coefficients[r]
#define REL(r) partials[((size_t)(r) * slices) * 3 + 1]
#define M2(r) partials[((size_t)(r) * slices) * 3 + 2]
#endif

// The variance of a set of `k` instances (LN: the C of a sample, BN: the N of a channel)
// from within = sum of their M2 and between = sum of (mean_i - set mean)^2: with the IN
// branch, mean of the instance variances + mean squared deviation of the instance means
// (the law of total variance; `unbiased`: the instance variances divide by L - 1);
// without it, the set's own variance over k * L values, divided by k * L (- 1 if unbiased).
inline float set_variance(float within, float between, float k, uint spatial, uint unbiased) {
    if (HAS_IN || !unbiased) return within / (k * SN_IN_DIVISOR(spatial, unbiased)) + between / k;
    return (within + (float)spatial * between) / (k * (float)spatial - 1.0f);
}

// The arguments every statistics kernel takes (the host passes one list to each).
#define STATISTICS_PARAMETERS                                                                    \
    __global const storage_t *x, __global storage_t *y, __global float *partials,                \
    __global float *coefficients, __global const float *mean_logits,                             \
    __global const float *var_logits, __global const float *weight, __global const float *bias,  \
    __global const float *running_mean_in, __global const float *running_var_in,                 \
    __global float *running_mean_out, __global float *running_var_out, float momentum, float eps, \
    __global float *ln_rel, __global float *bn_rel, __global float *layer_mean,                  \
    __global float *layer_var, __global float *batch_mean, __global float *batch_var,            \
    __global float *instance_mean, __global float *instance_var, __global float *save_mean,      \
    __global float *save_invstd, uint batch, uint channels, uint spatial, uint slices, uint unbiased, \
    uint training
#define STATISTICS_ARGUMENTS                                                                     \
    x, y, partials, coefficients, mean_logits, var_logits, weight, bias, running_mean_in,        \
    running_var_in, running_mean_out, running_var_out, momentum, eps, ln_rel, bn_rel,            \
    layer_mean, layer_var, batch_mean, batch_var, instance_mean, instance_var, save_mean,        \
    save_invstd, batch, channels, spatial, slices, unbiased, training

// Run r's slices, merged in order (deterministic) into slice 0.
inline void merge_run(uint r, __global float *partials, uint slices) {
    __global float *p = partials + (size_t)r * slices * 3;
    Moments m = merge_moment_partials(p, slices, 3);
    p[1] = m.mean;
    p[2] = m.m2;
}

// LN of sample n: two passes over its C instance means (relative to P(n * C)).
inline void layer_statistics(uint n, STATISTICS_PARAMETERS) {
    uint r0 = n * channels;
    float reference = P(r0), sum = 0.0f, within = 0.0f, between = 0.0f;
    for (uint c = 0; c < channels; ++c) sum += (P(r0 + c) - reference) + REL(r0 + c);
    float mean = sum / (float)channels;
    for (uint c = 0; c < channels; ++c) {
        float d = ((P(r0 + c) - reference) + REL(r0 + c)) - mean;
        between += d * d;
        within += M2(r0 + c);
    }
    ln_rel[n] = mean;
    layer_mean[n] = reference + mean;
    layer_var[n] = set_variance(within, between, (float)channels, spatial, unbiased);
}

// BN of channels c0 ..< c0 + SN_CHANNEL_TILE (those below C) from the batch: two passes
// over their N instance means (relative to P(c)), row by row so each row read is one
// contiguous segment (a channel at a time would stride C floats per value), and the
// running update. Nothing in inference (the running statistics are the BN set's).
inline void batch_statistics(uint tile, STATISTICS_PARAMETERS) {
#if HAS_BN
    if (!training) return;
    uint c0 = tile * SN_CHANNEL_TILE, width = min((uint)SN_CHANNEL_TILE, channels - c0);
    float reference[SN_CHANNEL_TILE], mean[SN_CHANNEL_TILE], within[SN_CHANNEL_TILE], between[SN_CHANNEL_TILE];
    for (uint t = 0; t < width; ++t) {
        reference[t] = P(c0 + t);
        mean[t] = 0.0f;
        within[t] = 0.0f;
        between[t] = 0.0f;
    }
    for (uint n = 0; n < batch; ++n) {
        for (uint t = 0; t < width; ++t) mean[t] += (P(n * channels + c0 + t) - reference[t]) + REL(n * channels + c0 + t);
    }
    for (uint t = 0; t < width; ++t) mean[t] /= (float)batch;
    for (uint n = 0; n < batch; ++n) {
        for (uint t = 0; t < width; ++t) {
            uint r = n * channels + c0 + t;
            float d = ((P(r) - reference[t]) + REL(r)) - mean[t];
            between[t] += d * d;
            within[t] += M2(r);
        }
    }
    for (uint t = 0; t < width; ++t) {
        uint c = c0 + t;
        bn_rel[c] = mean[t];
        batch_mean[c] = reference[t] + mean[t];
        batch_var[c] = set_variance(within[t], between[t], (float)batch, spatial, unbiased);
        if (running_mean_out) {
            // As BatchNorm: the unbiased variance of the channel's N * L values.
            float m2 = within[t] + (float)spatial * between[t];
            running_mean_out[c] = (1.0f - momentum) * running_mean_in[c] + momentum * (reference[t] + mean[t]);
            running_var_out[c] =
                (1.0f - momentum) * running_var_in[c] + momentum * (m2 / ((float)batch * (float)spatial - 1.0f));
        }
    }
#endif
}

// Mixing for instance r = n * C + c, given the softmax weights. Writes the saved
// statistics and the apply coefficients (or, with DIRECT, y itself).
inline void mix_instance(uint r, uint n, uint c, const float *wm, const float *wv, STATISTICS_PARAMETERS) {
    float pilot = P(r);
    float in_var = M2(r) / SN_IN_DIVISOR(spatial, unbiased);
#if HAS_IN
    instance_mean[r] = pilot + REL(r);
    instance_var[r] = in_var;
#endif
    // Each branch's mean relative to this pilot, and its variance.
    float rel_k[SN_BRANCHES], var_k[SN_BRANCHES];
    SN_BRANCH_VALUES(rel_k, REL(r), ln_rel[n] - (pilot - P(n * channels)),
                     training ? bn_rel[c] - (pilot - P(c)) : running_mean_in[c] - pilot);
    SN_BRANCH_VALUES(var_k, in_var, layer_var[n], training ? batch_var[c] : running_var_in[c]);
    float rel = sn_mixture(wm, rel_k), var = sn_mixture(wv, var_k);
    if (var < 0.0f) var = 0.0f;  // rounding; NaN passes through (fmax would drop it)
    float invstd = 1.0f / sqrt(var + eps);
    save_mean[r] = pilot + rel;
    save_invstd[r] = invstd;
    float s = invstd * gamma_of(weight, c), beta = beta_of(bias, c);
#if DIRECT
    // The element is its own pilot: x - pilot is 0 (x itself when x is Inf or NaN).
    STORE1((LOAD1(x, r) - pilot - rel) * s + beta, y, r);
#else
    uint runs = batch * channels;
    coefficients[runs + r] = rel;
    coefficients[2 * runs + r] = s;
    coefficients[3 * runs + r] = beta;
#endif
}

// Mixes the runs of `share`.
inline void mix_runs(ItemRange share, STATISTICS_PARAMETERS) {
    float wm[SN_BRANCHES], wv[SN_BRANCHES];
    sn_softmax(mean_logits, wm);
    sn_softmax(var_logits, wv);
    SN_FOR_EACH_RUN(r, n, c, share, channels) mix_instance(r, n, c, wm, wv, STATISTICS_ARGUMENTS);
}

// All of step 2 in one work-group (small N * C: one launch). The work-item loops take N
// and C as arguments: PoCL 3.1 miscompiles them (a jump to address 0 at run time) when
// their bound is the constant 1.
__kernel void sn_statistics(STATISTICS_PARAMETERS) {
    uint lid = get_local_id(0), items = get_local_size(0), runs = batch * channels;
#if !DIRECT
    if (slices > 1) {
        for (uint r = lid; r < runs; r += items) merge_run(r, partials, slices);
    }
    barrier(CLK_GLOBAL_MEM_FENCE);
#endif
    for (uint n = lid; n < batch; n += items) layer_statistics(n, STATISTICS_ARGUMENTS);
    for (uint t = lid; t < (channels + SN_CHANNEL_TILE - 1) / SN_CHANNEL_TILE; t += items)
        batch_statistics(t, STATISTICS_ARGUMENTS);
    barrier(CLK_GLOBAL_MEM_FENCE);
    mix_runs(item_range(0, runs, lid, items), STATISTICS_ARGUMENTS);
}

// Step 2 over the whole device (large N * C), in up to three launches: merge the slices,
// LN and BN statistics (samples, then channels), mixing. Each work-item strides over its
// share of the grid (contiguous with CHUNKED, interleaved otherwise), so the softmaxes are
// computed once per work-item, not once per instance.
__kernel void sn_merge_partials(STATISTICS_PARAMETERS) {
    ItemRange share = sn_device_share(batch * channels);
    for (uint r = share.first; r < share.end; r += share.stride) merge_run(r, partials, slices);
}

__kernel void sn_set_statistics(STATISTICS_PARAMETERS) {
    ItemRange share = sn_device_share(batch + (channels + SN_CHANNEL_TILE - 1) / SN_CHANNEL_TILE);
    for (uint i = share.first; i < share.end; i += share.stride) {
        if (i < batch) {
            layer_statistics(i, STATISTICS_ARGUMENTS);
        } else {
            batch_statistics(i - batch, STATISTICS_ARGUMENTS);
        }
    }
}

__kernel void sn_mix(STATISTICS_PARAMETERS) { mix_runs(sn_device_share(batch * channels), STATISTICS_ARGUMENTS); }

// ---------------------------------------------------------------------------------------
// Step 3: y = ((x - pilot) - offset) * scale + beta, per (n, c) coefficients.

#if !DIRECT
// Channels-first: contiguous runs share their coefficients.
__kernel void sn_apply_rows(__global const storage_t *x, __global storage_t *y, __global const float *coefficients,
                            uint batch, uint channels, uint spatial) {
    const bool stream = STREAMS_OVER((ulong)batch * channels * spatial, 2);
    uint runs = batch * channels;
    SN_FOR_EACH_RUN_SEGMENT(s, runs, spatial) {
        uint r = (uint)s.at.q;
        float k = coefficients[r], o = coefficients[runs + r], sc = coefficients[2 * runs + r];
        float b = coefficients[3 * runs + r];
        for (INDEX_T i = s.lo; i < s.hi; ++i) STOREV_STREAM(((LOADV(x, i) - k) - o) * sc + b, y, i);
    }
    STREAM_FENCE();
}

// Channels-last: rows of C channels; the coefficients of row (n, m) are those of sample n.
__kernel void sn_apply_columns(__global const storage_t *x, __global storage_t *y, __global const float *coefficients,
                               uint batch, uint channels, uint spatial) {
    const bool stream = STREAMS_OVER((ulong)batch * channels * spatial, 2);
    uint runs = batch * channels;
#define K(slot) CLOAD(j, coefficients + (slot) * runs)
    SN_FOR_EACH_COLUMN_VECTOR(i, j, batch, channels, spatial, STOREC_STREAM(((LOADC(x, i) - K(0)) - K(1)) * K(2) + K(3), y, i));
#undef K
    STREAM_FENCE();
}
#endif
