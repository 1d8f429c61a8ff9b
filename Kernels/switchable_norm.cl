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
//      and the apply coefficients (offset = mixed mean - pilot, scale = gamma * invstd).
//      With DIRECT it writes y itself.
//   3. apply: y = ((x - pilot) - offset) * scale + beta (sn_apply_rows, sn_apply_columns).
//
// Build options, all set by SwitchableNormPlan (Sources/NormCL/Ops/SwitchableNorm/):
//   BATCH, CHANNELS, SPATIAL   N, C and L
//   SLICES         G, partial moments per run
//   WG             work-group size of sn_moments_groups (a power of two)
//   CHUNKED        1: each work-item walks one contiguous chunk (CPUs); 0: interleaved (GPUs)
//   INDEX_T        uint or ulong: wide enough for every element offset
//   CVEC, TILE     channels per load (4 needs C % 4 == 0) and column vectors per work-item
//                  of the NHWC kernels
//   DIRECT         1 when L == 1: no moments pass, the statistics kernel writes y
//   HAS_IN, HAS_BN 1 when the branch is mixed in (LN always is)
//   UNBIASED       1: the variance divides by count - 1 (of the instance when HAS_IN, else
//                  of the LN and BN sets themselves); 0: by count
//   TRAINING       1: BN statistics from the batch; 0: from the running statistics
//   TRACK_RUNNING  1 when training updates running statistics
//   HAS_WEIGHT, HAS_BIAS  gamma and beta given (else 1 and 0)

#define RUNS (BATCH * CHANNELS)
#define BLOCK 64
#define K_BRANCHES (HAS_IN + 1 + HAS_BN)

#if STORAGE_HALF
#define VLOAD4(p, off) vload_half4(0, (p) + (off))
#define VSTORE4(v, p, off) vstore_half4((v), 0, (p) + (off))
#else
#define VLOAD4(p, off) vload4(0, (p) + (off))
#define VSTORE4(v, p, off) vstore4((v), 0, (p) + (off))
#endif
#define HSUM4(v) (((v).x + (v).y) + ((v).z + (v).w))

// ---------------------------------------------------------------------------------------
// Step 1, channels-first: each run x[r * L ..< (r + 1) * L] is contiguous.

// The run's pilot: the median of five elements spread over it (0, 1/4, 1/2, 3/4, end),
// the same value in every work-item and slice; 0 if that is Inf or NaN (see common.cl
// on non-finite values).
inline float run_pilot(__global const storage_t *x, INDEX_T base) {
    INDEX_T last = SPATIAL - 1;
    float a = LOAD1(x, base), b = LOAD1(x, base + last / 4), c = LOAD1(x, base + last / 2);
    float d = LOAD1(x, base + last - last / 4), e = LOAD1(x, base + last);
    return FINITE_OR_ZERO(float, MEDIAN5(a, b, c, d, e));
}

// Moments of the contiguous elements x[lo ..< hi], relative to `pilot`: blocks of
// 4 * BLOCK values summed shifted by the running mean, folded with Chan's formula
// (fold_block, Kahan-compensated). Vector loads need no alignment (vload4).
inline Moments accumulate_contiguous(__global const storage_t *x, INDEX_T lo, INDEX_T hi, float pilot) {
    Moments acc = {0.0f, 0.0f, 0.0f};
    float2 carry = (float2)(0.0f, 0.0f);
    if (lo >= hi) return acc;
    float shift = FINITE_OR_ZERO(float, LOAD1(x, lo) - pilot);
    INDEX_T i = lo;
    for (; i + 4 * BLOCK <= hi; i += 4 * BLOCK) {
        // Two independent accumulator chains per sum: the loop runs at load speed.
        float4 s0 = 0.0f, s1 = 0.0f, q0 = 0.0f, q1 = 0.0f;
        for (int j = 0; j < 4 * BLOCK; j += 8) {
            float4 d0 = (VLOAD4(x, i + j) - pilot) - shift;
            float4 d1 = (VLOAD4(x, i + j + 4) - pilot) - shift;
            s0 += d0;
            s1 += d1;
            q0 += d0 * d0;
            q1 += d1 * d1;
        }
        float4 s = s0 + s1, q = q0 + q1;
        acc = fold_block(acc, &carry, shift, HSUM4(s), HSUM4(q), (float)(4 * BLOCK));
        shift = next_shift(shift, acc);
    }
    if (i < hi) {
        float4 s4 = 0.0f, q4 = 0.0f;
        float b = (float)(hi - i);
        for (; i + 4 <= hi; i += 4) {
            float4 d = (VLOAD4(x, i) - pilot) - shift;
            s4 += d;
            q4 += d * d;
        }
        float s = HSUM4(s4), q = HSUM4(q4);
        for (; i < hi; ++i) {
            float d = (LOAD1(x, i) - pilot) - shift;
            s += d;
            q += d * d;
        }
        acc = fold_block(acc, &carry, shift, s, q, b);
    }
    return acc;
}

