// GroupNorm and InstanceNorm backward (InstanceNorm is GroupNorm with GROUPS ==
// CHANNELS), channels-first (NCHW) and channels-last (NHWC), float32 or half storage.
//
// Build options, all set by GroupNormBackwardPlan
// (Sources/NormCL/Ops/GroupNorm/GroupNormBackwardPlan.swift):
//   CHANNELS       C
//   SPATIAL        M, the product of the spatial dims (1 for (N, C) input)
//   GROUPS         G (C % G == 0); CPG = C / G channels per group
//   VEC            4 or 1: elements per load along a channels-first plane (4 needs M % 4 == 0)
//   WG             work-group size of the plane reduction kernels, a power of two
//   CHUNKED        1: each work-item walks one contiguous chunk (CPUs); 0: interleaved (GPUs)
//   HAS_WEIGHT     1 when gamma is given, else gamma = 1
//   INDEX_T        uint or ulong: wide enough for every element index
//   CVEC           4 or 1: channels per load in the column kernels (4 needs C % 4 == 0)
//   TILE           column vectors per work-item in the column kernels
//   WANT_DX        1: compute dx
//   WANT_DWEIGHT   1: compute dgamma
//   WANT_DBIAS     1: compute dbeta
//   RUNNING        1: InstanceNorm with running statistics (constants in backward):
//                  dx = dy * gamma_c * invstd_c, no statistics terms
//
// The math. A "row" is one (n, g) pair, r = n * G + g, of K = CPG * M values with
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
// a fixed order (no atomics): the results are bit-for-bit reproducible.
//
// Paths:
//   fused rows (NCHW): gnb_fused_rows [+ gnb_parameter_grads]
//   split planes (NCHW): gnb_plane_partials, gnb_finish_rows, gnb_dx_planes [+ gnb_parameter_grads]
//   columns (NHWC): gnb_column_partials, gnb_finish_rows, gnb_dx_columns [+ gnb_parameter_grads]
// and RUNNING first writes per-(n, c) rows of the running statistics (gnb_running_rows).

#define CPG (CHANNELS / GROUPS)
#define SPATIAL_VECS (SPATIAL / VEC)
#define ROW_VECS ((INDEX_T)CPG * SPATIAL_VECS)
#define BLOCK 16
#define WANT_SUMS (WANT_DWEIGHT || WANT_DBIAS)
// Whether any kernel needs the per-plane sums: dx outside the running mode needs the
// row sums built from them.
#define NEEDS_SUMS (WANT_SUMS || (WANT_DX && !RUNNING))

inline float gamma_of(__global const float *weight, uint c) {
#if HAS_WEIGHT
    return weight[c];
#else
    return 1.0f;
#endif
}

// (sum dy, sum dy * (x - mu)) over the vectors of r (relative to `base`, in vectors).
inline float2 accumulate_plane(__global const storage_t *dy, __global const storage_t *x, INDEX_T base, ItemRange r,
                               float mu) {
    float db = 0.0f, ds = 0.0f, cdb = 0.0f, cds = 0.0f;
#if CHUNKED
    INDEX_T v = r.first;
    for (; v + BLOCK <= r.end; v += BLOCK) {
        floatv sb = 0.0f, ss = 0.0f;
        for (int j = 0; j < BLOCK; ++j) {
            floatv d = LOADV(dy, base + v + j);
            sb += d;
            ss += d * (LOADV(x, base + v + j) - mu);
        }
        KAHAN_ADD(float, db, cdb, HSUM(sb));
        KAHAN_ADD(float, ds, cds, HSUM(ss));
    }
    if (v < r.end) {
        floatv sb = 0.0f, ss = 0.0f;
        for (; v < r.end; ++v) {
            floatv d = LOADV(dy, base + v);
            sb += d;
            ss += d * (LOADV(x, base + v) - mu);
        }
        KAHAN_ADD(float, db, cdb, HSUM(sb));
        KAHAN_ADD(float, ds, cds, HSUM(ss));
    }
#else
    for (INDEX_T v = r.first; v < r.end;) {
        floatv sb = 0.0f, ss = 0.0f;
        for (int k = 0; k < BLOCK && v < r.end; ++k, v += r.stride) {
            floatv d = LOADV(dy, base + v);
            sb += d;
            ss += d * (LOADV(x, base + v) - mu);
        }
        KAHAN_ADD(float, db, cdb, HSUM(sb));
        KAHAN_ADD(float, ds, cds, HSUM(ss));
    }
#endif
    return (float2)(db, ds);
}

