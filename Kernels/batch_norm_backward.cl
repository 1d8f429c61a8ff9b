// BatchNorm backward, channels-first (NCHW) and channels-last (NHWC): training (through
// the batch statistics), Batch Renorm training (r and d constant) and inference
// (running statistics). Channels-last input, and (N, C) input, are a row-major
// (rows, C) matrix to the column kernels (rows = N * M).
//
// Per channel c, with x_hat = (x - mean) * invstd over its n = N * M values:
//   S1 = sum dy, S2 = sum dy * x_hat                  (one pass over x and dy)
//   dbeta = S1, dgamma = r * S2 + d * S1              (r = 1, d = 0 unless RENORM)
//   training:  dx = gamma * r * invstd * ((dy - S1 / n) - (x - mean) * invstd * S2 / n)
//   inference: dx = gamma * invstd * dy
// so dx = ((dy - mean_dy) - (x - mean) * xcoef) * scale with per-channel coefficients
// scale = gamma * r * invstd, mean_dy = S1 / n, xcoef = invstd^2 * sum(dy * (x - mean)) / n
// (mean_dy = xcoef = 0 in inference). The reduction sums dy * (x - mean) and scales by
// invstd once per channel. mean and invstd are the saved batch statistics; in
// inference the running mean, and invstd = 1 / sqrt(running_var + eps) computed here as
// the forward computes it. x - mean is exact in float32 wherever x lies within a factor
// of 2 of the mean (Sterbenz), so data with a large mean (1e4 + N(0,1)) loses nothing.
//
// Accuracy of the sums: each work-item adds blocks of BLOCK vectors into plain float
// partial sums, and the block sums into running sums with Kahan compensation, so a
// work-item's error stays at a few ulps of its sum of |terms| however many blocks it
// folds; work-items merge pairwise (a tree), work-groups and row slices in a fixed
// order (Kahan again). No atomics: the same input gives bit-identical results.
//
// Build options, all set by BatchNormBackwardPlan (Sources/NormCL/Ops/BatchNorm/BatchNormBackwardPlan.swift):
//   CHANNELS       C
//   SPATIAL        M, the product of the spatial dims (1 for (N, C) input)
//   VEC            4 or 1: elements per load along the spatial axis (4 needs M % 4 == 0)
//   WG             work-group size of the per-channel reduction kernels, a power of two
//   CHUNKED        1: each work-item walks one contiguous chunk (CPUs); 0: work-items
//                  interleave (GPUs coalesce neighbouring loads)
//   HAS_WEIGHT     1 when gamma is given, else gamma = 1
//   INFERENCE      1: mean/stat are the running mean and variance; dx = dy * gamma * invstd
//   RENORM         1: Batch Renorm; r and d per channel scale dx and enter dgamma
//   NEED_DX, NEED_DW, NEED_DB   which of dx, dgamma, dbeta to write
//   INDEX_T        uint or ulong: wide enough for every element index
//   CVEC           4 or 1: channels per load in the column kernels (4 needs C % 4 == 0)
//   TILE           column vectors per work-item in the column kernels

#define SPATIAL_VECS (SPATIAL / VEC)
#define BLOCK 16

// Index in x (in vectors) of the v-th vector of channel c, in (n, m) order.
inline INDEX_T channel_vector(INDEX_T v, uint c) {
    INDEX_T n = v / SPATIAL_VECS;
    INDEX_T m = v - n * SPATIAL_VECS;
    return (n * CHANNELS + c) * SPATIAL_VECS + m;
}

#if CHUNKED
// The work-item's vectors as contiguous runs, one per (n, c) plane it touches: the
// body sees a start index p and a length, with no index division inside a run.
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

// Channel c's invstd: saved (training), or from the running variance (inference).
inline float channel_invstd(__global const float *stat, uint c, float eps) {
#if INFERENCE
    return 1.0f / sqrt(stat[c] + eps);
#else
    return stat[c];
#endif
}

