// GroupNorm and InstanceNorm forward (InstanceNorm is GroupNorm with G == C),
// channels-first (NCHW) and channels-last (NHWC), float32 or half storage.
//
// Build options, all set by GroupNormPlan (Sources/NormCL/Ops/GroupNorm/GroupNormPlan.swift):
//   VEC            16, 8, 4 or 1: elements per load along a channels-first row (divides M)
//   WG             work-group size of the row reduction kernels, a power of two
//   CHUNKED        1: each work-item walks one contiguous chunk (CPU prefetchers like it)
//                  0: work-items interleave (GPUs coalesce neighbouring loads)
//   INDEX_T        uint or ulong: wide enough for every element index
//   CVEC, TILE     the column kernels only (given for plans that run them): channels per
//                  load (4 needs C % 4 == 0) and column vectors per work-item
//   ACTIVATION     GroupNorm only, absent (0) without one: the activation fused after the
//                  norm (epilogue.cl), y = f(((x - pilot) - offset) * scale + shift), applied
//                  in registers before each store (no extra pass, no extra read or write)
// Decided at run time from NULL arguments (one program for every combination): weight
// and bias (gamma = 1, beta = 0 without), save_var (each row's biased variance, for
// InstanceNorm's running update, written only when given).
//
// Sizes are kernel arguments: channels C, groups G, cpg = C / G channels per group,
// spatial M (the product of the spatial dims; 1 for (N, C) input), spatial_vecs = M / VEC.
// A "row" is one (n, g) pair, r = n * G + g: its statistics run over cpg * M values.
// In NCHW memory a row is one contiguous run of cpg * M elements starting at r * cpg * M;
// in NHWC memory (N, M, C) it is an M x cpg tile of sample n with row stride C.
//
// Statistics: every value is taken relative to one pilot per row (the median of five
// of its elements, spread over the row, so one outlier cannot be it), computed
// identically by every work-item that needs it, so every mean below is
// `mean - pilot`: float32 rounds quantities of the size of the data's spread, not
// of its offset (1e4 + N(0, 1) keeps full precision). Work-items sum blocks of BLOCK
// vectors shifted by their running mean and fold each block with Chan's formula
// (fold_block, Kahan-compensated); work-items, slices and channels merge with
// moments_merge. Outputs are ((x - pilot) - (mean - pilot)) * scale + beta on every path
// (then f of that with an ACTIVATION).

// ---------------------------------------------------------------------------------
// Channels-first rows.

// Row pilot: the median of the elements at 0, 1/4, 1/2, 3/4 and the end of the row of
// `count` elements starting at element `base`; 0 if that is Inf or NaN (see common.cl
// on non-finite values).
inline float row_pilot(__global const storage_t *x, INDEX_T base, INDEX_T count) {
    INDEX_T last = count - 1;
    float a = LOAD1(x, base), b = LOAD1(x, base + last / 4), c = LOAD1(x, base + last / 2);
    float d = LOAD1(x, base + (last - last / 4)), e = LOAD1(x, base + last);
    return FINITE_OR_ZERO(float, MEDIAN5(a, b, c, d, e));
}

// The biased variance (normalisation uses it) of a row of `count` values.
inline float row_variance(Moments m, float count) {
    return m.m2 / count;
}

// Writes row r's saved statistics.
inline void save_row(uint r, float mean, float invstd, float var, __global float *save_mean,
                     __global float *save_invstd, __global float *save_var) {
    save_mean[r] = mean;
    save_invstd[r] = invstd;
    if (save_var) save_var[r] = var;
}

