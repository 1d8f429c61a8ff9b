// The reduction machinery every op shares, included after Kernels/common.cl and before
// the op's own file (ProgramCache prepends both). An op's file holds only its own
// arithmetic: what it accumulates, how it normalises, what its backward combines.
//
// Sizes are kernel arguments, passed down to these functions: a program is specialised
// only on what changes its code (storage type, layout, affine flags, vector widths,
// work-group size, access pattern), so one program serves every shape.
//
// Build options read here: TILE (column vectors per work-item, a tuning parameter),
// CVEC (4 or 1: channels per load along a row-major matrix's rows), CHUNKED, INDEX_T.

// Values summed per block before the block folds into the running moments (Chan's
// formula, common.cl): bounds the cancellation of ss - s*s/b.
#define BLOCK 16

// ---------------------------------------------------------------------------------
// Work-group tree reduction: one implementation for every reduced type.
//
// DEFINE_TREE_REDUCE(name, T, merge) defines
//   T name(T value, __local T *slots, uint item, uint items)
// Every one of `items` work-items (a power of two) puts its value in slots[item]; pairs
// merge at halving widths, always (i, i + width), so the result depends only on the
// inputs and `items`, never on timing: every run gives the same bits. Every item gets
// the result. `slots` may point into a larger local array (several rows per group); the
// trailing barrier lets a kernel reuse the slots at once. All items of the group must
// call it.
#define DEFINE_TREE_REDUCE(name, T, merge)                                         \
    inline T name(T value, __local T *slots, uint item, uint items) {              \
        slots[item] = value;                                                       \
        barrier(CLK_LOCAL_MEM_FENCE);                                              \
        for (uint width = items / 2; width > 0; width >>= 1) {                     \
            if (item < width) slots[item] = merge(slots[item], slots[item + width]); \
            barrier(CLK_LOCAL_MEM_FENCE);                                          \
        }                                                                          \
        T result = slots[0];                                                       \
        barrier(CLK_LOCAL_MEM_FENCE);                                              \
        return result;                                                             \
    }

inline float add_float(float a, float b) { return a + b; }
inline float2 add_float2(float2 a, float2 b) { return a + b; }

// Moments with Chan's merge (mean and variance); float2 sums (backward's two sums).
DEFINE_TREE_REDUCE(reduce_moments, Moments, moments_merge)
DEFINE_TREE_REDUCE(reduce_float2, float2, add_float2)
DEFINE_TREE_REDUCE(reduce_float, float, add_float)

// ---------------------------------------------------------------------------------
// Partials: a split reduction writes one partial per (segment, slice); one work-item per
// segment then merges its slices in slice order (deterministic, bit-identical run to run).

// Writes m as the (count, mean, M2) triple at p.
inline void store_moments(__global float *p, Moments m) {
    p[0] = m.count;
    p[1] = m.mean;
    p[2] = m.m2;
}

// Merges `parts` (count, mean, M2) triples, `stride` floats apart from p, in order.
inline Moments merge_moment_partials(__global const float *p, uint parts, size_t stride) {
    Moments m = {0.0f, 0.0f, 0.0f};
    for (uint i = 0; i < parts; ++i, p += stride) {
        Moments part = {p[0], p[1], p[2]};
        m = moments_merge(m, part);
    }
    return m;
}

// Sums `parts` float2 partials, `stride` float2s apart from p, in order.
inline float2 sum_float2_partials(__global const float2 *p, uint parts, size_t stride) {
    float2 s = (float2)(0.0f, 0.0f);
    for (uint i = 0; i < parts; ++i, p += stride) s += *p;
    return s;
}

// The slice [lo, hi) of [0, total) that slice `slice` of `slices` covers (64-bit: total +
// slices - 1 and slice * per can pass 2^32 for huge counts).
inline void slice_bounds(ulong total, uint slice, uint slices, ulong *lo, ulong *hi) {
    ulong per = (total + slices - 1) / slices;
    *lo = min((ulong)slice * per, total);
    *hi = min(*lo + per, total);
}

#ifdef INDEX_T
// ---------------------------------------------------------------------------------
// Channel runs of NCHW memory. Element vector (n, c, m) is at (n * channels + c) *
// plane_vecs + m; a channel's vectors in (n, m) order are its reduction.

// Index (in vectors) of the v-th vector of channel c in (n, m) order.
inline INDEX_T channel_vector(INDEX_T v, uint c, uint channels, INDEX_T plane_vecs) {
    INDEX_T n = v / plane_vecs;
    INDEX_T m = v - n * plane_vecs;
    return (n * channels + c) * plane_vecs + m;
}

#if CHUNKED
// A chunked work-item's vectors of channel c come as contiguous runs, one per (n, c)
// plane it touches; the body sees each run as a start index p and a length len, with no
// index division inside the run (CPU compilers vectorise those loops).
#define FOR_EACH_CHANNEL_RUN(r, c, channels, plane_vecs, p, len, ...)              \
    for (INDEX_T v_ = (r).first; v_ < (r).end;) {                                 \
        INDEX_T n_ = v_ / (plane_vecs);                                           \
        INDEX_T m_ = v_ - n_ * (plane_vecs);                                      \
        INDEX_T len = min((INDEX_T)((plane_vecs) - m_), (r).end - v_);            \
        INDEX_T p = (n_ * (channels) + (c)) * (plane_vecs) + m_;                  \
        __VA_ARGS__;                                                              \
        v_ += len;                                                                \
    }