// (sum dy, sum dy * (x - mean)) over a work-item's range of channel c.
inline float2 accumulate_channel(__global const storage_t *x, __global const storage_t *dy, uint c, ItemRange r,
                                 float mean) {
    float2 sum = (float2)(0.0f, 0.0f), carry = (float2)(0.0f, 0.0f);
#if CHUNKED
    FOR_EACH_RUN(r, c, p, len, {
        INDEX_T k = 0;
        for (; k + BLOCK <= len; k += BLOCK) {
            // Two accumulators per sum: independent add chains.
            floatv s0 = 0.0f, s1 = 0.0f, q0 = 0.0f, q1 = 0.0f;
            for (int j = 0; j < BLOCK; j += 2) {
                floatv g0 = LOADV(dy, p + k + j), g1 = LOADV(dy, p + k + j + 1);
                s0 += g0;
                s1 += g1;
                q0 += g0 * (LOADV(x, p + k + j) - mean);
                q1 += g1 * (LOADV(x, p + k + j + 1) - mean);
            }
            floatv s = s0 + s1, q = q0 + q1;
            KAHAN_ADD(float2, sum, carry, (float2)(HSUM(s), HSUM(q)));
        }
        if (k < len) {
            floatv s = 0.0f, q = 0.0f;
            for (INDEX_T j = k; j < len; ++j) {
                floatv g = LOADV(dy, p + j);
                s += g;
                q += g * (LOADV(x, p + j) - mean);
            }
            KAHAN_ADD(float2, sum, carry, (float2)(HSUM(s), HSUM(q)));
        }
    })
#else
    for (INDEX_T v = r.first; v < r.end;) {
        floatv s = 0.0f, q = 0.0f;
        for (int k = 0; k < BLOCK && v < r.end; ++k, v += r.stride) {
            INDEX_T i = channel_vector(v, c);
            floatv g = LOADV(dy, i);
            s += g;
            q += g * (LOADV(x, i) - mean);
        }
        KAHAN_ADD(float2, sum, carry, (float2)(HSUM(s), HSUM(q)));
    }
#endif
    return sum;
}

// Tree reduction (pairwise, fixed order) of one float2 per work-item; all get the result.
inline float2 reduce_work_group(float2 value, __local float2 *scratch) {
    uint lid = get_local_id(0);
    scratch[lid] = value;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint width = WG / 2; width > 0; width >>= 1) {
        if (lid < width) scratch[lid] += scratch[lid + width];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    return scratch[0];
}

// The per-channel arguments every finishing kernel takes, in this order.
#define CHANNEL_PARAMETERS                                                                         \
    __global const float *mean, __global const float *stat, float eps, __global const float *weight, \
    __global const float *renorm_r, __global const float *renorm_d,                                 \
    __global float *grad_weight, __global float *grad_bias
#define CHANNEL_ARGUMENTS mean, stat, eps, weight, renorm_r, renorm_d, grad_weight, grad_bias

// Channel c's dgamma and dbeta from its sums (sum dy, sum dy * (x - mean)) over count
// values, and the coefficients (scale, mean_dy, xcoef) of its dx.
inline float3 finish_channel(uint c, float2 sums, float count, CHANNEL_PARAMETERS) {
    float invstd = channel_invstd(stat, c, eps);
    float sum_dy = sums.x, sum_dy_xhat = sums.y * invstd;
#if HAS_WEIGHT
    float gamma = weight[c];
#else
    float gamma = 1.0f;
#endif
#if RENORM
    float r = renorm_r[c], d = renorm_d[c];
#if NEED_DW
    grad_weight[c] = r * sum_dy_xhat + d * sum_dy;
#endif
#else
    float r = 1.0f;
#if NEED_DW
    grad_weight[c] = sum_dy_xhat;
#endif
#endif
#if NEED_DB
    grad_bias[c] = sum_dy;
#endif
#if INFERENCE
    return (float3)(gamma * invstd, 0.0f, 0.0f);
#else
    return (float3)(gamma * r * invstd, sum_dy / count, invstd * sum_dy_xhat / count);
#endif
}

// dx from dy (and x) with channel coefficients; the training form subtracts the mean
// of dy and the projection on x_hat, inference is a plain scale.
#if INFERENCE
#define DX(xv, g, m, scale, mean_dy, xcoef) ((g) * (scale))
#else
#define DX(xv, g, m, scale, mean_dy, xcoef) ((((g) - (mean_dy)) - ((xv) - (m)) * (xcoef)) * (scale))
#endif

