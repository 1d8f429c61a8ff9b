// Backward passes of the row normalisations of layer_norm.cl over a row-major
// (rows, D) matrix: LayerNorm and RMSNorm (RMS), from the forward's saved per-row
// statistics (no statistics are recomputed from x). With g = dy * gamma and
//   LayerNorm: xhat = (x - mean) * invstd,  dx = invstd * (g - sum(g)/D - xhat * sum(g*xhat)/D)
//   RMSNorm:   xhat = x * rstd,             dx = rstd * (g - xhat * sum(g*xhat)/D)
// (sums over the row), and dgamma = sum over rows of dy * xhat, dbeta = sum over rows of dy.
//
// Kernels (RowNormBackwardKernels, Sources/NormCL/Ops/LayerNorm/RowNormBackwardKernels.swift):
//   rownorm_backward_fused    many rows: each row lane of a work-group walks a block of
//                             rows; per row its ITEMS work-items sum g and g*xhat over
//                             their span, merge in local memory, then write dx from the
//                             cached row and add dy*xhat, dy to the lane's column partials
//   rownorm_backward_slice_sums, rownorm_backward_row_finish
//                             few long rows: (sum g, sum g*xhat) per (row, slice), merged
//                             per row in slice order into the dx coefficients
//   rownorm_backward_columns  work-items own column vectors and walk a block of rows:
//                             dx from the coefficients (split rows) and/or the column
//                             partials of a row block (split rows, or the parameter pass
//                             when it is not fused into rownorm_backward_fused)
//   rownorm_backward_parameters  dgamma, dbeta: per column, the partials of every row
//                             block (or lane) added in block order
// Every merge runs in a fixed order with no atomics: results are bit-identical run to run.
//
// Build options, all set by RowNormBackwardPlan:
//   RMS, VEC, ITEMS, SCRATCH_ITEMS, CHUNKED, HAS_WEIGHT, STORAGE_HALF as in layer_norm.cl
//   FINAL_LANES     work-items per column of rownorm_backward_parameters, a power of two
//   FINAL_COLS      column vectors per work-group of rownorm_backward_parameters
//   INPUT_BIAS_GRADIENT  1: the forward added an input bias, whose gradient (when
//                   `parameters` asks for it) is a third set of column partials
//   PRIVATE_PARTIALS  0, or the capacity (a power of two, at most 8) of the register
//                   partials (interleaved spans of at most that many vectors per
//                   work-item, GPUs): the fused kernel keeps its column partials in
//                   registers for the whole block of rows and stores them once, instead
//                   of updating them in global memory (cache) row by row
// Sizes are kernel arguments (`rows`, `row_length` = D, block and lane counts), so one
// program serves every shape. So is which gradients are formed, one program for every
// gradient mask: dx is written when `dx` is given; the fused kernel accumulates column
// partials when `partials` is given; `parameters` says whose partials (PARTIALS_DGAMMA:
// dy * xhat, for dgamma; PARTIALS_DBETA: dy, for dbeta, LayerNorm only); the final
// reduce writes `dgamma` and `dbeta` when given. Each is the same for every work-item
// (barriers stay uniform) and costs a predictable branch per vector, next to its loads.
//
// Partials are float32, laid out [2 or 3][blocks][D]: dgamma's, dbeta's, then (with an
// input bias, PARTIALS_DINPUT_BIAS) the input bias's: the column sums of dh = dx, which
// only a kernel that writes dx forms (the plan makes sure one does).
//
// Fused prologue and epilogue (epilogue.cl): with HAS_RESIDUAL the norm's input h =
// x + residual (+ the input bias, HAS_INPUT_BIAS, whose gradient is the column sum of
// dh) is recomputed from them; with SUM_GRADIENT (the forward stored h, and `x`
// is that h) it is read as it is. Either way the gradient `grad_sum` flowing into h from
// elsewhere (the next block's residual stream), when given, is added to dx, which is
// then the gradient of x and of the residual alike.
// With an ACTIVATION, dy is first taken through it at its input xhat * gamma + beta,
// recomputed from the saved statistics (HAS_BIAS says whether beta is read; it is only
// given then). gamma is weight + weight_offset, as in the forward.

