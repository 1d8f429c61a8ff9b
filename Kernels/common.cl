// Included before every kernel file (OpenCLRuntime.program prepends it): element
// storage, the one-pass statistics every op shares, and the helpers of every kernel
// file: the elementwise vector type, work-item index splits, Kahan summation.
//
// Build options:
//   STORAGE_HALF   1: tensors hold 16-bit floats, loaded and stored with the core
//                  vload_half/vstore_half (no cl_khr_fp16 needed; stores round to
//                  nearest even); 0 (default): float32. Arithmetic is float32 either way.

// Float32 vectors aligned like a float (see GLOAD below): what float32 storage and
// parameters are loaded and stored through.
typedef float4 float4_unaligned __attribute__((aligned(4)));
typedef float8 float8_unaligned __attribute__((aligned(4)));
typedef float16 float16_unaligned __attribute__((aligned(4)));
#ifndef STORAGE_HALF
#define STORAGE_HALF 0
#endif

#if STORAGE_HALF
typedef half storage_t;
#define LOAD1(p, i) vload_half((i), (p))
#define LOAD4(p, i) vload_half4((i), (p))
#define STORE1(v, p, i) vstore_half((v), (i), (p))
#define STORE4(v, p, i) vstore_half4((v), (i), (p))
#define LOAD8(p, i) vload_half8((i), (p))
#define STORE8(v, p, i) vstore_half8((v), (i), (p))
#define LOAD16(p, i) vload_half16((i), (p))
#define STORE16(v, p, i) vstore_half16((v), (i), (p))
#else
typedef float storage_t;
#define LOAD1(p, i) ((p)[i])
#define LOAD4(p, i) (((__global const float4 *)(p))[i])
#define STORE1(v, p, i) ((p)[i] = (v))
#define STORE4(v, p, i) (((__global float4 *)(p))[i] = (v))
// Through float8/float16 types aligned like a float, not float8/float16 pointers (a
// caller's buffer at an offset may be aligned to 16 bytes only, and a wider vector
// access assumes its own size) and not vload8/16, which PoCL builds from scalar loads:
// LayerNorm with a residual (1576, 768), 0.57 -> 0.40 ms (pyopencl, same bits).
#define LOAD8(p, i) (((__global const float8_unaligned *)(p))[i])
#define STORE8(v, p, i) (((__global float8_unaligned *)(p))[i] = (v))
#define LOAD16(p, i) (((__global const float16_unaligned *)(p))[i])
#define STORE16(v, p, i) (((__global float16_unaligned *)(p))[i] = (v))
#endif

// Float32 vectors of __global memory at any float's alignment: GLOAD4/8/16(i, p) read
// what vload4/8/16(i, p) read, one instruction each. PoCL 3.1 (LLVM 15) builds vloadN
// from scalar loads and leaves it to LLVM to merge them again; in a loop that subtracts
// two vloaded vectors (the column kernels' x - pilot[c], each coefficient vloaded beside
// each vector of x) its SLP vectorizer merged both only into 8-byte pieces (vmovsd) and
// subtracted 2 lanes at a time: ~60 instructions a float16 instead of ~8.
// bn_apply_columns (8,128,28,28) NHWC on PoCL, coefficients loaded with vload16: 0.227 ms;
// through these: 0.084 ms (NCHW bn_inference_apply 0.069 ms, the same bytes). A load
// through a vector type aligned like a float is a plain unaligned vector load, so, as
// with vloadN, no caller's buffer offset can misalign it (a float8 pointer would assume
// 32 bytes). For coefficient arrays and parameters, which kernels load beside their data.
#define GLOAD4(i, p) (((__global const float4_unaligned *)(p))[i])
#define GLOAD8(i, p) (((__global const float8_unaligned *)(p))[i])
#define GLOAD16(i, p) (((__global const float16_unaligned *)(p))[i])

// Count, mean (relative to a pilot value) and sum of squared deviations.
typedef struct {
    float count;
    float mean;
    float m2;
} Moments;

