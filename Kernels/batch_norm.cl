// BatchNorm forward, channels-first (NCHW) and channels-last (NHWC): training (batch
// statistics) and inference. Channels-last input, and (N, C) input, are a row-major
// (rows, C) matrix to the column kernels (rows = N * M).
//
// Sizes are kernel arguments (batch N, channels C, spatial M = the product of the
// spatial dims, 1 for (N, C) input; rows = N * M for the column kernels), so one program
// serves every shape. Build options, all set by BatchNormPlan
// (Sources/NormCL/Ops/BatchNorm/BatchNormPlan.swift, through BatchNormLaunch):
//   VEC            16, 8, 4 or 1: elements per load along the spatial axis (divides M)
//   WG             work-group size of the reduction kernels, a power of two
//   CHUNKED        1: each work-item walks one contiguous chunk (CPU prefetchers like it)
//                  0: work-items interleave (GPUs coalesce neighbouring loads)
//   INDEX_T        uint or ulong: wide enough for every element index
//   CVEC           16, 8, 4 or 1: channels per load in the column kernels (divides C)
//   TILE           column vectors per work-item in the column kernels
//   ACTIVATION     the fused activation f of y = f(BN(x) + z) (epilogue.cl; 0: none)
//   HAS_ADDEND     1: every kernel that writes y adds z, x's shape, layout and storage,
//                  before the activation (reduction.cl, BN_STORE_EPILOGUE); 0: z unread
// What differs only per channel is decided at run time from NULL arguments, so one
// program serves every combination: weight (gamma = 1 without), bias (beta = 0),
// running_mean_out (training updates the running statistics only when given) and
// renorm_r (Batch Renormalization, training corrected by r and d, only when given).
//
// Every kernel that writes y stores f(BN(x) + z) in the same store (BN_STORE_EPILOGUE):
// no pass of its own, and nothing read or written beyond z.
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
//
// The reduction machinery (tree reduction, partial merges, channel runs, column tiles,
// column moments, elementwise runs) is Kernels/reduction.cl's.

// Channel c's pilot: the median of five elements at 0, 1/4, 1/2, 3/4 and the end
// of its (n, m) order (0 if that is Inf or NaN: see common.cl on non-finite values).
// Every kernel computes the same value from the same elements.
inline float channel_pilot(__global const storage_t *x, uint c, uint channels, INDEX_T plane_vecs, uint batch) {
    INDEX_T last = (INDEX_T)batch * plane_vecs - 1;
#define PILOT_AT(v) FIRST_LANE(LOADV(x, channel_vector((v), c, channels, plane_vecs)))
    float a = PILOT_AT(0), b = PILOT_AT(last / 4), d = PILOT_AT(last / 2), e = PILOT_AT(last - last / 4);
    float f = PILOT_AT(last);
#undef PILOT_AT
    return FINITE_OR_ZERO(float, MEDIAN5(a, b, d, e, f));
}

// Moments of channel c's vectors in r, relative to `pilot`.
inline Moments accumulate_channel(__global const storage_t *x, uint c, uint channels, INDEX_T plane_vecs, ItemRange r,
                                  float pilot) {
    Moments acc = {0.0f, 0.0f, 0.0f};
    float2 carry = (float2)(0.0f, 0.0f);  // Kahan carries of M2 and of the mean
    if (r.first >= r.end) return acc;
    float shift = FINITE_OR_ZERO(float, FIRST_LANE(LOADV(x, channel_vector(r.first, c, channels, plane_vecs))) - pilot);
#if CHUNKED
    FOR_EACH_CHANNEL_RUN(r, c, channels, plane_vecs, p, len,
                         accumulate_contiguous_moments(x, p, len, pilot, &acc, &carry, &shift))
#else
    FOLD_STRIDED_MOMENTS(x, r, v, channel_vector(v, c, channels, plane_vecs), BLOCK, pilot, acc, carry, shift)
#endif
    return acc;
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
// (renorm_r given) corrects with r = clamp(sigma_B / sigma, 1/rmax, rmax) and
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
    float gamma = gamma_of(weight, c), beta = beta_of(bias, c);
    float scale = invstd * gamma, shift = beta;
    if (renorm_r) {
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
    }
    if (running_mean_out) {
        // Running variance is unbiased, as in PyTorch: var * n / (n - 1).
        running_mean_out[c] = (1.0f - momentum) * running_mean_in[c] + momentum * mean;
        running_var_out[c] = (1.0f - momentum) * running_var_in[c] + momentum * (m.m2 / (count - 1.0f));
    }
    return (float3)(m.mean, scale, shift);
}