// One work-group per channel: the sums, dgamma and dbeta, then dx over the same
// elements while they are still in cache. One launch for the whole backward pass.
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void bnb_fused(__global const storage_t *x, __global const storage_t *dy, __global storage_t *dx, uint batch,
               CHANNEL_PARAMETERS) {
    __local float2 scratch[WG];
    __local float coefficients[3];
    uint c = get_group_id(0);
    uint lid = get_local_id(0);
    INDEX_T total = (INDEX_T)batch * SPATIAL_VECS;
    ItemRange r = item_range(0, total, lid, WG);
    float m = mean[c];
    float2 sums = reduce_work_group(accumulate_channel(x, dy, c, r, m), scratch);
    if (lid == 0) {
        float3 k = finish_channel(c, sums, (float)((INDEX_T)batch * SPATIAL), CHANNEL_ARGUMENTS);
        coefficients[0] = k.x;
        coefficients[1] = k.y;
        coefficients[2] = k.z;
    }
#if NEED_DX
    barrier(CLK_LOCAL_MEM_FENCE);
    float scale = coefficients[0], mean_dy = coefficients[1], xcoef = coefficients[2];
#if CHUNKED
    FOR_EACH_RUN(r, c, p, len, {
        for (INDEX_T j = p; j < p + len; ++j) STOREV(DX(LOADV(x, j), LOADV(dy, j), m, scale, mean_dy, xcoef), dx, j);
    })
#else
    for (INDEX_T v = r.first; v < r.end; v += r.stride) {
        INDEX_T i = channel_vector(v, c);
        STOREV(DX(LOADV(x, i), LOADV(dy, i), m, scale, mean_dy, xcoef), dx, i);
    }
#endif
#endif
}

// Split reduction, step 1 of 3 (then bnb_finish, bnb_dx): work-group (g, c) sums slice
// g of channel c into partials[(c * G + g) * 2 ...].
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void bnb_partial_sums(__global const storage_t *x, __global const storage_t *dy, uint batch,
                      __global const float *mean, __global float *partials) {
    __local float2 scratch[WG];
    uint g = get_group_id(0), groups = get_num_groups(0);
    uint c = get_group_id(1);
    uint lid = get_local_id(0);
    INDEX_T total = (INDEX_T)batch * SPATIAL_VECS;
    INDEX_T per = (total + groups - 1) / groups;
    INDEX_T lo = min((INDEX_T)g * per, total);
    INDEX_T hi = min(lo + per, total);
    float2 sums = reduce_work_group(accumulate_channel(x, dy, c, item_range(lo, hi, lid, WG), mean[c]), scratch);
    if (lid == 0) vstore2(sums, (size_t)c * groups + g, partials);
}

// Split reductions (per channel or per column), step 2 of 3: one work-item per channel
// merges its partials in order, writes dgamma and dbeta, and dx's coefficients.
__kernel void bnb_finish(__global const float *partials, uint groups, float count, CHANNEL_PARAMETERS,
                         __global float *scale, __global float *mean_dy, __global float *xcoef) {
    uint c = get_global_id(0);
    if (c >= CHANNELS) return;
    float2 sums = (float2)(0.0f, 0.0f), carry = (float2)(0.0f, 0.0f);
    for (uint g = 0; g < groups; ++g) KAHAN_ADD(float2, sums, carry, vload2((size_t)c * groups + g, partials));
    float3 k = finish_channel(c, sums, count, CHANNEL_ARGUMENTS);
    scale[c] = k.x;
    mean_dy[c] = k.y;
    xcoef[c] = k.z;
}

// gamma / sqrt(running_var + eps), per channel: the elementwise strategy's scale.
inline float inference_scale(uint c, __global const float *stat, __global const float *weight, float eps) {
    float s = channel_invstd(stat, c, eps);
#if HAS_WEIGHT
    s *= weight[c];
#endif
    return s;
}

// Elementwise strategy for (rows, C) input (inference without dgamma, dbeta), step 1
// of 2: scale = gamma / sqrt(running_var + eps) per channel.
__kernel void bnb_inference_scale(__global const float *stat, float eps, __global const float *weight,
                                  __global float *scale) {
    uint c = get_global_id(0);
    if (c >= CHANNELS) return;
    scale[c] = inference_scale(c, stat, weight, eps);
}

// dx over every element of NCHW input from the per-channel coefficients: step 3 of the
// split reduction; the whole elementwise strategy (INFERENCE), which computes each
// channel's scale from stat (the running variance), weight and eps where it is used
// (once per plane run on CPUs) instead of launching bnb_inference_scale first: on PoCL
// a launch costs 0.06-0.2 ms, a tenth or more of the whole op at common sizes.
__kernel void bnb_dx(__global const storage_t *x, __global const storage_t *dy, __global storage_t *dx, uint batch,
                     __global const float *mean, __global const float *scale, __global const float *mean_dy,
                     __global const float *xcoef, __global const float *stat, __global const float *weight, float eps) {
    INDEX_T total = (INDEX_T)batch * CHANNELS * SPATIAL_VECS;
    ItemRange r = item_range(0, total, get_global_id(0), get_global_size(0));
#if CHUNKED
    // Contiguous runs inside one (n, c) plane share their coefficients.
    for (INDEX_T v = r.first; v < r.end;) {
        INDEX_T plane = v / SPATIAL_VECS;
        INDEX_T len = min((plane + 1) * SPATIAL_VECS, r.end) - v;
        uint c = (uint)(plane % CHANNELS);
#if INFERENCE
        float m = 0.0f, b = 0.0f, k = 0.0f;
#else
        float m = mean[c], b = mean_dy[c], k = xcoef[c];
#endif
#if INFERENCE
        float s = inference_scale(c, stat, weight, eps);
#else
        float s = scale[c];
#endif
        for (INDEX_T j = v; j < v + len; ++j) STOREV(DX(LOADV(x, j), LOADV(dy, j), m, s, b, k), dx, j);
        v += len;
    }
#else
    for (INDEX_T v = r.first; v < r.end; v += r.stride) {
        uint c = (uint)((v / SPATIAL_VECS) % CHANNELS);
#if INFERENCE
        STOREV(DX(LOADV(x, v), LOADV(dy, v), 0.0f, inference_scale(c, stat, weight, eps), 0.0f, 0.0f), dx, v);
#else
        STOREV(DX(LOADV(x, v), LOADV(dy, v), mean[c], scale[c], mean_dy[c], xcoef[c]), dx, v);
#endif
    }
#endif
}

