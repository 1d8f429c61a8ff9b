// BatchNorm forward, channels-first (NCHW) and channels-last (NHWC): training (batch
// statistics) and inference. Channels-last input, and (N, C) input, are a row-major
// (rows, C) matrix to the column kernels (rows = N * M).
//
// Build options, all set by BatchNormPlan (Sources/NormCL/Ops/BatchNorm/BatchNormPlan.swift):
//   CHANNELS       C
//   SPATIAL        M, the product of the spatial dims (1 for (N, C) input)
//   VEC            4 or 1: elements per load along the spatial axis (4 needs M % 4 == 0)
//   WG             work-group size of the reduction kernels, a power of two
//   CHUNKED        1: each work-item walks one contiguous chunk (CPU prefetchers like it)
//                  0: work-items interleave (GPUs coalesce neighbouring loads)
//   HAS_WEIGHT     1 when weight (gamma) is given, else gamma = 1
//   HAS_BIAS       1 when bias (beta) is given, else beta = 0
//   TRACK_RUNNING  1 when training updates running statistics
//   RENORM         1 for Batch Renormalization (training, corrected by r and d)
//   INDEX_T        uint or ulong: wide enough for every element index
//   CVEC           4 or 1: channels per load in the column kernels (4 needs C % 4 == 0)
//   TILE           column vectors per work-item in the column kernels
//
// Element (n, c, m) of x is at (n * C + c) * M + m. Statistics: every value is taken
// relative to one pilot per channel (the median of five of its elements, spread
// over the channel, so one outlier cannot be it), shared by all work-items and
// work-groups, so every mean below is `mean - pilot`: small numbers whose float32
// rounding stays at the scale of the data's spread, not of its offset (1e4 + N(0, 1)
// keeps full precision). Each work-item sums blocks of BLOCK vectors shifted by its
// running mean, folds each block into (count, mean, M2) with Chan's formula, and
// work-items and work-groups merge the same way. The block bounds the cancellation
// of ss - s*s/b even when the first shift is poor. Counts are floats: exact up to
// 2^24 per work-item, and beyond that only the merge weights round (by ~1e-7).

#define SPATIAL_VECS (SPATIAL / VEC)
#define BLOCK 16

// x and y are storage_t (float or half), loaded as floatv; floatv, LOADV/STOREV and
// item_range come from Kernels/common.cl.

// Index in x (in vectors) of the v-th vector of channel c, in (n, m) order.
inline INDEX_T channel_vector(INDEX_T v, uint c) {
    INDEX_T n = v / SPATIAL_VECS;
    INDEX_T m = v - n * SPATIAL_VECS;
    return (n * CHANNELS + c) * SPATIAL_VECS + m;
}

#if CHUNKED
// The work-item's vectors come as contiguous runs, one per (n, c) plane it touches;
// the body sees each run as a pointer and a length, with no index division
// inside the run (CPU compilers vectorize these loops).
#define FOR_EACH_RUN(r, c, p, len, ...)                                           \
    for (INDEX_T v_ = (r).first; v_ < (r).end;) {                                 \
        INDEX_T n_ = v_ / SPATIAL_VECS;                                            \
        INDEX_T m_ = v_ - n_ * SPATIAL_VECS;                                       \
        INDEX_T len = min((INDEX_T)(SPATIAL_VECS - m_), (r).end - v_);             \
        INDEX_T p = (n_ * CHANNELS + (c)) * SPATIAL_VECS + m_;                     \
        __VA_ARGS__;                                                               \
        v_ += len;                                                                 \
    }
#endif

