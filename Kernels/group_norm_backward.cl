// GroupNorm and InstanceNorm backward (InstanceNorm is GroupNorm with G == C),
// channels-first (NCHW) and channels-last (NHWC), float32 or half storage.
//
// Build options, all set by GroupNormBackwardPlan
// (Sources/NormCL/Ops/GroupNorm/GroupNormBackwardPlan.swift):
//   VEC            16, 8, 4 or 1: elements per load along a channels-first plane (divides M)
//   WG             work-group size of the plane reduction kernels, a power of two
//   CHUNKED        1: each work-item walks one contiguous chunk (CPUs); 0: interleaved (GPUs)
//   HAS_WEIGHT     1 when gamma is given, else gamma = 1
//   INDEX_T        uint or ulong: wide enough for every element index
//   CVEC, TILE     the column kernels only (given for plans that run them): channels per
//                  load (4 needs C % 4 == 0) and column vectors per work-item
//   RUNNING        1: InstanceNorm with running statistics (constants in backward):
//                  dx = dy * gamma_c * invstd_c, no statistics terms
//   ACTIVATION     GroupNorm only, absent (0) without one: the activation f fused after the
//                  norm (epilogue.cl); every dy below is then the gradient at the norm's
//                  output, e = dy * f'(a), with a = (x - mu_r) * s_r * gamma_c + beta_c
//                  recomputed from x, the saved statistics, gamma and beta wherever dy is read
// Decided at run time from NULL arguments (one program for every combination): weight
// (gamma = 1 without), bias (beta = 0 without; read only with an ACTIVATION), which of dx
// and the plane sums (for dgamma, dbeta) to write, and dweight, dbias.
//
// Sizes are kernel arguments: channels C, groups G, cpg = C / G, spatial M,
// spatial_vecs = M / VEC.
//
// The math. A "row" is one (n, g) pair, r = n * G + g, of K = cpg * M values with
// saved mean mu_r and invstd s_r; x^ = (x - mu_r) * s_r and g = dy * gamma_c:
//
//     dx = s_r / K * (K * g - sum g - x^ * sum(g * x^))
//        = a_k * dy + b_r * (x - mu_r) + c_r
//     a_k = s_r * gamma_c,  b_r = -(s_r / K) * s_r * sum(g * x^),  c_r = -(s_r / K) * sum g
//
// with k = n * C + c. Every path first reduces, per (n, c) plane k, the two sums
//     db_k = sum_m dy,    ds_k = sum_m dy * (x - mu_r)
// (centred on the saved mean: the raw sum dy * x would cancel for data with a large
// mean), then per row sum g = sum_c gamma_c db_k, sum(g * x^) = s_r sum_c gamma_c ds_k,
// and per channel dbeta_c = sum_n db_k, dgamma_c = sum_n s_r ds_k. All merges run in
// a fixed order (no atomics): the results are bit-for-bit reproducible. With an
// ACTIVATION, dy is e = dy * f'(a) throughout (the sums, dx, dgamma, dbeta): the plane's
// affine map of x - mu_r to a, (s_r * gamma_c, beta_c), is passed to the gradient sums
// (`pre`) and to dx, where s_r * gamma_c is dx's own a_k.
//
// Paths:
//   fused rows (NCHW): gnb_fused_rows [+ gnb_parameter_grads]
//   split planes (NCHW): gnb_plane_partials, gnb_finish_rows, gnb_dx_planes [+ gnb_parameter_grads]
//   columns (NHWC): gnb_column_partials, gnb_finish_rows, gnb_dx_columns [+ gnb_parameter_grads]
// and RUNNING first writes per-(n, c) rows of the running statistics (gnb_running_rows).

// Whether a kernel given `sums` (NULL unless dgamma or dbeta is wanted) reduces the
// per-plane sums: always outside the running mode, whose dx needs the row sums built
// from them; in it only for the sums themselves. The same for every work-item.
#define NEEDS_SUMS(sums) (!RUNNING || (sums))

// The gradient at the norm's output from dy's vector dyv at x's vector xv (type T) of a
// plane whose activation input is (x - mu) * scale + shift: EPILOGUE_GRAD (epilogue.cl),
// dyv itself without an ACTIVATION (the other arguments are then not evaluated).
#define NORM_GRAD(T, dyv, xv, mu, scale, shift) EPILOGUE_GRAD(T, dyv, xv, mu, scale, shift, (T)0.0f)

// The `pre` of the gradient sums of channel c in a row of invstd s: the affine map
// (s * gamma_c, beta_c) of x - mu to the activation's input; NO_PRE (unread) without one.
inline float2 plane_pre(float s, __global const float *weight, __global const float *bias, uint c) {
#if ACTIVATION
    return (float2)(s * gamma_of(weight, c), beta_of(bias, c));
#else
    return NO_PRE;
#endif
}

