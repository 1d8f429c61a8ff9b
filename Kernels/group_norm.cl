// GroupNorm and InstanceNorm forward (InstanceNorm is GroupNorm with GROUPS ==
// CHANNELS), channels-first (NCHW) and channels-last (NHWC), float32 or half storage.
//
// Build options, all set by GroupNormPlan (Sources/NormCL/Ops/GroupNorm/GroupNormPlan.swift):
//   CHANNELS       C
//   SPATIAL        M, the product of the spatial dims (1 for (N, C) input)
//   GROUPS         G (C % G == 0); CPG = C / G channels per group
//   VEC            4 or 1: elements per load along a channels-first row (4 needs M % 4 == 0)
//   WG             work-group size of the row reduction kernels, a power of two
//   CHUNKED        1: each work-item walks one contiguous chunk (CPU prefetchers like it)
//                  0: work-items interleave (GPUs coalesce neighbouring loads)
//   HAS_WEIGHT     1 when weight (gamma, per channel) is given, else gamma = 1
//   HAS_BIAS       1 when bias (beta, per channel) is given, else beta = 0
//   SAVE_VAR       1: also write each row's biased variance (InstanceNorm's running update)
//   INDEX_T        uint or ulong: wide enough for every element index
//   CVEC           4 or 1: channels per load in the column kernels (4 needs C % 4 == 0)
//   TILE           column vectors per work-item in the column kernels
//
// A "row" is one (n, g) pair, r = n * G + g: its statistics run over CPG * M values.
// In NCHW memory a row is one contiguous run of CPG * M elements starting at r * CPG * M;
// in NHWC memory (N, M, C) it is an M x CPG tile of sample n with row stride C.
//
// Statistics: every value is taken relative to one pilot per row (the median of five
// of its elements, spread over the row, so one outlier cannot be it), computed
// identically by every work-item that needs it, so every mean below is
// `mean - pilot`: float32 rounds quantities of the size of the data's spread, not
// of its offset (1e4 + N(0, 1) keeps full precision). Work-items sum blocks of BLOCK
// vectors shifted by their running mean and fold each block with Chan's formula
// (fold_block, Kahan-compensated); work-items, slices and channels merge with
// moments_merge. Outputs are ((x - pilot) - (mean - pilot)) * scale + beta on every path.

#define CPG (CHANNELS / GROUPS)
#define SPATIAL_VECS (SPATIAL / VEC)
#define ROW_VECS ((INDEX_T)CPG * SPATIAL_VECS)
#define BLOCK 16

inline float gamma_of(__global const float *weight, uint c) {
#if HAS_WEIGHT
    return weight[c];
#else
    return 1.0f;
#endif
}

inline float beta_of(__global const float *bias, uint c) {
#if HAS_BIAS
    return bias[c];
#else
    return 0.0f;
#endif
}

// ---------------------------------------------------------------------------------
// Channels-first rows.

// Row pilot: the median of the elements at 0, 1/4, 1/2, 3/4 and the end of the row
// (element indices; `base` is the row's first element); 0 if that is Inf or NaN (see
// common.cl on non-finite values).
inline float row_pilot(__global const storage_t *x, INDEX_T base) {
    INDEX_T last = (INDEX_T)CPG * SPATIAL - 1;
    float a = LOAD1(x, base), b = LOAD1(x, base + last / 4), c = LOAD1(x, base + last / 2);
    float d = LOAD1(x, base + (last - last / 4)), e = LOAD1(x, base + last);
    return FINITE_OR_ZERO(float, MEDIAN5(a, b, c, d, e));
}

