// Row normalisations over the trailing dims of a row-major (rows, D) matrix:
// LayerNorm (mean and biased variance per row) and RMSNorm (root mean square per
// row), selected by RMS.
//
// Build options, all set by RowNormPlan (Sources/NormCL/Ops/LayerNorm/RowNormPlan.swift):
//   RMS            1: RMSNorm, y = x * rstd * gamma, rstd = 1 / sqrt(mean(x^2) + eps)
//                  0: LayerNorm, y = (x - mean) * invstd * gamma + beta
//   VEC            16, 8, 4 or 1: elements per load (divides D)
//   ITEMS          work-items sharing one row (or one slice of a row), a power of two
//   SCRATCH_ITEMS  work-items the fused kernel's local scratch holds, at least its
//                  work-group size; given only when ITEMS > 1. A constant of the device
//                  (its widest reduction group), not the rows per group, which follow
//                  the row count: the launch gives those (local size / ITEMS)
//   CHUNKED        1: each work-item walks one contiguous chunk (CPU prefetchers like it)
//                  0: work-items interleave (GPUs coalesce neighbouring loads)
//   HAS_WEIGHT     1 when weight (gamma, shape normalizedShape) is given, else gamma = 1
//   HAS_BIAS       1 when bias (beta) is given, else beta = 0 (RMSNorm too: an offset)
//   HAS_RESIDUAL   1: the norm's input is h = x + residual (the transformer's pre-norm
//                  residual stream); `residual` and the optional `sum` output (h, for
//                  the next block) are residual_t, float32 with RESIDUAL_FLOAT=1 (the
//                  residual kept in float32 under half storage) else the storage type.
//                  h is formed in float32 and the statistics and y are taken from that
//                  float32 h; the stored h is rounded to residual_t once
//   HAS_INPUT_BIAS 1 (with HAS_RESIDUAL): h = (x + input_bias) + residual, input_bias
//                  one float32 per column (the preceding linear layer's bias)
//   ACTIVATION     an activation applied to y before it is stored (epilogue.cl)
// γ is read as weight + weight_offset (a kernel argument: 1 for Gemma's zero-centred
// γ, 0 otherwise).
//   INDEX_T        uint or ulong: wide enough for every element index of the apply pass
//   STORAGE_HALF   see common.cl
// Sizes are kernel arguments: `rows`, and `row_length` = D, the elements of one row (the
// product of normalizedShape); a row has D / VEC vectors (`row_vecs`). One program
// serves every shape.
//
// LayerNorm statistics are relative to one pilot per row (the median of five of its
// elements, computed identically by every work-item), so every mean below is
// `mean - pilot`: small numbers whose float32 rounding stays at the scale of the
// row's spread, not of its offset (1e4 + N(0, 1) keeps full precision). A work-item
// sums blocks of BLOCK vectors shifted by its running mean and folds each block into
// (count, mean, M2) with Chan's formula (Kahan-compensated, fold_block); work-items
// and slices merge the same way, in a fixed order (reduce_moments and
// merge_moment_partials of reduction.cl). Outputs are formed as
// ((x - pilot) - (mean - pilot)) * invstd * gamma + beta.
//
// RMSNorm needs no pilot: the sum of squares has no cancellation. Blocks of BLOCK
// vectors are summed in registers and the block sums are added with Kahan
// compensation, so the relative error stays at a few ulps for D in the millions. Its
// statistics are float2 (count, sum of squares), merged by plain sums in a fixed order
// (reduce_float2, sum_float2_partials).

#if RMS
// (count, sum of squares) of a span of a row.
typedef float2 RowStats;
#define reduce_row_stats reduce_float2
#else
// (count, mean - pilot, M2) of a span of a row.
typedef Moments RowStats;
#define reduce_row_stats reduce_moments
#endif