#define PARTIALS_DGAMMA 1u
#define PARTIALS_DBETA 2u
#define PARTIALS_DINPUT_BIAS 4u
// Whether `parameters` asks for the input bias's partials: never in a program built
// without INPUT_BIAS_GRADIENT (for a forward without an input bias), whose kernels then
// carry none of that code.
#if INPUT_BIAS_GRADIENT
#define WANTS_DINPUT_BIAS(parameters) ((parameters) & PARTIALS_DINPUT_BIAS)
#else
#define INPUT_BIAS_GRADIENT 0
#define WANTS_DINPUT_BIAS(parameters) 0
#endif

#if HAS_WEIGHT
#define GAMMA(weight, v, offset) (LOADP(weight, v) + (offset))
#else
#define GAMMA(weight, v, offset) 1.0f
#endif
#if HAS_BIAS
#define BETA(bias, v) LOADP(bias, v)
#else
#define BETA(bias, v) 0.0f
#endif

// xhat from x and the row's saved statistics.
inline floatv normalized(floatv x, float mean, float scale) {
#if RMS
    return x * scale;
#else
    return (x - mean) * scale;
#endif
}

// The affine parameters of a row's vectors, as the forward read them.
typedef struct {
    __global const float *weight;
    float weight_offset;
    __global const float *bias;
} Affine;

// dy at the norm's output of vector v of a row (through the fused activation), and the
// vector's xhat: x (or h = x + residual `res`) normalised with the row's statistics.
inline floatv output_gradient(__global const storage_t *x, RowInput res,
                              __global const storage_t *dy, uint v, float mean, float scale, floatv gamma, Affine a,
                              floatv *xhat) {
    *xhat = normalized(INPUTV(x, res, v), mean, scale);
#if ACTIVATION
    floatv beta = BETA(a.bias, v);
    return EPILOGUE_GRAD(floatv, LOADV(dy, v), *xhat, 0.0f, gamma, beta, 0.0f);
#else
    return LOADV(dy, v);
#endif
}

// dx of vector v, plus the gradient flowing into h from elsewhere (`grad_sum`, the
// row of the residual stream's gradient; with HAS_RESIDUAL or SUM_GRADIENT, when given).
// Returns the float32 dx (the gradient of h, whose column sums are the input bias's).
// `stream`: ROWB_STREAMS.
inline floatv store_input_gradient(floatv dxv, __global storage_t *dx, __global const residual_t *grad_sum, uint v,
                                   bool stream) {
#if HAS_RESIDUAL || SUM_GRADIENT
    if (grad_sum) dxv += LOADRV(grad_sum, v);
#endif
    STOREV_STREAM(dxv, dx, v);
    return dxv;
}

// Whether a row-norm backward kernel over rows * row_length values streams its dx
// stores (common.cl): it moves x, dy and dx, and the residual and h's gradient when
// there are.
#define ROWB_STREAMS(rows, row_length, residual, grad_sum) \
    STREAMS((ulong)(rows) * (row_length) * sizeof(storage_t) * (3 + ((residual) != 0) + ((grad_sum) != 0)))

// Adds `value` to the column partial at vector v of `p` (stores it for the first row).
inline void add_partial(__global float *p, uint v, floatv value, bool first) {
    if (!first) value += LOADP(p, v);
    STOREP(value, p, v);
}

// (sum g, sum g*xhat) over the span of one row: blocks of BLOCK vectors summed in
// registers, block sums added with Kahan compensation (rows of millions of values
// stay at a few ulps).
inline float2 row_sums(__global const storage_t *x, RowInput res, __global const storage_t *dy,
                       Affine a, Span s, float mean, float scale) {
    float2 total = (float2)(0.0f, 0.0f), carry = (float2)(0.0f, 0.0f);
    for (uint v = s.first; v < s.end;) {
        floatv sg = 0.0f, sgx = 0.0f;
        for (uint k = 0; k < BLOCK && v < s.end; ++k, v += s.stride) {
            floatv gamma = GAMMA(a.weight, v, a.weight_offset), xhat;
            floatv g = output_gradient(x, res, dy, v, mean, scale, gamma, a, &xhat) * gamma;
            sg += g;
            sgx += g * xhat;
        }
        KAHAN_ADD(float2, total, carry, ((float2)(HSUM(sg), HSUM(sgx))));
    }
    return total;
}

// The dx coefficients (sum g / D, sum g*xhat / D) of a row from its sums; RMSNorm
// has no mean term.
inline float2 coefficients(float2 sums, uint row_length) {
#if RMS
    return (float2)(0.0f, sums.y / (float)row_length);
#else
    return sums / (float)row_length;
#endif
}

