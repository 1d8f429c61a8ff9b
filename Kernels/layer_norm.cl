// Row normalisations over the trailing dims of a row-major (rows, D) matrix:
// LayerNorm (mean and biased variance per row) and RMSNorm (root mean square per
// row), selected by RMS.
//
// Build options, all set by RowNormPlan (Sources/NormCL/Ops/LayerNorm/RowNormPlan.swift):
//   RMS            1: RMSNorm, y = x * rstd * gamma, rstd = 1 / sqrt(mean(x^2) + eps)
//                  0: LayerNorm, y = (x - mean) * invstd * gamma + beta
//   ROW_LENGTH     D, the elements of one row (the product of normalizedShape)
//   VEC            4 or 1: elements per load (4 needs D % 4 == 0)
//   ITEMS          work-items sharing one row (or one slice of a row), a power of two
//   ROWS_PER_GROUP rows one work-group of the fused kernel normalises
//   CHUNKED        1: each work-item walks one contiguous chunk (CPU prefetchers like it)
//                  0: work-items interleave (GPUs coalesce neighbouring loads)
//   HAS_WEIGHT     1 when weight (gamma, shape normalizedShape) is given, else gamma = 1
//   HAS_BIAS       1 when bias (beta) is given, else beta = 0 (LayerNorm only)
//   INDEX_T        uint or ulong: wide enough for every element index of the apply pass
//
// LayerNorm statistics are relative to one pilot per row (the median of five of its
// elements, computed identically by every work-item), so every mean below is
// `mean - pilot`: small numbers whose float32 rounding stays at the scale of the
// row's spread, not of its offset (1e4 + N(0, 1) keeps full precision). A work-item
// sums blocks of BLOCK vectors shifted by its running mean and folds each block into
// (count, mean, M2) with Chan's formula (Kahan-compensated, fold_block); work-items
// and slices merge the same way, in a fixed order. Outputs are formed as
// ((x - pilot) - (mean - pilot)) * invstd * gamma + beta.
//
// RMSNorm needs no pilot: the sum of squares has no cancellation. Blocks of BLOCK
// vectors are summed in registers and the block sums are added with Kahan
// compensation, so the relative error stays at a few ulps for D in the millions.

#define DV (ROW_LENGTH / VEC)
#define GROUP_SIZE (ITEMS * ROWS_PER_GROUP)
#define BLOCK 16

#if !RMS
// The row's pilot: the median of its elements at 0, 1/4, 1/2, 3/4 and the end (0 if
// that is Inf or NaN: see common.cl on non-finite values).
inline float row_pilot(__global const storage_t *row) {
    uint last = ROW_LENGTH - 1;
    float a = LOAD1(row, 0), b = LOAD1(row, last / 4), c = LOAD1(row, last / 2);
    float d = LOAD1(row, last - last / 4), e = LOAD1(row, last);
    return FINITE_OR_ZERO(float, MEDIAN5(a, b, c, d, e));
}

// Moments (relative to `pilot`) of the span's vectors of one row.
inline Moments row_moments(__global const storage_t *row, Span s, float pilot) {
    Moments acc = {0.0f, 0.0f, 0.0f};
    float2 carry = (float2)(0.0f, 0.0f);  // Kahan carries of M2 and of the mean
    if (s.first >= s.end) return acc;
    float shift = FINITE_OR_ZERO(float, FIRST_LANE(LOADV(row, s.first)) - pilot);
#if CHUNKED
    uint v = s.first;
    for (; v + BLOCK <= s.end; v += BLOCK) {
        // Two accumulators per sum: independent add chains run at load speed.
        floatv s0 = 0.0f, s1 = 0.0f, q0 = 0.0f, q1 = 0.0f;
        for (uint j = 0; j < BLOCK; j += 2) {
            floatv d0 = (LOADV(row, v + j) - pilot) - shift;
            floatv d1 = (LOADV(row, v + j + 1) - pilot) - shift;
            s0 += d0;
            s1 += d1;
            q0 += d0 * d0;
            q1 += d1 * d1;
        }
        floatv sum = s0 + s1, squares = q0 + q1;
        acc = fold_block(acc, &carry, shift, HSUM(sum), HSUM(squares), (float)(BLOCK * VEC));
        shift = next_shift(shift, acc);
    }
    if (v < s.end) {
        floatv sum = 0.0f, squares = 0.0f;
        for (uint j = v; j < s.end; ++j) {
            floatv d = (LOADV(row, j) - pilot) - shift;
            sum += d;
            squares += d * d;
        }
        acc = fold_block(acc, &carry, shift, HSUM(sum), HSUM(squares), (float)((s.end - v) * VEC));
    }
#else
    for (uint v = s.first; v < s.end;) {
        floatv sum = 0.0f, squares = 0.0f;
        float b = 0.0f;
        for (uint k = 0; k < BLOCK && v < s.end; ++k, v += s.stride) {
            floatv d = (LOADV(row, v) - pilot) - shift;
            sum += d;
            squares += d * d;
            b += (float)VEC;
        }
        acc = fold_block(acc, &carry, shift, HSUM(sum), HSUM(squares), b);
        shift = next_shift(shift, acc);
    }
#endif
    return acc;
}
#else
// Sum of squares of the span's vectors of one row, as Moments {count, 0, sum}.
inline Moments row_moments(__global const storage_t *row, Span s, float unused) {
    float total = 0.0f, carry = 0.0f, count = 0.0f;
    for (uint v = s.first; v < s.end;) {
        floatv q0 = 0.0f, q1 = 0.0f;
        uint k = 0;
#if CHUNKED
        for (; k + 2 <= BLOCK && v + s.stride < s.end; k += 2, v += 2 * s.stride) {
            floatv a = LOADV(row, v), b = LOADV(row, v + s.stride);
            q0 += a * a;
            q1 += b * b;
        }
#endif
        for (; k < BLOCK && v < s.end; ++k, v += s.stride) {
            floatv a = LOADV(row, v);
            q0 += a * a;
        }
        floatv q = q0 + q1;
        // Inf-safe: an Inf in the row makes the sum +Inf and rstd 0, as in the reference
        // (y = 0 on the row's finite elements, NaN at the Inf), not a NaN carry.
        KAHAN_ADD(float, total, carry, HSUM(q));
        count += (float)(k * VEC);
    }
    Moments m = {count, 0.0f, total};
    return m;
}
#endif