// Training, one work-group per channel: statistics, then normalisation of the same
// elements while they are still in cache. One launch for the whole op.
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void bn_train_fused(__global const storage_t *x, __global storage_t *y, __global const storage_t *z, uint batch,
                    uint channels, uint spatial, __global const float *weight, __global const float *bias,
                    STATISTICS_PARAMETERS) {
    GROUP_REDUCTION(Moments, slots, lid);
    __local float coefficients[3];
    const bool stream = BN_STREAMS((ulong)batch * channels * spatial);
    uint c = get_group_id(0);
    INDEX_T plane_vecs = spatial / VEC;
    ItemRange r = item_range(0, (INDEX_T)batch * plane_vecs, lid, WG);
    float pilot = channel_pilot(x, c, channels, plane_vecs, batch);
    Moments m = reduce_moments(accumulate_channel(x, c, channels, plane_vecs, r, pilot), slots, lid, WG);
    float3 k = (float3)(0.0f, 0.0f, 0.0f);
    if (lid == 0)
        k = finish_channel(c, m, (float)((INDEX_T)batch * spatial), pilot, weight, bias, STATISTICS_ARGUMENTS);
    k = share_first_float3(k, coefficients, lid);
    float mean = k.x, scale = k.y, beta = k.z;
    FOR_EACH_CHANNEL_SPAN(r, c, channels, plane_vecs, lo, hi, {
        for (INDEX_T j = lo; j < hi; ++j)
            BN_STORE_EPILOGUE(floatv, LOADV, STOREV_STREAM, ((LOADV(x, j) - pilot) - mean) * scale + beta, z, y, j);
    })
    STREAM_FENCE();
}

// Training, one work-item per channel (NCHW with many channels of few values each):
// the same statistics and normalisation as bn_train_fused, without a work-group
// reduction. On a CPU driver a work-group per channel costs more to schedule than its
// reduction saves when a channel is a few thousand values: (4, 1024, 14, 14) took
// 0.90 ms in 1024 work-groups, 0.41 ms here (BatchNormLaunch.reduction says when).
__kernel void bn_train_channels(__global const storage_t *x, __global storage_t *y, __global const storage_t *z,
                                uint batch, uint channels, uint spatial, __global const float *weight,
                                __global const float *bias, STATISTICS_PARAMETERS) {
    const bool stream = BN_STREAMS((ulong)batch * channels * spatial);
    uint c = get_global_id(0);
    if (c >= channels) STREAM_RETURN();
    INDEX_T plane_vecs = spatial / VEC;
    ItemRange r = item_range(0, (INDEX_T)batch * plane_vecs, 0, 1);
    float pilot = channel_pilot(x, c, channels, plane_vecs, batch);
    Moments m = accumulate_channel(x, c, channels, plane_vecs, r, pilot);
    float3 k = finish_channel(c, m, (float)((INDEX_T)batch * spatial), pilot, weight, bias, STATISTICS_ARGUMENTS);
    float mean = k.x, scale = k.y, beta = k.z;
    FOR_EACH_CHANNEL_SPAN(r, c, channels, plane_vecs, lo, hi, {
        for (INDEX_T j = lo; j < hi; ++j)
            BN_STORE_EPILOGUE(floatv, LOADV, STOREV_STREAM, ((LOADV(x, j) - pilot) - mean) * scale + beta, z, y, j);
    })
    STREAM_FENCE();
}