// Channels-first, one work-group per row: statistics, then normalisation of the
// same elements while they are still in cache. One launch for the whole op. Every
// work-item gets the row's moments from the reduction and derives the same invstd.
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void gn_fused_rows(__global const storage_t *x, __global storage_t *y,
                   __global const float *weight, __global const float *bias,
                   __global float *save_mean, __global float *save_invstd, __global float *save_var, float eps,
                   uint groups, uint cpg, uint spatial_vecs) {
    GROUP_REDUCTION(Moments, slots, lid);
    const bool stream = STREAMS_OVER((ulong)get_num_groups(0) * cpg * spatial_vecs * VEC, 2);
    uint r = get_group_id(0);
    uint c0 = (r % groups) * cpg;
    INDEX_T row_vecs = (INDEX_T)cpg * spatial_vecs;
    INDEX_T base = (INDEX_T)r * row_vecs;  // in vectors
    ItemRange range = item_range(0, row_vecs, lid, WG);
    float pilot = row_pilot(x, base * VEC, row_vecs * VEC);
    Moments m = reduce_moments(accumulate_vector_moments(x, base, range, pilot), slots, lid, WG);
    float var = row_variance(m, (float)(row_vecs * VEC));
    float invstd = 1.0f / sqrt(var + eps);
    if (lid == 0) save_row(r, pilot + m.mean, invstd, var, save_mean, save_invstd, save_var);
    float mean = m.mean;
    // Runs inside one channel share gamma and beta.
    FOR_EACH_PLANE_RUN(range, spatial_vecs, j, v, len, {
        uint c = c0 + (uint)j;
        float scale = invstd * gamma_of(weight, c), beta = beta_of(bias, c);
        for (uint i = 0; i < len; ++i) {
            floatv a = ((LOADV(x, base + v + i) - pilot) - mean) * scale + beta;
            STOREV_STREAM(ACTIVATE(floatv, a), y, base + v + i);
        }
    });
    STREAM_FENCE();
}

// Channels-first, split reduction, step 1 of 3 (then gn_finish_rows, gn_apply_planes):
// work-group (s, r) reduces slice s of row r and writes its (count, mean - pilot, M2)
// to partials[(r * S + s) * 3 ...]; slice 0 also writes the row's pilot.
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void gn_row_partials(__global const storage_t *x, __global float *partials, __global float *pilots, uint cpg,
                     uint spatial_vecs) {
    SPLIT_GROUP_REDUCTION(Moments, slots, lid, s, slices, r);
    INDEX_T row_vecs = (INDEX_T)cpg * spatial_vecs;
    INDEX_T base = (INDEX_T)r * row_vecs;
    float pilot = row_pilot(x, base * VEC, row_vecs * VEC);
    ItemRange range = slice_range(0, row_vecs, s, slices, lid, WG);
    Moments m = reduce_moments(accumulate_vector_moments(x, base, range, pilot), slots, lid, WG);
    if (lid == 0) store_moment_partial(partials, pilots, r, s, slices, m, pilot);
}

// Split paths, step 2 of 3: one work-item per row merges the row's `parts` partials
// in order (deterministic), writes the saved statistics, and the per-(n, c)
// coefficients of the apply step: y = ((x - pilot) - offset) * scale + shift with
// offset = mean - pilot, scale = invstd * gamma_c and shift = beta_c. (Folding offset
// into the shift would cancel when the pilot lies far from the mean.) `count` is cpg * M.
__kernel void gn_finish_rows(__global const float *pilots, __global const float *partials, uint rows, uint parts,
                             float count, float eps, __global const float *weight, __global const float *bias,
                             __global float *save_mean, __global float *save_invstd, __global float *save_var,
                             __global float *coef_pilot, __global float *coef_offset, __global float *coef_scale,
                             __global float *coef_shift, uint groups, uint cpg) {
    uint r = get_global_id(0);
    if (r >= rows) return;
    Moments m = merge_moment_partials(partials + (size_t)r * parts * 3, parts, 3);
    float pilot = pilots[r];
    float var = row_variance(m, count);
    float invstd = 1.0f / sqrt(var + eps);
    save_row(r, pilot + m.mean, invstd, var, save_mean, save_invstd, save_var);
    uint c0 = (r % groups) * cpg;
    size_t first = (size_t)r * cpg;  // = n * C + g * cpg
    for (uint j = 0; j < cpg; ++j) {
        uint c = c0 + j;
        coef_pilot[first + j] = pilot;
        coef_offset[first + j] = m.mean;
        coef_scale[first + j] = invstd * gamma_of(weight, c);
        coef_shift[first + j] = beta_of(bias, c);
    }
}

