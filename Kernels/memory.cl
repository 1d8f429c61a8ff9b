// Device memory bandwidth probe: the speed limit the norm kernels are measured against.
//
// Build options: CHUNKED (as in batch_norm.cl), INDEX_T.

// y = x over `count` float4s, each work-item copying its share.
__kernel void copy_float4(__global const float4 *x, __global float4 *y, ulong count) {
    INDEX_T items = get_global_size(0), item = get_global_id(0);
#if CHUNKED
    INDEX_T per = ((INDEX_T)count + items - 1) / items;
    INDEX_T first = item * per;
    INDEX_T end = min(first + per, (INDEX_T)count);
    for (INDEX_T i = first; i < end; ++i) y[i] = x[i];
#else
    for (INDEX_T i = item; i < (INDEX_T)count; i += items) y[i] = x[i];
#endif
}