// Moments of x[lo ..< hi] taken in 4-element chunks item, item + items, ... (neighbouring
// work-items read neighbouring chunks: GPUs coalesce them); the last, partial chunk goes
// to the work-item whose turn it is.
inline Moments accumulate_strided(__global const storage_t *x, INDEX_T lo, INDEX_T hi, uint item, uint items,
                                  float pilot) {
    Moments acc = {0.0f, 0.0f, 0.0f};
    float2 carry = (float2)(0.0f, 0.0f);
    INDEX_T chunks = (hi - lo + 3) / 4;
    if (item >= chunks) return acc;
    float shift = FINITE_OR_ZERO(float, LOAD1(x, lo + 4 * (INDEX_T)item) - pilot);
    for (INDEX_T k = item; k < chunks;) {
        float s = 0.0f, q = 0.0f, b = 0.0f;
        for (int j = 0; j < BLOCK && k < chunks; ++j, k += items) {
            INDEX_T i = lo + 4 * k;
            if (i + 4 <= hi) {
                float4 d = (VLOAD4(x, i) - pilot) - shift;
                s += HSUM4(d);
                q += HSUM4(d * d);
                b += 4.0f;
            } else {
                for (; i < hi; ++i) {
                    float d = (LOAD1(x, i) - pilot) - shift;
                    s += d;
                    q += d * d;
                    b += 1.0f;
                }
            }
        }
        acc = fold_block(acc, &carry, shift, s, q, b);
        shift = next_shift(shift, acc);
    }
    return acc;
}

// Slice g of G of a run of L elements: [lo, hi), slice lengths rounded to multiples of 4.
inline void run_slice(uint g, INDEX_T *lo, INDEX_T *hi) {
    INDEX_T per = ((((INDEX_T)SPATIAL + SLICES - 1) / SLICES) + 3) / 4 * 4;
    *lo = min((INDEX_T)g * per, (INDEX_T)SPATIAL);
    *hi = min(*lo + per, (INDEX_T)SPATIAL);
}

inline void write_partial(__global float *partials, uint r, uint g, Moments m) {
    __global float *p = partials + ((size_t)r * SLICES + g) * 3;
    p[0] = m.count;
    p[1] = m.mean;
    p[2] = m.m2;
}

// One work-item per (run, slice): global RUNS * SLICES (padded), no local memory.
__kernel void sn_moments_items(__global const storage_t *x, __global float *partials, __global float *pilots) {
    size_t i = get_global_id(0);
    if (i >= (size_t)RUNS * SLICES) return;
    uint r = (uint)(i / SLICES), g = (uint)(i % SLICES);
    INDEX_T base = (INDEX_T)r * SPATIAL, lo, hi;
    run_slice(g, &lo, &hi);
    float pilot = run_pilot(x, base);
    write_partial(partials, r, g, accumulate_contiguous(x, base + lo, base + hi, pilot));
    if (g == 0) pilots[r] = pilot;
}

