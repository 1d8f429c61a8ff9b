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

// dy at vector i through the fused epilogue (EPILOGUE_GRAD of epilogue.cl), for the
// gradient sums below and every backward's dx: x's vector xv, the centre mu, the
// (scale, shift) float2 `pre` of x - mu to the activation's input, and the addend z
// (NULL: none). Without an activation it is dy's vector, and pre and z are not read.
#if ACTIVATION
#define GRADIENT_AT(dy, xv, i, mu, pre, z) \
    EPILOGUE_GRAD(floatv, LOADV(dy, i), xv, mu, (pre).x, (pre).y, ((z) ? LOADV(z, i) : (floatv)0.0f))
#define COLUMN_GRADIENT_AT(dy, xv, i, mu, pre_scale, pre_shift, z) \
    EPILOGUE_GRAD(floatc, LOADC(dy, i), xv, mu, pre_scale, pre_shift, ((z) ? LOADC(z, i) : (floatc)0.0f))
#else
#define GRADIENT_AT(dy, xv, i, mu, pre, z) LOADV(dy, i)
#define COLUMN_GRADIENT_AT(dy, xv, i, mu, pre_scale, pre_shift, z) LOADC(dy, i)
#endif

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

// The opening of a work-group reduction kernel (work-groups of WG, a power of two): the
// tree's local slots of type T and the work-item's index lid.
#define GROUP_REDUCTION(T, slots, lid) \
    __local T slots[WG];               \
    uint lid = get_local_id(0)

// The same for a split reduction's work-group (slice g of `groups`, segment `segment`):
// global (groups * WG, segments), as slice_range and store_moment_partial take them.
#define SPLIT_GROUP_REDUCTION(T, slots, lid, g, groups, segment)     \
    GROUP_REDUCTION(T, slots, lid);                                  \
    uint g = get_group_id(0), groups = get_num_groups(0);            \
    uint segment = get_group_id(1)