// Training on a row-major (rows, C) matrix: (N, C) input (M == 1, BatchNorm1d), or
// channels-last input with rows = N * M. Each channel is a column: a work-item owns
// TILE adjacent column vectors of CVEC channels (column_tile) and walks the rows; no
// work-group reduction. Each lane keeps block-shifted moments (accumulate_column_moments).
__kernel void bn_train_columns(__global const storage_t *x, __global storage_t *y, __global const storage_t *z,
                               uint rows, uint channels, __global const float *weight, __global const float *bias,
                               STATISTICS_PARAMETERS) {
    const bool stream = BN_STREAMS((ulong)rows * channels);
    uint column_vecs = channels / CVEC, first, width;
    if (!column_tile(get_global_id(0), column_vecs, &first, &width)) STREAM_RETURN();
    floatc pilot[TILE], mean[TILE], m2[TILE], scale[TILE], beta[TILE];
    for (uint t = 0; t < width; ++t) pilot[t] = column_pilot(x, 0, rows, column_vecs, first + t);
    float count = accumulate_column_moments(x, 0, column_vecs, first, width, 0, rows, pilot, mean, m2);
    // Per channel: saved and running statistics, and the coefficients.
    FOR_EACH_TILE_LANE(first, width, t, i, c, {
        Moments m = lane_moments(count, mean[t], m2[t], i);
        float3 k = finish_channel(c, m, (float)rows, COLUMN_LANE(pilot[t], i), weight, bias, STATISTICS_ARGUMENTS);
        COLUMN_LANE(scale[t], i) = k.y;
        COLUMN_LANE(beta[t], i) = k.z;
    })
    FOR_EACH_TILE_ROW(rows, column_vecs, first, width, at, t, {
        BN_STORE_EPILOGUE(floatc, LOADC, STOREC_STREAM,
                          ((LOADC(x, at) - pilot[t]) - mean[t]) * scale[t] + beta[t], z, y, at);
    });
    STREAM_FENCE();
}

// Columns, split reduction, step 1 of 3 (then bn_finish_moments, bn_apply_columns):
// work-item (i, g) reduces the TILE column vectors of item i over row slice g and
// writes each channel's (count, mean - pilot, M2) to partials[(c * G + g) * 3 ...];
// row slice 0 also writes the pilots.
__kernel void bn_column_partials(__global const storage_t *x, uint rows, uint channels, __global float *partials,
                                 __global float *pilots) {
    uint column_vecs = channels / CVEC, first, width, lo, hi;
    uint g = get_global_id(1), groups = get_global_size(1);
    if (!column_tile_slice(get_global_id(0), column_vecs, rows, g, groups, &first, &width, &lo, &hi)) return;
    floatc pilot[TILE], mean[TILE], m2[TILE];
    for (uint t = 0; t < width; ++t) pilot[t] = column_pilot(x, 0, rows, column_vecs, first + t);
    float count = accumulate_column_moments(x, 0, column_vecs, first, width, lo, hi, pilot, mean, m2);
    FOR_EACH_TILE_LANE(first, width, t, i, c, {
        store_moment_partial(partials, pilots, c, g, groups, lane_moments(count, mean[t], m2[t], i),
                             COLUMN_LANE(pilot[t], i));
    })
}

// y = ((x - pilot[c]) - offset[c]) * scale[c] + shift[c] for (rows, C) input, row by
// row, with the per-channel coefficients loaded as vectors beside each row segment.
__kernel void bn_apply_columns(__global const storage_t *x, __global storage_t *y, __global const storage_t *z,
                               uint rows, uint channels, __global const float *pilot, __global const float *offset,
                               __global const float *scale, __global const float *shift) {
    const bool stream = BN_STREAMS((ulong)rows * channels);
    uint column_vecs = channels / CVEC;
    ItemRange r = item_range(0, (INDEX_T)rows * column_vecs, get_global_id(0), get_global_size(0));
    FOR_EACH_COLUMN_RUN(r, column_vecs, lo, hi, column, {
        for (INDEX_T j = lo, k = column; j < hi; ++j, ++k)
            BN_STORE_EPILOGUE(floatc, LOADC, STOREC_STREAM,
                              ((LOADC(x, j) - CLOAD(k, pilot)) - CLOAD(k, offset)) * CLOAD(k, scale) + CLOAD(k, shift),
                              z, y, j);
    })
    STREAM_FENCE();
}

// Training, split reduction, step 1 of 3: work-group (g, c) reduces slice g of
// channel c and writes its (count, mean - pilot, M2) to partials[(c * G + g) * 3 ...];
// slice 0 also writes the channel's pilot.
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void bn_partial_moments(__global const storage_t *x, uint batch, uint channels, uint spatial, __global float *partials,
                        __global float *pilots) {
    SPLIT_GROUP_REDUCTION(Moments, slots, lid, g, groups, c);
    INDEX_T plane_vecs = spatial / VEC;
    float pilot = channel_pilot(x, c, channels, plane_vecs, batch);
    ItemRange r = slice_range(0, (ulong)batch * plane_vecs, g, groups, lid, WG);
    Moments m = reduce_moments(accumulate_channel(x, c, channels, plane_vecs, r, pilot), slots, lid, WG);
    if (lid == 0) store_moment_partial(partials, pilots, c, g, groups, m, pilot);
}