// Tree sum of one pair per work-item; every work-item gets the result, and the
// local arrays may be reused as soon as it returns.
inline float2 reduce_pair(float2 v, __local float *la, __local float *lb) {
    uint lid = get_local_id(0);
    la[lid] = v.x;
    lb[lid] = v.y;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint width = WG / 2; width > 0; width >>= 1) {
        if (lid < width) {
            la[lid] += la[lid + width];
            lb[lid] += lb[lid + width];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    float2 r = (float2)(la[0], lb[0]);
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
}

// The row coefficients (b_r, c_r) of dx from the gamma-weighted plane sums
// gdb = sum_c gamma_c db_k and gds = sum_c gamma_c ds_k.
inline float2 row_coefficients(float s, float gdb, float gds) {
#if RUNNING
    return (float2)(0.0f, 0.0f);
#else
    float per = s / ((float)CPG * (float)SPATIAL);
    float sum_g_xhat = s * gds;
    return (float2)(-(per * s) * sum_g_xhat, -per * gdb);
#endif
}

// ---------------------------------------------------------------------------------
// Channels-first.

// One work-group per row r: the plane sums of its CPG channels one after another
// (work-group reductions), then dx over the row while it is still in cache. Writes
// the plane sums (db_k, s_r * ds_k) to sums[2k ...] when the parameter gradients are
// wanted. `spatial_vecs` is SPATIAL_VECS, passed as an argument because PoCL 3.1
// miscompiles `for (i = lid; i < 1; i += items)` with a compile-time bound.
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void gnb_fused_rows(__global const storage_t *dy, __global const storage_t *x, __global const float *weight,
                    __global const float *mean, __global const float *invstd, __global storage_t *dx,
                    __global float *sums, uint spatial_vecs) {
    __local float la[WG], lb[WG];
    uint r = get_group_id(0);
    uint lid = get_local_id(0);
    uint g = r % GROUPS;
    float mu = mean[r], s = invstd[r];
    INDEX_T base = (INDEX_T)r * CPG * spatial_vecs;  // in vectors
#if NEEDS_SUMS
    // Every work-item gets each plane's totals from the reduction, so all of them
    // accumulate the same row sums and no broadcast is needed. (Work-item 0 alone
    // accumulating them, then broadcasting, crashed or miscompiled PoCL 3.1's
    // barrier regions.)
    float gdb = 0.0f, gds = 0.0f;
    ItemRange plane_range = item_range(0, spatial_vecs, lid, WG);
    for (uint j = 0; j < CPG; ++j) {
        INDEX_T plane = base + (INDEX_T)j * spatial_vecs;
        float2 total = reduce_pair(accumulate_plane(dy, x, plane, plane_range, mu), la, lb);
        float gamma = gamma_of(weight, g * CPG + j);
        gdb += gamma * total.x;
        gds += gamma * total.y;
#if WANT_SUMS
        if (lid == 0) {
            size_t k = (size_t)r * CPG + j;
            sums[2 * k] = total.x;
            sums[2 * k + 1] = s * total.y;
        }
#endif
    }
    float2 bc = row_coefficients(s, gdb, gds);
#endif
#if WANT_DX
#if RUNNING
    float b = 0.0f, c = 0.0f;
#else
    float b = bc.x, c = bc.y;
#endif
    ItemRange range = item_range(0, (INDEX_T)CPG * spatial_vecs, lid, WG);
    for (INDEX_T v = range.first; v < range.end;) {
        // Runs inside one channel share gamma; with interleaved access the next index
        // may lie channels further on, and the outer loop finds its channel afresh.
        uint j = (uint)(v / spatial_vecs);
        INDEX_T end = min((INDEX_T)(j + 1) * spatial_vecs, range.end);
        float a = s * gamma_of(weight, g * CPG + j);
        for (; v < end; v += range.stride) {
#if RUNNING
            STOREV(a * LOADV(dy, base + v), dx, base + v);
#else
            STOREV(a * LOADV(dy, base + v) + b * (LOADV(x, base + v) - mu) + c, dx, base + v);
#endif
        }
    }
#endif
}

// Channels-first, split over planes, step 1 of 3 (then gnb_finish_rows, gnb_dx_planes):
// work-group (s, k) reduces slice s of plane k and writes (db, ds) to
// partials[(k * S + s) * 2 ...].
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void gnb_plane_partials(__global const storage_t *dy, __global const storage_t *x, __global const float *mean,
                        __global float *partials, uint spatial_vecs) {
    __local float la[WG], lb[WG];
    uint s = get_group_id(0), slices = get_num_groups(0);
    uint k = get_group_id(1);
    uint lid = get_local_id(0);
    INDEX_T per = ((INDEX_T)spatial_vecs + slices - 1) / slices;
    INDEX_T lo = min((INDEX_T)s * per, (INDEX_T)spatial_vecs);
    INDEX_T hi = min(lo + per, (INDEX_T)spatial_vecs);
    float mu = mean[k / CPG];  // row n * G + c / CPG of plane n * C + c
    float2 total = reduce_pair(
        accumulate_plane(dy, x, (INDEX_T)k * spatial_vecs, item_range(lo, hi, lid, WG), mu), la, lb);
    if (lid == 0) {
        __global float *p = partials + ((size_t)k * slices + s) * 2;
        p[0] = total.x;
        p[1] = total.y;
    }
}

// Split paths, step 2 of 3: one work-item per row merges each of its planes'
// `slices` partials in order, writes the plane sums (db_k, s_r * ds_k) for the
// parameter gradients, and the per-plane coefficients of dx = a * dy + b * (x - mu) + c.
__kernel void gnb_finish_rows(__global const float *partials, uint rows, uint slices, __global const float *weight,
                              __global const float *mean, __global const float *invstd, __global float *sums,
                              __global float *coef_a, __global float *coef_b, __global float *coef_mean,
                              __global float *coef_c) {
    uint r = get_global_id(0);
    if (r >= rows) return;
    uint g = r % GROUPS;
    float s = invstd[r];
    float gdb = 0.0f, gds = 0.0f;
    for (uint j = 0; j < CPG; ++j) {
        size_t k = (size_t)r * CPG + j;
        float db = 0.0f, ds = 0.0f;
        for (uint p = 0; p < slices; ++p) {
            db += partials[(k * slices + p) * 2];
            ds += partials[(k * slices + p) * 2 + 1];
        }
        float gamma = gamma_of(weight, g * CPG + j);
        gdb += gamma * db;
        gds += gamma * ds;
#if WANT_SUMS
        sums[2 * k] = db;
        sums[2 * k + 1] = s * ds;
#endif
    }
#if WANT_DX
    float2 bc = row_coefficients(s, gdb, gds);
    float mu = mean[r];
    for (uint j = 0; j < CPG; ++j) {
        size_t k = (size_t)r * CPG + j;
        coef_a[k] = s * gamma_of(weight, g * CPG + j);
        coef_b[k] = bc.x;
        coef_mean[k] = mu;
        coef_c[k] = bc.y;
    }
#endif
}

// dx = a_k * dy + b_k * (x - mean_k) + c_k over channels-first input, k = n * C + c.
__kernel void gnb_dx_planes(__global const storage_t *dy, __global const storage_t *x, __global storage_t *dx,
                            uint planes, uint spatial_vecs, __global const float *coef_a, __global const float *coef_b,
                            __global const float *coef_mean, __global const float *coef_c) {
    INDEX_T total = (INDEX_T)planes * spatial_vecs;
    ItemRange r = item_range(0, total, get_global_id(0), get_global_size(0));
#if CHUNKED
    for (INDEX_T v = r.first; v < r.end;) {
        INDEX_T k = v / spatial_vecs;
        INDEX_T end = min((k + 1) * spatial_vecs, r.end);
        float a = coef_a[k], b = coef_b[k], mu = coef_mean[k], c = coef_c[k];
        for (; v < end; ++v) {
#if RUNNING
            STOREV(a * LOADV(dy, v), dx, v);
#else
            STOREV(a * LOADV(dy, v) + b * (LOADV(x, v) - mu) + c, dx, v);
#endif
        }
    }
#else
    for (INDEX_T v = r.first; v < r.end; v += r.stride) {
        INDEX_T k = v / spatial_vecs;
#if RUNNING
        STOREV(coef_a[k] * LOADV(dy, v), dx, v);
#else
        STOREV(coef_a[k] * LOADV(dy, v) + coef_b[k] * (LOADV(x, v) - coef_mean[k]) + coef_c[k], dx, v);
#endif
    }
#endif
}

// ---------------------------------------------------------------------------------
// Channels-last: sample n is a row-major (M, C) matrix; a work-item owns TILE adjacent
// column vectors of CVEC channels and walks the rows.

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

// Splits a column vector into its CVEC lanes.
inline void column_lanes(floatc v, float *lanes) {
#if CVEC == 4
    vstore4(v, 0, lanes);
#else
    lanes[0] = v;
#endif
}

// Channels-last, step 1 of 3 (then gnb_finish_rows, gnb_dx_columns): work-item
// (i, n, s) sums the TILE column vectors of item i of sample n over spatial slice s,
// each channel centred on its row's mean, and writes each channel's (db, ds) to
// partials[((n * C + c) * S + s) * 2 ...].
__kernel void gnb_column_partials(__global const storage_t *dy, __global const storage_t *x,
                                  __global const float *mean, __global float *partials) {
    uint first = get_global_id(0) * TILE;
    if (first >= COLUMN_VECS) return;
    uint width = min((uint)TILE, (uint)COLUMN_VECS - first);
    uint n = get_global_id(1);
    uint s = get_global_id(2), slices = get_global_size(2);
    uint per = (SPATIAL + slices - 1) / slices;
    uint lo = min(s * per, (uint)SPATIAL), hi = min(lo + per, (uint)SPATIAL);
    floatc mu[TILE], db[TILE], ds[TILE], cdb[TILE], cds[TILE], sb[TILE], ss[TILE];
    for (uint t = 0; t < width; ++t) {
        float lanes[CVEC];
        for (uint l = 0; l < CVEC; ++l) lanes[l] = mean[(size_t)n * GROUPS + ((first + t) * CVEC + l) / CPG];
        mu[t] = CLOAD(0, lanes);
        db[t] = 0.0f;
        ds[t] = 0.0f;
        cdb[t] = 0.0f;
        cds[t] = 0.0f;
    }
    INDEX_T sample = (INDEX_T)n * SPATIAL;
    for (uint m = lo; m < hi;) {
        uint rows = min((uint)BLOCK, hi - m);
        for (uint t = 0; t < width; ++t) {
            sb[t] = 0.0f;
            ss[t] = 0.0f;
        }
        for (uint i = 0; i < rows; ++i) {
            INDEX_T row = (sample + m + i) * COLUMN_VECS + first;
            for (uint t = 0; t < width; ++t) {
                floatc d = XLOAD(dy, row + t);
                sb[t] += d;
                ss[t] += d * (XLOAD(x, row + t) - mu[t]);
            }
        }
        for (uint t = 0; t < width; ++t) {
            KAHAN_ADD(floatc, db[t], cdb[t], sb[t]);
            KAHAN_ADD(floatc, ds[t], cds[t], ss[t]);
        }
        m += rows;
    }
    for (uint t = 0; t < width; ++t) {
        float lanes_db[CVEC], lanes_ds[CVEC];
        column_lanes(db[t], lanes_db);
        column_lanes(ds[t], lanes_ds);
        for (uint l = 0; l < CVEC; ++l) {
            uint c = (first + t) * CVEC + l;
            __global float *p = partials + (((size_t)n * CHANNELS + c) * slices + s) * 2;
            p[0] = lanes_db[l];
            p[1] = lanes_ds[l];
        }
    }
}

// dx = a_k * dy + b_k * (x - mean_k) + c_k over channels-last input, k = n * C + c,
// row by row with the coefficients loaded as vectors beside each row segment.
// `rows` is N * M.
__kernel void gnb_dx_columns(__global const storage_t *dy, __global const storage_t *x, __global storage_t *dx,
                             uint rows, __global const float *coef_a, __global const float *coef_b,
                             __global const float *coef_mean, __global const float *coef_c) {
    INDEX_T total = (INDEX_T)rows * COLUMN_VECS;
    ItemRange r = item_range(0, total, get_global_id(0), get_global_size(0));
#if CHUNKED
    // Row segment by row segment: the segment's coefficients are contiguous too.
    for (INDEX_T v = r.first; v < r.end;) {
        INDEX_T row = v / COLUMN_VECS;
        uint column = (uint)(v - row * COLUMN_VECS);
        uint len = (uint)(min((row + 1) * COLUMN_VECS, r.end) - v);
        size_t coefficients = (size_t)(row / SPATIAL) * COLUMN_VECS + column;
        for (uint j = 0; j < len; ++j) {
            size_t k = coefficients + j;
#if RUNNING
            XSTORE(CLOAD(k, coef_a) * XLOAD(dy, v + j), dx, v + j);
#else
            XSTORE(CLOAD(k, coef_a) * XLOAD(dy, v + j) + CLOAD(k, coef_b) * (XLOAD(x, v + j) - CLOAD(k, coef_mean)) +
                       CLOAD(k, coef_c),
                   dx, v + j);
#endif
        }
        v += len;
    }
#else
    for (INDEX_T v = r.first; v < r.end; v += r.stride) {
        INDEX_T row = v / COLUMN_VECS;
        size_t k = (size_t)(row / SPATIAL) * COLUMN_VECS + (size_t)(v - row * COLUMN_VECS);
#if RUNNING
        XSTORE(CLOAD(k, coef_a) * XLOAD(dy, v), dx, v);
#else
        XSTORE(CLOAD(k, coef_a) * XLOAD(dy, v) + CLOAD(k, coef_b) * (XLOAD(x, v) - CLOAD(k, coef_mean)) +
                   CLOAD(k, coef_c),
               dx, v);
#endif
    }
#endif
}

// ---------------------------------------------------------------------------------
// Shared steps.

// The parameter gradients, one work-item per channel, summing the plane sums over
// the batch in order: dbeta_c = sum_n db_k, dgamma_c = sum_n s_r ds_k.
__kernel void gnb_parameter_grads(__global const float *sums, uint batch, __global float *dweight,
                                  __global float *dbias) {
    uint c = get_global_id(0);
    if (c >= CHANNELS) return;
    float gw = 0.0f, gb = 0.0f;
    for (uint n = 0; n < batch; ++n) {
        size_t k = (size_t)n * CHANNELS + c;
        gb += sums[2 * k];
        gw += sums[2 * k + 1];
    }
#if WANT_DWEIGHT
    dweight[c] = gw;
#endif
#if WANT_DBIAS
    dbias[c] = gb;
#endif
}

// InstanceNorm with running statistics (GROUPS == CHANNELS): the per-(n, c) rows of
// mean and invstd the other kernels read, from the running statistics of channel c.
__kernel void gnb_running_rows(__global const float *running_mean, __global const float *running_var, uint planes,
                               float eps, __global float *mean, __global float *invstd) {
    uint k = get_global_id(0);
    if (k >= planes) return;
    uint c = k % CHANNELS;
    mean[k] = running_mean[c];
    invstd[k] = 1.0f / sqrt(running_var[c] + eps);
}