// Channel c's pilot: the median of five elements at 0, 1/4, 1/2, 3/4 and the end
// of its (n, m) order (0 if that is Inf or NaN: see common.cl on non-finite values).
// Every kernel computes the same value from the same elements.
inline float channel_pilot(__global const storage_t *x, uint c, uint batch) {
    INDEX_T last = (INDEX_T)batch * SPATIAL_VECS - 1;
    float a = FIRST_LANE(LOADV(x, channel_vector(0, c))), b = FIRST_LANE(LOADV(x, channel_vector(last / 4, c)));
    float d = FIRST_LANE(LOADV(x, channel_vector(last / 2, c))), e = FIRST_LANE(LOADV(x, channel_vector(last - last / 4, c)));
    float f = FIRST_LANE(LOADV(x, channel_vector(last, c)));
    return FINITE_OR_ZERO(float, MEDIAN5(a, b, d, e, f));
}

inline Moments accumulate_channel(__global const storage_t *x, uint c, ItemRange r, float pilot) {
    Moments acc = {0.0f, 0.0f, 0.0f};
    float2 carry = (float2)(0.0f, 0.0f);  // Kahan carries of M2 and of the mean
    if (r.first >= r.end) return acc;
    float shift = FINITE_OR_ZERO(float, FIRST_LANE(LOADV(x, channel_vector(r.first, c))) - pilot);
#if CHUNKED
    FOR_EACH_RUN(r, c, p, len, {
        INDEX_T k = 0;
        for (; k + BLOCK <= len; k += BLOCK) {
            // Two vector accumulators per sum: independent add chains, so the loop runs
            // at load speed instead of waiting on one chain of dependent float adds.
            floatv s0 = 0.0f, s1 = 0.0f, q0 = 0.0f, q1 = 0.0f;
            for (int j = 0; j < BLOCK; j += 2) {
                floatv d0 = (LOADV(x, p + k + j) - pilot) - shift;
                floatv d1 = (LOADV(x, p + k + j + 1) - pilot) - shift;
                s0 += d0;
                s1 += d1;
                q0 += d0 * d0;
                q1 += d1 * d1;
            }
            floatv s = s0 + s1, q = q0 + q1;
            acc = fold_block(acc, &carry, shift, HSUM(s), HSUM(q), (float)(BLOCK * VEC));
            shift = next_shift(shift, acc);
        }
        if (k < len) {
            floatv s = 0.0f, q = 0.0f;
            for (INDEX_T j = k; j < len; ++j) {
                floatv d = (LOADV(x, p + j) - pilot) - shift;
                s += d;
                q += d * d;
            }
            acc = fold_block(acc, &carry, shift, HSUM(s), HSUM(q), (float)((len - k) * VEC));
            shift = next_shift(shift, acc);
        }
    })
#else
    for (INDEX_T v = r.first; v < r.end;) {
        float s = 0.0f, ss = 0.0f, b = 0.0f;
        for (int k = 0; k < BLOCK && v < r.end; ++k, v += r.stride) {
            floatv d = (LOADV(x, channel_vector(v, c)) - pilot) - shift;
            s += HSUM(d);
            ss += HSUM(d * d);
            b += (float)VEC;
        }
        acc = fold_block(acc, &carry, shift, s, ss, b);
        shift = next_shift(shift, acc);
    }
#endif
    return acc;
}