// y = ((x - pilot[k]) - offset[k]) * scale[k] + shift[k] over channels-first input,
// k = n * C + c the (n, c) plane, through the activation when there is one: step 3 of
// the split path, and the elementwise pass of inference with running statistics.
__kernel void gn_apply_planes(__global const storage_t *x, __global storage_t *y, uint planes, uint spatial_vecs,
                              __global const float *pilot, __global const float *offset,
                              __global const float *scale, __global const float *shift) {
    const bool stream = STREAMS_OVER((ulong)planes * spatial_vecs * VEC, 2);
    INDEX_T total = (INDEX_T)planes * spatial_vecs;
    ItemRange r = item_range(0, total, get_global_id(0), get_global_size(0));
    FOR_EACH_PLANE_RUN(r, spatial_vecs, k, v, len, {
        float p = pilot[k], o = offset[k], s = scale[k], b = shift[k];
        for (uint i = 0; i < len; ++i) {
            floatv a = ((LOADV(x, v + i) - p) - o) * s + b;
            STOREV_STREAM(ACTIVATE(floatv, a), y, v + i);
        }
    });
    STREAM_FENCE();
}

// ---------------------------------------------------------------------------------
// Channels-last: sample n is a row-major (M, C) matrix; a work-item owns TILE adjacent
// column vectors of CVEC channels and walks the rows (column_tile, reduction.cl).

#ifdef CVEC
// Row (n, g)'s pilot in NHWC memory: the median of five elements of its tile (sample
// n's rows start at row0; the group's channels at c0), at spatial positions 0, 1/4,
// 1/2, 3/4 and the last, spread over the group's channels (0 if that is Inf or NaN).
inline float tile_pilot(__global const storage_t *x, INDEX_T row0, uint spatial, uint channels, uint c0, uint cpg) {
    uint last = spatial - 1;
#define TILE_AT(i, m) LOAD1(x, (row0 + (m)) * channels + c0 + ((i) * (cpg - 1)) / 4)
    float a = TILE_AT(0, 0), b = TILE_AT(1, last / 4), c = TILE_AT(2, last / 2);
    float d = TILE_AT(3, last - last / 4), e = TILE_AT(4, last);
#undef TILE_AT
    return FINITE_OR_ZERO(float, MEDIAN5(a, b, c, d, e));
}

// Channels-last, step 1 of 3 (then gn_finish_rows, gn_apply_columns): work-item
// (i, n, s) reduces the TILE column vectors of item i of sample n over spatial slice
// s, relative to each channel's row pilot, and writes each channel's (count,
// mean - pilot, M2) to partials[((n * C + c) * S + s) * 3 ...], which is row r's part
// j * S + s for c = g * cpg + j; the owner of a row's first channel in slice 0 also
// writes the row's pilot.
__kernel void gn_column_partials(__global const storage_t *x, __global float *partials, __global float *pilots,
                                 uint channels, uint spatial, uint cpg) {
    uint column_vecs = channels / CVEC, first, width, lo, hi;
    uint n = get_global_id(1);
    uint s = get_global_id(2), slices = get_global_size(2);
    if (!column_tile_slice(get_global_id(0), column_vecs, spatial, s, slices, &first, &width, &lo, &hi)) return;
    INDEX_T row0 = (INDEX_T)n * spatial;
    floatc pilot[TILE], mean[TILE], m2[TILE];
    for (uint t = 0; t < width; ++t) {
        float lanes[CVEC];
        for (uint l = 0; l < CVEC; ++l) {
            uint c = (first + t) * CVEC + l;
            lanes[l] = tile_pilot(x, row0, spatial, channels, c - c % cpg, cpg);
        }
        pilot[t] = CLOAD_LANES(lanes);
    }
    float count = accumulate_column_moments(x, row0, column_vecs, first, width, lo, hi, pilot, mean, m2);
    FOR_EACH_TILE_LANE(first, width, t, l, c, {
        size_t k = (size_t)n * channels + c;  // the (n, c) plane
        store_moments(partials + (k * slices + s) * 3, lane_moments(count, mean[t], m2[t], l));
        if (s == 0 && k % cpg == 0) pilots[k / cpg] = COLUMN_LANE(pilot[t], l);
    })
}