#if !RMS
// The row's pilot: the median of its elements at 0, 1/4, 1/2, 3/4 and the end (0 if
// that is Inf or NaN: see common.cl on non-finite values).
inline float row_pilot(__global const storage_t *row, RowInput res, uint row_length) {
    uint last = row_length - 1;
    float a = INPUT1(row, res, 0), b = INPUT1(row, res, last / 4), c = INPUT1(row, res, last / 2);
    float d = INPUT1(row, res, last - last / 4), e = INPUT1(row, res, last);
    return FINITE_OR_ZERO(float, MEDIAN5(a, b, c, d, e));
}

// Moments (relative to `pilot`) of the span's vectors of one row.
inline RowStats row_moments(__global const storage_t *row, RowInput res, Span s, float pilot) {
    Moments acc = {0.0f, 0.0f, 0.0f};
    float2 carry = (float2)(0.0f, 0.0f);  // Kahan carries of M2 and of the mean
    if (s.first >= s.end) return acc;
    float shift = FINITE_OR_ZERO(float, FIRST_LANE(INPUTV(row, res, s.first)) - pilot);
#if CHUNKED
    uint v = s.first;
    for (; v + BLOCK <= s.end; v += BLOCK) {
        // Two accumulators per sum: independent add chains run at load speed.
        floatv s0 = 0.0f, s1 = 0.0f, q0 = 0.0f, q1 = 0.0f;
        for (uint j = 0; j < BLOCK; j += 2) {
            floatv d0 = (INPUTV(row, res, v + j) - pilot) - shift;
            floatv d1 = (INPUTV(row, res, v + j + 1) - pilot) - shift;
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
            floatv d = (INPUTV(row, res, j) - pilot) - shift;
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
            floatv d = (INPUTV(row, res, v) - pilot) - shift;
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

// The row's mean - pilot, and its sum of squared deviations.
inline float stats_offset(RowStats m) { return m.mean; }
inline float stats_squares(RowStats m) { return m.m2; }
#else
// Sum of squares of the span's vectors of one row.
inline RowStats row_moments(__global const storage_t *row, RowInput res, Span s, float unused) {
    float total = 0.0f, carry = 0.0f, count = 0.0f;
    for (uint v = s.first; v < s.end;) {
        floatv q0 = 0.0f, q1 = 0.0f;
        uint k = 0;
#if CHUNKED
        for (; k + 2 <= BLOCK && v + s.stride < s.end; k += 2, v += 2 * s.stride) {
            floatv a = INPUTV(row, res, v), b = INPUTV(row, res, v + s.stride);
            q0 += a * a;
            q1 += b * b;
        }
#endif
        for (; k < BLOCK && v < s.end; ++k, v += s.stride) {
            floatv a = INPUTV(row, res, v);
            q0 += a * a;
        }
        floatv q = q0 + q1;
        // Inf-safe: an Inf in the row makes the sum +Inf and rstd 0, as in the reference
        // (y = 0 on the row's finite elements, NaN at the Inf), not a NaN carry.
        KAHAN_ADD(float, total, carry, HSUM(q));
        count += (float)(k * VEC);
    }
    return (float2)(count, total);
}

// No mean is subtracted; the sum of squares.
inline float stats_offset(RowStats m) { return 0.0f; }
inline float stats_squares(RowStats m) { return m.y; }
#endif

// 1 / sqrt(var + eps) for LayerNorm (biased variance), 1 / sqrt(mean(x^2) + eps) for RMSNorm.
inline float row_scale(RowStats m, uint row_length, float eps) {
    return 1.0f / sqrt(stats_squares(m) / (float)row_length + eps);
}

// Whether a row-norm kernel over rows * row_length values streams its stores
// (common.cl): it moves x and y, and the residual and h when there are.
#define ROW_STREAMS(rows, row_length, sum) \
    STREAMS((ulong)(rows) * (row_length) * sizeof(storage_t) * (2 + (HAS_RESIDUAL ? 1 + ((sum) != 0) : 0)))

// y over the span of one row: f(((h - pilot) - offset) * scale * gamma + beta)
// (LayerNorm) or f(h * scale * gamma + beta) (RMSNorm), with h = x (+ residual, also
// stored to `sum` when given) and f the fused activation; `stream`: ROW_STREAMS.
inline void apply_span(__global const storage_t *row, RowInput res, __global residual_t *sum,
                       __global storage_t *out, Span s, float pilot, float offset, float scale,
                       __global const float *weight, float weight_offset, __global const float *bias, bool stream) {
    for (uint v = s.first; v < s.end; v += s.stride) {
        floatv h = INPUTV(row, res, v);
#if HAS_RESIDUAL
        if (sum) STORERV_STREAM(h, sum, v);
#endif
#if RMS
        floatv value = h * scale;
#else
        floatv value = ((h - pilot) - offset) * scale;
#endif
#if HAS_WEIGHT
        value *= LOADP(weight, v) + weight_offset;
#endif
#if HAS_BIAS
        value += LOADP(bias, v);
#endif
        STOREV_STREAM(ACTIVATE(floatv, value), out, v);
    }
}


// Fused: ITEMS work-items per row, local size / ITEMS rows per work-group. Statistics,
// then normalisation of the same elements while they are still in cache; one launch.
// save_mean (LayerNorm only) and save_scale (invstd or rstd) have one value per row.
__kernel void rownorm_fused(__global const storage_t *x, __global const residual_t *residual,
                            __global const float *input_bias, __global residual_t *sum, __global storage_t *y,
                            uint rows, uint row_length, __global const float *weight, float weight_offset,
                            __global const float *bias, __global float *save_mean, __global float *save_scale,
                            float eps) {
    ROW_SCRATCH(RowStats, scratch, SCRATCH_ITEMS);
    const bool stream = ROW_STREAMS(rows, row_length, sum);
    uint item, slot;
    uint row = row_lane(&item, &slot);
    // Items past the last row shadow it (so every item reaches the barriers) but store nothing.
    bool live = row < rows;
    ulong base = (ulong)(live ? row : rows - 1) * row_length;
    __global const storage_t *in = x + base;
    RowInput res = row_input(residual, input_bias, base);
    Span s = item_span(0, row_length / VEC, item, ITEMS);
#if RMS
    float pilot = 0.0f;
#else
    float pilot = row_pilot(in, res, row_length);
#endif
    // The statistics of the ITEMS work-items that share the row, merged by the tree.
    RowStats m = REDUCE_ROW_LANE(reduce_row_stats, row_moments(in, res, s, pilot), scratch + slot, item);
    float scale = row_scale(m, row_length, eps);
    if (!live) STREAM_RETURN();
    if (item == 0) {
#if !RMS
        save_mean[row] = pilot + m.mean;
#endif
        save_scale[row] = scale;
    }
    apply_span(in, res, RESIDUAL_ROW(sum, base), y + base, s, pilot, stats_offset(m), scale, weight, weight_offset,
               bias, stream);
    STREAM_FENCE();
}

// Split rows, step 1 of 3 (then rownorm_finish, rownorm_apply): work-group (g, r)
// reduces slice g of row r with ITEMS work-items and writes its partial statistics to
// partials[r * G + g]: LayerNorm (count, mean - pilot, M2) triples (store_moments),
// RMSNorm (count, sum of squares) float2s; slice 0 also writes the row's pilot.
__kernel __attribute__((reqd_work_group_size(ITEMS, 1, 1)))
void rownorm_partials(__global const storage_t *x, __global const residual_t *residual,
                      __global const float *input_bias, uint row_length,
                      __global float *partials, __global float *pilots) {
    ROW_SCRATCH(RowStats, scratch, ITEMS);
    uint g = get_group_id(0), groups = get_num_groups(0);
    uint row = get_group_id(1);
    uint item = get_local_id(0);
    __global const storage_t *in = x + (ulong)row * row_length;
    RowInput res = row_input(residual, input_bias, (ulong)row * row_length);
#if RMS
    float pilot = 0.0f;
#else
    float pilot = row_pilot(in, res, row_length);
#endif
    RowStats m = REDUCE_ROW_LANE(reduce_row_stats, row_moments(in, res, row_slice_span(row_length / VEC, item), pilot),
                                 scratch, item);
    if (item != 0) return;
#if RMS
    vstore2(m, (ulong)row * groups + g, partials);
    if (g == 0) pilots[row] = pilot;
#else
    store_moment_partial(partials, pilots, row, g, groups, m, pilot);
#endif
}

// Split rows, step 2 of 3: one work-item per row merges its partials in slice order
// (deterministic) and writes the saved statistics and the apply step's offset
// (mean - pilot; 0 for RMSNorm).
__kernel void rownorm_finish(__global const float *partials, uint groups, uint rows, uint row_length,
                             __global const float *pilots, __global float *offsets,
                             __global float *save_mean, __global float *save_scale, float eps) {
    uint row = get_global_id(0);
    if (row >= rows) return;
#if RMS
    RowStats m = sum_float2_partials((__global const float2 *)partials + (ulong)row * groups, groups, 1);
#else
    RowStats m = merge_moment_partials(partials + (ulong)row * groups * 3, groups, 3);
    save_mean[row] = pilots[row] + m.mean;
#endif
    save_scale[row] = row_scale(m, row_length, eps);
    offsets[row] = stats_offset(m);
}

// Split rows, step 3 of 3: the elementwise pass over all rows * row_vecs vectors, each
// work-item's range (a chunk, or an interleaved share) taken row run by row run; the
// row and column of the next index are stepped, not divided, per vector.
__kernel void rownorm_apply(__global const storage_t *x, __global const residual_t *residual,
                            __global const float *input_bias, __global residual_t *sum,
                            __global storage_t *y, uint rows, uint row_length, __global const float *weight,
                            float weight_offset, __global const float *bias, __global const float *pilots,
                            __global const float *offsets, __global const float *scales) {
    const bool stream = ROW_STREAMS(rows, row_length, sum);
    uint row_vecs = row_length / VEC;
    INDEX_T total = (INDEX_T)rows * row_vecs;
    INDEX_T items = get_global_size(0), item = get_global_id(0);
#if CHUNKED
    INDEX_T per = (total + items - 1) / items;
    INDEX_T first = min(item * per, total), end = min(first + per, total);
    for (INDEX_T v = first; v < end;) {
        INDEX_T row = v / row_vecs;
        uint column = (uint)(v - row * row_vecs);
        uint len = (uint)(min((row + 1) * row_vecs, end) - v);
        Span s = {column, column + len, 1};
        ulong base = (ulong)row * row_length;
        apply_span(x + base, row_input(residual, input_bias, base), RESIDUAL_ROW(sum, base), y + base, s, pilots[row],
                   offsets[row], scales[row], weight, weight_offset, bias, stream);
        v += len;
    }
#else
    // Index v is (row, column); a step of `items` vectors is (step_rows, step_columns).
    INDEX_T row = item / row_vecs, step_rows = items / row_vecs;
    uint column = (uint)(item - row * row_vecs), step_columns = (uint)(items - step_rows * row_vecs);
    for (INDEX_T v = item; v < total; v += items) {
        Span s = {column, column + 1, 1};
        ulong base = (ulong)row * row_length;
        apply_span(x + base, row_input(residual, input_bias, base), RESIDUAL_ROW(sum, base), y + base, s, pilots[row],
                   offsets[row], scales[row], weight, weight_offset, bias, stream);
        row += step_rows;
        if (column >= row_vecs - step_columns) {
            column -= row_vecs - step_columns;
            ++row;
        } else {
            column += step_columns;
        }
    }
#endif
    STREAM_FENCE();
}