// Non-finite values (Inf, NaN) in the statistics. The float64 reference sums first
// and then takes sum (x - mean)^2, so a set holding Inf or NaN has
//   mean = the IEEE sum of its non-finite values (+Inf alone: +Inf; -Inf alone: -Inf;
//          +Inf with -Inf, or any NaN: NaN), and
//   M2   = NaN (x - mean is Inf - Inf for the Inf itself, and NaN with a NaN).
// The shifted, compensated formulas below would instead meet Inf - Inf and make every
// such mean NaN. They keep to the rule with a select at each merge point, never in the
// per-element loops:
// - a block holding an Inf or NaN has block M2 = ss - s*s/b = Inf - Inf = NaN, and NaN
//   stays NaN through every merge, so M2 needs nothing;
// - a merged mean that comes out non-finite is recomputed as a.mean + b.mean: the IEEE
//   sum of the non-finite side(s), as the rule wants (delta = b.mean - a.mean is Inf or
//   NaN then, and a.mean + delta*wb can be Inf - Inf);
// - a Kahan carry is dropped once its sum is non-finite (it would be Inf - Inf);
// - pilots and shifts are kept finite (FINITE_OR_ZERO): x - Inf would turn every finite
//   x into -Inf and the Inf itself into NaN.

// v, or 0 where v is Inf or NaN (float or vector type T, lane by lane): for pilots and
// shifts, which any value may be subtracted from.
#define FINITE_OR_ZERO(T, v) select((T)0.0f, (v), isfinite(v))

// Chan et al.'s pairwise merge: exact in exact arithmetic, stable in float.
inline Moments moments_merge(Moments a, Moments b) {
    float n = a.count + b.count;
    if (b.count == 0.0f) return a;
    if (a.count == 0.0f) return b;
    float delta = b.mean - a.mean;
    float wb = b.count / n;
    Moments r;
    r.count = n;
    r.mean = a.mean + delta * wb;
    // A side with Inf or NaN: the mean is the IEEE sum of the sides' means (see above).
    if (!isfinite(r.mean)) r.mean = a.mean + b.mean;
    r.m2 = a.m2 + b.m2 + delta * delta * a.count * wb;
    return r;
}

// Folds one block of b values, summed as s and ss after subtracting `shift`, into
// acc with Chan's formula. A work-item folds up to millions of blocks into one M2
// and one mean, so both running sums are Kahan-compensated (`carry`): float32
// recursive summation would drift by ~sqrt(blocks) ulps (2e-6 relative at 4M values
// per work-group, and more when the mean sits far from the pilot).
// Inf and NaN as moments_merge (the rule above): the block's mean relative to the
// pilot is shift + s/b, and a non-finite result becomes acc.mean + that. The caller
// must keep `shift` finite (next_shift).
inline Moments fold_block(Moments acc, float2 *carry, float shift, float s, float ss, float b) {
    float block_mean = s / b;
    float block_m2 = ss - s * block_mean;
    if (block_m2 < 0.0f) block_m2 = 0.0f;  // rounding; NaN passes through
    float n = acc.count + b;
    float delta = shift + block_mean - acc.mean;
    float wb = b / n;
    float increment = block_m2 + delta * delta * acc.count * wb - carry->x;
    float m2 = acc.m2 + increment;
    carry->x = isinf(m2) ? 0.0f : (m2 - acc.m2) - increment;
    acc.m2 = m2;
    float step = delta * wb - carry->y;
    float mean = acc.mean + step;
    bool finite = isfinite(mean);
    carry->y = finite ? (mean - acc.mean) - step : 0.0f;
    acc.mean = finite ? mean : acc.mean + (shift + block_mean);
    acc.count = n;
    return acc;
}

// The shift of the next block: the running mean while it is finite; after an Inf or
// NaN the previous shift stays (x - Inf would make every later value non-finite).
inline float next_shift(float shift, Moments acc) {
    return isfinite(acc.mean) ? acc.mean : shift;
}

// fold_block for column kernels, lane by lane on a float or vector type T: folds a
// block of b values, summed as s and ss after subtracting `shift`, into (mean, m2)
// of `count` values so far, Kahan-compensated by `carry` (M2) and `mean_carry`, then
// moves the shift to the new mean. Inf and NaN as fold_block and next_shift: a lane
// whose mean comes out non-finite takes mean + (shift + s/b), drops its carries and
// keeps its finite shift. Arguments must be lvalues without side effects.
#define FOLD_BLOCK_LANES(T, s, ss, b, count, shift, mean, m2, carry, mean_carry)          \
    do {                                                                                \
        float total_ = (count) + (b);                                                   \
        T block_mean_ = (s) / (b);                                                      \
        T block_m2_ = (ss) - (s) * block_mean_;                                         \
        block_m2_ = select(block_m2_, (T)0.0f, block_m2_ < (T)0.0f);                    \
        T delta_ = (shift) + block_mean_ - (mean);                                      \
        T increment_ = block_m2_ + delta_ * delta_ * ((count) * (b) / total_) - (carry); \
        T sum_ = (m2) + increment_;                                                     \
        (carry) = select((sum_ - (m2)) - increment_, (T)0.0f, isinf(sum_));             \
        (m2) = sum_;                                                                    \
        T step_ = delta_ * ((b) / total_) - (mean_carry);                               \
        T updated_ = (mean) + step_;                                                    \
        (mean_carry) = select((T)0.0f, (updated_ - (mean)) - step_, isfinite(updated_)); \
        (mean) = select((mean) + ((shift) + block_mean_), updated_, isfinite(updated_)); \
        (shift) = select((shift), (mean), isfinite(mean));                              \
    } while (0)

