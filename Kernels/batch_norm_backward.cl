// BatchNorm backward, channels-first (NCHW) and channels-last (NHWC): training (through
// the batch statistics), Batch Renorm training (r and d constant) and inference
// (running statistics). Channels-last input, and (N, C) input, are a row-major
// (rows, C) matrix to the column kernels (rows = N * M).
//
// Per channel c, with x_hat = (x - mean) * invstd over its n = N * M values:
//   S1 = sum dy, S2 = sum dy * x_hat                  (one pass over x and dy)
//   dbeta = S1, dgamma = r * S2 + d * S1              (r = 1, d = 0 without Batch Renorm)
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
// Sizes are kernel arguments (batch N, channels C, spatial M = the product of the
// spatial dims, 1 for (N, C) input; rows = N * M for the column kernels), so one program
// serves every shape. Build options, all set by BatchNormBackwardPlan
// (Sources/NormCL/Ops/BatchNorm/BatchNormBackwardPlan.swift, through BatchNormLaunch):
//   VEC            16, 8, 4 or 1: elements per load along the spatial axis (divides M)
//   WG             work-group size of the per-channel reduction kernels, a power of two
//   CHUNKED        1: each work-item walks one contiguous chunk (CPUs); 0: work-items
//                  interleave (GPUs coalesce neighbouring loads)
//   INFERENCE      1: mean/stat are the running mean and variance; dx = dy * gamma * invstd
//   INDEX_T        uint or ulong: wide enough for every element index
//   CVEC           16, 8, 4 or 1: channels per load in the column kernels (divides C)
//   TILE           column vectors per work-item in the column kernels
//   ACTIVATION     the activation f of a fused forward y = f(BN(x) + z) (epilogue.cl)
//   HAS_ADDEND     1: the forward added z; dz is written where given (reduction.cl)
// What differs only per channel (or per work-group) is decided at run time from NULL
// arguments, so one program serves every combination: weight (gamma = 1 without), bias
// (beta = 0; read only with an activation), renorm_r and renorm_d (Batch Renorm: r and d
// scale dx and enter dgamma), and which of dx, dz, grad_weight and grad_bias to write
// (those given).
//
// A fused forward y = f(a), a = BN(x) + z: every dy above is g = dy * f'(a), the
// gradient at the norm's output (and z's gradient dz), taken where dy is loaded
// (GRADIENT_AT, COLUMN_GRADIENT_AT of reduction.cl). a is recomputed from x, the
// statistics, gamma and beta (and z): a = (x - mean) * pre.x + pre.y + z with the
// channel's pre = (gamma * r * invstd, beta + gamma * d) (channel_pre); no stored copy
// of a is read. Without an activation g = dy, and pre, beta and z are not read.
//
// The reduction machinery (tree reduction, partial sums, channel runs, column tiles,
// elementwise runs) is Kernels/reduction.cl's.

// Channel c's invstd: saved (training), or from the running variance (inference).
inline float channel_invstd(__global const float *stat, uint c, float eps) {
#if INFERENCE
    return 1.0f / sqrt(stat[c] + eps);
#else
    return stat[c];
#endif
}

// (sum g, sum g * (x - mean)) over a work-item's range of channel c, g = dy through the
// epilogue (pre and z as channel_pre and the addend give them).
inline float2 accumulate_channel(__global const storage_t *x, __global const storage_t *dy,
                                 __global const storage_t *z, uint c, uint channels, INDEX_T plane_vecs, ItemRange r,
                                 float mean, float2 pre) {
    float2 sum = (float2)(0.0f, 0.0f), carry = (float2)(0.0f, 0.0f);
#if CHUNKED
    FOR_EACH_CHANNEL_RUN(r, c, channels, plane_vecs, p, len,
                         accumulate_contiguous_gradient_sums(dy, x, p, len, mean, pre, z, &sum, &carry))
#else
    ADD_STRIDED_GRADIENT_SUMS(dy, x, r, v, channel_vector(v, c, channels, plane_vecs), BLOCK, mean, pre, z, sum, carry)
#endif
    return sum;
}

// The per-channel arguments of the activation's input (channel_pre), in this order.
#define PRE_PARAMETERS                                                                             \
    __global const float *stat, float eps, __global const float *weight, __global const float *bias, \
    __global const float *renorm_r, __global const float *renorm_d
#define PRE_ARGUMENTS stat, eps, weight, bias, renorm_r, renorm_d