// The row's saved mean (LayerNorm; RMSNorm subtracts none).
inline float row_mean(__global const float *save_mean, uint row) {
#if RMS
    return 0.0f;
#else
    return save_mean[row];
#endif
}

// dx of one vector: scale * (g - c.x - xhat * c.y).
inline floatv input_gradient(floatv d, floatv xhat, floatv gamma, float scale, float2 c) {
    return scale * ((d * gamma - c.x) - xhat * c.y);
}

// Adds dy*xhat (PARTIALS_DGAMMA in `parameters`), dy (PARTIALS_DBETA) and dx
// (PARTIALS_DINPUT_BIAS, given only with dx) of the span's vectors of one row to the
// column partials at p, p + stride and p + 2 stride (the first row of a block stores
// instead of adding), and writes dx when it is given.
inline void row_backward_span(__global const storage_t *x, RowInput res,
                              __global const storage_t *dy, __global storage_t *dx, __global const residual_t *grad_sum,
                              Affine a, Span s, float mean, float scale, float2 c, __global float *p, ulong stride,
                              bool first, uint parameters, bool stream) {
    for (uint v = s.first; v < s.end; v += s.stride) {
        floatv gamma = GAMMA(a.weight, v, a.weight_offset), xhat;
        floatv d = output_gradient(x, res, dy, v, mean, scale, gamma, a, &xhat);
        floatv dh = 0.0f;
        if (dx) dh = store_input_gradient(input_gradient(d, xhat, gamma, scale, c), dx, grad_sum, v, stream);
        if (parameters & PARTIALS_DGAMMA) add_partial(p, v, d * xhat, first);
        if (parameters & PARTIALS_DBETA) add_partial(p + stride, v, d, first);
        if (WANTS_DINPUT_BIAS(parameters)) add_partial(p + 2 * stride, v, dh, first);
    }
}

// Many rows: local size / ITEMS row lanes per work-group, ITEMS work-items per lane.
// Lane L takes rows L * rows_per_lane ..< min((L + 1) * rows_per_lane, rows) one after
// another: the row sums (when dx is given), then dx and the lane's column partials
// (block L of `partials`, when given) from the same elements while they are still in
// cache.
// Each work-item owns the same columns in every row, so it alone updates them.
__kernel void rownorm_backward_fused(__global const storage_t *x, __global const residual_t *residual, __global const float *input_bias,
                            __global const storage_t *dy, __global storage_t *dx, __global const residual_t *grad_sum,
                            uint rows, uint row_length, uint rows_per_lane, uint lanes,
                            __global const float *weight, float weight_offset, __global const float *bias,
                            __global const float *save_mean, __global const float *save_scale,
                            __global float *partials, uint parameters) {
    ROW_SCRATCH(float2, scratch, SCRATCH_ITEMS);
    const bool stream = dx && ROWB_STREAMS(rows, row_length, residual, grad_sum);
    Affine a = {weight, weight_offset, bias};
    uint item, slot;
    uint lane = row_lane(&item, &slot);
    Span s = item_span(0, row_length / VEC, item, ITEMS);
    if (!partials) parameters = 0;
    __global float *pw = partials + (ulong)min(lane, lanes - 1) * row_length;
    ulong stride = (ulong)lanes * row_length;
#if PRIVATE_PARTIALS
    floatv aw[PRIVATE_PARTIALS], ab[PRIVATE_PARTIALS], ai[PRIVATE_PARTIALS];
    for (uint j = 0; j < PRIVATE_PARTIALS; ++j) aw[j] = ab[j] = ai[j] = 0.0f;
#endif
    for (uint k = 0; k < rows_per_lane; ++k) {
        ulong wanted = (ulong)lane * rows_per_lane + k;
        // Items past the last row shadow it (so every item reaches the barriers) but store nothing.
        bool live = wanted < rows;
        uint row = live ? (uint)wanted : rows - 1;
        ulong base = (ulong)row * row_length;
        RowInput res = row_input(residual, input_bias, base);
        float mean = row_mean(save_mean, row);
        float scale = save_scale[row];
        float2 c = (float2)(0.0f, 0.0f);
        if (dx) {
            // The sums of the lane's ITEMS work-items, added by the tree (the slots are
            // reused at once for the next row).
            float2 sums = row_sums(x + base, res, dy + base, a, s, mean, scale);
            c = coefficients(REDUCE_ROW_LANE(reduce_float2, sums, scratch + slot, item), row_length);
        }
        if (!live) continue;
#if PRIVATE_PARTIALS
        // Interleaved span: vector s.first + j * ITEMS is partial j.
        for (uint j = 0; j < PRIVATE_PARTIALS; ++j) {
            uint v = s.first + j * ITEMS;
            if (v >= s.end) break;
            floatv gamma = GAMMA(weight, v, weight_offset), xhat;
            floatv d = output_gradient(x + base, res, dy + base, v, mean, scale, gamma, a, &xhat);
            if (dx) ai[j] += store_input_gradient(input_gradient(d, xhat, gamma, scale, c), dx + base,
                                                  RESIDUAL_ROW(grad_sum, base), v, stream);
            aw[j] += d * xhat;
            ab[j] += d;
        }
#else
        row_backward_span(x + base, res, dy + base, dx ? dx + base : dx, RESIDUAL_ROW(grad_sum, base), a, s, mean,
                          scale, c, pw, stride, k == 0, parameters, stream);
#endif
    }
#if PRIVATE_PARTIALS
    if (lane >= lanes) STREAM_RETURN();
    for (uint j = 0; j < PRIVATE_PARTIALS; ++j) {
        uint v = s.first + j * ITEMS;
        if (v >= s.end) break;
        if (parameters & PARTIALS_DGAMMA) STOREP(aw[j], pw, v);
        if (parameters & PARTIALS_DBETA) STOREP(ab[j], pw + stride, v);
        if (WANTS_DINPUT_BIAS(parameters)) STOREP(ai[j], pw + 2 * stride, v);
    }
#endif
    STREAM_FENCE();
}