// Column kernels, on a row-major (rows, C) matrix: a work-item owns TILE adjacent
// column vectors of CVEC channels and walks the rows (contiguous row segments on
// CPUs; neighbouring work-items read neighbouring vectors on GPUs, TILE = 1).
#if CVEC == 4
typedef float4 floatc;
#define CLOAD(i, p) vload4((i), (p))
#define CSTORE(v, i, p) vstore4((v), (i), (p))
#define LOADC(p, i) LOAD4(p, i)
#define STOREC(v, p, i) STORE4(v, p, i)
#else
typedef float floatc;
#define CLOAD(i, p) ((p)[(i)])
#define CSTORE(v, i, p) ((p)[(i)] = (v))
#define LOADC(p, i) LOAD1(p, i)
#define STOREC(v, p, i) STORE1(v, p, i)
#endif
#define COLUMN_VECS (CHANNELS / CVEC)

// (sum dy, sum dy * (x - mean)) of column vectors first ..< first + width over rows
// [lo, hi), lane by lane: BLOCK-row block sums, Kahan-added.
inline void accumulate_columns(__global const storage_t *x, __global const storage_t *dy, uint first, uint width,
                               uint lo, uint hi, const floatc *m, floatc *sum_dy, floatc *sum_dyx) {
    floatc s[TILE], q[TILE], carry_s[TILE], carry_q[TILE];
    for (uint t = 0; t < width; ++t) {
        sum_dy[t] = 0.0f;
        sum_dyx[t] = 0.0f;
        carry_s[t] = 0.0f;
        carry_q[t] = 0.0f;
    }
    for (uint n = lo; n < hi;) {
        uint rows = min((uint)BLOCK, hi - n);
        for (uint t = 0; t < width; ++t) {
            s[t] = 0.0f;
            q[t] = 0.0f;
        }
        for (uint k = 0; k < rows; ++k) {
            size_t row = (size_t)(n + k) * COLUMN_VECS + first;
            for (uint t = 0; t < width; ++t) {
                floatc g = LOADC(dy, row + t);
                s[t] += g;
                q[t] += g * (LOADC(x, row + t) - m[t]);
            }
        }
        for (uint t = 0; t < width; ++t) {
            KAHAN_ADD(floatc, sum_dy[t], carry_s[t], s[t]);
            KAHAN_ADD(floatc, sum_dyx[t], carry_q[t], q[t]);
        }
        n += rows;
    }
}

// Splits a column vector into its CVEC lanes.
inline void column_lanes(floatc v, float *lanes) {
#if CVEC == 4
    vstore4(v, 0, lanes);
#else
    lanes[0] = v;
#endif
}