// The per-channel arguments every finishing kernel takes, in this order.
#define CHANNEL_PARAMETERS \
    __global const float *mean, PRE_PARAMETERS, __global float *grad_weight, __global float *grad_bias
#define CHANNEL_ARGUMENTS mean, PRE_ARGUMENTS, grad_weight, grad_bias

// Channel c's map of x - mean to the activation's input, a = (x - mean) * pre.x + pre.y
// (+ z), as the forward normalised: pre.x = gamma * r * invstd (also dx's scale),
// pre.y = beta + gamma * d (r = 1, d = 0 without Batch Renorm). NO_PRE without an
// activation, where nothing reads it.
inline float2 channel_pre(uint c, PRE_PARAMETERS) {
#if ACTIVATION
    float gamma = gamma_of(weight, c);
    float r = renorm_r ? renorm_r[c] : 1.0f, d = renorm_d ? renorm_d[c] : 0.0f;
    return (float2)(gamma * r * channel_invstd(stat, c, eps), beta_of(bias, c) + gamma * d);
#else
    return NO_PRE;
#endif
}

// Channel c's dgamma and dbeta from its sums (sum dy, sum dy * (x - mean)) over count
// values, and the coefficients (scale, mean_dy, xcoef) of its dx.
inline float3 finish_channel(uint c, float2 sums, float count, CHANNEL_PARAMETERS) {
    float invstd = channel_invstd(stat, c, eps);
    float sum_dy = sums.x, sum_dy_xhat = sums.y * invstd;
    float gamma = gamma_of(weight, c);
    float r = 1.0f;
    if (renorm_r) {
        r = renorm_r[c];
        if (grad_weight) grad_weight[c] = r * sum_dy_xhat + renorm_d[c] * sum_dy;
    } else if (grad_weight) {
        grad_weight[c] = sum_dy_xhat;
    }
    if (grad_bias) grad_bias[c] = sum_dy;
#if INFERENCE
    return (float3)(gamma * invstd, 0.0f, 0.0f);
#else
    return (float3)(gamma * r * invstd, sum_dy / count, invstd * sum_dy_xhat / count);
#endif
}

// dx from g (dy through the epilogue) and x with channel coefficients; the training
// form subtracts the mean of g and the projection on x_hat, inference is a plain scale.
#if INFERENCE
#define DX(xv, g, m, scale, mean_dy, xcoef) ((g) * (scale))
#else
#define DX(xv, g, m, scale, mean_dy, xcoef) ((((g) - (mean_dy)) - ((xv) - (m)) * (xcoef)) * (scale))
#endif

// dx (and dz) at NCHW vector j from the channel's mean m, pre and dx coefficients.
#define STORE_GRADIENTS_V(j, m, pre, scale, mean_dy, xcoef)                              \
    do {                                                                                \
        floatv xv_ = LOADV(x, j);                                                       \
        floatv g_ = GRADIENT_AT(dy, xv_, j, m, pre, z);                                 \
        BN_STORE_GRADIENTS(STOREV_STREAM, DX(xv_, g_, m, scale, mean_dy, xcoef), g_, dx, dz, j); \
    } while (0)

// The same at column vector j, pre as its two floatc halves.
#define STORE_GRADIENTS_C(j, m, pre_scale, pre_shift, scale, mean_dy, xcoef)             \
    do {                                                                                \
        floatc xv_ = LOADC(x, j);                                                       \
        floatc g_ = COLUMN_GRADIENT_AT(dy, xv_, j, m, pre_scale, pre_shift, z);         \
        BN_STORE_GRADIENTS(STOREC_STREAM, DX(xv_, g_, m, scale, mean_dy, xcoef), g_, dx, dz, j); \
    } while (0)