// Tree reduction of one Moments per work-item; every work-item gets the result.
inline Moments reduce_work_group(Moments m, __local float *lc, __local float *lm, __local float *lq) {
    uint lid = get_local_id(0);
    lc[lid] = m.count;
    lm[lid] = m.mean;
    lq[lid] = m.m2;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint width = WG / 2; width > 0; width >>= 1) {
        if (lid < width) {
            Moments a = {lc[lid], lm[lid], lq[lid]};
            Moments b = {lc[lid + width], lm[lid + width], lq[lid + width]};
            Moments r = moments_merge(a, b);
            lc[lid] = r.count;
            lm[lid] = r.mean;
            lq[lid] = r.m2;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    Moments r = {lc[0], lm[0], lq[0]};
    return r;
}

// The statistics arguments every training kernel takes, in this order.
#define STATISTICS_PARAMETERS                                                              \
    __global float *save_mean, __global float *save_invstd,                                \
    __global const float *running_mean_in, __global const float *running_var_in,           \
    __global float *running_mean_out, __global float *running_var_out,                     \
    float momentum, float eps, __global float *renorm_r, __global float *renorm_d,          \
    float rmax, float dmax
#define STATISTICS_ARGUMENTS                                                               \
    save_mean, save_invstd, running_mean_in, running_var_in, running_mean_out,             \
    running_var_out, momentum, eps, renorm_r, renorm_d, rmax, dmax

// Turns channel c's moments into its saved and running statistics and returns the
// coefficients (offset, scale, shift) of y = ((x - pilot) - offset) * scale + shift:
// offset = mean - pilot, scale = gamma * invstd, shift = beta. Batch Renormalization
// (RENORM) corrects with r = clamp(sigma_B / sigma, 1/rmax, rmax) and
// d = clamp((mean_B - running_mean) / sigma, -dmax, dmax), sigma from the running
// variance read before the update: scale = gamma * r * invstd, shift = beta + gamma * d.
inline float3 finish_channel(uint c, Moments m, float count, float pilot,
                             __global const float *weight, __global const float *bias,
                             STATISTICS_PARAMETERS) {
    float var = m.m2 / count;  // biased: normalisation uses it
    float invstd = 1.0f / sqrt(var + eps);
    float mean = pilot + m.mean;
    save_mean[c] = mean;
    save_invstd[c] = invstd;
#if HAS_WEIGHT
    float gamma = weight[c];
#else
    float gamma = 1.0f;
#endif
#if HAS_BIAS
    float beta = bias[c];
#else
    float beta = 0.0f;
#endif
    float scale = invstd * gamma, shift = beta;
#if RENORM
    float sigma = sqrt(running_var_in[c] + eps);
    // (pilot - running mean) + (mean - pilot): no rounding at the size of a large mean.
    float r = sqrt(var + eps) / sigma, d = ((pilot - running_mean_in[c]) + m.mean) / sigma;
    // clamp (fmin/fmax) would turn NaN into a limit; a channel with NaN statistics keeps
    // r, d = NaN, as the reference's min(max(v, lo), hi) does. +-Inf clamps to +-limit.
    r = isnan(r) ? r : clamp(r, 1.0f / rmax, rmax);
    d = isnan(d) ? d : clamp(d, -dmax, dmax);
    renorm_r[c] = r;
    renorm_d[c] = d;
    scale *= r;
    shift += gamma * d;
#endif
#if TRACK_RUNNING
    // Running variance is unbiased, as in PyTorch: var * n / (n - 1).
    running_mean_out[c] = (1.0f - momentum) * running_mean_in[c] + momentum * mean;
    running_var_out[c] = (1.0f - momentum) * running_var_in[c] + momentum * (m.m2 / (count - 1.0f));
#endif
    return (float3)(m.mean, scale, shift);
}

// Training, one work-group per channel: statistics, then normalisation of the same
// elements while they are still in cache. One launch for the whole op.
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void bn_train_fused(__global const storage_t *x, __global storage_t *y, uint batch,
                    __global const float *weight, __global const float *bias, STATISTICS_PARAMETERS) {
    __local float lc[WG], lm[WG], lq[WG];
    __local float coefficients[3];
    uint c = get_group_id(0);
    uint lid = get_local_id(0);
    INDEX_T total = (INDEX_T)batch * SPATIAL_VECS;
    ItemRange r = item_range(0, total, lid, WG);
    float pilot = channel_pilot(x, c, batch);
    Moments m = reduce_work_group(accumulate_channel(x, c, r, pilot), lc, lm, lq);
    if (lid == 0) {
        float count = (float)((INDEX_T)batch * SPATIAL);
        float3 k = finish_channel(c, m, count, pilot, weight, bias, STATISTICS_ARGUMENTS);
        coefficients[0] = k.x;
        coefficients[1] = k.y;
        coefficients[2] = k.z;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    float mean = coefficients[0], scale = coefficients[1], beta = coefficients[2];
#if CHUNKED
    FOR_EACH_RUN(r, c, p, len, {
        for (INDEX_T j = 0; j < len; ++j) STOREV(((LOADV(x, p + j) - pilot) - mean) * scale + beta, y, p + j);
    })
#else
    for (INDEX_T v = r.first; v < r.end; v += r.stride) {
        INDEX_T i = channel_vector(v, c);
        STOREV(((LOADV(x, i) - pilot) - mean) * scale + beta, y, i);
    }
#endif
}

// Training on a row-major (rows, C) matrix: (N, C) input (M == 1, BatchNorm1d), or
// channels-last input with rows = N * M. Each channel is a column. A work-item owns TILE adjacent column vectors of CVEC
// channels and walks the rows, so each row segment it reads is contiguous (CPUs)
// while neighbouring work-items read neighbouring tiles (GPUs, TILE = 1, coalesce).
// No work-group reduction: each lane keeps block-shifted moments as in
// accumulate_channel. TILE is a build option from DeviceTuning.columnTile.
#if CVEC == 4
typedef float4 floatc;
#define CLOAD(i, p) vload4((i), (p))
#define LOADC(p, i) LOAD4(p, i)
#define STOREC(v, p, i) STORE4(v, p, i)
#else
typedef float floatc;
#define CLOAD(i, p) ((p)[(i)])
#define LOADC(p, i) LOAD1(p, i)
#define STOREC(v, p, i) STORE1(v, p, i)
#endif
#define COLUMN_VECS (CHANNELS / CVEC)

// Column vector k's pilot: the median of its values in rows 0, 1/4, 1/2, 3/4 and the
// last (as channel_pilot does along a channel, 0 if Inf or NaN), lane by lane.
inline floatc column_pilot(__global const storage_t *x, uint rows, uint k) {
    size_t last = rows - 1;
    floatc a = LOADC(x, k), b = LOADC(x, (last / 4) * COLUMN_VECS + k), c = LOADC(x, (last / 2) * COLUMN_VECS + k);
    floatc d = LOADC(x, (last - last / 4) * COLUMN_VECS + k), e = LOADC(x, last * COLUMN_VECS + k);
    return FINITE_OR_ZERO(floatc, MEDIAN5(a, b, c, d, e));
}

// Moments of column vectors first ..< first + width over rows [lo, hi), relative to
// `pilot`, lane by lane: block-shifted sums folded with Chan's formula, M2
// Kahan-compensated, as in accumulate_channel and fold_block (all lanes share the
// counts). Fills mean and m2; returns the count.
inline float accumulate_columns(__global const storage_t *x, uint first, uint width, uint lo, uint hi,
                                const floatc *pilot, floatc *mean, floatc *m2) {
    floatc shift[TILE], s[TILE], q[TILE], carry[TILE], mean_carry[TILE];
    for (uint t = 0; t < width; ++t) {
        shift[t] = 0.0f;
        mean[t] = 0.0f;
        m2[t] = 0.0f;
        carry[t] = 0.0f;
        mean_carry[t] = 0.0f;
    }
    float count = 0.0f;
    for (uint n = lo; n < hi;) {
        uint rows = min((uint)BLOCK, hi - n);
        for (uint t = 0; t < width; ++t) { s[t] = 0.0f; q[t] = 0.0f; }
        for (uint k = 0; k < rows; ++k) {
            size_t row = (size_t)(n + k) * COLUMN_VECS + first;
            for (uint t = 0; t < width; ++t) {
                floatc d = (LOADC(x, row + t) - pilot[t]) - shift[t];
                s[t] += d;
                q[t] += d * d;
            }
        }
        float b = (float)rows, total = count + b;
        for (uint t = 0; t < width; ++t)
            FOLD_BLOCK_LANES(floatc, s[t], q[t], b, count, shift[t], mean[t], m2[t], carry[t], mean_carry[t]);
        count = total;
        n += rows;
    }
    return count;
}

// Splits a column vector into its CVEC lanes.
inline void column_lanes(floatc v, float *lanes) {
#if CVEC == 4
    vstore4(v, 0, lanes);
#else
    lanes[0] = v;
#endif
}

__kernel void bn_train_columns(__global const storage_t *x, __global storage_t *y, uint batch,
                               __global const float *weight, __global const float *bias, STATISTICS_PARAMETERS) {
    uint first = get_global_id(0) * TILE;
    if (first >= COLUMN_VECS) return;
    uint width = min((uint)TILE, (uint)COLUMN_VECS - first);
    floatc pilot[TILE], mean[TILE], m2[TILE], scale[TILE], beta[TILE];
    for (uint t = 0; t < width; ++t) pilot[t] = column_pilot(x, batch, first + t);
    float count = accumulate_columns(x, first, width, 0, batch, pilot, mean, m2);
    // Per channel: saved and running statistics, and the coefficients.
    for (uint t = 0; t < width; ++t) {
        float lanes_pilot[CVEC], lanes_mean[CVEC], lanes_m2[CVEC], lanes_scale[CVEC], lanes_shift[CVEC];
        column_lanes(pilot[t], lanes_pilot);
        column_lanes(mean[t], lanes_mean);
        column_lanes(m2[t], lanes_m2);
        for (uint i = 0; i < CVEC; ++i) {
            Moments m = {count, lanes_mean[i], lanes_m2[i]};
            float3 k = finish_channel((first + t) * CVEC + i, m, (float)batch, lanes_pilot[i], weight, bias,
                                      STATISTICS_ARGUMENTS);
            lanes_scale[i] = k.y;
            lanes_shift[i] = k.z;
        }
        scale[t] = CLOAD(0, lanes_scale);
        beta[t] = CLOAD(0, lanes_shift);
    }
    for (uint n = 0; n < batch; ++n) {
        size_t row = (size_t)n * COLUMN_VECS + first;
        for (uint t = 0; t < width; ++t) STOREC(((LOADC(x, row + t) - pilot[t]) - mean[t]) * scale[t] + beta[t], y, row + t);
    }
}

// Columns, split reduction, step 1 of 3 (then bn_finish_moments, bn_apply_columns):
// work-item (i, g) reduces the TILE column vectors of item i over row slice g and
// writes each channel's (count, mean - pilot, M2) to partials[(c * G + g) * 3 ...];
// row slice 0 also writes the pilots.
__kernel void bn_column_partials(__global const storage_t *x, uint batch, __global float *partials,
                                 __global float *pilots) {
    uint first = get_global_id(0) * TILE;
    if (first >= COLUMN_VECS) return;
    uint width = min((uint)TILE, (uint)COLUMN_VECS - first);
    uint g = get_global_id(1), groups = get_global_size(1);
    // 64-bit: batch + groups - 1 and g * per can pass 2^32 for huge row counts.
    ulong per = ((ulong)batch + groups - 1) / groups;
    uint lo = (uint)min((ulong)g * per, (ulong)batch), hi = (uint)min((ulong)lo + per, (ulong)batch);
    floatc pilot[TILE], mean[TILE], m2[TILE];
    for (uint t = 0; t < width; ++t) pilot[t] = column_pilot(x, batch, first + t);
    float count = accumulate_columns(x, first, width, lo, hi, pilot, mean, m2);
    for (uint t = 0; t < width; ++t) {
        float lanes_pilot[CVEC], lanes_mean[CVEC], lanes_m2[CVEC];
        column_lanes(pilot[t], lanes_pilot);
        column_lanes(mean[t], lanes_mean);
        column_lanes(m2[t], lanes_m2);
        for (uint i = 0; i < CVEC; ++i) {
            uint c = (first + t) * CVEC + i;
            __global float *p = partials + ((size_t)c * groups + g) * 3;
            p[0] = count;
            p[1] = lanes_mean[i];
            p[2] = lanes_m2[i];
            if (g == 0) pilots[c] = lanes_pilot[i];
        }
    }
}

// y = ((x - pilot[c]) - offset[c]) * scale[c] + shift[c] for (rows, C) input, row by
// row, with the per-channel coefficients loaded as vectors beside each row segment.
__kernel void bn_apply_columns(__global const storage_t *x, __global storage_t *y, uint batch,
                               __global const float *pilot, __global const float *offset,
                               __global const float *scale, __global const float *shift) {
    INDEX_T total = (INDEX_T)batch * COLUMN_VECS;
    ItemRange r = item_range(0, total, get_global_id(0), get_global_size(0));
#if CHUNKED
    for (INDEX_T v = r.first; v < r.end;) {
        INDEX_T row = v / COLUMN_VECS;
        uint column = (uint)(v - row * COLUMN_VECS);
        uint len = (uint)(min((row + 1) * COLUMN_VECS, r.end) - v);
        for (uint j = 0; j < len; ++j) {
            uint k = column + j;
            STOREC(((LOADC(x, v + j) - CLOAD(k, pilot)) - CLOAD(k, offset)) * CLOAD(k, scale) + CLOAD(k, shift), y, v + j);
        }
        v += len;
    }
#else
    for (INDEX_T v = r.first; v < r.end; v += r.stride) {
        uint k = (uint)(v % COLUMN_VECS);
        STOREC(((LOADC(x, v) - CLOAD(k, pilot)) - CLOAD(k, offset)) * CLOAD(k, scale) + CLOAD(k, shift), y, v);
    }
#endif
}

// Training, split reduction, step 1 of 3: work-group (g, c) reduces slice g of
// channel c and writes its (count, mean - pilot, M2) to partials[(c * G + g) * 3 ...];
// slice 0 also writes the channel's pilot.
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void bn_partial_moments(__global const storage_t *x, uint batch, __global float *partials, __global float *pilots) {
    __local float lc[WG], lm[WG], lq[WG];
    uint g = get_group_id(0), groups = get_num_groups(0);
    uint c = get_group_id(1);
    uint lid = get_local_id(0);
    INDEX_T total = (INDEX_T)batch * SPATIAL_VECS;
    INDEX_T per = (total + groups - 1) / groups;
    INDEX_T lo = min((INDEX_T)g * per, total);
    INDEX_T hi = min(lo + per, total);
    float pilot = channel_pilot(x, c, batch);
    Moments m = reduce_work_group(accumulate_channel(x, c, item_range(lo, hi, lid, WG), pilot), lc, lm, lq);
    if (lid == 0) {
        __global float *p = partials + ((size_t)c * groups + g) * 3;
        p[0] = m.count;
        p[1] = m.mean;
        p[2] = m.m2;
        if (g == 0) pilots[c] = pilot;
    }
}

// Training, split reduction (per channel or per column), step 2 of 3: one work-item
// per channel merges its partials in order (deterministic), writes saved and running
// statistics, and the coefficients of the apply step: y = ((x - pilot) - offset) *
// scale + shift with offset = mean - pilot and shift = beta. (Folding offset into the
// shift would cancel when the pilot lies far from the mean; x - pilot - offset does not.)
__kernel void bn_finish_moments(__global const float *pilots, __global const float *partials, uint groups, float count,
                                __global const float *weight, __global const float *bias, STATISTICS_PARAMETERS,
                                __global float *offset, __global float *scale, __global float *shift) {
    uint c = get_global_id(0);
    if (c >= CHANNELS) return;
    Moments m = {0.0f, 0.0f, 0.0f};
    for (uint g = 0; g < groups; ++g) {
        __global const float *p = partials + ((size_t)c * groups + g) * 3;
        Moments part = {p[0], p[1], p[2]};
        m = moments_merge(m, part);
    }
    float3 k = finish_channel(c, m, count, pilots[c], weight, bias, STATISTICS_ARGUMENTS);
    offset[c] = k.x;
    scale[c] = k.y;
    shift[c] = k.z;
}

// Inference coefficients of channel c: y = (x - running_mean[c]) * scale + shift with
// scale = gamma[c] / sqrt(running_var[c] + eps) and shift = beta[c].
inline float inference_scale(uint c, __global const float *running_var, __global const float *weight, float eps) {
    float s = 1.0f / sqrt(running_var[c] + eps);
#if HAS_WEIGHT
    s *= weight[c];
#endif
    return s;
}

inline float inference_shift(uint c, __global const float *bias) {
#if HAS_BIAS
    return bias[c];
#else
    return 0.0f;
#endif
}

// Inference on (rows, C) input, step 1 of 2, one work-item per channel: offset = 0,
// scale and shift as above, so the apply step computes (x - running_mean) * scale + beta.
__kernel void bn_inference_scale(__global const float *running_var, __global const float *weight,
                                 __global const float *bias, float eps, __global float *offset,
                                 __global float *scale, __global float *shift) {
    uint c = get_global_id(0);
    if (c >= CHANNELS) return;
    offset[c] = 0.0f;
    scale[c] = inference_scale(c, running_var, weight, eps);
    shift[c] = inference_shift(c, bias);
}

// Inference on NCHW input in one launch: the coefficients computed where they are used
// (once per plane run on CPUs) instead of by bn_inference_scale: on PoCL a launch costs
// 0.06-0.2 ms, a tenth or more of the whole op at common sizes.
__kernel void bn_inference_apply(__global const storage_t *restrict x, __global storage_t *restrict y, uint batch,
                                 __global const float *running_mean, __global const float *running_var,
                                 __global const float *weight, __global const float *bias, float eps) {
    INDEX_T total = (INDEX_T)batch * CHANNELS * SPATIAL_VECS;
    ItemRange r = item_range(0, total, get_global_id(0), get_global_size(0));
#if CHUNKED
    for (INDEX_T v = r.first; v < r.end;) {
        INDEX_T plane = v / SPATIAL_VECS;
        INDEX_T len = min((plane + 1) * SPATIAL_VECS, r.end) - v;
        uint c = (uint)(plane % CHANNELS);
        float k = running_mean[c], s = inference_scale(c, running_var, weight, eps), b = inference_shift(c, bias);
        for (INDEX_T j = v; j < v + len; ++j) STOREV((LOADV(x, j) - k) * s + b, y, j);
        v += len;
    }
#else
    for (INDEX_T v = r.first; v < r.end; v += r.stride) {
        uint c = (uint)((v / SPATIAL_VECS) % CHANNELS);
        STOREV((LOADV(x, v) - running_mean[c]) * inference_scale(c, running_var, weight, eps) + inference_shift(c, bias), y, v);
    }
#endif
}

// y = ((x - pilot[c]) - offset[c]) * scale[c] + shift[c] over every element of NCHW
// input: step 3 of the split training path (pilot from channel_pilot, offset = mean -
// pilot) and step 2 of inference (pilot = running mean, offset = 0). Subtracting
// before scaling keeps large-mean data from cancelling.
__kernel void bn_apply(__global const storage_t *x, __global storage_t *y, uint batch,
                       __global const float *pilot, __global const float *offset,
                       __global const float *scale, __global const float *shift) {
    INDEX_T total = (INDEX_T)batch * CHANNELS * SPATIAL_VECS;
    ItemRange r = item_range(0, total, get_global_id(0), get_global_size(0));
#if CHUNKED
    // Contiguous runs inside one (n, c) plane share their coefficients.
    for (INDEX_T v = r.first; v < r.end;) {
        INDEX_T plane = v / SPATIAL_VECS;
        INDEX_T len = min((plane + 1) * SPATIAL_VECS, r.end) - v;
        uint c = (uint)(plane % CHANNELS);
        float k = pilot[c], o = offset[c], s = scale[c], b = shift[c];
        for (INDEX_T j = v; j < v + len; ++j) STOREV(((LOADV(x, j) - k) - o) * s + b, y, j);
        v += len;
    }
#else
    for (INDEX_T v = r.first; v < r.end; v += r.stride) {
        uint c = (uint)((v / SPATIAL_VECS) % CHANNELS);
        STOREV(((LOADV(x, v) - pilot[c]) - offset[c]) * scale[c] + shift[c], y, v);
    }
#endif
}