// Columns, one launch: sums over all rows, dgamma and dbeta, then dx row by row.
__kernel void bnb_columns(__global const storage_t *x, __global const storage_t *dy, __global storage_t *dx, uint rows,
                          CHANNEL_PARAMETERS) {
    uint first = get_global_id(0) * TILE;
    if (first >= COLUMN_VECS) return;
    uint width = min((uint)TILE, (uint)COLUMN_VECS - first);
    floatc m[TILE], sum_dy[TILE], sum_dyx[TILE], scale[TILE], mean_dy[TILE], xcoef[TILE];
    for (uint t = 0; t < width; ++t) m[t] = CLOAD(first + t, mean);
    accumulate_columns(x, dy, first, width, 0, rows, m, sum_dy, sum_dyx);
    for (uint t = 0; t < width; ++t) {
        float lanes_s[CVEC], lanes_q[CVEC], lanes_scale[CVEC], lanes_mean_dy[CVEC], lanes_xcoef[CVEC];
        column_lanes(sum_dy[t], lanes_s);
        column_lanes(sum_dyx[t], lanes_q);
        for (uint i = 0; i < CVEC; ++i) {
            float3 k = finish_channel((first + t) * CVEC + i, (float2)(lanes_s[i], lanes_q[i]), (float)rows,
                                      CHANNEL_ARGUMENTS);
            lanes_scale[i] = k.x;
            lanes_mean_dy[i] = k.y;
            lanes_xcoef[i] = k.z;
        }
        scale[t] = CLOAD(0, lanes_scale);
        mean_dy[t] = CLOAD(0, lanes_mean_dy);
        xcoef[t] = CLOAD(0, lanes_xcoef);
    }
#if NEED_DX
    for (uint n = 0; n < rows; ++n) {
        size_t row = (size_t)n * COLUMN_VECS + first;
        for (uint t = 0; t < width; ++t)
            STOREC(DX(LOADC(x, row + t), LOADC(dy, row + t), m[t], scale[t], mean_dy[t], xcoef[t]), dx, row + t);
    }
#endif
}

// Columns, split reduction, step 1 of 3 (then bnb_finish, bnb_dx_columns): work-item
// (i, g) sums the TILE column vectors of item i over row slice g into
// partials[(c * G + g) * 2 ...].
__kernel void bnb_column_partials(__global const storage_t *x, __global const storage_t *dy, uint rows,
                                  __global const float *mean, __global float *partials) {
    uint first = get_global_id(0) * TILE;
    if (first >= COLUMN_VECS) return;
    uint width = min((uint)TILE, (uint)COLUMN_VECS - first);
    uint g = get_global_id(1), groups = get_global_size(1);
    // 64-bit: rows + groups - 1 and g * per can pass 2^32 for huge row counts.
    ulong per = ((ulong)rows + groups - 1) / groups;
    uint lo = (uint)min((ulong)g * per, (ulong)rows), hi = (uint)min((ulong)lo + per, (ulong)rows);
    floatc m[TILE], sum_dy[TILE], sum_dyx[TILE];
    for (uint t = 0; t < width; ++t) m[t] = CLOAD(first + t, mean);
    accumulate_columns(x, dy, first, width, lo, hi, m, sum_dy, sum_dyx);
    for (uint t = 0; t < width; ++t) {
        float lanes_s[CVEC], lanes_q[CVEC];
        column_lanes(sum_dy[t], lanes_s);
        column_lanes(sum_dyx[t], lanes_q);
        for (uint i = 0; i < CVEC; ++i) {
            uint c = (first + t) * CVEC + i;
            vstore2((float2)(lanes_s[i], lanes_q[i]), (size_t)c * groups + g, partials);
        }
    }
}

// dx for (rows, C) input, row by row, with the channel coefficients loaded as vectors
// beside each row segment: step 3 of the split columns, step 2 of the elementwise strategy.
__kernel void bnb_dx_columns(__global const storage_t *x, __global const storage_t *dy, __global storage_t *dx,
                             uint rows, __global const float *mean, __global const float *scale,
                             __global const float *mean_dy, __global const float *xcoef) {
    INDEX_T total = (INDEX_T)rows * COLUMN_VECS;
    ItemRange r = item_range(0, total, get_global_id(0), get_global_size(0));
#if CHUNKED
    for (INDEX_T v = r.first; v < r.end;) {
        INDEX_T row = v / COLUMN_VECS;
        uint column = (uint)(v - row * COLUMN_VECS);
        uint len = (uint)(min((row + 1) * COLUMN_VECS, r.end) - v);
        for (uint j = 0; j < len; ++j) {
            uint k = column + j;
#if INFERENCE
            STOREC(LOADC(dy, v + j) * CLOAD(k, scale), dx, v + j);
#else
            STOREC(DX(LOADC(x, v + j), LOADC(dy, v + j), CLOAD(k, mean), CLOAD(k, scale), CLOAD(k, mean_dy),
                      CLOAD(k, xcoef)),
                   dx, v + j);
#endif
        }
        v += len;
    }
#else
    for (INDEX_T v = r.first; v < r.end; v += r.stride) {
        uint k = (uint)(v % COLUMN_VECS);
#if INFERENCE
        STOREC(LOADC(dy, v) * CLOAD(k, scale), dx, v);
#else
        STOREC(DX(LOADC(x, v), LOADC(dy, v), CLOAD(k, mean), CLOAD(k, scale), CLOAD(k, mean_dy), CLOAD(k, xcoef)), dx, v);
#endif
    }
#endif
}