// The median of five values, for float and vector types alike (lane by lane): the
// two middle ones of the first four, then the median of those and e. fmin/fmax skip
// NaN (a NaN still reaches the sums). Arguments must be plain variables.
#define MEDIAN3(a, b, c) fmax(fmin(a, b), fmin(fmax(a, b), c))
#define MEDIAN5(a, b, c, d, e) MEDIAN3(fmax(fmin(a, b), fmin(c, d)), fmin(fmax(a, b), fmax(c, d)), e)


// The sum of a float4's lanes, in a fixed order.
#define HSUM4(v) (((v).x + (v).y) + ((v).z + (v).w))

// A program's elementwise vector width (-D VEC=16, 8, 4 or 1; DeviceTuning.vectorWidth
// says why CPUs take 16): `floatv` and its loads and stores of storage (LOADV/STOREV)
// and of float32 parameters (LOADP/STOREP), the sum of its lanes in a fixed order
// (HSUM) and its first lane (FIRST_LANE).
#ifdef VEC
#if VEC == 16
typedef float16 floatv;
#define LOADV(p, i) LOAD16(p, i)
#define STOREV(v, p, i) STORE16(v, p, i)
#define LOADP(p, i) GLOAD16(i, p)
#define STOREP(v, p, i) (((__global float16_unaligned *)(p))[i] = (v))
#define HSUM(v) HSUM4(((v).lo.lo + (v).lo.hi) + ((v).hi.lo + (v).hi.hi))
#define FIRST_LANE(v) ((v).s0)
#elif VEC == 8
typedef float8 floatv;
#define LOADV(p, i) LOAD8(p, i)
#define STOREV(v, p, i) STORE8(v, p, i)
#define LOADP(p, i) GLOAD8(i, p)
#define STOREP(v, p, i) (((__global float8_unaligned *)(p))[i] = (v))
#define HSUM(v) HSUM4((v).lo + (v).hi)
#define FIRST_LANE(v) ((v).s0)
#elif VEC == 4
typedef float4 floatv;
#define LOADV(p, i) LOAD4(p, i)
#define STOREV(v, p, i) STORE4(v, p, i)
#define LOADP(p, i) vload4((i), (p))
#define STOREP(v, p, i) vstore4((v), (i), (p))
#define HSUM(v) HSUM4(v)
#define FIRST_LANE(v) ((v).x)
#else
typedef float floatv;
#define LOADV(p, i) LOAD1(p, i)
#define STOREV(v, p, i) STORE1(v, p, i)
#define LOADP(p, i) ((p)[i])
#define STOREP(v, p, i) ((p)[i] = (v))
#define HSUM(v) (v)
#define FIRST_LANE(v) (v)
#endif
#endif

// Streaming stores (-D STREAM_BYTES=n, CPU devices only: DeviceTuning.streamingStoreBytes).
// A kernel that moves more than n bytes writes its output with non-temporal stores:
// they skip the read of each cache line that a plain store must fetch first, and an
// output that large would not stay in the cache for the next op anyway. Measured on
// PoCL here (AVX-512, 32 MiB cache), BatchNorm inference over 25.7 MB: 1.38 -> 1.07 ms,
// with an addend 2.04 -> 1.62 ms; an output that fits in the cache is read back 1.5x
// slower after them, hence the threshold.
//
// A streaming kernel declares `const bool stream = STREAMS_OVER(elements, tensors);`
// (STREAMS of its tensors' sizes added up) and stores its output with STOREV_STREAM / STOREC_STREAM
// (reduction.cl), which store as STOREV / STOREC do: non-temporally where `stream`
// holds and the address is aligned to the vector (a caller's buffer at an offset may
// not be: a plain store then). Half storage stores plainly (its conversions, not its
// stores, bound it). Non-temporal stores are weakly ordered: the kernel ends with
// STREAM_FENCE() and returns early with STREAM_RETURN(), which fence them in the last
// work-item of the work-group, the one a CPU driver runs last on the work-group's
// thread (an sfence in every work-item cost 0.2 ms of the 1.07).
#if defined(STREAM_BYTES) && !STORAGE_HALF
#define STREAMS(bytes) ((ulong)(bytes) > (ulong)(STREAM_BYTES))
#define STREAM_STORE(T, WIDTH, STORE, v, p, i)                                         \
    do {                                                                               \
        __global float *stream_at_ = (p) + (size_t)(i) * (WIDTH);                      \
        if ((WIDTH) >= 4 && stream && ((ulong)stream_at_ & ((WIDTH) * 4 - 1)) == 0)    \
            __builtin_nontemporal_store((T)(v), (__global T *)stream_at_);             \
        else                                                                           \
            STORE(v, p, i);                                                            \
    } while (0)