// One work-group of WG per (slice, run): global (SLICES * WG, RUNS), a local tree merge.
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void sn_moments_groups(__global const storage_t *x, __global float *partials, __global float *pilots) {
    __local float lc[WG], lm[WG], lq[WG];
    uint g = get_group_id(0), r = get_group_id(1), lid = get_local_id(0);
    INDEX_T base = (INDEX_T)r * SPATIAL, lo, hi;
    run_slice(g, &lo, &hi);
    float pilot = run_pilot(x, base);
#if CHUNKED
    INDEX_T per = ((hi - lo + WG - 1) / WG + 3) / 4 * 4;
    INDEX_T a = min(lo + lid * per, hi), b = min(a + per, hi);
    Moments m = accumulate_contiguous(x, base + a, base + b, pilot);
#else
    Moments m = accumulate_strided(x, base + lo, base + hi, lid, WG, pilot);
#endif
    lc[lid] = m.count;
    lm[lid] = m.mean;
    lq[lid] = m.m2;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint width = WG / 2; width > 0; width >>= 1) {
        if (lid < width) {
            Moments u = {lc[lid], lm[lid], lq[lid]};
            Moments v = {lc[lid + width], lm[lid + width], lq[lid + width]};
            Moments w = moments_merge(u, v);
            lc[lid] = w.count;
            lm[lid] = w.mean;
            lq[lid] = w.m2;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (lid == 0) {
        Moments total = {lc[0], lm[0], lq[0]};
        write_partial(partials, r, g, total);
        if (g == 0) pilots[r] = pilot;
    }
}

// ---------------------------------------------------------------------------------------
// Step 1, channels-last: sample n is a row-major (L, C) matrix at x + n * L * C. A
// work-item owns TILE adjacent column vectors of CVEC channels and walks the rows of
// one slice of one sample (as bn_train_columns does over all rows).

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

// Global (column items padded, BATCH * SLICES): item (i, n * SLICES + g).
__kernel void sn_moments_columns(__global const storage_t *x, __global float *partials, __global float *pilots) {
    uint first = get_global_id(0) * TILE;
    if (first >= COLUMN_VECS) return;
    uint width = min((uint)TILE, (uint)COLUMN_VECS - first);
    uint n = get_global_id(1) / SLICES, g = get_global_id(1) % SLICES;
    uint per = (SPATIAL + SLICES - 1) / SLICES;
    uint lo = min(g * per, (uint)SPATIAL), hi = min(lo + per, (uint)SPATIAL);
    __global const storage_t *sample = x + (INDEX_T)n * SPATIAL * CHANNELS;
    floatc pilot[TILE], shift[TILE], s[TILE], q[TILE], mean[TILE], m2[TILE], carry[TILE], mean_carry[TILE];
    uint last = SPATIAL - 1;
    for (uint t = 0; t < width; ++t) {
        uint col = (first + t) * CVEC;
        floatc a = CVLOAD(sample, col), b = CVLOAD(sample, (INDEX_T)(last / 4) * CHANNELS + col);
        floatc c = CVLOAD(sample, (INDEX_T)(last / 2) * CHANNELS + col);
        floatc d = CVLOAD(sample, (INDEX_T)(last - last / 4) * CHANNELS + col);
        floatc e = CVLOAD(sample, (INDEX_T)last * CHANNELS + col);
        pilot[t] = FINITE_OR_ZERO(floatc, MEDIAN5(a, b, c, d, e));
        shift[t] = 0.0f;
        mean[t] = 0.0f;
        m2[t] = 0.0f;
        carry[t] = 0.0f;
        mean_carry[t] = 0.0f;
    }
    float count = 0.0f;
    for (uint row = lo; row < hi;) {
        uint rows = min((uint)BLOCK, hi - row);
        for (uint t = 0; t < width; ++t) { s[t] = 0.0f; q[t] = 0.0f; }
        for (uint k = 0; k < rows; ++k) {
            __global const storage_t *p = sample + (INDEX_T)(row + k) * CHANNELS + first * CVEC;
            for (uint t = 0; t < width; ++t) {
                floatc v = (CVLOAD(p, t * CVEC) - pilot[t]) - shift[t];
                s[t] += v;
                q[t] += v * v;
            }
        }
        // Chan's fold of the block, lane by lane, as fold_block (Kahan-compensated).
        float b = (float)rows, total = count + b;
        for (uint t = 0; t < width; ++t)
            FOLD_BLOCK_LANES(floatc, s[t], q[t], b, count, shift[t], mean[t], m2[t], carry[t], mean_carry[t]);
        count = total;
        row += rows;
    }
    for (uint t = 0; t < width; ++t) {
        float lp[CVEC], lm[CVEC], lq[CVEC];
        column_lanes(pilot[t], lp);
        column_lanes(mean[t], lm);
        column_lanes(m2[t], lq);
        for (uint i = 0; i < CVEC; ++i) {
            uint r = n * CHANNELS + (first + t) * CVEC + i;
            Moments m = {count, lm[i], lq[i]};
            write_partial(partials, r, g, m);
            if (g == 0) pilots[r] = lp[i];
        }
    }
}

// ---------------------------------------------------------------------------------------
// Step 2: statistics, mixing and coefficients, in one work-group.
//
// Instance r = n * C + c has pilot P(r), mean P(r) + REL(r) and M2(r) over L values.
// Means are kept relative: the LN mean of sample n relative to P(n * C) (ln_rel[n]), the
// BN mean of channel c relative to P(c) (bn_rel[c]); differences of pilots are exact when
// they are close (Sterbenz), so 1e4-offset data keeps the precision of its spread.

#if DIRECT
// Each element is its instance. Its pilot is itself while finite (0 otherwise: pilots
// are subtracted from other values), and its M2 is the reference's (x - mean)^2 with
// mean = x: 0, or NaN for Inf and NaN (see common.cl on non-finite values).
#define P(r) FINITE_OR_ZERO(float, LOAD1(x, (r)))
#define REL(r) (LOAD1(x, (r)) - P(r))
#define M2(r) (isfinite(LOAD1(x, (r))) ? 0.0f : NAN)
#else
#define P(r) pilots[r]
#define REL(r) partials[(size_t)(r) * SLICES * 3 + 1]
#define M2(r) partials[(size_t)(r) * SLICES * 3 + 2]
#endif

// Divisor of the instance variance.
#if UNBIASED && HAS_IN
#define IN_DIVISOR ((float)SPATIAL - 1.0f)
#else
#define IN_DIVISOR ((float)SPATIAL)
#endif

// The variance of a set of `k` instances (LN: the C of a sample, BN: the N of a channel)
// from within = sum of their M2 and between = sum of (mean_i - set mean)^2: with the IN
// branch, mean of the instance variances + mean squared deviation of the instance means
// (the law of total variance; with UNBIASED the instance variances divide by L - 1);
// without it, the set's own variance over k * L values, divided by k * L (- 1 if UNBIASED).
inline float set_variance(float within, float between, float k) {
#if HAS_IN || !UNBIASED
    return within / (k * IN_DIVISOR) + between / k;
#else
    return (within + (float)SPATIAL * between) / (k * (float)SPATIAL - 1.0f);
#endif
}

// Softmax of `count` logits into w.
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

// The arguments every statistics kernel takes (the Swift side passes one list to each).
#define STATISTICS_PARAMETERS                                                                    \
    __global const storage_t *x, __global storage_t *y, __global float *partials,                \
    __global const float *pilots, __global const float *mean_logits,                             \
    __global const float *var_logits, __global const float *weight, __global const float *bias,  \
    __global const float *running_mean_in, __global const float *running_var_in,                 \
    __global float *running_mean_out, __global float *running_var_out, float momentum, float eps, \
    __global float *ln_rel, __global float *bn_rel, __global float *layer_mean,                  \
    __global float *layer_var, __global float *batch_mean, __global float *batch_var,            \
    __global float *instance_mean, __global float *instance_var, __global float *save_mean,      \
    __global float *save_invstd, __global float *offset, __global float *scale, uint batch,      \
    uint channels
#define STATISTICS_ARGUMENTS                                                                     \
    x, y, partials, pilots, mean_logits, var_logits, weight, bias, running_mean_in,              \
    running_var_in, running_mean_out, running_var_out, momentum, eps, ln_rel, bn_rel,            \
    layer_mean, layer_var, batch_mean, batch_var, instance_mean, instance_var, save_mean,        \
    save_invstd, offset, scale, batch, channels

// Run r's slices, merged in order (deterministic) into slice 0.
inline void merge_run(uint r, __global float *partials) {
    __global float *p = partials + (size_t)r * SLICES * 3;
    Moments m = {p[0], p[1], p[2]};
    for (uint g = 1; g < SLICES; ++g) {
        Moments part = {p[g * 3], p[g * 3 + 1], p[g * 3 + 2]};
        m = moments_merge(m, part);
    }
    p[1] = m.mean;
    p[2] = m.m2;
}

// LN of sample n: two passes over its C instance means (relative to P(n * C)).
inline void layer_statistics(uint n, STATISTICS_PARAMETERS) {
    uint r0 = n * CHANNELS;
    float reference = P(r0), sum = 0.0f, within = 0.0f, between = 0.0f;
    for (uint c = 0; c < CHANNELS; ++c) sum += (P(r0 + c) - reference) + REL(r0 + c);
    float mean = sum / (float)CHANNELS;
    for (uint c = 0; c < CHANNELS; ++c) {
        float d = ((P(r0 + c) - reference) + REL(r0 + c)) - mean;
        between += d * d;
        within += M2(r0 + c);
    }
    ln_rel[n] = mean;
    layer_mean[n] = reference + mean;
    layer_var[n] = set_variance(within, between, (float)CHANNELS);
}

// BN of channels c0 ..< c0 + BN_TILE (those below C) from the batch: two passes over
// their N instance means (relative to P(c)), row by row so each row read is one
// contiguous segment (a channel at a time would stride C floats per value), and the
// running update.
#define BN_TILE 8
#define BN_TILES ((CHANNELS + BN_TILE - 1) / BN_TILE)
inline void batch_statistics(uint tile, STATISTICS_PARAMETERS) {
#if HAS_BN && TRAINING
    uint c0 = tile * BN_TILE, width = min((uint)BN_TILE, (uint)CHANNELS - c0);
    float reference[BN_TILE], mean[BN_TILE], within[BN_TILE], between[BN_TILE];
    for (uint t = 0; t < width; ++t) {
        reference[t] = P(c0 + t);
        mean[t] = 0.0f;
        within[t] = 0.0f;
        between[t] = 0.0f;
    }
    for (uint n = 0; n < BATCH; ++n) {
        for (uint t = 0; t < width; ++t) mean[t] += (P(n * CHANNELS + c0 + t) - reference[t]) + REL(n * CHANNELS + c0 + t);
    }
    for (uint t = 0; t < width; ++t) mean[t] /= (float)BATCH;
    for (uint n = 0; n < BATCH; ++n) {
        for (uint t = 0; t < width; ++t) {
            uint r = n * CHANNELS + c0 + t;
            float d = ((P(r) - reference[t]) + REL(r)) - mean[t];
            between[t] += d * d;
            within[t] += M2(r);
        }
    }
    for (uint t = 0; t < width; ++t) {
        uint c = c0 + t;
        bn_rel[c] = mean[t];
        batch_mean[c] = reference[t] + mean[t];
        batch_var[c] = set_variance(within[t], between[t], (float)BATCH);
#if TRACK_RUNNING
        // As BatchNorm: the unbiased variance of the channel's N * L values.
        float m2 = within[t] + (float)SPATIAL * between[t];
        running_mean_out[c] = (1.0f - momentum) * running_mean_in[c] + momentum * (reference[t] + mean[t]);
        running_var_out[c] = (1.0f - momentum) * running_var_in[c] + momentum * (m2 / ((float)BATCH * (float)SPATIAL - 1.0f));
#endif
    }
#endif
}

// Mixing for instance r, given the softmax weights. Branch order of the logits: IN, LN,
// BN (those present). Writes the saved statistics and the apply coefficients (or, with
// DIRECT, y itself).
inline void mix_instance(uint r, const float *wm, const float *wv, STATISTICS_PARAMETERS) {
    uint n = r / CHANNELS, c = r - n * CHANNELS;
    float pilot = P(r);
    int k = 0;
    float rel = 0.0f, var = 0.0f;
#if HAS_IN
    float in_var = M2(r) / IN_DIVISOR;
    instance_mean[r] = pilot + REL(r);
    instance_var[r] = in_var;
    rel += wm[k] * REL(r);
    var += wv[k] * in_var;
    ++k;
#endif
    rel += wm[k] * (ln_rel[n] - (pilot - P(n * CHANNELS)));
    var += wv[k] * layer_var[n];
    ++k;
#if HAS_BN
#if TRAINING
    rel += wm[k] * (bn_rel[c] - (pilot - P(c)));
    var += wv[k] * batch_var[c];
#else
    rel += wm[k] * (running_mean_in[c] - pilot);
    var += wv[k] * running_var_in[c];
#endif
#endif
    if (var < 0.0f) var = 0.0f;  // rounding; NaN passes through (fmax would drop it)
    float invstd = 1.0f / sqrt(var + eps);
    save_mean[r] = pilot + rel;
    save_invstd[r] = invstd;
#if HAS_WEIGHT
    float s = invstd * weight[c];
#else
    float s = invstd;
#endif
#if DIRECT
#if HAS_BIAS
    float beta = bias[c];
#else
    float beta = 0.0f;
#endif
    // The element is its own pilot: x - pilot is 0 (x itself when x is Inf or NaN).
    STORE1((LOAD1(x, r) - pilot - rel) * s + beta, y, r);
#else
    offset[r] = rel;
    scale[r] = s;
#endif
}

// All of step 2 in one work-group (small N * C: one launch). The work-item loops take N
// and C as arguments: PoCL 3.1 miscompiles them (a jump to address 0 at run time) when
// their bound is the constant 1.
__kernel void sn_statistics(STATISTICS_PARAMETERS) {
    uint lid = get_local_id(0), items = get_local_size(0), runs = batch * channels;
#if !DIRECT && SLICES > 1
    for (uint r = lid; r < runs; r += items) merge_run(r, partials);
    barrier(CLK_GLOBAL_MEM_FENCE);
#endif
    for (uint n = lid; n < batch; n += items) layer_statistics(n, STATISTICS_ARGUMENTS);
    for (uint t = lid; t < (channels + BN_TILE - 1) / BN_TILE; t += items) batch_statistics(t, STATISTICS_ARGUMENTS);
    barrier(CLK_GLOBAL_MEM_FENCE);
    float wm[K_BRANCHES], wv[K_BRANCHES];
    softmax(mean_logits, wm);
    softmax(var_logits, wv);
    for (uint r = lid; r < runs; r += items) mix_instance(r, wm, wv, STATISTICS_ARGUMENTS);
}

// Step 2 over the whole device (large N * C), in up to three launches: merge the slices,
// LN and BN statistics (samples, then channels), mixing. Each work-item strides over the
// grid, so the softmaxes are computed once per work-item, not once per instance: a
// contiguous share each with CHUNKED (CPUs), interleaved otherwise (GPUs).
#if CHUNKED
#define FOR_SHARE(i, total)                                                                      \
    for (uint per_ = ((total) + get_global_size(0) - 1) / get_global_size(0),                  \
              i = min((uint)get_global_id(0) * per_, (uint)(total)), end_ = min(i + per_, (uint)(total)); \
         i < end_; ++i)
#else
#define FOR_SHARE(i, total) for (uint i = get_global_id(0); i < (total); i += get_global_size(0))
#endif

__kernel void sn_merge_partials(STATISTICS_PARAMETERS) {
    FOR_SHARE(r, batch * channels) merge_run(r, partials);
}

__kernel void sn_set_statistics(STATISTICS_PARAMETERS) {
    FOR_SHARE(i, batch + BN_TILES) {
        if (i < batch) {
            layer_statistics(i, STATISTICS_ARGUMENTS);
        } else {
            batch_statistics(i - batch, STATISTICS_ARGUMENTS);
        }
    }
}

__kernel void sn_mix(STATISTICS_PARAMETERS) {
    float wm[K_BRANCHES], wv[K_BRANCHES];
    softmax(mean_logits, wm);
    softmax(var_logits, wv);
    FOR_SHARE(r, batch * channels) {
        mix_instance(r, wm, wv, STATISTICS_ARGUMENTS);
    }
}

// ---------------------------------------------------------------------------------------
// Step 3: y = ((x - pilot) - offset) * scale + beta, per (n, c) coefficients.

#if !DIRECT
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

// Channels-first: contiguous runs share their coefficients.
__kernel void sn_apply_rows(__global const storage_t *x, __global storage_t *y, __global const float *pilots,
                            __global const float *offset, __global const float *scale, __global const float *bias) {
    INDEX_T total = (INDEX_T)RUNS * SPATIAL, first, end, stride;
    item_share(total, 4, &first, &end, &stride);
#if CHUNKED
    for (INDEX_T i = first; i < end;) {
        uint r = (uint)(i / SPATIAL);
        INDEX_T stop = min((INDEX_T)(r + 1) * SPATIAL, end);
        float k = pilots[r], o = offset[r], s = scale[r];
#if HAS_BIAS
        float b = bias[r % CHANNELS];
#else
        float b = 0.0f;
#endif
        for (; i + 4 <= stop; i += 4) VSTORE4(((VLOAD4(x, i) - k) - o) * s + b, y, i);
        for (; i < stop; ++i) STORE1(((LOAD1(x, i) - k) - o) * s + b, y, i);
    }
#else
    for (INDEX_T i = first; i < end; i += stride) {
        for (INDEX_T j = i; j < min(i + 4, end); ++j) {
            uint r = (uint)(j / SPATIAL);
#if HAS_BIAS
            float b = bias[r % CHANNELS];
#else
            float b = 0.0f;
#endif
            STORE1(((LOAD1(x, j) - pilots[r]) - offset[r]) * scale[r] + b, y, j);
        }
    }
#endif
}

// Channels-last: rows of C channels; the coefficients of row (n, m) are those of sample n.
__kernel void sn_apply_columns(__global const storage_t *x, __global storage_t *y, __global const float *pilots,
                               __global const float *offset, __global const float *scale, __global const float *bias) {
    INDEX_T total = (INDEX_T)BATCH * SPATIAL * COLUMN_VECS, first, end, stride;
    item_share(total, 1, &first, &end, &stride);
#if CHUNKED
    // Row segment by row segment: the sample, and so the coefficients' base, is fixed.
    for (INDEX_T v = first; v < end;) {
        INDEX_T row = v / COLUMN_VECS;
        uint column = (uint)(v - row * COLUMN_VECS);
        uint len = (uint)(min((row + 1) * COLUMN_VECS, end) - v);
        __global const float *k = pilots + (uint)(row / SPATIAL) * CHANNELS;
        __global const float *o = offset + (uint)(row / SPATIAL) * CHANNELS;
        __global const float *s = scale + (uint)(row / SPATIAL) * CHANNELS;
        for (uint j = 0; j < len; ++j) {
            uint ch = (column + j) * CVEC;
#if HAS_BIAS
            floatc b = PLOAD(bias, ch);
#else
            floatc b = 0.0f;
#endif
            INDEX_T i = (v + j) * CVEC;
            CVSTORE(((CVLOAD(x, i) - PLOAD(k, ch)) - PLOAD(o, ch)) * PLOAD(s, ch) + b, y, i);
        }
        v += len;
    }
#else
    for (INDEX_T v = first; v < end; v += stride) {
        INDEX_T row = v / COLUMN_VECS;
        uint column = (uint)(v - row * COLUMN_VECS) * CVEC;
        uint coefficient = (uint)(row / SPATIAL) * CHANNELS + column;
#if HAS_BIAS
        floatc b = PLOAD(bias, column);
#else
        floatc b = 0.0f;
#endif
        floatc out = ((CVLOAD(x, v * CVEC) - PLOAD(pilots, coefficient)) - PLOAD(offset, coefficient))
                         * PLOAD(scale, coefficient) + b;
        CVSTORE(out, y, v * CVEC);
    }
#endif
}
#endif
