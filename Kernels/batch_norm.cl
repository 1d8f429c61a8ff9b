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
//   CVEC           4 or 1: channels per load in the column kernels (4 needs C % 4 == 0)
//   TILE           column vectors per work-item in bn_train_columns
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

#if VEC == 4
typedef float4 floatv;
#define HSUM(v) (((v).x + (v).y) + ((v).z + (v).w))
#define FIRST_LANE(v) ((v).x)
#else
typedef float floatv;
#define HSUM(v) (v)
#define FIRST_LANE(v) (v)
#endif

// Count, mean (relative to the channel's pilot) and sum of squared deviations.
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

// Folds one block of b values, summed as s and ss after subtracting `shift`, into
// acc with Chan's formula. A work-item folds up to millions of blocks into one M2,
// so that running sum is Kahan-compensated (`carry`): float32 recursive summation
// would drift by ~sqrt(blocks) ulps (2e-6 relative at 4M values per work-group).
inline Moments fold_block(Moments acc, float *carry, float shift, float s, float ss, float b) {
    float block_mean = s / b;
    float block_m2 = ss - s * block_mean;
    if (block_m2 < 0.0f) block_m2 = 0.0f;  // rounding; NaN passes through
    float n = acc.count + b;
    float delta = shift + block_mean - acc.mean;
    float wb = b / n;
    float increment = block_m2 + delta * delta * acc.count * wb;
    float compensated = increment - *carry;
    float m2 = acc.m2 + compensated;
    *carry = (m2 - acc.m2) - compensated;
    acc.m2 = m2;
    acc.mean += delta * wb;
    acc.count = n;
    return acc;
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

// The median of five values: the two middle ones of the first four, then the
// median of those and e. fmin/fmax skip NaN (a NaN still reaches the sums).
inline float median3(float a, float b, float c) {
    return fmax(fmin(a, b), fmin(fmax(a, b), c));
}

inline float median5(float a, float b, float c, float d, float e) {
    return median3(fmax(fmin(a, b), fmin(c, d)), fmin(fmax(a, b), fmax(c, d)), e);
}

// Channel c's pilot: the median of five elements at 0, 1/4, 1/2, 3/4 and the end
// of its (n, m) order. Every kernel computes the same value from the same elements.
inline float channel_pilot(__global const floatv *x, uint c, uint batch) {
    INDEX_T last = (INDEX_T)batch * SPATIAL_VECS - 1;
    return median5(FIRST_LANE(x[channel_vector(0, c)]), FIRST_LANE(x[channel_vector(last / 4, c)]),
                   FIRST_LANE(x[channel_vector(last / 2, c)]), FIRST_LANE(x[channel_vector(last - last / 4, c)]),
                   FIRST_LANE(x[channel_vector(last, c)]));
}

inline Moments accumulate_channel(__global const floatv *x, uint c, ItemRange r, float pilot) {
    Moments acc = {0.0f, 0.0f, 0.0f};
    float carry = 0.0f;
    if (r.first >= r.end) return acc;
    float shift = FIRST_LANE(x[channel_vector(r.first, c)]) - pilot;
#if CHUNKED
    FOR_EACH_RUN(r, c, p, len, {
        INDEX_T k = 0;
        for (; k + BLOCK <= len; k += BLOCK) {
            // Two vector accumulators per sum: independent add chains, so the loop runs
            // at load speed instead of waiting on one chain of dependent float adds.
            floatv s0 = 0.0f, s1 = 0.0f, q0 = 0.0f, q1 = 0.0f;
            for (int j = 0; j < BLOCK; j += 2) {
                floatv d0 = (x[p + k + j] - pilot) - shift;
                floatv d1 = (x[p + k + j + 1] - pilot) - shift;
                s0 += d0;
                s1 += d1;
                q0 += d0 * d0;
                q1 += d1 * d1;
            }
            floatv s = s0 + s1, q = q0 + q1;
            acc = fold_block(acc, &carry, shift, HSUM(s), HSUM(q), (float)(BLOCK * VEC));
            shift = acc.mean;
        }
        if (k < len) {
            floatv s = 0.0f, q = 0.0f;
            for (INDEX_T j = k; j < len; ++j) {
                floatv d = (x[p + j] - pilot) - shift;
                s += d;
                q += d * d;
            }
            acc = fold_block(acc, &carry, shift, HSUM(s), HSUM(q), (float)((len - k) * VEC));
            shift = acc.mean;
        }
    })
#else
    for (INDEX_T v = r.first; v < r.end;) {
        float s = 0.0f, ss = 0.0f, b = 0.0f;
        for (int k = 0; k < BLOCK && v < r.end; ++k, v += r.stride) {
            floatv d = (x[channel_vector(v, c)] - pilot) - shift;
            s += HSUM(d);
            ss += HSUM(d * d);
            b += (float)VEC;
        }
        acc = fold_block(acc, &carry, shift, s, ss, b);
        shift = acc.mean;
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

// Turns channel c's moments into its saved and running statistics; returns
// (m.mean, gamma * invstd): y = ((x - pilot) - m.mean) * scale + beta.
inline float2 finish_channel(uint c, Moments m, float count, float pilot,
                             __global const float *weight,
                             __global float *save_mean, __global float *save_invstd,
                             __global const float *running_mean_in, __global const float *running_var_in,
                             __global float *running_mean_out, __global float *running_var_out,
                             float momentum, float eps) {
    float var = m.m2 / count;  // biased: normalisation uses it
    float invstd = 1.0f / sqrt(var + eps);
    float mean = pilot + m.mean;
    save_mean[c] = mean;
    save_invstd[c] = invstd;
#if TRACK_RUNNING
    // Running variance is unbiased, as in PyTorch: var * n / (n - 1).
    running_mean_out[c] = (1.0f - momentum) * running_mean_in[c] + momentum * mean;
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
    float pilot = channel_pilot(x, c, batch);
    Moments m = reduce_work_group(accumulate_channel(x, c, r, pilot), lc, lm, lq);
    if (lid == 0) {
        float count = (float)((INDEX_T)batch * SPATIAL);
        float2 mean_scale = finish_channel(c, m, count, pilot, weight, save_mean, save_invstd,
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
#if CHUNKED
    FOR_EACH_RUN(r, c, p, len, {
        for (INDEX_T j = 0; j < len; ++j) y[p + j] = ((x[p + j] - pilot) - mean) * scale + beta;
    })
#else
    for (INDEX_T v = r.first; v < r.end; v += r.stride) {
        INDEX_T i = channel_vector(v, c);
        y[i] = ((x[i] - pilot) - mean) * scale + beta;
    }
#endif
}

// Training for (N, C) input (M == 1, BatchNorm1d): each channel is a column of a
// row-major N x C matrix. A work-item owns TILE adjacent column vectors of CVEC
// channels and walks the rows, so each row segment it reads is contiguous (CPUs)
// while neighbouring work-items read neighbouring tiles (GPUs, TILE = 1, coalesce).
// No work-group reduction: each lane keeps block-shifted moments as in
// accumulate_channel. TILE is a build option from DeviceTuning.columnTile.
#if CVEC == 4
typedef float4 floatc;
#define CLOAD(i, p) vload4((i), (p))
#else
typedef float floatc;
#define CLOAD(i, p) ((p)[(i)])
#endif
#define COLUMN_VECS (CHANNELS / CVEC)

__kernel void bn_train_columns(__global const floatc *x, __global floatc *y, uint batch,
                               __global const float *weight, __global const float *bias,
                               __global float *save_mean, __global float *save_invstd,
                               __global const float *running_mean_in, __global const float *running_var_in,
                               __global float *running_mean_out, __global float *running_var_out,
                               float momentum, float eps) {
    uint first = get_global_id(0) * TILE;
    if (first >= COLUMN_VECS) return;
    uint width = min((uint)TILE, (uint)COLUMN_VECS - first);
    // Per column vector: pilot (median of rows 0, 1/4, 1/2, 3/4, last, as in
    // channel_pilot), then shift, mean and M2 relative to it.
    floatc pilot[TILE], shift[TILE], mean[TILE], m2[TILE], s[TILE], q[TILE];
    size_t last = batch - 1;
    for (uint t = 0; t < width; ++t) {
        floatc a = x[first + t], b = x[(last / 4) * COLUMN_VECS + first + t];
        floatc c = x[(last / 2) * COLUMN_VECS + first + t], d = x[(last - last / 4) * COLUMN_VECS + first + t];
        floatc e = x[last * COLUMN_VECS + first + t];
        floatc low = fmin(a, b), high = fmax(a, b), low2 = fmin(c, d), high2 = fmax(c, d);
        floatc mid1 = fmax(low, low2), mid2 = fmin(high, high2);
        pilot[t] = fmax(fmin(mid1, mid2), fmin(fmax(mid1, mid2), e));
        shift[t] = 0.0f;
        mean[t] = 0.0f;
        m2[t] = 0.0f;
    }
    float count = 0.0f;
    for (uint n = 0; n < batch;) {
        uint rows = min((uint)BLOCK, batch - n);
        for (uint t = 0; t < width; ++t) { s[t] = 0.0f; q[t] = 0.0f; }
        for (uint k = 0; k < rows; ++k) {
            __global const floatc *row = x + (size_t)(n + k) * COLUMN_VECS + first;
            for (uint t = 0; t < width; ++t) {
                floatc d = (row[t] - pilot[t]) - shift[t];
                s[t] += d;
                q[t] += d * d;
            }
        }
        // fold_block and moments_merge, lane-wise; all lanes share the counts.
        float b = (float)rows, total = count + b;
        for (uint t = 0; t < width; ++t) {
            floatc block_mean = s[t] / b;
            floatc block_m2 = q[t] - s[t] * block_mean;
            block_m2 = select(block_m2, (floatc)0.0f, block_m2 < (floatc)0.0f);
            floatc delta = shift[t] + block_mean - mean[t];
            mean[t] += delta * (b / total);
            m2[t] += block_m2 + delta * delta * (count * b / total);
            shift[t] = mean[t];
        }
        count = total;
        n += rows;
    }
    // Per channel: saved and running statistics; s and q now hold scale and beta.
    for (uint t = 0; t < width; ++t) {
        float lanes_pilot[CVEC], lanes_mean[CVEC], lanes_m2[CVEC], lanes_scale[CVEC];
#if CVEC == 4
        vstore4(pilot[t], 0, lanes_pilot);
        vstore4(mean[t], 0, lanes_mean);
        vstore4(m2[t], 0, lanes_m2);
#else
        lanes_pilot[0] = pilot[t];
        lanes_mean[0] = mean[t];
        lanes_m2[0] = m2[t];
#endif
        for (uint i = 0; i < CVEC; ++i) {
            Moments m = {count, lanes_mean[i], lanes_m2[i]};
            lanes_scale[i] = finish_channel((first + t) * CVEC + i, m, (float)batch, lanes_pilot[i], weight,
                                            save_mean, save_invstd, running_mean_in, running_var_in,
                                            running_mean_out, running_var_out, momentum, eps).y;
        }
        s[t] = CLOAD(0, lanes_scale);
#if HAS_BIAS
        q[t] = CLOAD(first + t, bias);
#else
        q[t] = 0.0f;
#endif
    }
    for (uint n = 0; n < batch; ++n) {
        size_t row = (size_t)n * COLUMN_VECS + first;
        for (uint t = 0; t < width; ++t) y[row + t] = ((x[row + t] - pilot[t]) - mean[t]) * s[t] + q[t];
    }
}

// y = ((x - pilot[c]) - offset[c]) * scale[c] + bias[c] for (N, C) input, row by
// row, with the per-channel coefficients loaded as vectors beside each row segment.
__kernel void bn_apply_columns(__global const floatc *x, __global floatc *y, uint batch,
                               __global const float *pilot, __global const float *offset,
                               __global const float *scale, __global const float *bias) {
    INDEX_T total = (INDEX_T)batch * COLUMN_VECS;
    ItemRange r = item_range(0, total, get_global_id(0), get_global_size(0));
#if CHUNKED
    for (INDEX_T v = r.first; v < r.end;) {
        INDEX_T row = v / COLUMN_VECS;
        uint column = (uint)(v - row * COLUMN_VECS);
        INDEX_T len = min((row + 1) * COLUMN_VECS, r.end) - v;
        for (uint j = 0; j < len; ++j) {
            uint k = column + j;
#if HAS_BIAS
            floatc b = CLOAD(k, bias);
#else
            floatc b = 0.0f;
#endif
            y[v + j] = ((x[v + j] - CLOAD(k, pilot)) - CLOAD(k, offset)) * CLOAD(k, scale) + b;
        }
        v += len;
    }
#else
    for (INDEX_T v = r.first; v < r.end; v += r.stride) {
        uint k = (uint)(v % COLUMN_VECS);
#if HAS_BIAS
        floatc b = CLOAD(k, bias);
#else
        floatc b = 0.0f;
#endif
        y[v] = ((x[v] - CLOAD(k, pilot)) - CLOAD(k, offset)) * CLOAD(k, scale) + b;
    }
#endif
}

// Training, split reduction, step 1 of 3: work-group (g, c) reduces slice g of
// channel c and writes its (count, mean - pilot, M2) to partials[(c * G + g) * 3 ...].
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
    float pilot = channel_pilot(x, c, batch);
    Moments m = reduce_work_group(accumulate_channel(x, c, item_range(lo, hi, lid, WG), pilot), lc, lm, lq);
    if (lid == 0) {
        __global float *p = partials + ((size_t)c * groups + g) * 3;
        p[0] = m.count;
        p[1] = m.mean;
        p[2] = m.m2;
    }
}

// Training, split reduction, step 2 of 3: one work-item per channel merges its
// partials in order (deterministic), writes saved and running statistics, and the
// per-channel coefficients of bn_apply: pilot, offset = mean - pilot, and scale.
__kernel void bn_finish_moments(__global const floatv *x, __global const float *partials, uint groups, uint batch,
                                __global const float *weight,
                                __global float *save_mean, __global float *save_invstd,
                                __global const float *running_mean_in, __global const float *running_var_in,
                                __global float *running_mean_out, __global float *running_var_out,
                                float momentum, float eps,
                                __global float *pilot_out, __global float *offset, __global float *scale) {
    uint c = get_global_id(0);
    if (c >= CHANNELS) return;
    Moments m = {0.0f, 0.0f, 0.0f};
    for (uint g = 0; g < groups; ++g) {
        __global const float *p = partials + ((size_t)c * groups + g) * 3;
        Moments part = {p[0], p[1], p[2]};
        m = moments_merge(m, part);
    }
    float count = (float)((INDEX_T)batch * SPATIAL);
    float pilot = channel_pilot(x, c, batch);
    float2 mean_scale = finish_channel(c, m, count, pilot, weight, save_mean, save_invstd, running_mean_in,
                                       running_var_in, running_mean_out, running_var_out, momentum, eps);
    pilot_out[c] = pilot;
    offset[c] = mean_scale.x;
    scale[c] = mean_scale.y;
}

// Inference, step 1 of 2, one work-item per channel: scale = gamma / sqrt(running_var
// + eps) and offset = 0, so bn_apply computes (x - running_mean) * scale + bias.
__kernel void bn_inference_scale(__global const float *running_var, __global const float *weight,
                                 float eps, __global float *offset, __global float *scale) {
    uint c = get_global_id(0);
    if (c >= CHANNELS) return;
    float s = 1.0f / sqrt(running_var[c] + eps);
#if HAS_WEIGHT
    s *= weight[c];
#endif
    offset[c] = 0.0f;
    scale[c] = s;
}

// y = ((x - pilot[c]) - offset[c]) * scale[c] + bias[c] over every element: step 3
// of the split training path (pilot = channel_pilot, offset = mean -
// pilot) and step 2 of inference (pilot = running mean, offset = 0). Subtracting
// before scaling keeps large-mean data from cancelling.
__kernel void bn_apply(__global const floatv *x, __global floatv *y, uint batch,
                       __global const float *pilot, __global const float *offset,
                       __global const float *scale, __global const float *bias) {
    INDEX_T total = (INDEX_T)batch * CHANNELS * SPATIAL_VECS;
    ItemRange r = item_range(0, total, get_global_id(0), get_global_size(0));
#if CHUNKED
    // Contiguous runs inside one (n, c) plane share their coefficients.
    for (INDEX_T v = r.first; v < r.end;) {
        INDEX_T plane = v / SPATIAL_VECS;
        INDEX_T len = min((plane + 1) * SPATIAL_VECS, r.end) - v;
        uint c = (uint)(plane % CHANNELS);
        float k = pilot[c], o = offset[c], s = scale[c];
#if HAS_BIAS
        float b = bias[c];
#else
        float b = 0.0f;
#endif
        for (INDEX_T j = v; j < v + len; ++j) y[j] = ((x[j] - k) - o) * s + b;
        v += len;
    }
#else
    for (INDEX_T v = r.first; v < r.end; v += r.stride) {
        uint c = (uint)((v / SPATIAL_VECS) % CHANNELS);
#if HAS_BIAS
        y[v] = ((x[v] - pilot[c]) - offset[c]) * scale[c] + bias[c];
#else
        y[v] = ((x[v] - pilot[c]) - offset[c]) * scale[c];
#endif
    }
#endif
}