// dx from its coefficients (a, b, mu, c), dy and x; x is not read in the running mode.
#if RUNNING
#define DX_OF(a, b, mu, c, dy_value, x_value) ((a) * (dy_value))
#else
#define DX_OF(a, b, mu, c, dy_value, x_value) ((a) * (dy_value) + (b) * ((x_value) - (mu)) + (c))
#endif

// The row coefficients (b_r, c_r) of dx from the gamma-weighted plane sums
// gdb = sum_c gamma_c db_k and gds = sum_c gamma_c ds_k, for a row of `count` = K values.
inline float2 row_coefficients(float s, float gdb, float gds, float count) {
#if RUNNING
    return (float2)(0.0f, 0.0f);
#else
    float per = s / count;
    float sum_g_xhat = s * gds;
    return (float2)(-(per * s) * sum_g_xhat, -per * gdb);
#endif
}

// ---------------------------------------------------------------------------------
// Channels-first.

// One work-group per row r: the plane sums of its cpg channels one after another
// (work-group reductions), then dx over the row while it is still in cache. Writes
// the plane sums (db_k, s_r * ds_k) to sums[2k ...] when the parameter gradients are
// wanted.
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void gnb_fused_rows(__global const storage_t *dy, __global const storage_t *x, __global const float *weight,
                    __global const float *bias, __global const float *mean, __global const float *invstd,
                    __global storage_t *dx,
                    __global float *sums, uint groups, uint cpg, uint spatial_vecs) {
    GROUP_REDUCTION(float2, slots, lid);
    const bool stream = STREAMS_OVER((ulong)get_num_groups(0) * cpg * spatial_vecs * VEC, 3);
    uint r = get_group_id(0);
    uint c0 = (r % groups) * cpg;
    float mu = mean[r], s = invstd[r];
    INDEX_T row_vecs = (INDEX_T)cpg * spatial_vecs;
    INDEX_T base = (INDEX_T)r * row_vecs;  // in vectors
    float b = 0.0f, c = 0.0f;
    if (NEEDS_SUMS(sums)) {
        // Every work-item gets each plane's totals from the reduction, so all of them
        // accumulate the same row sums and no broadcast is needed. (Work-item 0 alone
        // accumulating them, then broadcasting, crashed or miscompiled PoCL 3.1's
        // barrier regions.)
        float gdb = 0.0f, gds = 0.0f;
        ItemRange plane_range = item_range(0, spatial_vecs, lid, WG);
        for (uint j = 0; j < cpg; ++j) {
            INDEX_T plane = base + (INDEX_T)j * spatial_vecs;
            float2 pre = plane_pre(s, weight, bias, c0 + j);
            float2 total =
                reduce_float2(accumulate_vector_gradient_sums(dy, x, plane, plane_range, mu, pre, NULL), slots, lid, WG);
            float gamma = gamma_of(weight, c0 + j);
            gdb += gamma * total.x;
            gds += gamma * total.y;
            if (sums && lid == 0) {
                size_t k = (size_t)r * cpg + j;
                sums[2 * k] = total.x;
                sums[2 * k + 1] = s * total.y;
            }
        }
        float2 bc = row_coefficients(s, gdb, gds, (float)(row_vecs * VEC));
        b = bc.x;
        c = bc.y;
    }
    if (!dx) STREAM_RETURN();
    // Runs inside one channel share gamma (and beta).
    ItemRange range = item_range(0, row_vecs, lid, WG);
    FOR_EACH_PLANE_RUN(range, spatial_vecs, j, v, len, {
        float2 pre = plane_pre(s, weight, bias, c0 + (uint)j);
        float a = s * gamma_of(weight, c0 + (uint)j);
        for (uint i = 0; i < len; ++i) {
            INDEX_T e = base + v + i;
            floatv dyv = LOADV(dy, e), xv = LOADV(x, e);
            floatv g = NORM_GRAD(floatv, dyv, xv, mu, pre.x, pre.y);
            STOREV_STREAM(DX_OF(a, b, mu, c, g, xv), dx, e);
        }
    });
    STREAM_FENCE();
}