// Moments of the row's vectors in r (vector indices relative to `base`, in vectors),
// relative to `pilot`.
inline Moments accumulate_row(__global const storage_t *x, INDEX_T base, ItemRange r, float pilot) {
    Moments acc = {0.0f, 0.0f, 0.0f};
    float2 carry = (float2)(0.0f, 0.0f);  // Kahan carries of M2 and of the mean
    if (r.first >= r.end) return acc;
    float shift = FINITE_OR_ZERO(float, LOAD1(x, (base + r.first) * VEC) - pilot);
#if CHUNKED
    INDEX_T v = r.first;
    for (; v + BLOCK <= r.end; v += BLOCK) {
        // Two accumulators per sum: independent add chains run at load speed.
        floatv s0 = 0.0f, s1 = 0.0f, q0 = 0.0f, q1 = 0.0f;
        for (int j = 0; j < BLOCK; j += 2) {
            floatv d0 = (LOADV(x, base + v + j) - pilot) - shift;
            floatv d1 = (LOADV(x, base + v + j + 1) - pilot) - shift;
            s0 += d0;
            s1 += d1;
            q0 += d0 * d0;
            q1 += d1 * d1;
        }
        floatv s = s0 + s1, q = q0 + q1;
        acc = fold_block(acc, &carry, shift, HSUM(s), HSUM(q), (float)(BLOCK * VEC));
        shift = next_shift(shift, acc);
    }
    if (v < r.end) {
        floatv s = 0.0f, q = 0.0f;
        for (INDEX_T j = v; j < r.end; ++j) {
            floatv d = (LOADV(x, base + j) - pilot) - shift;
            s += d;
            q += d * d;
        }
        acc = fold_block(acc, &carry, shift, HSUM(s), HSUM(q), (float)((r.end - v) * VEC));
    }
#else
    for (INDEX_T v = r.first; v < r.end;) {
        float s = 0.0f, ss = 0.0f, b = 0.0f;
        for (int k = 0; k < BLOCK && v < r.end; ++k, v += r.stride) {
            floatv d = (LOADV(x, base + v) - pilot) - shift;
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

// Writes row r's saved statistics and returns its invstd. `count` is CPG * M.
inline float finish_row(uint r, Moments m, float count, float pilot, float eps, __global float *save_mean,
                        __global float *save_invstd, __global float *save_var) {
    float var = m.m2 / count;  // biased: normalisation uses it
    float invstd = 1.0f / sqrt(var + eps);
    save_mean[r] = pilot + m.mean;
    save_invstd[r] = invstd;
#if SAVE_VAR
    save_var[r] = var;
#endif
    return invstd;
}

// Channels-first, one work-group per row: statistics, then normalisation of the
// same elements while they are still in cache. One launch for the whole op.
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void gn_fused_rows(__global const storage_t *x, __global storage_t *y,
                   __global const float *weight, __global const float *bias,
                   __global float *save_mean, __global float *save_invstd, __global float *save_var, float eps) {
    __local float lc[WG], lm[WG], lq[WG];
    __local float coefficients[2];
    uint r = get_group_id(0);
    uint lid = get_local_id(0);
    uint g = r % GROUPS;
    INDEX_T base = (INDEX_T)r * ROW_VECS;  // in vectors
    ItemRange range = item_range(0, ROW_VECS, lid, WG);
    float pilot = row_pilot(x, base * VEC);
    Moments m = reduce_work_group(accumulate_row(x, base, range, pilot), lc, lm, lq);
    if (lid == 0) {
        coefficients[0] = m.mean;
        coefficients[1] = finish_row(r, m, (float)((INDEX_T)CPG * SPATIAL), pilot, eps, save_mean, save_invstd, save_var);
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    float mean = coefficients[0], invstd = coefficients[1];
#if CHUNKED
    // Runs inside one channel share gamma and beta.
    for (INDEX_T v = range.first; v < range.end;) {
        uint j = (uint)(v / SPATIAL_VECS);
        INDEX_T end = min((INDEX_T)(j + 1) * SPATIAL_VECS, range.end);
        uint c = g * CPG + j;
        float scale = invstd * gamma_of(weight, c), beta = beta_of(bias, c);
        for (; v < end; ++v) STOREV(((LOADV(x, base + v) - pilot) - mean) * scale + beta, y, base + v);
    }
#else
    for (INDEX_T v = range.first; v < range.end; v += range.stride) {
        uint c = g * CPG + (uint)(v / SPATIAL_VECS);
        STOREV(((LOADV(x, base + v) - pilot) - mean) * (invstd * gamma_of(weight, c)) + beta_of(bias, c), y, base + v);
    }
#endif
}

// Channels-first, split reduction, step 1 of 3 (then gn_finish_rows, gn_apply_planes):
// work-group (s, r) reduces slice s of row r and writes its (count, mean - pilot, M2)
// to partials[(r * S + s) * 3 ...]; slice 0 also writes the row's pilot.
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void gn_row_partials(__global const storage_t *x, __global float *partials, __global float *pilots) {
    __local float lc[WG], lm[WG], lq[WG];
    uint s = get_group_id(0), slices = get_num_groups(0);
    uint r = get_group_id(1);
    uint lid = get_local_id(0);
    INDEX_T per = (ROW_VECS + slices - 1) / slices;
    INDEX_T lo = min((INDEX_T)s * per, ROW_VECS);
    INDEX_T hi = min(lo + per, ROW_VECS);
    INDEX_T base = (INDEX_T)r * ROW_VECS;
    float pilot = row_pilot(x, base * VEC);
    Moments m = reduce_work_group(accumulate_row(x, base, item_range(lo, hi, lid, WG), pilot), lc, lm, lq);
    if (lid == 0) {
        __global float *p = partials + ((size_t)r * slices + s) * 3;
        p[0] = m.count;
        p[1] = m.mean;
        p[2] = m.m2;
        if (s == 0) pilots[r] = pilot;
    }
}

// Split paths, step 2 of 3: one work-item per row merges the row's `parts` partials
// in order (deterministic), writes the saved statistics, and the per-(n, c)
// coefficients of the apply step: y = ((x - pilot) - offset) * scale + shift with
// offset = mean - pilot, scale = invstd * gamma_c and shift = beta_c. (Folding offset
// into the shift would cancel when the pilot lies far from the mean.)
__kernel void gn_finish_rows(__global const float *pilots, __global const float *partials, uint rows, uint parts,
                             float count, float eps, __global const float *weight, __global const float *bias,
                             __global float *save_mean, __global float *save_invstd, __global float *save_var,
                             __global float *coef_pilot, __global float *coef_offset, __global float *coef_scale,
                             __global float *coef_shift) {
    uint r = get_global_id(0);
    if (r >= rows) return;
    Moments m = {0.0f, 0.0f, 0.0f};
    for (uint p = 0; p < parts; ++p) {
        __global const float *q = partials + ((size_t)r * parts + p) * 3;
        Moments part = {q[0], q[1], q[2]};
        m = moments_merge(m, part);
    }
    float pilot = pilots[r];
    float invstd = finish_row(r, m, count, pilot, eps, save_mean, save_invstd, save_var);
    uint g = r % GROUPS;
    size_t first = (size_t)r * CPG;  // = n * C + g * CPG
    for (uint j = 0; j < CPG; ++j) {
        uint c = g * CPG + j;
        coef_pilot[first + j] = pilot;
        coef_offset[first + j] = m.mean;
        coef_scale[first + j] = invstd * gamma_of(weight, c);
        coef_shift[first + j] = beta_of(bias, c);
    }
}

// y = ((x - pilot[k]) - offset[k]) * scale[k] + shift[k] over channels-first input,
// k = n * C + c the (n, c) plane: step 3 of the split path, and the elementwise pass
// of inference with running statistics.
__kernel void gn_apply_planes(__global const storage_t *x, __global storage_t *y, uint planes,
                              __global const float *pilot, __global const float *offset,
                              __global const float *scale, __global const float *shift) {
    INDEX_T total = (INDEX_T)planes * SPATIAL_VECS;
    ItemRange r = item_range(0, total, get_global_id(0), get_global_size(0));
#if CHUNKED
    for (INDEX_T v = r.first; v < r.end;) {
        INDEX_T k = v / SPATIAL_VECS;
        INDEX_T end = min((k + 1) * SPATIAL_VECS, r.end);
        float p = pilot[k], o = offset[k], s = scale[k], b = shift[k];
        for (; v < end; ++v) STOREV(((LOADV(x, v) - p) - o) * s + b, y, v);
    }
#else
    for (INDEX_T v = r.first; v < r.end; v += r.stride) {
        INDEX_T k = v / SPATIAL_VECS;
        STOREV(((LOADV(x, v) - pilot[k]) - offset[k]) * scale[k] + shift[k], y, v);
    }
#endif
}

// ---------------------------------------------------------------------------------
// Channels-last: sample n is a row-major (M, C) matrix; a work-item owns TILE adjacent
// column vectors of CVEC channels and walks the rows, so each row segment it reads is
// contiguous (CPUs) while neighbouring work-items read neighbouring tiles (GPUs,
// TILE = 1, coalesce).

#if CVEC == 4
typedef float4 floatc;
#define XLOAD(p, i) LOAD4(p, i)
#define XSTORE(v, p, i) STORE4(v, p, i)
#define CLOAD(i, p) vload4((i), (p))
#else
typedef float floatc;
#define XLOAD(p, i) LOAD1(p, i)
#define XSTORE(v, p, i) STORE1(v, p, i)
#define CLOAD(i, p) ((p)[(i)])
#endif
#define COLUMN_VECS (CHANNELS / CVEC)

// Row (n, g)'s pilot in NHWC memory: the median of five elements of its tile, at
// spatial positions 0, 1/4, 1/2, 3/4 and the last, spread over the group's channels
// (0 if that is Inf or NaN).
inline float tile_pilot(__global const storage_t *x, uint n, uint g) {
    uint last = SPATIAL - 1;
    INDEX_T sample = (INDEX_T)n * SPATIAL;
    uint c0 = g * CPG;
#define TILE_AT(i, m) LOAD1(x, (sample + (m)) * CHANNELS + c0 + ((i) * (CPG - 1)) / 4)
    float a = TILE_AT(0, 0), b = TILE_AT(1, last / 4), c = TILE_AT(2, last / 2);
    float d = TILE_AT(3, last - last / 4), e = TILE_AT(4, last);
#undef TILE_AT
    return FINITE_OR_ZERO(float, MEDIAN5(a, b, c, d, e));
}

// Splits a column vector into its CVEC lanes, and back.
inline void column_lanes(floatc v, float *lanes) {
#if CVEC == 4
    vstore4(v, 0, lanes);
#else
    lanes[0] = v;
#endif
}

// Moments of column vectors first ..< first + width of sample n over spatial rows
// [lo, hi), relative to `pilot`, lane by lane: block-shifted sums folded with Chan's
// formula, M2 and mean Kahan-compensated (all lanes share the counts). Fills mean
// and m2; returns the count.
inline float accumulate_columns(__global const storage_t *x, uint n, uint first, uint width, uint lo, uint hi,
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
    INDEX_T sample = (INDEX_T)n * SPATIAL;
    for (uint m = lo; m < hi;) {
        uint rows = min((uint)BLOCK, hi - m);
        for (uint t = 0; t < width; ++t) { s[t] = 0.0f; q[t] = 0.0f; }
        for (uint k = 0; k < rows; ++k) {
            INDEX_T row = (sample + m + k) * COLUMN_VECS + first;
            for (uint t = 0; t < width; ++t) {
                floatc d = (XLOAD(x, row + t) - pilot[t]) - shift[t];
                s[t] += d;
                q[t] += d * d;
            }
        }
        float b = (float)rows, total = count + b;
        for (uint t = 0; t < width; ++t)
            FOLD_BLOCK_LANES(floatc, s[t], q[t], b, count, shift[t], mean[t], m2[t], carry[t], mean_carry[t]);
        count = total;
        m += rows;
    }
    return count;
}

// Channels-last, step 1 of 3 (then gn_finish_rows, gn_apply_columns): work-item
// (i, n, s) reduces the TILE column vectors of item i of sample n over spatial slice
// s, relative to each channel's row pilot, and writes each channel's (count,
// mean - pilot, M2) to partials[((n * C + c) * S + s) * 3 ...], which is row r's part
// j * S + s for c = g * CPG + j; the owner of a row's first channel in slice 0 also
// writes the row's pilot.
__kernel void gn_column_partials(__global const storage_t *x, __global float *partials, __global float *pilots) {
    uint first = get_global_id(0) * TILE;
    if (first >= COLUMN_VECS) return;
    uint width = min((uint)TILE, (uint)COLUMN_VECS - first);
    uint n = get_global_id(1);
    uint s = get_global_id(2), slices = get_global_size(2);
    uint per = (SPATIAL + slices - 1) / slices;
    uint lo = min(s * per, (uint)SPATIAL), hi = min(lo + per, (uint)SPATIAL);
    floatc pilot[TILE], mean[TILE], m2[TILE];
    for (uint t = 0; t < width; ++t) {
        float lanes[CVEC];
        for (uint l = 0; l < CVEC; ++l) lanes[l] = tile_pilot(x, n, ((first + t) * CVEC + l) / CPG);
        pilot[t] = CLOAD(0, lanes);
    }
    float count = accumulate_columns(x, n, first, width, lo, hi, pilot, mean, m2);
    for (uint t = 0; t < width; ++t) {
        float lanes_pilot[CVEC], lanes_mean[CVEC], lanes_m2[CVEC];
        column_lanes(pilot[t], lanes_pilot);
        column_lanes(mean[t], lanes_mean);
        column_lanes(m2[t], lanes_m2);
        for (uint l = 0; l < CVEC; ++l) {
            uint c = (first + t) * CVEC + l;
            __global float *p = partials + (((size_t)n * CHANNELS + c) * slices + s) * 3;
            p[0] = count;
            p[1] = lanes_mean[l];
            p[2] = lanes_m2[l];
            if (s == 0 && c % CPG == 0) pilots[(size_t)n * GROUPS + c / CPG] = lanes_pilot[l];
        }
    }
}

// y = ((x - pilot[k]) - offset[k]) * scale[k] + shift[k] over channels-last input with
// k = n * C + c, row by row with the coefficients loaded as vectors beside each row
// segment. `rows` is N * M.
__kernel void gn_apply_columns(__global const storage_t *x, __global storage_t *y, uint rows,
                               __global const float *pilot, __global const float *offset,
                               __global const float *scale, __global const float *shift) {
    INDEX_T total = (INDEX_T)rows * COLUMN_VECS;
    ItemRange r = item_range(0, total, get_global_id(0), get_global_size(0));
#if CHUNKED
    for (INDEX_T v = r.first; v < r.end;) {
        INDEX_T row = v / COLUMN_VECS;
        uint column = (uint)(v - row * COLUMN_VECS);
        uint len = (uint)(min((row + 1) * COLUMN_VECS, r.end) - v);
        size_t coefficients = (size_t)(row / SPATIAL) * COLUMN_VECS + column;
        for (uint j = 0; j < len; ++j) {
            size_t k = coefficients + j;
            XSTORE(((XLOAD(x, v + j) - CLOAD(k, pilot)) - CLOAD(k, offset)) * CLOAD(k, scale) + CLOAD(k, shift), y, v + j);
        }
        v += len;
    }
#else
    for (INDEX_T v = r.first; v < r.end; v += r.stride) {
        INDEX_T row = v / COLUMN_VECS;
        size_t k = (size_t)(row / SPATIAL) * COLUMN_VECS + (size_t)(v - row * COLUMN_VECS);
        XSTORE(((XLOAD(x, v) - CLOAD(k, pilot)) - CLOAD(k, offset)) * CLOAD(k, scale) + CLOAD(k, shift), y, v);
    }
#endif
}

// ---------------------------------------------------------------------------------
// InstanceNorm with running statistics (GROUPS == CHANNELS).

// Inference, step 1 of 2, one work-item per (n, c): pilot = running mean, offset = 0,
// scale = gamma / sqrt(running_var + eps), shift = beta; the apply pass then computes
// (x - running_mean) * scale + beta.
__kernel void in_running_coefficients(__global const float *running_mean, __global const float *running_var,
                                      __global const float *weight, __global const float *bias, uint planes,
                                      float eps, __global float *coef_pilot, __global float *coef_offset,
                                      __global float *coef_scale, __global float *coef_shift) {
    uint k = get_global_id(0);
    if (k >= planes) return;
    uint c = k % CHANNELS;
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
                                __global const float *running_mean_in, __global const float *running_var_in,
                                __global float *running_mean_out, __global float *running_var_out,
                                float momentum) {
    uint c = get_global_id(0);
    if (c >= CHANNELS) return;
    float base = FINITE_OR_ZERO(float, save_mean[c]);
    float mean_sum = 0.0f, var_sum = 0.0f;
    for (uint n = 0; n < batch; ++n) {
        mean_sum += save_mean[(size_t)n * CHANNELS + c] - base;
        var_sum += save_var[(size_t)n * CHANNELS + c];
    }
    float mean = base + mean_sum / (float)batch;
    float var = var_sum / (float)batch * ((float)SPATIAL / (float)(SPATIAL - 1));
    running_mean_out[c] = (1.0f - momentum) * running_mean_in[c] + momentum * mean;
    running_var_out[c] = (1.0f - momentum) * running_var_in[c] + momentum * var;
}