#define STREAM_FENCE()                                                                    \
    do {                                                                                  \
        if (stream && get_local_id(0) == get_local_size(0) - 1) __builtin_ia32_sfence(); \
    } while (0)
#else
#define STREAMS(bytes) false
#define STREAM_STORE(T, WIDTH, STORE, v, p, i) STORE(v, p, i)
#define STREAM_FENCE() do { (void)stream; } while (0)
#endif
#define STREAM_RETURN() do { STREAM_FENCE(); return; } while (0)
// STREAMS for `tensors` tensors of `elements` storage values each (elements: a ulong).
#define STREAMS_OVER(elements, tensors) STREAMS((elements) * sizeof(storage_t) * (tensors))
#ifdef VEC
#define STOREV_STREAM(v, p, i) STREAM_STORE(floatv, VEC, STOREV, v, p, i)
#endif

// Work-item `item` of `items` gets the indices first, first + stride, ... < end of
// [lo, hi): one contiguous chunk (-D CHUNKED=1: CPUs, each core streams its own range)
// or every items-th index (GPUs: adjacent work-items read adjacent addresses).
// SPLIT_FOR_ITEM writes that split into r (an ItemRange or a Span, fields of type T),
// computing a chunk in type W, wide enough for hi - lo + items - 1 and lo + item * per.
#if CHUNKED
#define SPLIT_FOR_ITEM(r, T, W, lo, hi, item, items)                       \
    do {                                                                  \
        W per_ = ((W)((hi) - (lo)) + (items) - 1) / (items);              \
        (r).first = (T)min((W)(lo) + (item) * per_, (W)(hi));             \
        (r).end = (T)min((W)(r).first + per_, (W)(hi));                   \
        (r).stride = 1;                                                   \
    } while (0)
#else
#define SPLIT_FOR_ITEM(r, T, W, lo, hi, item, items) \
    do {                                            \
        (r).first = (lo) + (item);                  \
        (r).end = (hi);                             \
        (r).stride = (items);                       \
    } while (0)
#endif

// DEFINE_ITEM_SPLIT(Type, name, T, W) defines the struct Type (first, end, stride, of
// type T) and
//   Type name(T lo, T hi, T item, T items)
// which returns that split for work-item `item` (SPLIT_FOR_ITEM, a chunk computed in W).
#define DEFINE_ITEM_SPLIT(Type, name, T, W)                         \
    typedef struct {                                                \
        T first;                                                    \
        T end;                                                      \
        T stride;                                                   \
    } Type;                                                         \
    inline Type name(T lo, T hi, T item, T items) {                 \
        Type r;                                                     \
        SPLIT_FOR_ITEM(r, T, W, lo, hi, item, items);               \
        return r;                                                   \
    }

#ifdef INDEX_T
DEFINE_ITEM_SPLIT(ItemRange, item_range, INDEX_T, INDEX_T)
#endif

// The same split over 32-bit row positions (LayerNorm/RMSNorm: a row's columns go to
// the same work-items in forward and backward). The chunk is 64-bit: hi - lo + items - 1
// can pass 2^32 for rows near the 32-bit limit.
DEFINE_ITEM_SPLIT(Span, item_span, uint, ulong)

// sum += value with Kahan's compensation in carry, lane by lane for a float or vector
// type: a work-item adds up to millions of block sums, and plain float32 would drift by
// ~sqrt(blocks) ulps. An infinite sum drops the carry (inf - inf would turn it into
// NaN): the sum then stays infinite, as the float64 reference's does. Arguments must be
// lvalues without side effects.
#define KAHAN_ADD(T, sum, carry, value)                          \
    do {                                                         \
        T y_ = (value) - (carry);                                \
        T t_ = (sum) + y_;                                       \
        (carry) = select((t_ - (sum)) - y_, (T)0.0f, isinf(t_)); \
        (sum) = t_;                                              \
    } while (0)