#endif

// ---------------------------------------------------------------------------------
// Columns of a row-major (rows, columns) matrix (channels-last input, (N, C) input): a
// work-item owns TILE adjacent column vectors of CVEC lanes and walks the rows, so each
// row segment it reads is contiguous (CPUs) while neighbouring work-items read
// neighbouring tiles (GPUs, TILE = 1, coalesce). No work-group reduction.

#ifdef CVEC
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

// Splits a column vector into its CVEC lanes.
inline void column_lanes(floatc v, float *lanes) {
#if CVEC == 4
    vstore4(v, 0, lanes);
#else
    lanes[0] = v;
#endif
}

// The tile of column vectors [first, first + width) of `column_vecs` that work-item
// `item` owns; false when it owns none (the launch is rounded up to whole work-groups).
inline bool column_tile(uint item, uint column_vecs, uint *first, uint *width) {
    *first = item * TILE;
    if (*first >= column_vecs) return false;
    *width = min((uint)TILE, column_vecs - *first);
    return true;
}

// Column vector k's pilot over rows [0, rows) starting at row `row0`: the median of its
// values in the first row, at 1/4, 1/2, 3/4 and the last (0 if Inf or NaN), lane by
// lane, as a channel's pilot is taken along the channel.
inline floatc column_pilot(__global const storage_t *x, INDEX_T row0, uint rows, uint column_vecs, uint k) {
    INDEX_T last = rows - 1;
#define COLUMN_AT(r) LOADC(x, (row0 + (r)) * column_vecs + k)
    floatc a = COLUMN_AT(0), b = COLUMN_AT(last / 4), c = COLUMN_AT(last / 2);
    floatc d = COLUMN_AT(last - last / 4), e = COLUMN_AT(last);
#undef COLUMN_AT
    return FINITE_OR_ZERO(floatc, MEDIAN5(a, b, c, d, e));
}

// Moments of column vectors first ..< first + width over rows row0 + [lo, hi), relative
// to `pilot`, lane by lane: block-shifted sums folded with Chan's formula, M2 and mean
// Kahan-compensated (FOLD_BLOCK_LANES; all lanes share the counts). Fills mean and m2;
// returns the count.
inline float accumulate_column_moments(__global const storage_t *x, INDEX_T row0, uint column_vecs, uint first,
                                       uint width, uint lo, uint hi, const floatc *pilot, floatc *mean, floatc *m2) {
    floatc shift[TILE], s[TILE], q[TILE], carry[TILE], mean_carry[TILE];
    for (uint t = 0; t < width; ++t) {
        shift[t] = 0.0f;
        mean[t] = 0.0f;
        m2[t] = 0.0f;
        carry[t] = 0.0f;
        mean_carry[t] = 0.0f;
    }
    float count = 0.0f;
    for (uint n = lo; n < hi;) {
        uint rows = min((uint)BLOCK, hi - n);
        for (uint t = 0; t < width; ++t) { s[t] = 0.0f; q[t] = 0.0f; }
        for (uint k = 0; k < rows; ++k) {
            INDEX_T row = (row0 + n + k) * column_vecs + first;
            for (uint t = 0; t < width; ++t) {
                floatc d = (LOADC(x, row + t) - pilot[t]) - shift[t];
                s[t] += d;
                q[t] += d * d;
            }
        }
        float b = (float)rows, total = count + b;
        for (uint t = 0; t < width; ++t)
            FOLD_BLOCK_LANES(floatc, s[t], q[t], b, count, shift[t], mean[t], m2[t], carry[t], mean_carry[t]);
        count = total;
        n += rows;
    }
    return count;
}
#endif  // CVEC
#endif  // INDEX_T

// ---- BatchNorm: what batch_norm.cl and batch_norm_backward.cl share ------------------
// The first part is generic (elementwise runs over NCHW planes and (rows, C) matrices,
// lanes of a column tile, a compensated partial sum): any op with per-channel
// coefficients or float2 partials could use it. The bn_ helpers are BatchNorm's own.

// Sums `parts` float2 partials, `stride` float2s apart from p, in order, with Kahan's
// compensation (KAHAN_ADD): a split backward merges up to 1024 slices per channel.
inline float2 kahan_sum_float2_partials(__global const float2 *p, uint parts, size_t stride) {
    float2 s = (float2)(0.0f, 0.0f), carry = (float2)(0.0f, 0.0f);
    for (uint i = 0; i < parts; ++i, p += stride) KAHAN_ADD(float2, s, carry, *p);
    return s;
}