// Work-item 0's k, given to every work-item of the group through `shared` (3 floats of
// local memory): work-item 0 alone computes it (a per-channel finish that writes global
// memory), the others pass anything. All items of the group must call it (barrier).
inline float3 share_first_float3(float3 k, __local float *shared, uint lid) {
    if (lid == 0) {
        shared[0] = k.x;
        shared[1] = k.y;
        shared[2] = k.z;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    return (float3)(shared[0], shared[1], shared[2]);
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

// Writes m as part `part` of segment `segment`'s `parts` moment partials (the triple at
// (segment * parts + part) * 3) and, from part 0, the segment's pilot: the output of
// step 1 of every split moments reduction, for merge_moment_partials.
inline void store_moment_partial(__global float *partials, __global float *pilots, size_t segment, uint part,
                                 uint parts, Moments m, float pilot) {
    store_moments(partials + (segment * parts + part) * 3, m);
    if (part == 0) pilots[segment] = pilot;
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

#ifdef ITEMS
// ---------------------------------------------------------------------------------
// Row lanes (LayerNorm, RMSNorm): ITEMS work-items (a power of two) share a row, or a
// slice of one; a work-group holds local size / ITEMS lanes of them.

// The local scratch `name` of a row-lane kernel's reductions: `size` slots of type T, or
// none when a lane is one work-item (no tree to run).
#if ITEMS > 1
#define ROW_SCRATCH(T, name, size) __local T name[size]
#else
#define ROW_SCRATCH(T, name, size) __local T *name = 0
#endif

// The values of a lane's ITEMS work-items, merged by the tree `reduce` (slots: the lane's
// ITEMS entries of the group's scratch); every item gets the result, and the slots may
// be reused at once.
#if ITEMS > 1
#define REDUCE_ROW_LANE(reduce, value, slots, item) reduce((value), (slots), (item), ITEMS)
#else
#define REDUCE_ROW_LANE(reduce, value, slots, item) (value)
#endif

// This work-item's lane over the launch (local size / ITEMS lanes per work-group), its
// index `item` in the lane and the lane's first slot in the group's scratch.
inline uint row_lane(uint *item, uint *slot) {
    uint lid = get_local_id(0);
    *item = lid % ITEMS;
    *slot = lid - *item;
    return get_group_id(0) * (get_local_size(0) / ITEMS) + lid / ITEMS;
}

// A split row's work-group (g, row) of ITEMS work-items: the span of slice g =
// get_group_id(0) of get_num_groups(0) of the row's row_vecs vectors that work-item
// `item` takes.
inline Span row_slice_span(uint row_vecs, uint item) {
    ulong lo, hi;
    slice_bounds(row_vecs, get_group_id(0), get_num_groups(0), &lo, &hi);
    return item_span((uint)lo, (uint)hi, item, ITEMS);
}
#endif  // ITEMS

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

// Work-item `item` of `items`'s share (item_range) of slice `slice` of `slices` of the
// indices [base, base + total): the work-group of a split reduction.
inline ItemRange slice_range(INDEX_T base, ulong total, uint slice, uint slices, uint item, uint items) {
    ulong lo, hi;
    slice_bounds(total, slice, slices, &lo, &hi);
    return item_range(base + (INDEX_T)lo, base + (INDEX_T)hi, item, items);
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

#ifdef VEC
// ---------------------------------------------------------------------------------
// Contiguous vectors of VEC elements (NCHW rows, planes and runs): the per-work-item
// accumulation of a forward's moments and a backward's two sums. The chunked loops run
// to a constant trip count (VECTOR_BLOCK), which PoCL unrolls and vectorises; a loop to a
// run-time block length made Switchable Norm's half-storage moments pass 1.7x slower.
//
// VECTOR_BLOCK vectors are summed before each fold (fold_block's division and Kahan
// steps), a build option. Longer blocks fold less often but lose more to an outlier: once
// a block's sum of squares holds an outlier's square, every later value of the block
// rounds at its ulp. 16 (the default) keeps BatchNorm's pilot-outlier test (1e4 among
// N(0, 1), 2e-6 relative) passing; 64 missed it by up to 2.6x. Switchable Norm builds
// with 64, its block length before the shared library: normcl-bench --kernels,
// SwitchableNorm (8,64,56,56) NCHW f16, sn_moments_items: 16 vectors 0.93-0.96 ms, 64
// vectors 0.72 ms.
#ifndef VECTOR_BLOCK
#define VECTOR_BLOCK 16
#endif

#if CHUNKED
// Folds the contiguous vectors x[p ..< p + len) into running moments (acc, its Kahan
// carries, and the shift the next block is summed relative to; values relative to
// `pilot`). Called once per run, so moments can continue across the runs of a channel.
inline void accumulate_contiguous_moments(__global const storage_t *x, INDEX_T p, INDEX_T len, float pilot,
                                          Moments *acc, float2 *carry, float *shift) {
    INDEX_T k = 0;
    for (; k + VECTOR_BLOCK <= len; k += VECTOR_BLOCK) {
        // Two accumulators per sum: independent add chains run at load speed.
        floatv s0 = 0.0f, s1 = 0.0f, q0 = 0.0f, q1 = 0.0f;
        for (int j = 0; j < VECTOR_BLOCK; j += 2) {
            floatv d0 = (LOADV(x, p + k + j) - pilot) - *shift;
            floatv d1 = (LOADV(x, p + k + j + 1) - pilot) - *shift;
            s0 += d0;
            s1 += d1;
            q0 += d0 * d0;
            q1 += d1 * d1;
        }
        floatv s = s0 + s1, q = q0 + q1;
        *acc = fold_block(*acc, carry, *shift, HSUM(s), HSUM(q), (float)(VECTOR_BLOCK * VEC));
        *shift = next_shift(*shift, *acc);
    }
    if (k < len) {
        floatv s = 0.0f, q = 0.0f;
        for (INDEX_T j = k; j < len; ++j) {
            floatv d = (LOADV(x, p + j) - pilot) - *shift;
            s += d;
            q += d * d;
        }
        *acc = fold_block(*acc, carry, *shift, HSUM(s), HSUM(q), (float)((len - k) * VEC));
        *shift = next_shift(*shift, *acc);
    }
}

// Adds (sum dy, sum dy * (x - mu)) over the contiguous vectors [p ..< p + len) of dy and
// x to `sum`, block by block with Kahan's compensation in `carry` (a work-item may add
// millions of blocks; KAHAN_ADD keeps an infinite sum infinite). With a fused activation
// dy is first taken through it (EPILOGUE_GRAD, epilogue.cl): `pre` is the affine map
// (scale, shift) of x - mu to the activation's input, `z` the addend or NULL.
inline void accumulate_contiguous_gradient_sums(__global const storage_t *dy, __global const storage_t *x, INDEX_T p,
                                                INDEX_T len, float mu, float2 pre, __global const storage_t *z,
                                                float2 *sum, float2 *carry) {
    INDEX_T k = 0;
    for (; k + VECTOR_BLOCK <= len; k += VECTOR_BLOCK) {
        // Two accumulators per sum: independent add chains.
        floatv s0 = 0.0f, s1 = 0.0f, q0 = 0.0f, q1 = 0.0f;
        for (int j = 0; j < VECTOR_BLOCK; j += 2) {
            floatv x0 = LOADV(x, p + k + j), x1 = LOADV(x, p + k + j + 1);
            floatv g0 = GRADIENT_AT(dy, x0, p + k + j, mu, pre, z);
            floatv g1 = GRADIENT_AT(dy, x1, p + k + j + 1, mu, pre, z);
            s0 += g0;
            s1 += g1;
            q0 += g0 * (x0 - mu);
            q1 += g1 * (x1 - mu);
        }
        floatv s = s0 + s1, q = q0 + q1;
        KAHAN_ADD(float2, *sum, *carry, (float2)(HSUM(s), HSUM(q)));
    }
    if (k < len) {
        floatv s = 0.0f, q = 0.0f;
        for (INDEX_T j = k; j < len; ++j) {
            floatv xv = LOADV(x, p + j);
            floatv g = GRADIENT_AT(dy, xv, p + j, mu, pre, z);
            s += g;
            q += g * (xv - mu);
        }
        KAHAN_ADD(float2, *sum, *carry, (float2)(HSUM(s), HSUM(q)));
    }
}
#endif  // CHUNKED

// The interleaved (GPU) forms of the two accumulations, for any layout: vector v of the
// ItemRange r is loaded at `index` (an expression of v, the loop variable named by the
// caller), r's vectors taken in blocks of up to `block`.
//
// FOLD_STRIDED_MOMENTS: each block summed relative to `pilot`, shifted by `shift`, folded
// into the Moments acc with Chan's formula (fold_block, Kahan carries in the float2
// `carry`), then the shift moved to the running mean (next_shift).
#define FOLD_STRIDED_MOMENTS(x, r, v, index, block, pilot, acc, carry, shift)      \
    for (INDEX_T v = (r).first; v < (r).end;) {                                   \
        float s_ = 0.0f, ss_ = 0.0f, b_ = 0.0f;                                   \
        for (int k_ = 0; k_ < (block) && v < (r).end; ++k_, v += (r).stride) {    \
            floatv d_ = (LOADV(x, index) - (pilot)) - (shift);                    \
            s_ += HSUM(d_);                                                       \
            ss_ += HSUM(d_ * d_);                                                 \
            b_ += (float)VEC;                                                     \
        }                                                                         \
        (acc) = fold_block((acc), &(carry), (shift), s_, ss_, b_);                \
        (shift) = next_shift((shift), (acc));                                     \
    }

// ADD_STRIDED_GRADIENT_SUMS: (sum dy, sum dy * (x - mu)) of each block, Kahan-added to
// the float2 `sum` (carries in `carry`); dy through the epilogue as in
// accumulate_contiguous_gradient_sums (`pre`, `z`).
#define ADD_STRIDED_GRADIENT_SUMS(dy, x, r, v, index, block, mu, pre, z, sum, carry) \
    for (INDEX_T v = (r).first; v < (r).end;) {                                   \
        floatv s_ = 0.0f, q_ = 0.0f;                                              \
        for (int k_ = 0; k_ < (block) && v < (r).end; ++k_, v += (r).stride) {    \
            INDEX_T i_ = (index);                                                 \
            floatv x_ = LOADV(x, i_);                                             \
            floatv g_ = GRADIENT_AT(dy, x_, i_, mu, pre, z);                      \
            s_ += g_;                                                             \
            q_ += g_ * (x_ - (mu));                                               \
        }                                                                         \
        KAHAN_ADD(float2, sum, carry, (float2)(HSUM(s_), HSUM(q_)));              \
    }

// Moments of the vectors of r (vector indices relative to `base`) relative to `pilot`:
// blocks of VECTOR_BLOCK vectors summed shifted by the running mean (`shift`, kept
// finite), each folded with Chan's formula (fold_block, Kahan-compensated). GroupNorm's
// rows and planes, Switchable Norm's runs.
inline Moments accumulate_vector_moments(__global const storage_t *x, INDEX_T base, ItemRange r, float pilot) {
    Moments acc = {0.0f, 0.0f, 0.0f};
    float2 carry = (float2)(0.0f, 0.0f);  // Kahan carries of M2 and of the mean
    if (r.first >= r.end) return acc;
    float shift = FINITE_OR_ZERO(float, LOAD1(x, (base + r.first) * VEC) - pilot);
#if CHUNKED
    accumulate_contiguous_moments(x, base + r.first, r.end - r.first, pilot, &acc, &carry, &shift);
#else
    FOLD_STRIDED_MOMENTS(x, r, v, base + v, VECTOR_BLOCK, pilot, acc, carry, shift)
#endif
    return acc;
}

// (sum dy, sum dy * (x - mu)) over the vectors of r (relative to `base`), Kahan-
// compensated: the two sums of every backward over contiguous vectors (dy through the
// epilogue: `pre`, `z` as in accumulate_contiguous_gradient_sums).
inline float2 accumulate_vector_gradient_sums(__global const storage_t *dy, __global const storage_t *x, INDEX_T base,
                                              ItemRange r, float mu, float2 pre, __global const storage_t *z) {
    float2 sum = (float2)(0.0f, 0.0f), carry = (float2)(0.0f, 0.0f);
#if CHUNKED
    if (r.first < r.end)
        accumulate_contiguous_gradient_sums(dy, x, base + r.first, r.end - r.first, mu, pre, z, &sum, &carry);
#else
    ADD_STRIDED_GRADIENT_SUMS(dy, x, r, v, base + v, VECTOR_BLOCK, mu, pre, z, sum, carry)
#endif
    return sum;
}

#endif  // VEC

// ---------------------------------------------------------------------------------
// Columns of a row-major (rows, columns) matrix (channels-last input, (N, C) input): a
// work-item owns TILE adjacent column vectors of CVEC lanes and walks the rows, so each
// row segment it reads is contiguous (CPUs) while neighbouring work-items read
// neighbouring tiles (GPUs, TILE = 1, coalesce). No work-group reduction.

#ifdef CVEC
// floatc: a column vector of CVEC channels. CLOAD(i, p): vector i of a __global float32
// array of per-channel values (GLOADn, common.cl: one vector load, not PoCL's vloadn);
// CLOAD_LANES(lanes): a private array of CVEC floats as one vector; LOADC/STOREC: vector
// i of storage.
#if CVEC == 16
typedef float16 floatc;
#define CLOAD(i, p) GLOAD16(i, p)
#define CLOAD_LANES(lanes) vload16(0, (lanes))
#define CSTORE(v, i, p) vstore16((v), (i), (p))
#define LOADC(p, i) LOAD16(p, i)
#define STOREC(v, p, i) STORE16(v, p, i)
#elif CVEC == 8
typedef float8 floatc;
#define CLOAD(i, p) GLOAD8(i, p)
#define CLOAD_LANES(lanes) vload8(0, (lanes))
#define CSTORE(v, i, p) vstore8((v), (i), (p))
#define LOADC(p, i) LOAD8(p, i)
#define STOREC(v, p, i) STORE8(v, p, i)
#elif CVEC == 4
typedef float4 floatc;
#define CLOAD(i, p) GLOAD4(i, p)
#define CLOAD_LANES(lanes) vload4(0, (lanes))
#define CSTORE(v, i, p) vstore4((v), (i), (p))
#define LOADC(p, i) LOAD4(p, i)
#define STOREC(v, p, i) STORE4(v, p, i)
#else
typedef float floatc;
#define CLOAD(i, p) ((p)[(i)])
#define CLOAD_LANES(lanes) ((lanes)[0])
#define CSTORE(v, i, p) ((p)[(i)] = (v))
#define LOADC(p, i) LOAD1(p, i)
#define STOREC(v, p, i) STORE1(v, p, i)
#endif
#define STOREC_STREAM(v, p, i) STREAM_STORE(floatc, CVEC, STOREC, v, p, i)

// The tile of column vectors [first, first + width) of `column_vecs` that work-item
// `item` owns; false when it owns none (the launch is rounded up to whole work-groups).
inline bool column_tile(uint item, uint column_vecs, uint *first, uint *width) {
    *first = item * TILE;
    if (*first >= column_vecs) return false;
    *width = min((uint)TILE, column_vecs - *first);
    return true;
}

// column_tile, and the rows [lo, hi) of slice `slice` of `slices` of [0, rows): a
// work-item of a column kernel's split reduction.
inline bool column_tile_slice(uint item, uint column_vecs, uint rows, uint slice, uint slices, uint *first,
                              uint *width, uint *lo, uint *hi) {
    if (!column_tile(item, column_vecs, first, width)) return false;
    ulong a, b;
    slice_bounds(rows, slice, slices, &a, &b);
    *lo = (uint)a;
    *hi = (uint)b;
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

// The rows k ..< rows of a column tile's block, the body once per column vector t ..<
// width of each row. With the full TILE (every tile but a last narrower one) the count is
// a compile-time constant and the loop unrolled, so the compiler keeps the tile's private
// sums in registers; with a run-time count PoCL kept them in memory, loaded and stored
// per vector (bn_column_partials (8,128,28,28): 0.095 -> 0.067 ms, as fast as the apply
// pass that reads and writes twice the bytes).
#define FOR_EACH_TILE_BLOCK_VECTOR(width, rows, k, t, ...)                                 \
    do {                                                                                   \
        if ((width) == TILE) {                                                             \
            for (uint k = 0; k < (rows); ++k) {                                            \
                _Pragma("unroll") for (uint t = 0; t < TILE; ++t) { __VA_ARGS__; }        \
            }                                                                              \
        } else {                                                                           \
            for (uint k = 0; k < (rows); ++k)                                              \
                for (uint t = 0; t < (width); ++t) { __VA_ARGS__; }                        \
        }                                                                                  \
    } while (0)

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
        FOR_EACH_TILE_BLOCK_VECTOR(width, rows, k, t, {
            floatc d = (LOADC(x, (row0 + n + k) * column_vecs + first + t) - pilot[t]) - shift[t];
            s[t] += d;
            q[t] += d * d;
        });
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

// Affine parameters of channel c: gamma (1 when weight is NULL), beta (0 when bias is
// NULL). Checked at run time, not built in: they are read once per channel or per run
// of a channel, where the branch costs nothing, and every affine combination then
// shares one program (each program is ~0.5 s of compiling on PoCL, and each of its
// kernels ~0.2 s more at its first launch).
inline float gamma_of(__global const float *weight, uint c) { return weight ? weight[c] : 1.0f; }
inline float beta_of(__global const float *bias, uint c) { return bias ? bias[c] : 0.0f; }

#ifdef INDEX_T
// An index v held as (q, r) = (v / radix, v % radix). Walks advance it by carries, so
// a loop over indices needs one division per work-item, not one per element (a
// division by a run-time radix is tens of instructions; the sizes are arguments).
// GroupNorm's walks below and Switchable Norm's segments (SnSegment) use it.
typedef struct {
    INDEX_T q;
    INDEX_T r;
} QuotRem;

inline QuotRem quot_rem(INDEX_T v, INDEX_T radix) {
    QuotRem p;
    p.q = v / radix;
    p.r = v - p.q * radix;
    return p;
}

// p + step, both split by radix (step.r <= radix): no division, no overflow for any radix.
inline QuotRem quot_rem_add(QuotRem p, QuotRem step, INDEX_T radix) {
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
inline QuotRem quot_rem_next(QuotRem p, INDEX_T radix) {
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

// An elementwise pass over such a matrix of `rows` rows, each work-item taking its share
// of the launch: the body once per vector `at` (INDEX_T), with j (size_t) the index of
// its per-(sample, column) coefficients.
#define FOR_EACH_SAMPLE_COLUMN_VECTOR(rows, column_vecs, spatial, at, j, ...)                      \
    do {                                                                                          \
        ItemRange all_ = item_range(0, (INDEX_T)(rows) * (column_vecs), get_global_id(0), get_global_size(0)); \
        FOR_EACH_SAMPLE_COLUMN_RUN(all_, column_vecs, spatial, k_, v_, len_, {                   \
            for (uint i_ = 0; i_ < len_; ++i_) {                                                  \
                size_t j = k_ + i_;                                                               \
                INDEX_T at = v_ + i_;                                                             \
                __VA_ARGS__;                                                                      \
            }                                                                                     \
        });                                                                                       \
    } while (0)

#ifdef CVEC
// (sum dy, sum dy * (x - mu)) of column vectors first ..< first + width over rows
// row0 + [lo, hi), lane by lane: BLOCK-row block sums, Kahan-added (a backward pass's
// two sums per channel, centred on the mean so large-mean data does not cancel). With a
// fused activation dy is first taken through it (EPILOGUE_GRAD): the activation's input
// is (x - mu) * pre_scale + pre_shift (+ z, the addend, when z is not NULL), lane by lane;
// pre_scale and pre_shift are not read without an activation (pass NULL).
inline void accumulate_column_gradient_sums(__global const storage_t *dy, __global const storage_t *x, INDEX_T row0,
                                            uint column_vecs, uint first, uint width, uint lo, uint hi,
                                            const floatc *mu, const floatc *pre_scale, const floatc *pre_shift,
                                            __global const storage_t *z, floatc *sum_dy, floatc *sum_dyx) {
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
        FOR_EACH_TILE_BLOCK_VECTOR(width, rows, k, t, {
            INDEX_T at = (row0 + n + k) * column_vecs + first + t;
            floatc xv = LOADC(x, at);
            floatc g = COLUMN_GRADIENT_AT(dy, xv, at, mu[t], pre_scale[t], pre_shift[t], z);
            s[t] += g;
            q[t] += g * (xv - mu[t]);
        });
        for (uint t = 0; t < width; ++t) {
            KAHAN_ADD(floatc, sum_dy[t], carry_s[t], s[t]);
            KAHAN_ADD(floatc, sum_dyx[t], carry_q[t], q[t]);
        }
        n += rows;
    }
}
#endif  // CVEC
#endif  // INDEX_T

// ---- BatchNorm: what batch_norm.cl and batch_norm_backward.cl share ------------------
// The first part is generic (elementwise runs over NCHW planes and (rows, C) matrices,
// lanes of a column tile, a compensated partial sum): any op with per-channel
// coefficients or float2 partials could use it. The bn_ helpers are BatchNorm's own.

// Sums `parts` float2 partials, `stride` float2s apart from p, in order, with Kahan's
// compensation (KAHAN_ADD): for partials that are themselves sums of many values (a long
// row's slices, a channel's up to 1024 slices), where plain float32 addition would drift
// by ~sqrt(parts) ulps. Used by the BatchNorm and row-norm backward merges.
inline float2 kahan_sum_float2_partials(__global const float2 *p, uint parts, size_t stride) {
    float2 s = (float2)(0.0f, 0.0f), carry = (float2)(0.0f, 0.0f);
    for (uint i = 0; i < parts; ++i, p += stride) KAHAN_ADD(float2, s, carry, *p);
    return s;
}

// ---- SwitchableNorm: what switchable_norm.cl and switchable_norm_backward.cl share ----
// Written once here for the two Switchable Norm files. The walkers (SnSegment,
// sn_device_share) are generic and could serve any op whose sizes are kernel arguments;
// the rest (after HAS_IN/HAS_BN) is Switchable Norm's own. Names carry an sn_/Sn/SN_
// prefix so nothing here can clash with another op's file.

#ifdef INDEX_T
// This work-item's share of [0, total) over the whole launch (item_range).
inline ItemRange sn_device_share(INDEX_T total) { return item_range(0, total, get_global_id(0), get_global_size(0)); }

// The indices of an ItemRange (of a pass over periods of `period` indices, each a
// row-major matrix of `columns` column vectors; 1 when there are no columns) in segments
// [lo, hi) that stay within one period, with the period's index at.q and lo's
// column: NCHW runs (period L / VEC), NHWC samples (period L * C / CVEC), the runs of a
// sample (period C). Chunked: the work-item's contiguous range cut at period boundaries
// (a division per segment); interleaved: one index a segment, stepped without a division
// (QuotRem: the start split once, then carries).
typedef struct {
    INDEX_T lo, hi;
    QuotRem at;      // lo = at.q * period + at.r
    INDEX_T column;  // lo % columns
    INDEX_T end, stride, period, columns;
    QuotRem step, column_step;  // the stride split by period and by columns (interleaved)
} SnSegment;

inline void sn_segment_close(SnSegment *s) {
#if CHUNKED
    s->hi = min(s->lo + (s->period - s->at.r), s->end);
    s->column = s->lo % s->columns;
#else
    s->hi = s->lo + 1;
#endif
}

inline SnSegment sn_first_segment(ItemRange r, INDEX_T period, INDEX_T columns) {
    SnSegment s;
    s.lo = r.first;
    s.end = r.end;
    s.stride = r.stride;
    s.period = period;
    s.columns = columns;
    s.at = quot_rem(r.first, period);
    s.step = quot_rem(r.stride, period);
    s.column_step = quot_rem(r.stride, columns);
    s.column = r.first % columns;
    sn_segment_close(&s);
    return s;
}

inline void sn_next_segment(SnSegment *s) {
#if CHUNKED
    QuotRem length = {0, s->hi - s->lo};  // at most period - at.r
    s->at = quot_rem_add(s->at, length, s->period);
    s->lo = s->hi;
#else
    QuotRem column = {0, s->column};
    s->at = quot_rem_add(s->at, s->step, s->period);
    s->column = quot_rem_add(column, s->column_step, s->columns).r;
    s->lo += s->stride;
#endif
    sn_segment_close(s);
}

#define SN_FOR_EACH_SEGMENT(s, range, period, columns) \
    for (SnSegment s = sn_first_segment((range), (period), (columns)); s.lo < s.end; sn_next_segment(&s))

// Runs r = n * channels + c of an ItemRange with their sample n and channel c: one
// division per work-item (and per sample when chunked), none per run.
#define SN_FOR_EACH_RUN(r, n, c, range, channels)     \
    SN_FOR_EACH_SEGMENT(s_, (range), (channels), 1) \
    for (uint r = (uint)s_.lo, n = (uint)s_.at.q, c = (uint)s_.at.r; r < s_.hi; ++r, ++c)

#ifdef VEC
// The vectors of slice g of `slices` of NCHW run r (`spatial` elements, spatial / VEC
// vectors) that work-item `item` of `items` reads.
inline ItemRange sn_run_slice(uint r, uint g, uint slices, uint spatial, uint item, uint items) {
    INDEX_T run_vecs = spatial / VEC;
    return slice_range((INDEX_T)r * run_vecs, run_vecs, g, slices, item, items);
}

// An elementwise pass over NCHW runs of `spatial` elements: this work-item's segments s,
// each within run s.at.q (whose coefficients it loads once).
#define SN_FOR_EACH_RUN_SEGMENT(s, runs, spatial) \
    SN_FOR_EACH_SEGMENT(s, sn_device_share((INDEX_T)(runs) * ((spatial) / VEC)), (INDEX_T)((spatial) / VEC), 1)
#endif  // VEC

#ifdef CVEC
// A work-item of an NHWC slice kernel (global (column work-items, batch * slices)): its
// column tile [first, first + width) of column_vecs = channels / CVEC, sample n (a
// row-major (spatial, column_vecs) matrix from row row0 = n * spatial), slice g and the
// slice's rows [lo, hi) of the sample.
typedef struct {
    uint first, width, column_vecs, n, g, lo, hi;
    INDEX_T row0;
} SnColumnSlice;

// This work-item's SnColumnSlice; false when it owns no columns.
inline bool sn_column_slice(uint channels, uint spatial, uint slices, SnColumnSlice *s) {
    s->column_vecs = channels / CVEC;
    s->n = get_global_id(1) / slices;
    s->g = get_global_id(1) - s->n * slices;
    s->row0 = (INDEX_T)s->n * spatial;
    return column_tile_slice(get_global_id(0), s->column_vecs, spatial, s->g, slices, &s->first, &s->width, &s->lo,
                             &s->hi);
}

// An elementwise pass over NHWC input, (N, L, C) as rows of channels / CVEC column
// vectors: runs the body for each vector i of this work-item with j = n * (C / CVEC) +
// its column, the index of its (n, c) coefficient vector.
#define SN_FOR_EACH_COLUMN_VECTOR(i, j, batch, channels, spatial, ...)                                          \
    SN_FOR_EACH_SEGMENT(s_, sn_device_share((INDEX_T)(batch) * (spatial) * ((channels) / CVEC)),               \
                        (INDEX_T)(spatial) * ((channels) / CVEC), (channels) / CVEC) {                         \
        uint columns_ = (channels) / CVEC, base_ = (uint)s_.at.q * columns_, column_ = (uint)s_.column;     \
        for (INDEX_T i = s_.lo; i < s_.hi; ++i, column_ = column_ + 1 == columns_ ? 0 : column_ + 1) {         \
            uint j = base_ + column_;                                                                          \
            __VA_ARGS__;                                                                                       \
        }                                                                                                      \
    }
#endif  // CVEC
#endif  // INDEX_T

#if defined(HAS_IN) && defined(HAS_BN)
// The mixture: branches IN, LN, BN (those present), in the order of the logits.
#define SN_BRANCHES (HAS_IN + 1 + HAS_BN)

// Fills v[0 ..< SN_BRANCHES] with the branches' values in logit order. The expressions of
// absent branches must compile (they are dropped at compile time).
#define SN_BRANCH_VALUES(v, in, ln, bn)   \
    do {                                  \
        int k_ = 0;                       \
        if (HAS_IN) v[k_++] = (in);       \
        v[k_++] = (ln);                   \
        if (HAS_BN) v[k_++] = (bn);       \
    } while (0)

// sum_k w[k] * v[k], in branch order.
inline float sn_mixture(const float *w, const float *v) {
    float sum = 0.0f;
    for (int k = 0; k < SN_BRANCHES; ++k) sum += w[k] * v[k];
    return sum;
}

// Softmax of the branch logits into w.
inline void sn_softmax(__global const float *logits, float *w) {
    float top = logits[0];
    for (int k = 1; k < SN_BRANCHES; ++k) top = fmax(top, logits[k]);
    float sum = 0.0f;
    for (int k = 0; k < SN_BRANCHES; ++k) {
        w[k] = exp(logits[k] - top);
        sum += w[k];
    }
    for (int k = 0; k < SN_BRANCHES; ++k) w[k] /= sum;
}

// Divisor of the instance variance: L - 1 with the IN branch and the unbiased
// estimator (the kernel argument `unbiased`, 0 or 1), else L.
#define SN_IN_DIVISOR(spatial, unbiased) ((float)(spatial) - (float)(HAS_IN && (unbiased)))

// Channels per work-item of the BN set loops (statistics forward, adjoints backward):
// each reads N rows of this many contiguous floats.
#define SN_CHANNEL_TILE 8
#endif  // HAS_IN && HAS_BN

// BatchNorm's fused epilogue, y = f(BN(x) + z) (the ResNet block's relu(BN(x) + z)):
// the activation is epilogue.cl's ACTIVATION; the addend z (x's shape, layout and
// storage) is a build option, since it adds a load to every element:
//   HAS_ADDEND   1: the forward adds z before the activation and the backward writes
//                its gradient dz (where given); 0 (default): z and dz are not read.
#ifndef HAS_ADDEND
#define HAS_ADDEND 0
#endif

// v plus the addend's element or vector at i (loaded by LOAD, LOADV or LOADC), or v.
#if HAS_ADDEND
#define BN_PLUS_ADDEND(LOAD, v, z, i) ((v) + LOAD(z, i))
#else
#define BN_PLUS_ADDEND(LOAD, v, z, i) (v)
#endif

// Whether a BatchNorm kernel over `elements` values streams its stores (common.cl):
// the forward moves x, y (and z), the backward x, dy, dx (and z, dz).
#define BN_STREAMS(elements) STREAMS_OVER(elements, 2 + HAS_ADDEND)
#define BNB_STREAMS(elements) STREAMS_OVER(elements, 3 + 2 * HAS_ADDEND)

// Stores f(v + z) at i of y: the normalised vector v of type T (floatv or floatc) through
// the epilogue, by STORE (STOREV or STOREC) with the matching LOAD for z. Without an
// addend and activation it stores v: the unfused programs' code.
#define BN_STORE_EPILOGUE(T, LOAD, STORE, v, z, y, i)            \
    do {                                                         \
        T a_ = BN_PLUS_ADDEND(LOAD, v, z, i);                    \
        STORE(ACTIVATE(T, a_), y, i);                            \
    } while (0)

// Stores dx = dxv at i and, with an addend, dz = g (the gradient at the norm's output,
// which is z's gradient too), each only where its pointer is given. Without an addend
// the kernels run the dx loop only with dx given, and store it unconditionally.
#if HAS_ADDEND
#define BN_STORE_GRADIENTS(STORE, dxv, g, dx, dz, i) \
    do {                                             \
        if (dz) STORE(g, dz, i);                     \
        if (dx) STORE(dxv, dx, i);                   \
    } while (0)
#else
#define BN_STORE_GRADIENTS(STORE, dxv, g, dx, dz, i) STORE(dxv, dx, i)
#endif

// gamma[c] / sqrt(running_var[c] + eps): inference's scale, forward and backward alike.
inline float bn_running_scale(uint c, __global const float *running_var, __global const float *weight, float eps) {
    return (1.0f / sqrt(running_var[c] + eps)) * gamma_of(weight, c);
}

#ifdef INDEX_T
// Elementwise loops over a work-item's ItemRange r, as runs [lo, hi) of vector indices
// that share their per-channel values, so the body loads those once per run and its
// inner loop `for (j = lo; j < hi; ++j)` has no division. CHUNKED: whole pieces of
// planes / rows; interleaved (GPUs): runs of one vector.
//
// FOR_EACH_CHANNEL_SPAN: channel c's vectors (r over its (n, m) order, as
// channel_vector); FOR_EACH_NCHW_RUN: every vector of NCHW memory (r over all of them),
// c the run's channel; FOR_EACH_COLUMN_RUN: every vector of a row-major (rows,
// column_vecs) matrix, `column` (INDEX_T) the column vector of lo (lo + k has column + k).
#if CHUNKED
#define FOR_EACH_CHANNEL_SPAN(r, c, channels, plane_vecs, lo, hi, ...) \
    FOR_EACH_CHANNEL_RUN(r, c, channels, plane_vecs, lo, span_len_, { INDEX_T hi = lo + span_len_; __VA_ARGS__; })
#define FOR_EACH_NCHW_RUN(r, channels, plane_vecs, c, lo, hi, ...)         \
    for (INDEX_T lo = (r).first; lo < (r).end;) {                          \
        INDEX_T plane_ = lo / (plane_vecs);                                 \
        INDEX_T hi = min((plane_ + 1) * (plane_vecs), (r).end);             \
        uint c = (uint)(plane_ % (channels));                               \
        __VA_ARGS__;                                                        \
        lo = hi;                                                            \
    }
// A column run is the rest of a row: one division for the first, none after (at 3
// column vectors a row, bn_apply_columns (8,24,28,28) NHWC took 0.029 ms with a division
// per row, 0.017 ms without).
#define FOR_EACH_COLUMN_RUN(r, column_vecs, lo, hi, column, ...)                                   \
    for (INDEX_T lo = (r).first, column = (r).first % (column_vecs), hi; lo < (r).end; lo = hi, column = 0) { \
        hi = min(lo + ((column_vecs) - column), (r).end);                                          \
        __VA_ARGS__;                                                                               \
    }
#else
#define FOR_EACH_CHANNEL_SPAN(r, c, channels, plane_vecs, lo, hi, ...)      \
    for (INDEX_T v_ = (r).first; v_ < (r).end; v_ += (r).stride) {         \
        INDEX_T lo = channel_vector(v_, c, channels, plane_vecs), hi = lo + 1; \
        __VA_ARGS__;                                                        \
    }
#define FOR_EACH_NCHW_RUN(r, channels, plane_vecs, c, lo, hi, ...)         \
    for (INDEX_T lo = (r).first; lo < (r).end; lo += (r).stride) {         \
        INDEX_T hi = lo + 1;                                                \
        uint c = (uint)((lo / (plane_vecs)) % (channels));                  \
        __VA_ARGS__;                                                        \
    }
#define FOR_EACH_COLUMN_RUN(r, column_vecs, lo, hi, column, ...)            \
    for (INDEX_T lo = (r).first; lo < (r).end; lo += (r).stride) {         \
        INDEX_T hi = lo + 1;                                                \
        INDEX_T column = lo % (column_vecs);                                \
        __VA_ARGS__;                                                        \
    }
#endif

#ifdef CVEC
// Lane i of column vector v, as an lvalue (v a variable or array element).
#define COLUMN_LANE(v, i) (((float *)&(v))[i])

// Lane i of a column vector's moments (mean, M2, over `count` values, as
// accumulate_column_moments fills them).
inline Moments lane_moments(float count, floatc mean, floatc m2, uint i) {
    Moments m = {count, COLUMN_LANE(mean, i), COLUMN_LANE(m2, i)};
    return m;
}

// The body once per channel of a column tile [first, first + width): t the column
// vector, i its lane, c = (first + t) * CVEC + i the channel.
#define FOR_EACH_TILE_LANE(first, width, t, i, c, ...)   \
    for (uint t = 0; t < (width); ++t)                   \
        for (uint i = 0; i < CVEC; ++i) {                \
            uint c = ((first) + t) * CVEC + i;           \
            __VA_ARGS__;                                 \
        }

// The body once per vector of a column tile, row by row over rows [0, rows): `at` the
// vector's index, t its place in the tile (unrolled for a full tile, see
// FOR_EACH_TILE_BLOCK_VECTOR).
#define FOR_EACH_TILE_ROW(rows, column_vecs, first, width, at, t, ...)                 \
    FOR_EACH_TILE_BLOCK_VECTOR(width, rows, n_, t, {                                   \
        INDEX_T at = (INDEX_T)n_ * (column_vecs) + (first) + t;                        \
        __VA_ARGS__;                                                                   \
    })
#endif  // CVEC
#endif  // INDEX_T