// Merges a and b: Chan's formula for LayerNorm moments, a plain sum for RMSNorm.
inline Moments merge_partials(Moments a, Moments b) {
#if RMS
    Moments r = {a.count + b.count, 0.0f, a.m2 + b.m2};
    return r;
#else
    return moments_merge(a, b);
#endif
}

// Tree merge of the ITEMS partials that share a row (slots base ..< base + ITEMS of
// the group's local arrays), in a fixed order; every item gets the result.
inline Moments reduce_items(Moments m, __local float *lc, __local float *lm, __local float *lq, uint base, uint item) {
#if ITEMS == 1
    return m;
#else
    lc[base + item] = m.count;
    lm[base + item] = m.mean;
    lq[base + item] = m.m2;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint width = ITEMS / 2; width > 0; width >>= 1) {
        if (item < width) {
            Moments a = {lc[base + item], lm[base + item], lq[base + item]};
            Moments b = {lc[base + item + width], lm[base + item + width], lq[base + item + width]};
            Moments r = merge_partials(a, b);
            lc[base + item] = r.count;
            lm[base + item] = r.mean;
            lq[base + item] = r.m2;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    Moments r = {lc[base], lm[base], lq[base]};
    return r;
#endif
}

// 1 / sqrt(var + eps) for LayerNorm (biased variance), 1 / sqrt(mean(x^2) + eps) for RMSNorm.
inline float row_scale(Moments m, float eps) {
    return 1.0f / sqrt(m.m2 / (float)ROW_LENGTH + eps);
}

// y over the span of one row: ((x - pilot) - offset) * scale * gamma + beta
// (LayerNorm) or x * scale * gamma (RMSNorm).
inline void apply_span(__global const storage_t *row, __global storage_t *out, Span s, float pilot, float offset,
                       float scale, __global const float *weight, __global const float *bias) {
    for (uint v = s.first; v < s.end; v += s.stride) {
#if RMS
        floatv value = LOADV(row, v) * scale;
#else
        floatv value = ((LOADV(row, v) - pilot) - offset) * scale;
#endif
#if HAS_WEIGHT
        value *= LOADP(weight, v);
#endif
#if HAS_BIAS && !RMS
        value += LOADP(bias, v);
#endif
        STOREV(value, out, v);
    }
}

// Fused: ITEMS work-items per row, ROWS_PER_GROUP rows per work-group. Statistics,
// then normalisation of the same elements while they are still in cache; one launch.
// save_mean (LayerNorm only) and save_scale (invstd or rstd) have one value per row.
__kernel __attribute__((reqd_work_group_size(GROUP_SIZE, 1, 1)))
void rownorm_fused(__global const storage_t *x, __global storage_t *y, uint rows,
                   __global const float *weight, __global const float *bias,
                   __global float *save_mean, __global float *save_scale, float eps) {
#if ITEMS > 1
    __local float lc[GROUP_SIZE], lm[GROUP_SIZE], lq[GROUP_SIZE];
#else
    __local float *lc = 0, *lm = 0, *lq = 0;
#endif
    uint lid = get_local_id(0);
    uint item = lid % ITEMS, slot = lid - item;
    uint row = get_group_id(0) * ROWS_PER_GROUP + lid / ITEMS;
    // Items past the last row shadow it (so every item reaches the barriers) but store nothing.
    bool live = row < rows;
    ulong base = (ulong)(live ? row : rows - 1) * ROW_LENGTH;
    __global const storage_t *in = x + base;
    Span s = item_span(0, DV, item, ITEMS);
#if RMS
    float pilot = 0.0f;
#else
    float pilot = row_pilot(in);
#endif
    Moments m = reduce_items(row_moments(in, s, pilot), lc, lm, lq, slot, item);
    float scale = row_scale(m, eps);
    if (!live) return;
    if (item == 0) {
#if !RMS
        save_mean[row] = pilot + m.mean;
#endif
        save_scale[row] = scale;
    }
    apply_span(in, y + base, s, pilot, m.mean, scale, weight, bias);
}

// Split rows, step 1 of 3 (then rownorm_finish, rownorm_apply): work-group (g, r)
// reduces slice g of row r with ITEMS work-items and writes its partial moments
// (count, mean - pilot, M2), or (count, 0, sum of squares), to
// partials[(r * G + g) * 3 ...]; slice 0 also writes the row's pilot.
__kernel __attribute__((reqd_work_group_size(ITEMS, 1, 1)))
void rownorm_partials(__global const storage_t *x, __global float *partials, __global float *pilots) {
#if ITEMS > 1
    __local float lc[ITEMS], lm[ITEMS], lq[ITEMS];
#else
    __local float *lc = 0, *lm = 0, *lq = 0;
#endif
    uint g = get_group_id(0), groups = get_num_groups(0);
    uint row = get_group_id(1);
    uint item = get_local_id(0);
    __global const storage_t *in = x + (ulong)row * ROW_LENGTH;
    ulong per = ((ulong)DV + groups - 1) / groups;
    uint lo = (uint)min((ulong)g * per, (ulong)DV), hi = (uint)min((ulong)lo + per, (ulong)DV);
#if RMS
    float pilot = 0.0f;
#else
    float pilot = row_pilot(in);
#endif
    Moments m = reduce_items(row_moments(in, item_span(lo, hi, item, ITEMS), pilot), lc, lm, lq, 0, item);
    if (item == 0) {
        __global float *p = partials + ((ulong)row * groups + g) * 3;
        p[0] = m.count;
        p[1] = m.mean;
        p[2] = m.m2;
        if (g == 0) pilots[row] = pilot;
    }
}

// Split rows, step 2 of 3: one work-item per row merges its partials in order
// (deterministic) and writes the saved statistics and the apply step's offset
// (mean - pilot; 0 for RMSNorm).
__kernel void rownorm_finish(__global const float *partials, uint groups, uint rows,
                             __global const float *pilots, __global float *offsets,
                             __global float *save_mean, __global float *save_scale, float eps) {
    uint row = get_global_id(0);
    if (row >= rows) return;
    Moments m = {0.0f, 0.0f, 0.0f};
    for (uint g = 0; g < groups; ++g) {
        __global const float *p = partials + ((ulong)row * groups + g) * 3;
        Moments part = {p[0], p[1], p[2]};
        m = merge_partials(m, part);
    }
    save_scale[row] = row_scale(m, eps);
    offsets[row] = m.mean;
#if !RMS
    save_mean[row] = pilots[row] + m.mean;
#endif
}

// Split rows, step 3 of 3: the elementwise pass over all rows * DV vectors, each
// work-item's range (a chunk, or an interleaved share) taken row run by row run.
__kernel void rownorm_apply(__global const storage_t *x, __global storage_t *y, uint rows,
                            __global const float *weight, __global const float *bias,
                            __global const float *pilots, __global const float *offsets,
                            __global const float *scales) {
    INDEX_T total = (INDEX_T)rows * DV;
    INDEX_T items = get_global_size(0), item = get_global_id(0);
#if CHUNKED
    INDEX_T per = (total + items - 1) / items;
    INDEX_T first = min(item * per, total), end = min(first + per, total);
    for (INDEX_T v = first; v < end;) {
        INDEX_T row = v / DV;
        uint column = (uint)(v - row * DV);
        uint len = (uint)(min((row + 1) * DV, end) - v);
        Span s = {column, column + len, 1};
        ulong base = (ulong)row * ROW_LENGTH;
        apply_span(x + base, y + base, s, pilots[row], offsets[row], scales[row], weight, bias);
        v += len;
    }
#else
    for (INDEX_T v = item; v < total; v += items) {
        INDEX_T row = v / DV;
        uint column = (uint)(v - row * DV);
        Span s = {column, column + 1, 1};
        ulong base = (ulong)row * ROW_LENGTH;
        apply_span(x + base, y + base, s, pilots[row], offsets[row], scales[row], weight, bias);
    }
#endif
}