// Training, split reduction (per channel or per column), step 2 of 3: one work-item
// per channel merges its partials in order (deterministic), writes saved and running
// statistics, and the coefficients of the apply step: y = ((x - pilot) - offset) *
// scale + shift with offset = mean - pilot and shift = beta. (Folding offset into the
// shift would cancel when the pilot lies far from the mean; x - pilot - offset does not.)
__kernel void bn_finish_moments(__global const float *pilots, __global const float *partials, uint channels,
                                uint groups, float count, __global const float *weight, __global const float *bias,
                                STATISTICS_PARAMETERS, __global float *offset, __global float *scale,
                                __global float *shift) {
    uint c = get_global_id(0);
    if (c >= channels) return;
    Moments m = merge_moment_partials(partials + (size_t)c * groups * 3, groups, 3);
    float3 k = finish_channel(c, m, count, pilots[c], weight, bias, STATISTICS_ARGUMENTS);
    offset[c] = k.x;
    scale[c] = k.y;
    shift[c] = k.z;
}

// Inference on (rows, C) input, step 1 of 2, one work-item per channel: offset = 0,
// scale = gamma / sqrt(running_var + eps) and shift = beta, so the apply step computes
// (x - running_mean) * scale + beta.
__kernel void bn_inference_scale(uint channels, __global const float *running_var, __global const float *weight,
                                 __global const float *bias, float eps, __global float *offset,
                                 __global float *scale, __global float *shift) {
    uint c = get_global_id(0);
    if (c >= channels) return;
    offset[c] = 0.0f;
    scale[c] = bn_running_scale(c, running_var, weight, eps);
    shift[c] = beta_of(bias, c);
}

// Inference on NCHW input in one launch: the coefficients computed where they are used
// (once per plane run on CPUs) instead of by bn_inference_scale: on PoCL a launch costs
// 0.06-0.2 ms, a tenth or more of the whole op at common sizes.
__kernel void bn_inference_apply(__global const storage_t *restrict x, __global storage_t *restrict y,
                                 __global const storage_t *restrict z, uint batch, uint channels, uint spatial,
                                 __global const float *running_mean, __global const float *running_var,
                                 __global const float *weight, __global const float *bias, float eps) {
    const bool stream = BN_STREAMS((ulong)batch * channels * spatial);
    INDEX_T plane_vecs = spatial / VEC;
    ItemRange r = item_range(0, (INDEX_T)batch * channels * plane_vecs, get_global_id(0), get_global_size(0));
    FOR_EACH_NCHW_RUN(r, channels, plane_vecs, c, lo, hi, {
        float k = running_mean[c], s = bn_running_scale(c, running_var, weight, eps), b = beta_of(bias, c);
        for (INDEX_T j = lo; j < hi; ++j)
            BN_STORE_EPILOGUE(floatv, LOADV, STOREV_STREAM, (LOADV(x, j) - k) * s + b, z, y, j);
    })
    STREAM_FENCE();
}

// y = ((x - pilot[c]) - offset[c]) * scale[c] + shift[c] over every element of NCHW
// input: step 3 of the split training path (pilot from channel_pilot, offset = mean -
// pilot). Subtracting before scaling keeps large-mean data from cancelling.
__kernel void bn_apply(__global const storage_t *x, __global storage_t *y, __global const storage_t *z, uint batch,
                       uint channels, uint spatial, __global const float *pilot, __global const float *offset,
                       __global const float *scale, __global const float *shift) {
    const bool stream = BN_STREAMS((ulong)batch * channels * spatial);
    INDEX_T plane_vecs = spatial / VEC;
    ItemRange r = item_range(0, (INDEX_T)batch * channels * plane_vecs, get_global_id(0), get_global_size(0));
    // Contiguous runs inside one (n, c) plane share their coefficients.
    FOR_EACH_NCHW_RUN(r, channels, plane_vecs, c, lo, hi, {
        float k = pilot[c], o = offset[c], s = scale[c], b = shift[c];
        for (INDEX_T j = lo; j < hi; ++j)
            BN_STORE_EPILOGUE(floatv, LOADV, STOREV_STREAM, ((LOADV(x, j) - k) - o) * s + b, z, y, j);
    })
    STREAM_FENCE();
}