// Channels-first, split over planes, step 1 of 3 (then gnb_finish_rows, gnb_dx_planes):
// work-group (s, k) reduces slice s of plane k and writes (db, ds) to partials[k * S + s].
// invstd, weight and bias are read only with an ACTIVATION (the plane's `pre`).
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void gnb_plane_partials(__global const storage_t *dy, __global const storage_t *x, __global const float *mean,
                        __global const float *invstd, __global const float *weight, __global const float *bias,
                        __global float2 *partials, uint channels, uint cpg, uint spatial_vecs) {
    SPLIT_GROUP_REDUCTION(float2, slots, lid, s, slices, k);
    uint r = k / cpg;  // row n * G + c / cpg of plane n * C + c
    float mu = mean[r];
    float2 pre = ACTIVATION ? plane_pre(invstd[r], weight, bias, k % channels) : NO_PRE;
    ItemRange range = slice_range(0, spatial_vecs, s, slices, lid, WG);
    float2 total =
        reduce_float2(accumulate_vector_gradient_sums(dy, x, (INDEX_T)k * spatial_vecs, range, mu, pre, NULL), slots, lid, WG);
    if (lid == 0) partials[(size_t)k * slices + s] = total;
}

// Split paths, step 2 of 3: one work-item per row merges each of its planes'
// `slices` partials in order, writes the plane sums (db_k, s_r * ds_k) for the
// parameter gradients, and the per-plane coefficients of dx = a * dy + b * (x - mu) + c
// (with an ACTIVATION also beta_c in coef_beta: the activation's input is then
// (x - mu) * a + beta, dy taken through it). `count` is K = cpg * M.
__kernel void gnb_finish_rows(__global const float2 *partials, uint rows, uint slices, __global const float *weight,
                              __global const float *bias, __global const float *mean, __global const float *invstd,
                              __global float *sums, __global float *coef_a, __global float *coef_b,
                              __global float *coef_mean, __global float *coef_c, __global float *coef_beta,
                              uint groups, uint cpg, float count) {
    uint r = get_global_id(0);
    if (r >= rows) return;
    uint c0 = (r % groups) * cpg;
    float s = invstd[r];
    float gdb = 0.0f, gds = 0.0f;
    for (uint j = 0; j < cpg; ++j) {
        size_t k = (size_t)r * cpg + j;
        float2 total = sum_float2_partials(partials + k * slices, slices, 1);
        float gamma = gamma_of(weight, c0 + j);
        gdb += gamma * total.x;
        gds += gamma * total.y;
        if (sums) {
            sums[2 * k] = total.x;
            sums[2 * k + 1] = s * total.y;
        }
    }
    if (!coef_a) return;  // no dx
    float2 bc = row_coefficients(s, gdb, gds, count);
    float mu = mean[r];
    for (uint j = 0; j < cpg; ++j) {
        size_t k = (size_t)r * cpg + j;
        coef_a[k] = s * gamma_of(weight, c0 + j);
        coef_b[k] = bc.x;
        coef_mean[k] = mu;
        coef_c[k] = bc.y;
        if (coef_beta) coef_beta[k] = beta_of(bias, c0 + j);
    }
}

// dx = a_k * dy + b_k * (x - mean_k) + c_k over channels-first input, k = n * C + c
// (dy through the activation at (x - mean_k) * a_k + beta_k with an ACTIVATION; coef_beta
// is read only then).
__kernel void gnb_dx_planes(__global const storage_t *dy, __global const storage_t *x, __global storage_t *dx,
                            uint planes, uint spatial_vecs, __global const float *coef_a, __global const float *coef_b,
                            __global const float *coef_mean, __global const float *coef_c,
                            __global const float *coef_beta) {
    const bool stream = STREAMS_OVER((ulong)planes * spatial_vecs * VEC, 3);
    INDEX_T total = (INDEX_T)planes * spatial_vecs;
    ItemRange r = item_range(0, total, get_global_id(0), get_global_size(0));
    FOR_EACH_PLANE_RUN(r, spatial_vecs, k, v, len, {
        float a = coef_a[k], b = coef_b[k], mu = coef_mean[k], c = coef_c[k];
        float beta = ACTIVATION ? coef_beta[k] : 0.0f;
        for (uint i = 0; i < len; ++i) {
            floatv dyv = LOADV(dy, v + i), xv = LOADV(x, v + i);
            floatv g = NORM_GRAD(floatv, dyv, xv, mu, a, beta);
            STOREV_STREAM(DX_OF(a, b, mu, c, g, xv), dx, v + i);
        }
    });
    STREAM_FENCE();
}

// ---------------------------------------------------------------------------------
// Channels-last: sample n is a row-major (M, C) matrix; a work-item owns TILE adjacent
// column vectors of CVEC channels and walks the rows (column_tile, reduction.cl).

