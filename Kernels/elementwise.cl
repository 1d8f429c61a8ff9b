// The unfused pieces of the fused prologues and epilogues, as separate elementwise
// passes: h = x + residual, and y = f(x + addend). A program runs them between two
// norms when it does not fuse them; the benchmark times them as the "separate ops"
// baseline of each fused op. Each reads and writes the whole tensor once more, which is
// what fusing them into a norm saves.
//
// Build options (ElementwiseOps, Sources/NormCL/Ops/Epilogue/Elementwise.swift): VEC,
// CHUNKED, INDEX_T, STORAGE_HALF (common.cl); HAS_RESIDUAL, RESIDUAL_FLOAT and
// ACTIVATION (epilogue.cl). Sizes are kernel arguments: `vectors`, the tensor's elements
// / VEC.

// Vector i of every work-item's range: a chunk (CPUs) or every items-th one (GPUs).
#define FOR_EACH_VECTOR(i, vectors)                                                      \
    ItemRange r_ = item_range(0, (INDEX_T)(vectors), get_global_id(0), get_global_size(0)); \
    for (INDEX_T i = r_.first; i < r_.end; i += r_.stride)

// h = x + residual, formed in float32 and stored as residual_t (HAS_RESIDUAL=1).
__kernel void elementwise_sum(__global const storage_t *x, __global const residual_t *residual,
                              __global residual_t *sum, ulong vectors) {
    const bool stream = STREAMS_OVER(vectors * VEC, 3);
    FOR_EACH_VECTOR(i, vectors) STORERV_STREAM(LOADV(x, i) + LOADRV(residual, i), sum, i);
    STREAM_FENCE();
}

// y = f(x + addend) (addend NULL: f(x)), with f the ACTIVATION.
__kernel void elementwise_activate(__global const storage_t *x, __global const storage_t *addend,
                                   __global storage_t *y, ulong vectors) {
    // An output written over an input (this pass and its backward may run in place) is
    // stored plainly: its lines are in the cache from the read, and a non-temporal store
    // there cost twice the time (y = relu(y + z) over 25.7 MB: 0.9 -> 1.85 ms).
    const bool stream = STREAMS_OVER(vectors * VEC, addend ? 3 : 2) && y != x && y != addend;
    if (addend) {
        FOR_EACH_VECTOR(i, vectors) {
            floatv v = LOADV(x, i) + LOADV(addend, i);
            STOREV_STREAM(ACTIVATE(floatv, v), y, i);
        }
    } else {
        FOR_EACH_VECTOR(i, vectors) {
            floatv v = LOADV(x, i);
            STOREV_STREAM(ACTIVATE(floatv, v), y, i);
        }
    }
    STREAM_FENCE();
}

// da = dy * f'(a): the activation's backward at its input a (ACTIVATION).
__kernel void elementwise_activation_grad(__global const storage_t *dy, __global const storage_t *a,
                                          __global storage_t *da, ulong vectors) {
    const bool stream = STREAMS_OVER(vectors * VEC, 3) && da != dy && da != a;  // in place: as above
    FOR_EACH_VECTOR(i, vectors) {
        floatv d = LOADV(dy, i), v = LOADV(a, i);
        STOREV_STREAM(ACTIVATION_GRAD(floatv, d, v), da, i);
    }
    STREAM_FENCE();
}
