// BatchNorm forward, contiguous NCHW: training (batch statistics) and inference.
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
//   INDEX_T        uint or ulong: wide enough for every element index
//
// Element (n, c, m) of x is at (n * C + c) * M + m. Statistics: each work-item sums
// blocks of BLOCK vectors shifted by its running mean, folds each block into
// (count, mean, M2) with Chan's formula, and work-items merge the same way. The
// shift keeps the sums small, so data like 1e4 + N(0, 1) loses no precision, and a
// block bounds the cancellation of ss - s*s/b even when the first shift is poor.

#define SPATIAL_VECS (SPATIAL / VEC)
#define BLOCK 16

#if VEC == 4
typedef float4 floatv;
#define HSUM(v) (((v).x + (v).y) + ((v).z + (v).w))
#define FIRST_LANE(v) ((v).x)
#else
typedef float floatv;
#define HSUM(v) (v)
#define FIRST_LANE(v) (v)
#endif

// Count, mean and sum of squared deviations of a set of values.
typedef struct {
    float count;
    float mean;
    float m2;
} Moments;

// Chan et al.'s pairwise merge: exact in exact arithmetic, stable in float.
inline Moments moments_merge(Moments a, Moments b) {
    float n = a.count + b.count;
    if (b.count == 0.0f) return a;
    if (a.count == 0.0f) return b;
    float delta = b.mean - a.mean;
    float wb = b.count / n;
    Moments r;
    r.count = n;
    r.mean = a.mean + delta * wb;
    r.m2 = a.m2 + b.m2 + delta * delta * a.count * wb;
    return r;
}

// A work-item's share of the index range [lo, hi).
typedef struct {
    INDEX_T first;
    INDEX_T end;
    INDEX_T stride;
} ItemRange;

inline ItemRange item_range(INDEX_T lo, INDEX_T hi, INDEX_T item, INDEX_T items) {
    ItemRange r;
#if CHUNKED
    INDEX_T per = (hi - lo + items - 1) / items;
    r.first = lo + item * per;
    r.end = min(r.first + per, hi);
    r.stride = 1;
#else
    r.first = lo + item;
    r.end = hi;
    r.stride = items;
#endif
    return r;
}

// Index in x (in vectors) of the v-th vector of channel c, in (n, m) order.
inline INDEX_T channel_vector(INDEX_T v, uint c) {
    INDEX_T n = v / SPATIAL_VECS;
    INDEX_T m = v - n * SPATIAL_VECS;
    return (n * CHANNELS + c) * SPATIAL_VECS + m;
}