// One work-group per channel: the sums, dgamma and dbeta, then dx over the same
// elements while they are still in cache. One launch for the whole backward pass.
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void bnb_fused(__global const storage_t *x, __global const storage_t *dy, __global const storage_t *z,
               __global storage_t *dx, __global storage_t *dz, uint batch, uint channels, uint spatial,
               CHANNEL_PARAMETERS) {
    GROUP_REDUCTION(float2, slots, lid);
    __local float coefficients[3];
    const bool stream = BNB_STREAMS((ulong)batch * channels * spatial);
    uint c = get_group_id(0);
    INDEX_T plane_vecs = spatial / VEC;
    ItemRange r = item_range(0, (INDEX_T)batch * plane_vecs, lid, WG);
    float m = mean[c];
    float2 pre = channel_pre(c, PRE_ARGUMENTS);
    float2 sums = reduce_float2(accumulate_channel(x, dy, z, c, channels, plane_vecs, r, m, pre), slots, lid, WG);
    float3 k = (float3)(0.0f, 0.0f, 0.0f);
    if (lid == 0) k = finish_channel(c, sums, (float)((INDEX_T)batch * spatial), CHANNEL_ARGUMENTS);
    k = share_first_float3(k, coefficients, lid);
    if (!dx && !dz) return;  // after share_first_float3's barrier: every work-item reaches it
    float scale = k.x, mean_dy = k.y, xcoef = k.z;
    FOR_EACH_CHANNEL_SPAN(r, c, channels, plane_vecs, lo, hi, {
        for (INDEX_T j = lo; j < hi; ++j) STORE_GRADIENTS_V(j, m, pre, scale, mean_dy, xcoef);
    })
    STREAM_FENCE();
}

// One work-item per channel (NCHW with many channels of few values each): bnb_fused's
// sums, dgamma, dbeta and dx without a work-group reduction (see bn_train_channels).
__kernel void bnb_channels(__global const storage_t *x, __global const storage_t *dy, __global const storage_t *z,
                           __global storage_t *dx, __global storage_t *dz, uint batch, uint channels, uint spatial,
                           CHANNEL_PARAMETERS) {
    const bool stream = BNB_STREAMS((ulong)batch * channels * spatial);
    uint c = get_global_id(0);
    if (c >= channels) STREAM_RETURN();
    INDEX_T plane_vecs = spatial / VEC;
    ItemRange r = item_range(0, (INDEX_T)batch * plane_vecs, 0, 1);
    float m = mean[c];
    float2 pre = channel_pre(c, PRE_ARGUMENTS);
    float2 sums = accumulate_channel(x, dy, z, c, channels, plane_vecs, r, m, pre);
    float3 k = finish_channel(c, sums, (float)((INDEX_T)batch * spatial), CHANNEL_ARGUMENTS);
    if (!dx && !dz) STREAM_RETURN();
    float scale = k.x, mean_dy = k.y, xcoef = k.z;
    FOR_EACH_CHANNEL_SPAN(r, c, channels, plane_vecs, lo, hi, {
        for (INDEX_T j = lo; j < hi; ++j) STORE_GRADIENTS_V(j, m, pre, scale, mean_dy, xcoef);
    })
    STREAM_FENCE();
}

// Split reduction, step 1 of 3 (then bnb_finish, bnb_dx): work-group (g, c) sums slice
// g of channel c into partials[c * G + g].
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void bnb_partial_sums(__global const storage_t *x, __global const storage_t *dy, __global const storage_t *z,
                      uint batch, uint channels, uint spatial, __global const float *mean, PRE_PARAMETERS,
                      __global float2 *partials) {
    SPLIT_GROUP_REDUCTION(float2, slots, lid, g, groups, c);
    INDEX_T plane_vecs = spatial / VEC;
    ItemRange r = slice_range(0, (ulong)batch * plane_vecs, g, groups, lid, WG);
    float2 pre = channel_pre(c, PRE_ARGUMENTS);
    float2 sums =
        reduce_float2(accumulate_channel(x, dy, z, c, channels, plane_vecs, r, mean[c], pre), slots, lid, WG);
    if (lid == 0) partials[(size_t)c * groups + g] = sums;
}

// Split reductions (per channel or per column), step 2 of 3: one work-item per channel
// merges its partials in order (Kahan-compensated), writes dgamma and dbeta, and dx's
// coefficients (with an activation also pre_shift, channel_pre's shift, for dx's g).
__kernel void bnb_finish(__global const float2 *partials, uint channels, uint groups, float count, CHANNEL_PARAMETERS,
                         __global float *scale, __global float *mean_dy, __global float *xcoef,
                         __global float *pre_shift) {
    uint c = get_global_id(0);
    if (c >= channels) return;
    float2 sums = kahan_sum_float2_partials(partials + (size_t)c * groups, groups, 1);
    float3 k = finish_channel(c, sums, count, CHANNEL_ARGUMENTS);
    scale[c] = k.x;
    mean_dy[c] = k.y;
    xcoef[c] = k.z;
    if (pre_shift) pre_shift[c] = channel_pre(c, PRE_ARGUMENTS).y;
}

