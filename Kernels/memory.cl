// Device memory bandwidth probe: the speed limit the norm kernels are measured against.
//
// Build options: CHUNKED (as in batch_norm.cl), INDEX_T, STREAM_BYTES (common.cl).

// y = x over `count` float4s, each work-item copying its share; streaming its stores
// where the norm kernels would (common.cl), so that a kernel is measured against the
// best copy of the same bytes.
__kernel void copy_float4(__global const float4 *x, __global float4 *y, ulong count) {
    const bool stream = STREAMS_OVER(count * 4, 2);
    INDEX_T items = get_global_size(0), item = get_global_id(0);
#if CHUNKED
    INDEX_T per = ((INDEX_T)count + items - 1) / items;
    INDEX_T first = item * per;
    INDEX_T end = min(first + per, (INDEX_T)count);
    for (INDEX_T i = first; i < end; ++i) STREAM_STORE(float4, 4, STORE4, x[i], (__global float *)y, i);
#else
    for (INDEX_T i = item; i < (INDEX_T)count; i += items) STREAM_STORE(float4, 4, STORE4, x[i], (__global float *)y, i);
#endif
    STREAM_FENCE();
}