// y = ((x - pilot[k]) - offset[k]) * scale[k] + shift[k] over channels-last input with
// k = n * C + c (through the activation when there is one), row by row with the coefficients loaded as vectors beside each row
// segment. `rows` is N * M.
__kernel void gn_apply_columns(__global const storage_t *x, __global storage_t *y, uint rows, uint spatial,
                               uint channels, __global const float *pilot, __global const float *offset,
                               __global const float *scale, __global const float *shift) {
    const bool stream = STREAMS_OVER((ulong)rows * channels, 2);
    uint column_vecs = channels / CVEC;
    FOR_EACH_SAMPLE_COLUMN_VECTOR(rows, column_vecs, spatial, e, j, {
        floatc a = ((LOADC(x, e) - CLOAD(j, pilot)) - CLOAD(j, offset)) * CLOAD(j, scale) + CLOAD(j, shift);
        STOREC_STREAM(ACTIVATE(floatc, a), y, e);
    });
    STREAM_FENCE();
}
#endif  // CVEC

// ---------------------------------------------------------------------------------
// InstanceNorm with running statistics (G == C).

// Inference, step 1 of 2, one work-item per (n, c): pilot = running mean, offset = 0,
// scale = gamma / sqrt(running_var + eps), shift = beta; the apply pass then computes
// (x - running_mean) * scale + beta.
__kernel void in_running_coefficients(__global const float *running_mean, __global const float *running_var,
                                      __global const float *weight, __global const float *bias, uint planes,
                                      uint channels, float eps, __global float *coef_pilot,
                                      __global float *coef_offset, __global float *coef_scale,
                                      __global float *coef_shift) {
    uint k = get_global_id(0);
    if (k >= planes) return;
    uint c = k % channels;
    coef_pilot[k] = running_mean[c];
    coef_offset[k] = 0.0f;
    coef_scale[k] = gamma_of(weight, c) / sqrt(running_var[c] + eps);
    coef_shift[k] = beta_of(bias, c);
}

// Training with tracking, after the statistics: one work-item per channel averages
// the per-instance means and unbiased variances (var * M / (M - 1)) over the batch
// and blends them into the running statistics with weight `momentum`. The mean is
// averaged relative to sample 0's, so large means do not round the sum; relative to 0
// when sample 0's is Inf or NaN, so that the sum is the IEEE sum of the non-finite
// means (Inf - Inf would make it NaN where the reference's mean of means is +-Inf).
__kernel void in_update_running(__global const float *save_mean, __global const float *save_var, uint batch,
                                uint channels, uint spatial, __global const float *running_mean_in,
                                __global const float *running_var_in, __global float *running_mean_out,
                                __global float *running_var_out, float momentum) {
    uint c = get_global_id(0);
    if (c >= channels) return;
    float base = FINITE_OR_ZERO(float, save_mean[c]);
    float mean_sum = 0.0f, var_sum = 0.0f;
    for (uint n = 0; n < batch; ++n) {
        mean_sum += save_mean[(size_t)n * channels + c] - base;
        var_sum += save_var[(size_t)n * channels + c];
    }
    float mean = base + mean_sum / (float)batch;
    float var = var_sum / (float)batch * ((float)spatial / (float)(spatial - 1));
    running_mean_out[c] = (1.0f - momentum) * running_mean_in[c] + momentum * mean;
    running_var_out[c] = (1.0f - momentum) * running_var_in[c] + momentum * var;
}