// Elementwise strategy for (rows, C) input (inference without dgamma, dbeta), step 1
// of 2: scale = gamma / sqrt(running_var + eps) per channel, and with an activation
// pre_shift = beta (the activation's input is (x - mean) * scale + beta (+ z)).
__kernel void bnb_inference_scale(uint channels, __global const float *stat, float eps, __global const float *weight,
                                  __global const float *bias, __global float *scale, __global float *pre_shift) {
    uint c = get_global_id(0);
    if (c >= channels) return;
    scale[c] = bn_running_scale(c, stat, weight, eps);
    if (pre_shift) pre_shift[c] = beta_of(bias, c);
}

// Channel c's dx coefficients in bnb_dx: (mean, scale, mean_dy, xcoef) from the split
// reduction's buffers, or in inference the mean and scale alone (DX reads nothing
// else); and the activation's pre (scale, shift): dx's scale and pre_shift, or beta in
// inference (NO_PRE without an activation).
#if INFERENCE
#define DX_COEFFICIENTS(c, m, s, b, k) \
    float m = mean[c], s = bn_running_scale(c, stat, weight, eps), b = 0.0f, k = 0.0f
#define DX_PRE(c, s) ((float2)((s), beta_of(bias, c)))
#else
#define DX_COEFFICIENTS(c, m, s, b, k) float m = mean[c], s = scale[c], b = mean_dy[c], k = xcoef[c]
#define DX_PRE(c, s) ((float2)((s), pre_shift[c]))
#endif
#if !ACTIVATION
#undef DX_PRE
#define DX_PRE(c, s) NO_PRE
#endif

// dx over every element of NCHW input from the per-channel coefficients: step 3 of the
// split reduction; the whole elementwise strategy (INFERENCE), which computes each
// channel's scale from stat (the running variance), weight and eps where it is used
// (once per plane run on CPUs) instead of launching bnb_inference_scale first: on PoCL
// a launch costs 0.06-0.2 ms, a tenth or more of the whole op at common sizes.
__kernel void bnb_dx(__global const storage_t *x, __global const storage_t *dy, __global const storage_t *z,
                     __global storage_t *dx, __global storage_t *dz, uint batch, uint channels, uint spatial,
                     __global const float *mean, __global const float *scale, __global const float *mean_dy,
                     __global const float *xcoef, __global const float *pre_shift, __global const float *stat,
                     __global const float *weight, __global const float *bias, float eps) {
    const bool stream = BNB_STREAMS((ulong)batch * channels * spatial);
    INDEX_T plane_vecs = spatial / VEC;
    ItemRange r = item_range(0, (INDEX_T)batch * channels * plane_vecs, get_global_id(0), get_global_size(0));
    // Contiguous runs inside one (n, c) plane share their coefficients.
    FOR_EACH_NCHW_RUN(r, channels, plane_vecs, c, lo, hi, {
        DX_COEFFICIENTS(c, m, s, b, k);
        float2 pre = DX_PRE(c, s);
        for (INDEX_T j = lo; j < hi; ++j) STORE_GRADIENTS_V(j, m, pre, s, b, k);
    })
    STREAM_FENCE();
}

// Column kernels, on a row-major (rows, C) matrix: a work-item owns TILE adjacent
// column vectors of CVEC channels (column_tile) and walks the rows (contiguous row
// segments on CPUs; neighbouring work-items read neighbouring vectors on GPUs, TILE = 1).

// The tile's means m and, with an activation, each lane's channel_pre in pre_scale and
// pre_shift (not read, and left unset, without one).
inline void tile_channel_maps(uint first, uint width, __global const float *mean, PRE_PARAMETERS, floatc *m,
                              floatc *pre_scale, floatc *pre_shift) {
    for (uint t = 0; t < width; ++t) m[t] = CLOAD(first + t, mean);
#if ACTIVATION
    FOR_EACH_TILE_LANE(first, width, t, i, c, {
        float2 pre = channel_pre(c, PRE_ARGUMENTS);
        COLUMN_LANE(pre_scale[t], i) = pre.x;
        COLUMN_LANE(pre_shift[t], i) = pre.y;
    })
#endif
}