// Affine parameters of channel c: gamma (1 without HAS_WEIGHT), beta (0 without HAS_BIAS).
inline float bn_gamma(__global const float *weight, uint c) {
#if HAS_WEIGHT
    return weight[c];
#else
    return 1.0f;
#endif
}

inline float bn_beta(__global const float *bias, uint c) {
#if HAS_BIAS
    return bias[c];
#else
    return 0.0f;
#endif
}

// gamma[c] / sqrt(running_var[c] + eps): inference's scale, forward and backward alike.
inline float bn_running_scale(uint c, __global const float *running_var, __global const float *weight, float eps) {
    float s = 1.0f / sqrt(running_var[c] + eps);
#if HAS_WEIGHT
    s *= weight[c];
#endif
    return s;
}

#ifdef INDEX_T
// Elementwise loops over a work-item's ItemRange r, as runs [lo, hi) of vector indices
// that share their per-channel values, so the body loads those once per run and its
// inner loop `for (j = lo; j < hi; ++j)` has no division. CHUNKED: whole pieces of
// planes / rows; interleaved (GPUs): runs of one vector.
//
// FOR_EACH_CHANNEL_SPAN: channel c's vectors (r over its (n, m) order, as
// channel_vector); FOR_EACH_PLANE_RUN: every vector of NCHW memory (r over all of them),
// c the run's channel; FOR_EACH_COLUMN_RUN: every vector of a row-major (rows,
// column_vecs) matrix, `column` the column vector of lo (lo + k has column + k).
#if CHUNKED
#define FOR_EACH_CHANNEL_SPAN(r, c, channels, plane_vecs, lo, hi, ...) \
    FOR_EACH_CHANNEL_RUN(r, c, channels, plane_vecs, lo, span_len_, { INDEX_T hi = lo + span_len_; __VA_ARGS__; })
#define FOR_EACH_PLANE_RUN(r, channels, plane_vecs, c, lo, hi, ...)         \
    for (INDEX_T lo = (r).first; lo < (r).end;) {                          \
        INDEX_T plane_ = lo / (plane_vecs);                                 \
        INDEX_T hi = min((plane_ + 1) * (plane_vecs), (r).end);             \
        uint c = (uint)(plane_ % (channels));                               \
        __VA_ARGS__;                                                        \
        lo = hi;                                                            \
    }
#define FOR_EACH_COLUMN_RUN(r, column_vecs, lo, hi, column, ...)            \
    for (INDEX_T lo = (r).first; lo < (r).end;) {                          \
        INDEX_T row_ = lo / (column_vecs);                                  \
        INDEX_T hi = min((row_ + 1) * (column_vecs), (r).end);              \
        uint column = (uint)(lo - row_ * (column_vecs));                    \
        __VA_ARGS__;                                                        \
        lo = hi;                                                            \
    }
#else
#define FOR_EACH_CHANNEL_SPAN(r, c, channels, plane_vecs, lo, hi, ...)      \
    for (INDEX_T v_ = (r).first; v_ < (r).end; v_ += (r).stride) {         \
        INDEX_T lo = channel_vector(v_, c, channels, plane_vecs), hi = lo + 1; \
        __VA_ARGS__;                                                        \
    }
#define FOR_EACH_PLANE_RUN(r, channels, plane_vecs, c, lo, hi, ...)         \
    for (INDEX_T lo = (r).first; lo < (r).end; lo += (r).stride) {         \
        INDEX_T hi = lo + 1;                                                \
        uint c = (uint)((lo / (plane_vecs)) % (channels));                  \
        __VA_ARGS__;                                                        \
    }
#define FOR_EACH_COLUMN_RUN(r, column_vecs, lo, hi, column, ...)            \
    for (INDEX_T lo = (r).first; lo < (r).end; lo += (r).stride) {         \
        INDEX_T hi = lo + 1;                                                \
        uint column = (uint)(lo % (column_vecs));                           \
        __VA_ARGS__;                                                        \
    }
#endif

#ifdef CVEC
// Lane i of column vector v, as an lvalue (v a variable or array element).
#define COLUMN_LANE(v, i) (((float *)&(v))[i])

// The body once per channel of a column tile [first, first + width): t the column
// vector, i its lane, c = (first + t) * CVEC + i the channel.
#define FOR_EACH_TILE_LANE(first, width, t, i, c, ...)   \
    for (uint t = 0; t < (width); ++t)                   \
        for (uint i = 0; i < CVEC; ++i) {                \
            uint c = ((first) + t) * CVEC + i;           \
            __VA_ARGS__;                                 \
        }

// The body once per vector of a column tile, row by row over rows [0, rows): `at` the
// vector's index, t its place in the tile.
#define FOR_EACH_TILE_ROW(rows, column_vecs, first, width, at, t, ...)    \
    for (uint n_ = 0; n_ < (rows); ++n_) {                                \
        INDEX_T row_ = (INDEX_T)n_ * (column_vecs) + (first);             \
        for (uint t = 0; t < (width); ++t) {                              \
            INDEX_T at = row_ + t;                                        \
            __VA_ARGS__;                                                  \
        }                                                                 \
    }
#endif  // CVEC
#endif  // INDEX_T