// Split rows, step 1: work-group (g, r) of ITEMS work-items sums g and g*xhat over
// slice g of row r and writes them to sums[r * G + g] (float2).
__kernel __attribute__((reqd_work_group_size(ITEMS, 1, 1)))
void rownorm_backward_slice_sums(__global const storage_t *x, __global const residual_t *residual, __global const float *input_bias,
                                 __global const storage_t *dy, uint row_length, __global const float *weight,
                                 float weight_offset, __global const float *bias, __global const float *save_mean,
                                 __global const float *save_scale, __global float *sums) {
    Affine a = {weight, weight_offset, bias};
    ROW_SCRATCH(float2, scratch, ITEMS);
    uint g = get_group_id(0), groups = get_num_groups(0);
    uint row = get_group_id(1);
    uint item = get_local_id(0);
    ulong base = (ulong)row * row_length;
    Span s = row_slice_span(row_length / VEC, item);
    float2 item_sums = row_sums(x + base, row_input(residual, input_bias, base), dy + base, a, s, row_mean(save_mean, row),
                                save_scale[row]);
    float2 m = REDUCE_ROW_LANE(reduce_float2, item_sums, scratch, item);
    if (item == 0) vstore2(m, (ulong)row * groups + g, sums);
}

// Split rows, step 2: one work-item per row adds its slices' sums in slice order
// (Kahan-compensated) and writes the row's dx coefficients.
__kernel void rownorm_backward_row_finish(__global const float *sums, uint slices, uint rows, uint row_length,
                                          __global float *coefficients_out) {
    uint row = get_global_id(0);
    if (row >= rows) return;
    float2 total = kahan_sum_float2_partials((__global const float2 *)sums + (ulong)row * slices, slices, 1);
    vstore2(coefficients(total, row_length), row, coefficients_out);
}