// Columns, one launch: sums over all rows, dgamma and dbeta, then dx row by row.
__kernel void bnb_columns(__global const storage_t *x, __global const storage_t *dy, __global const storage_t *z,
                          __global storage_t *dx, __global storage_t *dz, uint rows, uint channels,
                          CHANNEL_PARAMETERS) {
    const bool stream = BNB_STREAMS((ulong)rows * channels);
    uint column_vecs = channels / CVEC, first, width;
    if (!column_tile(get_global_id(0), column_vecs, &first, &width)) STREAM_RETURN();
    floatc m[TILE], pre_scale[TILE], pre_shift[TILE], sum_dy[TILE], sum_dyx[TILE];
    floatc scale[TILE], mean_dy[TILE], xcoef[TILE];
    tile_channel_maps(first, width, mean, PRE_ARGUMENTS, m, pre_scale, pre_shift);
    accumulate_column_gradient_sums(dy, x, 0, column_vecs, first, width, 0, rows, m, pre_scale, pre_shift, z, sum_dy,
                                    sum_dyx);
    FOR_EACH_TILE_LANE(first, width, t, i, c, {
        float2 sums = (float2)(COLUMN_LANE(sum_dy[t], i), COLUMN_LANE(sum_dyx[t], i));
        float3 k = finish_channel(c, sums, (float)rows, CHANNEL_ARGUMENTS);
        COLUMN_LANE(scale[t], i) = k.x;
        COLUMN_LANE(mean_dy[t], i) = k.y;
        COLUMN_LANE(xcoef[t], i) = k.z;
    })
    if (!dx && !dz) STREAM_RETURN();
    FOR_EACH_TILE_ROW(rows, column_vecs, first, width, at, t, {
        STORE_GRADIENTS_C(at, m[t], pre_scale[t], pre_shift[t], scale[t], mean_dy[t], xcoef[t]);
    });
    STREAM_FENCE();
}

// Columns, split reduction, step 1 of 3 (then bnb_finish, bnb_dx_columns): work-item
// (i, g) sums the TILE column vectors of item i over row slice g into partials[c * G + g].
__kernel void bnb_column_partials(__global const storage_t *x, __global const storage_t *dy,
                                  __global const storage_t *z, uint rows, uint channels, __global const float *mean,
                                  PRE_PARAMETERS, __global float2 *partials) {
    uint column_vecs = channels / CVEC, first, width, lo, hi;
    uint g = get_global_id(1), groups = get_global_size(1);
    if (!column_tile_slice(get_global_id(0), column_vecs, rows, g, groups, &first, &width, &lo, &hi)) return;
    floatc m[TILE], pre_scale[TILE], pre_shift[TILE], sum_dy[TILE], sum_dyx[TILE];
    tile_channel_maps(first, width, mean, PRE_ARGUMENTS, m, pre_scale, pre_shift);
    accumulate_column_gradient_sums(dy, x, 0, column_vecs, first, width, lo, hi, m, pre_scale, pre_shift, z, sum_dy,
                                    sum_dyx);
    FOR_EACH_TILE_LANE(first, width, t, i, c, {
        partials[(size_t)c * groups + g] = (float2)(COLUMN_LANE(sum_dy[t], i), COLUMN_LANE(sum_dyx[t], i));
    })
}

// pre_shift's column vector k, or nothing to load without an activation (NULL then).
#if ACTIVATION
#define COLUMN_PRE_SHIFT(k, pre_shift) CLOAD(k, pre_shift)
#else
#define COLUMN_PRE_SHIFT(k, pre_shift) ((floatc)0.0f)
#endif

// dx (and dz) for (rows, C) input, row by row, with the channel coefficients loaded as vectors
// beside each row segment: step 3 of the split columns, step 2 of the elementwise strategy.
__kernel void bnb_dx_columns(__global const storage_t *x, __global const storage_t *dy, __global const storage_t *z,
                             __global storage_t *dx, __global storage_t *dz, uint rows, uint channels,
                             __global const float *mean, __global const float *scale, __global const float *mean_dy,
                             __global const float *xcoef, __global const float *pre_shift) {
    const bool stream = BNB_STREAMS((ulong)rows * channels);
    uint column_vecs = channels / CVEC;
    ItemRange r = item_range(0, (INDEX_T)rows * column_vecs, get_global_id(0), get_global_size(0));
    FOR_EACH_COLUMN_RUN(r, column_vecs, lo, hi, column, {
        // In inference DX is g * scale: mean_dy and xcoef (NULL then) are never read;
        // without an activation neither is pre_shift (NULL then).
        for (INDEX_T j = lo, k = column; j < hi; ++j, ++k)
            STORE_GRADIENTS_C(j, CLOAD(k, mean), CLOAD(k, scale), COLUMN_PRE_SHIFT(k, pre_shift), CLOAD(k, scale),
                              CLOAD(k, mean_dy), CLOAD(k, xcoef));
    })
    STREAM_FENCE();
}