#ifdef CVEC
// Channels-last, step 1 of 3 (then gnb_finish_rows, gnb_dx_columns): work-item
// (i, n, s) sums the TILE column vectors of item i of sample n over spatial slice s,
// each channel centred on its row's mean, and writes each channel's (db, ds) to
// partials[(n * C + c) * S + s]. invstd, weight and bias are read only with an
// ACTIVATION: each lane's affine map (s_r * gamma_c, beta_c) of x - mu to its input.
__kernel void gnb_column_partials(__global const storage_t *dy, __global const storage_t *x,
                                  __global const float *mean, __global const float *invstd,
                                  __global const float *weight, __global const float *bias, __global float2 *partials,
                                  uint channels, uint spatial, uint cpg) {
    uint column_vecs = channels / CVEC, first, width, lo, hi;
    uint n = get_global_id(1);
    uint s = get_global_id(2), slices = get_global_size(2);
    if (!column_tile_slice(get_global_id(0), column_vecs, spatial, s, slices, &first, &width, &lo, &hi)) return;
    floatc mu[TILE], db[TILE], ds[TILE];
#if ACTIVATION
    floatc pre_scale[TILE], pre_shift[TILE];
#else
    floatc *pre_scale = NULL, *pre_shift = NULL;  // not read
#endif
    for (uint t = 0; t < width; ++t) {
        float lanes[CVEC];
#if ACTIVATION
        float scales[CVEC], shifts[CVEC];
#endif
        for (uint l = 0; l < CVEC; ++l) {
            uint c = (first + t) * CVEC + l;
            size_t r = ((size_t)n * channels + c) / cpg;
            lanes[l] = mean[r];
#if ACTIVATION
            float2 pre = plane_pre(invstd[r], weight, bias, c);
            scales[l] = pre.x;
            shifts[l] = pre.y;
#endif
        }
        mu[t] = CLOAD_LANES(lanes);
#if ACTIVATION
        pre_scale[t] = CLOAD_LANES(scales);
        pre_shift[t] = CLOAD_LANES(shifts);
#endif
    }
    accumulate_column_gradient_sums(dy, x, (INDEX_T)n * spatial, column_vecs, first, width, lo, hi, mu, pre_scale,
                                    pre_shift, NULL, db, ds);
    FOR_EACH_TILE_LANE(first, width, t, l, c, {
        size_t k = (size_t)n * channels + c;  // the (n, c) plane
        partials[k * slices + s] = (float2)(COLUMN_LANE(db[t], l), COLUMN_LANE(ds[t], l));
    })
}

// dx = a_k * dy + b_k * (x - mean_k) + c_k over channels-last input, k = n * C + c,
// row by row with the coefficients loaded as vectors beside each row segment (dy
// through the activation at (x - mean_k) * a_k + beta_k with an ACTIVATION; coef_beta is
// read only then). `rows` is N * M.
__kernel void gnb_dx_columns(__global const storage_t *dy, __global const storage_t *x, __global storage_t *dx,
                             uint rows, uint spatial, uint channels, __global const float *coef_a,
                             __global const float *coef_b, __global const float *coef_mean,
                             __global const float *coef_c, __global const float *coef_beta) {
    const bool stream = STREAMS_OVER((ulong)rows * channels, 3);
    uint column_vecs = channels / CVEC;
    FOR_EACH_SAMPLE_COLUMN_VECTOR(rows, column_vecs, spatial, e, j, {
        floatc a = CLOAD(j, coef_a), mu = CLOAD(j, coef_mean), dyv = LOADC(dy, e), xv = LOADC(x, e);
        floatc g = NORM_GRAD(floatc, dyv, xv, mu, a, CLOAD(j, coef_beta));
        STOREC_STREAM(DX_OF(a, CLOAD(j, coef_b), mu, CLOAD(j, coef_c), g, xv), dx, e);
    });
    STREAM_FENCE();
}
#endif  // CVEC

// ---------------------------------------------------------------------------------
// Shared steps.

// The parameter gradients, one work-item per channel, summing the plane sums over
// the batch in order: dbeta_c = sum_n db_k, dgamma_c = sum_n s_r ds_k.
__kernel void gnb_parameter_grads(__global const float *sums, uint batch, uint channels, __global float *dweight,
                                  __global float *dbias) {
    uint c = get_global_id(0);
    if (c >= channels) return;
    float gw = 0.0f, gb = 0.0f;
    for (uint n = 0; n < batch; ++n) {
        size_t k = (size_t)n * channels + c;
        gb += sums[2 * k];
        gw += sums[2 * k + 1];
    }
    if (dweight) dweight[c] = gw;
    if (dbias) dbias[c] = gb;
}

// InstanceNorm with running statistics (G == C): the per-(n, c) rows of mean and
// invstd the other kernels read, from the running statistics of channel c.
__kernel void gnb_running_rows(__global const float *running_mean, __global const float *running_var, uint planes,
                               uint channels, float eps, __global float *mean, __global float *invstd) {
    uint k = get_global_id(0);
    if (k >= planes) return;
    uint c = k % channels;
    mean[k] = running_mean[c];
    invstd[k] = 1.0f / sqrt(running_var[c] + eps);
}