// Column walk: work-item c of the first dimension owns a span of the row's column
// vectors (a chunk, or an interleaved share across all column work-items), work-group
// row b of the second dimension owns rows b * rows_per_block ..< +rows_per_block.
// For each owned vector it walks the block's rows: dx from the row coefficients (when
// dx is given) and the column sums of dy*xhat and dy, stored as block b's partials
// (those `parameters` names).
__kernel void rownorm_backward_columns(__global const storage_t *x, __global const residual_t *residual, __global const float *input_bias,
                                       __global const storage_t *dy, __global storage_t *dx,
                                       __global const residual_t *grad_sum, uint rows, uint row_length,
                                       uint rows_per_block, uint blocks, __global const float *weight,
                                       float weight_offset, __global const float *bias,
                                       __global const float *save_mean, __global const float *save_scale,
                                       __global const float *coefficients_in, __global float *partials,
                                       uint parameters) {
    Affine a = {weight, weight_offset, bias};
    const bool stream = dx && ROWB_STREAMS(rows, row_length, residual, grad_sum);
    uint block = get_global_id(1);
    uint first_row = block * rows_per_block;
    if (block >= blocks || first_row >= rows) STREAM_RETURN();
    uint end_row = min(first_row + rows_per_block, rows);
    uint row_vecs = row_length / VEC;
    Span s = item_span(0, row_vecs, get_global_id(0), get_global_size(0));
    __global float *pw = partials + (ulong)block * row_length;
    ulong stride = (ulong)blocks * row_length;
    for (uint v = s.first; v < s.end; v += s.stride) {
        floatv gamma = GAMMA(weight, v, weight_offset);
        floatv sw = 0.0f, sb = 0.0f, si = 0.0f;
        ulong base = (ulong)first_row * row_length;
        for (uint row = first_row; row < end_row; ++row, base += row_length) {
            float scale = save_scale[row];
            floatv xhat;
            floatv d = output_gradient(x + base, row_input(residual, input_bias, base), dy + base, v, row_mean(save_mean, row),
                                       scale, gamma, a, &xhat);
            if (dx)
                si += store_input_gradient(input_gradient(d, xhat, gamma, scale, vload2(row, coefficients_in)),
                                           dx + base, RESIDUAL_ROW(grad_sum, base), v, stream);
            sw += d * xhat;
            sb += d;
        }
        if (parameters & PARTIALS_DGAMMA) STOREP(sw, pw, v);
        if (parameters & PARTIALS_DBETA) STOREP(sb, pw + stride, v);
        if (WANTS_DINPUT_BIAS(parameters)) STOREP(si, pw + 2 * stride, v);
    }
    STREAM_FENCE();
}

// dgamma's, dbeta's and the input bias's sums of one column vector.
typedef struct {
    floatv w;
    floatv b;
#if INPUT_BIAS_GRADIENT
    floatv i;
#endif
} ParameterSums;

inline ParameterSums add_parameter_sums(ParameterSums a, ParameterSums b) {
#if INPUT_BIAS_GRADIENT
    ParameterSums r = {a.w + b.w, a.b + b.b, a.i + b.i};
#else
    ParameterSums r = {a.w + b.w, a.b + b.b};
#endif
    return r;
}

#if FINAL_LANES > 1
DEFINE_TREE_REDUCE(reduce_parameter_sums, ParameterSums, add_parameter_sums)
#endif

// dgamma, dbeta and the input bias's gradient: work-group (FINAL_COLS x FINAL_LANES); work-item (c, j) adds the
// partials of blocks j, j + FINAL_LANES, ... of column vector c in block order
// (Kahan-compensated), then the FINAL_LANES sums of a column are merged by the shared
// tree.
__kernel void rownorm_backward_parameters(__global const float *partials, uint blocks, uint row_length,
                                          __global float *dgamma, __global float *dbeta,
                                          __global float *dinput_bias) {
    uint row_vecs = row_length / VEC;
    uint v = get_global_id(0);
    uint j = get_local_id(1);
    bool live = v < row_vecs;
    uint column = live ? v : row_vecs - 1;
    ParameterSums t;
    t.w = t.b = 0.0f;
    floatv cw = 0.0f, cb = 0.0f;
#if INPUT_BIAS_GRADIENT
    floatv ci = 0.0f;
    t.i = 0.0f;
#endif
    ulong stride = (ulong)blocks * row_length;
    for (uint block = j; block < blocks; block += FINAL_LANES) {
        __global const float *pw = partials + (ulong)block * row_length;
        if (dgamma) KAHAN_ADD(floatv, t.w, cw, LOADP(pw, column));
        if (dbeta) KAHAN_ADD(floatv, t.b, cb, LOADP(pw + stride, column));
#if INPUT_BIAS_GRADIENT
        if (dinput_bias) KAHAN_ADD(floatv, t.i, ci, LOADP(pw + 2 * stride, column));
#endif
    }
#if FINAL_LANES > 1
    __local ParameterSums scratch[FINAL_COLS * FINAL_LANES];
    t = reduce_parameter_sums(t, scratch + get_local_id(0) * FINAL_LANES, j, FINAL_LANES);
#endif
    if (!live || j != 0) return;
    if (dgamma) STOREP(t.w, dgamma, v);
    if (dbeta) STOREP(t.b, dbeta, v);
#if INPUT_BIAS_GRADIENT
    if (dinput_bias) STOREP(t.i, dinput_bias, v);
#endif
}
