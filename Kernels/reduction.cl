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

// ---- GroupNorm: division-free walks of planes and rows, parameters, column gradient sums.
// (Generic: any op whose elementwise pass needs the plane, channel or sample of each
// index, or whose backward sums dy and dy * (x - mean) down columns, can use them.)

// Affine parameters of channel c: gamma (1 without -D HAS_WEIGHT=1), beta (0 without
// -D HAS_BIAS=1).
#ifdef HAS_WEIGHT
inline float gamma_of(__global const float *weight, uint c) { return HAS_WEIGHT ? weight[c] : 1.0f; }
#endif
#ifdef HAS_BIAS
inline float beta_of(__global const float *bias, uint c) { return HAS_BIAS ? bias[c] : 0.0f; }
#endif

#ifdef INDEX_T
// An index v held as (q, r) = (v / radix, v % radix). Walks advance it by carries, so
// a loop over indices needs one division per work-item, not one per element (a
// division by a run-time radix is tens of instructions; the sizes are arguments).
typedef struct {
    INDEX_T q;
    uint r;
} QuotRem;

inline QuotRem quot_rem(INDEX_T v, uint radix) {
    QuotRem p;
    p.q = v / radix;
    p.r = (uint)(v - p.q * radix);
    return p;
}

// p + step, both split by radix (step.r <= radix); no overflow for any radix.
inline QuotRem quot_rem_add(QuotRem p, QuotRem step, uint radix) {
    p.q += step.q;
    if (p.r >= radix - step.r) {
        p.r -= radix - step.r;
        p.q += 1;
    } else {
        p.r += step.r;
    }
    return p;
}

// p + 1.
inline QuotRem quot_rem_next(QuotRem p, uint radix) {
    if (++p.r == radix) {
        p.r = 0;
        p.q += 1;
    }
    return p;
}

// Walks work-item range range_ (an ItemRange) of a flat index space cut into planes of
// `radix` indices, without division per element. The body sees `plane` (INDEX_T, the
// plane of v), `v` (INDEX_T) and `len` (uint): indices v ..< v + len lie in that plane.
// Chunked: one run per plane the range touches; interleaved: every index a run of 1.
#if CHUNKED
#define FOR_EACH_PLANE_RUN(range_, radix, plane, v, len, ...)                           \
    do {                                                                                \
        QuotRem at_ = quot_rem((range_).first, (radix));                                \
        for (INDEX_T v = (range_).first; v < (range_).end;) {                           \
            INDEX_T plane = at_.q;                                                      \
            uint len = (uint)min((INDEX_T)((radix) - at_.r), (range_).end - v);         \
            __VA_ARGS__;                                                                \
            v += len;                                                                   \
            at_.q += 1;                                                                 \
            at_.r = 0;                                                                  \
        }                                                                               \
    } while (0)
#else
#define FOR_EACH_PLANE_RUN(range_, radix, plane, v, len, ...)                           \
    do {                                                                                \
        QuotRem at_ = quot_rem((range_).first, (radix));                                \
        QuotRem step_ = quot_rem((range_).stride, (radix));                             \
        for (INDEX_T v = (range_).first; v < (range_).end; v += (range_).stride) {      \
            INDEX_T plane = at_.q;                                                      \
            const uint len = 1;                                                         \
            __VA_ARGS__;                                                                \
            at_ = quot_rem_add(at_, step_, (radix));                                    \
        }                                                                               \
    } while (0)
#endif

// The same over a row-major (samples * spatial, column_vecs) matrix (channels-last
// input: sample n's M spatial rows of C channels), for per-(sample, column)
// coefficients: the body sees `k` (size_t, n * column_vecs + column of v), `v` and `len`
// (indices v ..< v + len lie in one row, with coefficients k ..< k + len).
#if CHUNKED
#define FOR_EACH_SAMPLE_COLUMN_RUN(range_, column_vecs, spatial, k, v, len, ...)        \
    do {                                                                                \
        QuotRem at_ = quot_rem((range_).first, (column_vecs));                          \
        QuotRem row_ = quot_rem(at_.q, (spatial));                                      \
        for (INDEX_T v = (range_).first; v < (range_).end;) {                           \
            size_t k = (size_t)row_.q * (column_vecs) + at_.r;                          \
            uint len = (uint)min((INDEX_T)((column_vecs) - at_.r), (range_).end - v);   \
            __VA_ARGS__;                                                                \
            v += len;                                                                   \
            at_.r = 0;                                                                  \
            row_ = quot_rem_next(row_, (spatial));                                      \
        }                                                                               \
    } while (0)
#else
#define FOR_EACH_SAMPLE_COLUMN_RUN(range_, column_vecs, spatial, k, v, len, ...)        \
    do {                                                                                \
        QuotRem at_ = quot_rem((range_).first, (column_vecs));                          \
        QuotRem row_ = quot_rem(at_.q, (spatial));                                      \
        QuotRem step_ = quot_rem((range_).stride, (column_vecs));                       \
        QuotRem row_step_ = quot_rem(step_.q, (spatial));                               \
        for (INDEX_T v = (range_).first; v < (range_).end; v += (range_).stride) {      \
            size_t k = (size_t)row_.q * (column_vecs) + at_.r;                          \
            const uint len = 1;                                                         \
            __VA_ARGS__;                                                                \
            at_ = quot_rem_add(at_, step_, (column_vecs));                              \
            row_ = quot_rem_add(row_, row_step_, (spatial));                            \
            if (at_.r < step_.r) row_ = quot_rem_next(row_, (spatial));                 \
        }                                                                               \
    } while (0)
#endif

#ifdef CVEC
// (sum dy, sum dy * (x - mu)) of column vectors first ..< first + width over rows
// row0 + [lo, hi), lane by lane: BLOCK-row block sums, Kahan-added (a backward pass's
// two sums per channel, centred on the mean so large-mean data does not cancel).
inline void accumulate_column_gradient_sums(__global const storage_t *dy, __global const storage_t *x, INDEX_T row0,
                                            uint column_vecs, uint first, uint width, uint lo, uint hi,
                                            const floatc *mu, floatc *sum_dy, floatc *sum_dyx) {
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
            INDEX_T row = (row0 + n + k) * column_vecs + first;
            for (uint t = 0; t < width; ++t) {
                floatc g = LOADC(dy, row + t);
                s[t] += g;
                q[t] += g * (LOADC(x, row + t) - mu[t]);
            }
        }
        for (uint t = 0; t < width; ++t) {
            KAHAN_ADD(floatc, sum_dy[t], carry_s[t], s[t]);
            KAHAN_ADD(floatc, sum_dyx[t], carry_q[t], q[t]);
        }
        n += rows;
    }
}
#endif  // CVEC
#endif  // INDEX_T

// ---- row norms (LayerNorm/RMSNorm backward): Kahan-compensated partial sums.
// sum_float2_partials with Kahan's compensation (KAHAN_ADD): for partials that are
// themselves sums of many values (a long row's slices), where plain float32 addition of
// thousands of partials would drift by ~sqrt(parts) ulps. Same order, same NaN/Inf rule
// as KAHAN_ADD. (BatchNorm backward's per-channel merge of group partials is the same loop.)
inline float2 kahan_sum_float2_partials(__global const float2 *p, uint parts, size_t stride) {
    float2 s = (float2)(0.0f, 0.0f), carry = (float2)(0.0f, 0.0f);
    for (uint i = 0; i < parts; ++i, p += stride) KAHAN_ADD(float2, s, carry, *p);
    return s;
}