inline Moments accumulate_channel(__global const floatv *x, uint c, ItemRange r) {
    Moments acc = {0.0f, 0.0f, 0.0f};
    INDEX_T v = r.first;
    if (v >= r.end) return acc;
    float shift = FIRST_LANE(x[channel_vector(v, c)]);
    while (v < r.end) {
        float s = 0.0f, ss = 0.0f, b = 0.0f;
        for (int k = 0; k < BLOCK && v < r.end; ++k, v += r.stride) {
            floatv d = x[channel_vector(v, c)] - shift;
            s += HSUM(d);
            ss += HSUM(d * d);
            b += (float)VEC;
        }
        float block_mean = s / b;
        Moments block = {b, shift + block_mean, ss - s * block_mean};
        if (block.m2 < 0.0f) block.m2 = 0.0f;  // rounding; NaN passes through
        acc = moments_merge(acc, block);
        shift = acc.mean;
    }
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

// Turns channel c's moments into its saved and running statistics; returns
// (mean, gamma * invstd), the coefficients of y = (x - mean) * scale + beta.
inline float2 finish_channel(uint c, Moments m, float count,
                             __global const float *weight,
                             __global float *save_mean, __global float *save_invstd,
                             __global const float *running_mean_in, __global const float *running_var_in,
                             __global float *running_mean_out, __global float *running_var_out,
                             float momentum, float eps) {
    float var = m.m2 / count;  // biased: normalisation uses it
    float invstd = 1.0f / sqrt(var + eps);
    save_mean[c] = m.mean;
    save_invstd[c] = invstd;
#if TRACK_RUNNING
    // Running variance is unbiased, as in PyTorch: var * n / (n - 1).
    running_mean_out[c] = (1.0f - momentum) * running_mean_in[c] + momentum * m.mean;
    running_var_out[c] = (1.0f - momentum) * running_var_in[c] + momentum * (m.m2 / (count - 1.0f));
#endif
#if HAS_WEIGHT
    return (float2)(m.mean, invstd * weight[c]);
#else
    return (float2)(m.mean, invstd);
#endif
}

// Training, one work-group per channel: statistics, then normalisation of the same
// elements while they are still in cache. One launch for the whole op.
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void bn_train_fused(__global const floatv *x, __global floatv *y, uint batch,
                    __global const float *weight, __global const float *bias,
                    __global float *save_mean, __global float *save_invstd,
                    __global const float *running_mean_in, __global const float *running_var_in,
                    __global float *running_mean_out, __global float *running_var_out,
                    float momentum, float eps) {
    __local float lc[WG], lm[WG], lq[WG];
    __local float coefficients[3];
    uint c = get_group_id(0);
    uint lid = get_local_id(0);
    INDEX_T total = (INDEX_T)batch * SPATIAL_VECS;
    ItemRange r = item_range(0, total, lid, WG);
    Moments m = reduce_work_group(accumulate_channel(x, c, r), lc, lm, lq);
    if (lid == 0) {
        float count = (float)((INDEX_T)batch * SPATIAL);
        float2 mean_scale = finish_channel(c, m, count, weight, save_mean, save_invstd,
                                           running_mean_in, running_var_in, running_mean_out,
                                           running_var_out, momentum, eps);
        coefficients[0] = mean_scale.x;
        coefficients[1] = mean_scale.y;
#if HAS_BIAS
        coefficients[2] = bias[c];
#else
        coefficients[2] = 0.0f;
#endif
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    float mean = coefficients[0], scale = coefficients[1], beta = coefficients[2];
    for (INDEX_T v = r.first; v < r.end; v += r.stride) {
        INDEX_T i = channel_vector(v, c);
        y[i] = (x[i] - mean) * scale + beta;
    }
}

// Training, split reduction, step 1 of 3: work-group (g, c) reduces slice g of
// channel c and writes its (count, mean, M2) to partials[(c * G + g) * 3 ...].
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void bn_partial_moments(__global const floatv *x, uint batch, __global float *partials) {
    __local float lc[WG], lm[WG], lq[WG];
    uint g = get_group_id(0), groups = get_num_groups(0);
    uint c = get_group_id(1);
    uint lid = get_local_id(0);
    INDEX_T total = (INDEX_T)batch * SPATIAL_VECS;
    INDEX_T per = (total + groups - 1) / groups;
    INDEX_T lo = min((INDEX_T)g * per, total);
    INDEX_T hi = min(lo + per, total);
    Moments m = reduce_work_group(accumulate_channel(x, c, item_range(lo, hi, lid, WG)), lc, lm, lq);
    if (lid == 0) {
        __global float *p = partials + ((size_t)c * groups + g) * 3;
        p[0] = m.count;
        p[1] = m.mean;
        p[2] = m.m2;
    }
}

// Training, split reduction, step 2 of 3: one work-item per channel merges its
// partials in order (deterministic), writes saved and running statistics, and the
// per-channel coefficients for bn_apply (mean goes to save_mean).
__kernel void bn_finish_moments(__global const float *partials, uint groups, uint batch,
                                __global const float *weight,
                                __global float *save_mean, __global float *save_invstd,
                                __global const float *running_mean_in, __global const float *running_var_in,
                                __global float *running_mean_out, __global float *running_var_out,
                                float momentum, float eps, __global float *scale) {
    uint c = get_global_id(0);
    if (c >= CHANNELS) return;
    Moments m = {0.0f, 0.0f, 0.0f};
    for (uint g = 0; g < groups; ++g) {
        __global const float *p = partials + ((size_t)c * groups + g) * 3;
        Moments part = {p[0], p[1], p[2]};
        m = moments_merge(m, part);
    }
    float count = (float)((INDEX_T)batch * SPATIAL);
    scale[c] = finish_channel(c, m, count, weight, save_mean, save_invstd, running_mean_in,
                              running_var_in, running_mean_out, running_var_out, momentum, eps).y;
}

// Inference, step 1 of 2: scale = gamma / sqrt(running_var + eps), one work-item per channel.
__kernel void bn_inference_scale(__global const float *running_var, __global const float *weight,
                                 float eps, __global float *scale) {
    uint c = get_global_id(0);
    if (c >= CHANNELS) return;
    float s = 1.0f / sqrt(running_var[c] + eps);
#if HAS_WEIGHT
    s *= weight[c];
#endif
    scale[c] = s;
}

// y = (x - mean[c]) * scale[c] + bias[c] over every element: step 3 of the split
// training path and step 2 of inference. Subtracting the mean first (rather than
// x * scale + shift) keeps large-mean data from cancelling.
__kernel void bn_apply(__global const floatv *x, __global floatv *y, uint batch,
                       __global const float *mean, __global const float *scale,
                       __global const float *bias) {
    INDEX_T total = (INDEX_T)batch * CHANNELS * SPATIAL_VECS;
    ItemRange r = item_range(0, total, get_global_id(0), get_global_size(0));
    for (INDEX_T v = r.first; v < r.end; v += r.stride) {
        uint c = (uint)((v / SPATIAL_VECS) % CHANNELS);
#if HAS_BIAS
        y[v] = (x[v] - mean[c]) * scale[c] + bias[c];
#else
        y[v] = (x[v] - mean[c]) * scale[c];
#endif
    }
}
