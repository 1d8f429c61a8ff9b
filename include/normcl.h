/*
 * normcl.h: the C API of NormCL (libnormcl.so), for C, C++ and Python (ctypes) programs
 * that own their OpenCL context, command queue and buffers.
 *
 * Every op runs on the caller's cl_mem buffers (at byte offsets), on the caller's queue,
 * after the caller's events, and writes every result into caller-provided buffers;
 * it returns the event of its last command. Nothing is allocated for the caller and
 * nothing waits: the calls only enqueue work (see "Events" below). docs/C-API.md has a
 * walk-through and an example.
 *
 * Plain C99. 64-bit platforms only (the descriptor layout below is checked at compile
 * time). Build against it with `cc -I include ... -L .build/release -lnormcl -lOpenCL`.
 *
 * ---------------------------------------------------------------------------------------
 * Ownership
 *   - normcl_runtime_create retains the context, queue and device it is given and releases
 *     them in normcl_runtime_release; the caller keeps (and releases) its own references.
 *   - Buffers (cl_mem) stay the caller's. NormCL holds a reference to a buffer (or to a
 *     sub-buffer of it) only while its commands are queued; keep each buffer alive until
 *     the event the call returned has completed.
 *   - The event a call returns through `event` is retained for the caller, who must
 *     clReleaseEvent it. Events in `event_wait_list` are not taken over.
 *   - Strings returned by NormCL are owned by NormCL (see each function).
 *
 * Thread safety
 *   - Any function may be called from any thread, and calls on one runtime may run
 *     concurrently from several threads: the runtime is thread-safe. NormCL's commands on
 *     one runtime run in the order they were submitted (also on an out-of-order queue,
 *     where each waits for the previous one's event); concurrent calls are submitted in
 *     an unspecified order among themselves.
 *   - normcl_runtime_release must not run while another call uses that runtime.
 *   - The last-error message is per thread.
 *
 * Events
 *   - `num_events_in_wait_list` / `event_wait_list`: the op's first command waits for
 *     these (as in clEnqueueNDRangeKernel: a NULL list with a count > 0, a non-NULL list
 *     with a count of 0, or a NULL or invalid event in it is NORMCL_INVALID_ARGUMENT).
 *   - `event` (may be NULL): receives the event of the op's last command, which completes
 *     after all of the op's work; on an out-of-order queue wait for it (or pass it on)
 *     before reading the results. An op that enqueues no kernel (an empty input, or a
 *     backward call with every gradient NULL, which does nothing) returns a marker
 *     event that completes after the wait list. On failure *event is set to NULL.
 *   - The calls never block on the device, except that on PoCL the first launch of each
 *     kernel waits for that kernel (see docs/POCL.md); that wait is skipped while an
 *     event of the wait list has not completed.
 *
 * Errors
 *   - Every function returns a normcl_status: NORMCL_SUCCESS (0) or a negative code, and
 *     on failure sets a readable message for the calling thread,
 *     normcl_last_error_message(). Nothing is thrown across the boundary and bad
 *     arguments never crash: NULL pointers, ranks over NORMCL_MAX_RANK, negative
 *     dims, unknown enum values, wrong shapes, offsets past a buffer's end, buffers of
 *     another context and buffers OpenCL reports invalid are errors. Not detectable:
 *     a buffer already released and freed (querying it reads freed memory; with the
 *     ocl-icd loader and PoCL the query crashes) and a dangling runtime pointer.
 *   - When a call fails, no caller buffer has been written (running statistics
 *     included) and *event is NULL: arguments and outputs are checked before any kernel
 *     is enqueued (Switchable Norm's branch statistics, which are copied into the
 *     caller's tensors after its kernels, are checked after them).
 *   - Messages name the C parameters (x, y, save_mean, ...) and NormCL's checks; their
 *     wording may change between versions, the status codes do not.
 * ---------------------------------------------------------------------------------------
 */
#ifndef NORMCL_H
#define NORMCL_H

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 300 /* the headers' own default, without their warning */
#endif
#include <CL/cl.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The version of this header's interface; normcl_api_version() returns the library's,
 * which has every function of the versions up to its own (use a function of version N
 * only when normcl_api_version() >= N). 1: the plain ops; 2: the fused epilogues (the
 * `_fused` functions, normcl_epilogue, normcl_activation). */
#define NORMCL_API_VERSION 2

/* ---- Status codes -------------------------------------------------------------------- */
typedef enum normcl_status {
    NORMCL_SUCCESS = 0,
    NORMCL_INVALID_ARGUMENT = -1, /* NULL pointer, unknown enum value, bad value, invalid buffer or event */
    NORMCL_INVALID_SHAPE = -2,    /* negative dims, rank over NORMCL_MAX_RANK, a shape the op cannot take */
    NORMCL_SHAPE_MISMATCH = -3,   /* a tensor whose shape does not fit the op's other tensors */
    NORMCL_UNSUPPORTED = -4,      /* valid but not supported: a layout or element type an op does not take */
    NORMCL_OPENCL_ERROR = -5,     /* an OpenCL call failed (the message names the call and its code) */
    NORMCL_BUILD_ERROR = -6,      /* an OpenCL program failed to build (the message has the build log) */
    NORMCL_OUT_OF_MEMORY = -7,    /* device or host memory could not be allocated */
    NORMCL_INTERNAL_ERROR = -8    /* anything else */
} normcl_status;

/* ---- Tensor descriptors -------------------------------------------------------------- */
#define NORMCL_MAX_RANK 8

/* Element storage type. Statistics, weights, biases and their gradients are always F32. */
enum { NORMCL_DTYPE_F32 = 0, NORMCL_DTYPE_F16 = 1 };

/* Memory layout of an (N, C, *spatial) tensor; the shape is always given as (N, C, ...).
 * CHANNELS_LAST (NHWC) is supported by BatchNorm, GroupNorm, InstanceNorm and Switchable
 * Norm (not LayerNorm and RMSNorm); rank 1 and 2 tensors are the same memory either way.
 * Outputs of rank >= 3 have the input's layout. */
enum { NORMCL_LAYOUT_CHANNELS_FIRST = 0, NORMCL_LAYOUT_CHANNELS_LAST = 1 };

/* A view of caller memory: `shape`'s elements, densely packed in `layout`, from
 * `byte_offset` bytes into `buffer`. Zero-initialise it, then set the fields.
 *   - buffer: a buffer of the runtime's context. NULL means "absent" (an optional input
 *     such as weight, or an output the caller does not want). A tensor with no elements
 *     may have a NULL buffer where the tensor is required.
 *   - byte_offset: a multiple of the element size. At 0 or a multiple of the device's
 *     CL_DEVICE_MEM_BASE_ADDR_ALIGN (in bytes: the value OpenCL reports in bits / 8; 128 on
 *     PoCL and NVIDIA) the view is zero-copy (a sub-buffer); at other offsets each op
 *     copies the bytes into a buffer of NormCL's and its results back (same results, one
 *     copy each way; the returned event follows the copy back).
 *   - rank: 0..NORMCL_MAX_RANK; shape[0..rank-1] are the dims (>= 0), the rest ignored.
 *   - dtype: NORMCL_DTYPE_*; layout: NORMCL_LAYOUT_*. */
typedef struct normcl_tensor {
    cl_mem buffer;
    uint64_t byte_offset;
    int64_t shape[NORMCL_MAX_RANK];
    int32_t rank;
    int32_t dtype;
    int32_t layout;
    int32_t reserved; /* set to 0 */
} normcl_tensor;

/* The library reads descriptors at these offsets: a compile error here means a platform
 * the library was not built for. */
typedef char normcl_tensor_layout_check_[
    (sizeof(normcl_tensor) == 96 && offsetof(normcl_tensor, byte_offset) == 8 &&
     offsetof(normcl_tensor, shape) == 16 && offsetof(normcl_tensor, rank) == 80 &&
     offsetof(normcl_tensor, dtype) == 84 && offsetof(normcl_tensor, layout) == 88) ? 1 : -1];

/* ---- Library ----------------------------------------------------------------------- */

/* NORMCL_API_VERSION of the library (at least the header's for every function of it). */
int normcl_api_version(void);

/* The library version, e.g. "0.1.0": a static string, never freed. */
const char *normcl_version(void);

/* The message of the last failed call on this thread ("" if none). Owned by NormCL and
 * valid until the next failing call on this thread. */
const char *normcl_last_error_message(void);

/* ---- Runtime ------------------------------------------------------------------------- */

/* An opaque NormCL runtime on the caller's context, queue and device. */
typedef struct normcl_runtime normcl_runtime;

/* Creates a runtime that enqueues on `queue` (in-order or out-of-order; NormCL's
 * programs are compiled for `device` and cached). Retains the three handles.
 * The queue must belong to `context` and `device`. *out receives the runtime. */
int normcl_runtime_create(cl_context context, cl_command_queue queue, cl_device_id device, normcl_runtime **out);

/* Frees NormCL's device memory and programs and releases the handles the runtime
 * retained, once the runtime's tensors are gone. It first finishes the queue
 * (clFinish), unless NormCL's queued work waits for an event of a wait list that has not
 * completed (a user event the caller sets later): then it only flushes, and OpenCL keeps
 * what the queued commands use until they finish. NULL is a no-op. */
int normcl_runtime_release(normcl_runtime *runtime);

/* ---- Ops ---------------------------------------------------------------------------------
 * Conventions for every op below:
 *   - Inputs are `const normcl_tensor *`; an optional one (weight, bias, running
 *     statistics) is absent when the pointer or its buffer is NULL.
 *   - Every output is a caller tensor with exactly the result's shape, dtype and layout
 *     (statistics and parameter gradients F32). A forward's y is required; its saved
 *     statistics may be NULL (not returned). A backward computes only the gradients
 *     whose tensor is non-NULL (dx, dweight, dbias: the output mask).
 *   - Outputs must not overlap inputs, except running statistics, which are updated in
 *     place, nor each other (NORMCL_INVALID_ARGUMENT).
 *   - The math, the defaults and the PyTorch counterparts are those of the Swift API
 *     (docs/SEMANTICS.md): biased variance for normalisation, unbiased in running updates.
 *   - momentum: the new batch's weight in the running update, in [0, 1], or
 *     NORMCL_MOMENTUM_CUMULATIVE for a cumulative average (PyTorch's momentum=None), which
 *     needs num_batches_tracked. num_batches_tracked (may be NULL) is incremented on
 *     success of a call that updates running statistics (also an empty input's). */
#define NORMCL_MOMENTUM_CUMULATIVE (-1.0f)
/* RMSNorm's eps=None: the input dtype's machine epsilon. */
#define NORMCL_EPS_DEFAULT (-1.0f)

#define NORMCL_EVENT_ARGS cl_uint num_events_in_wait_list, const cl_event *event_wait_list, cl_event *event

/* LayerNorm over the last `normalized_rank` dims of x (channels-first, or rank <= 2):
 * weight, bias [normalized shape]; save_mean, save_invstd [leading dims of x]. */
int normcl_layer_norm_forward(
    normcl_runtime *runtime, const normcl_tensor *x, int32_t normalized_rank, const normcl_tensor *weight,
    const normcl_tensor *bias, float eps, const normcl_tensor *y, const normcl_tensor *save_mean,
    const normcl_tensor *save_invstd, NORMCL_EVENT_ARGS);

/* The LayerNorm backward from the forward's saved statistics (dweight is computed also
 * when weight is NULL: the gradient at weight = 1). */
int normcl_layer_norm_backward(
    normcl_runtime *runtime, const normcl_tensor *dy, const normcl_tensor *x, int32_t normalized_rank,
    const normcl_tensor *weight, const normcl_tensor *save_mean, const normcl_tensor *save_invstd,
    const normcl_tensor *dx, const normcl_tensor *dweight, const normcl_tensor *dbias, NORMCL_EVENT_ARGS);

/* RMSNorm over the last `normalized_rank` dims: y = x / sqrt(mean(x^2) + eps) * weight;
 * save_invrms [leading dims]. eps may be NORMCL_EPS_DEFAULT. */
int normcl_rms_norm_forward(
    normcl_runtime *runtime, const normcl_tensor *x, int32_t normalized_rank, const normcl_tensor *weight, float eps,
    const normcl_tensor *y, const normcl_tensor *save_invrms, NORMCL_EVENT_ARGS);

int normcl_rms_norm_backward(
    normcl_runtime *runtime, const normcl_tensor *dy, const normcl_tensor *x, int32_t normalized_rank,
    const normcl_tensor *weight, const normcl_tensor *save_invrms, const normcl_tensor *dx,
    const normcl_tensor *dweight, NORMCL_EVENT_ARGS);

/* BatchNorm training: batch statistics per channel of x (N, C, *spatial); weight, bias,
 * running_mean, running_var, save_mean, save_invstd [C]. Running statistics (both or
 * neither) are updated in place. */
int normcl_batch_norm_forward_training(
    normcl_runtime *runtime, const normcl_tensor *x, const normcl_tensor *weight, const normcl_tensor *bias,
    const normcl_tensor *running_mean, const normcl_tensor *running_var, float momentum,
    int64_t *num_batches_tracked, float eps, const normcl_tensor *y, const normcl_tensor *save_mean,
    const normcl_tensor *save_invstd, NORMCL_EVENT_ARGS);

/* BatchNorm inference: normalises with the running statistics (required). */
int normcl_batch_norm_forward_inference(
    normcl_runtime *runtime, const normcl_tensor *x, const normcl_tensor *weight, const normcl_tensor *bias,
    const normcl_tensor *running_mean, const normcl_tensor *running_var, float eps, const normcl_tensor *y,
    NORMCL_EVENT_ARGS);

/* The backward of a training forward, from its saved statistics. */
int normcl_batch_norm_backward_training(
    normcl_runtime *runtime, const normcl_tensor *dy, const normcl_tensor *x, const normcl_tensor *weight,
    const normcl_tensor *save_mean, const normcl_tensor *save_invstd, const normcl_tensor *dx,
    const normcl_tensor *dweight, const normcl_tensor *dbias, NORMCL_EVENT_ARGS);

/* The backward of an inference forward (the running statistics are constants). */
int normcl_batch_norm_backward_inference(
    normcl_runtime *runtime, const normcl_tensor *dy, const normcl_tensor *x, const normcl_tensor *weight,
    const normcl_tensor *running_mean, const normcl_tensor *running_var, float eps, const normcl_tensor *dx,
    const normcl_tensor *dweight, const normcl_tensor *dbias, NORMCL_EVENT_ARGS);

/* Batch Renormalization's training forward (Ioffe 2017; rmax >= 1, dmax >= 0): running
 * statistics required and updated in place; renorm_r, renorm_d [C] (may be NULL). */
int normcl_batch_renorm_forward(
    normcl_runtime *runtime, const normcl_tensor *x, const normcl_tensor *weight, const normcl_tensor *bias,
    const normcl_tensor *running_mean, const normcl_tensor *running_var, float rmax, float dmax, float momentum,
    int64_t *num_batches_tracked, float eps, const normcl_tensor *y, const normcl_tensor *save_mean,
    const normcl_tensor *save_invstd, const normcl_tensor *renorm_r, const normcl_tensor *renorm_d,
    NORMCL_EVENT_ARGS);

int normcl_batch_renorm_backward(
    normcl_runtime *runtime, const normcl_tensor *dy, const normcl_tensor *x, const normcl_tensor *weight,
    const normcl_tensor *save_mean, const normcl_tensor *save_invstd, const normcl_tensor *renorm_r,
    const normcl_tensor *renorm_d, const normcl_tensor *dx, const normcl_tensor *dweight,
    const normcl_tensor *dbias, NORMCL_EVENT_ARGS);

/* GroupNorm of x (N, C, *spatial) in `num_groups` groups of channels: weight, bias [C];
 * save_mean, save_invstd [N, num_groups]. */
int normcl_group_norm_forward(
    normcl_runtime *runtime, const normcl_tensor *x, int32_t num_groups, const normcl_tensor *weight,
    const normcl_tensor *bias, float eps, const normcl_tensor *y, const normcl_tensor *save_mean,
    const normcl_tensor *save_invstd, NORMCL_EVENT_ARGS);

int normcl_group_norm_backward(
    normcl_runtime *runtime, const normcl_tensor *dy, const normcl_tensor *x, int32_t num_groups,
    const normcl_tensor *weight, const normcl_tensor *save_mean, const normcl_tensor *save_invstd,
    const normcl_tensor *dx, const normcl_tensor *dweight, const normcl_tensor *dbias, NORMCL_EVENT_ARGS);

/* InstanceNorm of x (N, C, *spatial, at least one spatial dim): weight, bias,
 * running_mean, running_var [C]; save_mean, save_invstd [N, C]. With use_input_stats != 0
 * it normalises each (n, c) with its own statistics and, when running statistics are
 * given, updates them in place; with use_input_stats == 0 it normalises with the running
 * statistics (required) and saves none. */
int normcl_instance_norm_forward(
    normcl_runtime *runtime, const normcl_tensor *x, const normcl_tensor *weight, const normcl_tensor *bias,
    const normcl_tensor *running_mean, const normcl_tensor *running_var, int use_input_stats, float momentum,
    int64_t *num_batches_tracked, float eps, const normcl_tensor *y, const normcl_tensor *save_mean,
    const normcl_tensor *save_invstd, NORMCL_EVENT_ARGS);

/* The backward of a use_input_stats forward, from its saved statistics. */
int normcl_instance_norm_backward(
    normcl_runtime *runtime, const normcl_tensor *dy, const normcl_tensor *x, const normcl_tensor *weight,
    const normcl_tensor *save_mean, const normcl_tensor *save_invstd, const normcl_tensor *dx,
    const normcl_tensor *dweight, const normcl_tensor *dbias, NORMCL_EVENT_ARGS);

/* The backward of a use_input_stats == 0 forward (the running statistics are constants). */
int normcl_instance_norm_backward_inference(
    normcl_runtime *runtime, const normcl_tensor *dy, const normcl_tensor *x, const normcl_tensor *weight,
    const normcl_tensor *running_mean, const normcl_tensor *running_var, float eps, const normcl_tensor *dx,
    const normcl_tensor *dweight, const normcl_tensor *dbias, NORMCL_EVENT_ARGS);

/* Switchable Norm (Luo et al. 2018; docs/SEMANTICS.md): a softmax-weighted mix of
 * instance, layer and batch statistics of x (N, C, *spatial).
 *   - branches: NORMCL_SWITCHABLE_*; the logits (mean_logits, var_logits) have one entry
 *     per branch (3, 2, 2), in the order instance, layer, batch. unbiased_variance != 0:
 *     the instance variances use L - 1 (the default of the reference code), else L.
 *   - training != 0: the batch branch uses this batch's statistics and updates the running
 *     statistics in place when given; training == 0: the batch branch uses the running
 *     statistics (required with a batch branch).
 *   - statistics: the forward's outputs and the backward's inputs, see the struct; the
 *     forward writes those whose buffer is non-NULL, the backward needs save_mean,
 *     save_invstd, layer_mean, layer_var, and instance_mean/instance_var with an instance
 *     branch, batch_mean/batch_var in training with a batch branch.
 *   - The backward always computes the logit gradients; d_mean_logits, d_var_logits
 *     receive them when non-NULL. */
enum {
    NORMCL_SWITCHABLE_INSTANCE_LAYER_BATCH = 0,
    NORMCL_SWITCHABLE_INSTANCE_LAYER = 1,
    NORMCL_SWITCHABLE_LAYER_BATCH = 2
};

typedef struct normcl_switchable_norm_statistics {
    normcl_tensor save_mean, save_invstd;      /* [N, C]: the mixed mean and 1/sqrt(var + eps) */
    normcl_tensor instance_mean, instance_var; /* [N, C] (branches with instance) */
    normcl_tensor layer_mean, layer_var;       /* [N] */
    normcl_tensor batch_mean, batch_var;       /* [C] (training, branches with batch) */
} normcl_switchable_norm_statistics;

typedef char normcl_switchable_norm_statistics_layout_check_[
    (sizeof(normcl_switchable_norm_statistics) == 8 * sizeof(normcl_tensor)) ? 1 : -1];

int normcl_switchable_norm_forward(
    normcl_runtime *runtime, const normcl_tensor *x, const normcl_tensor *mean_logits,
    const normcl_tensor *var_logits, const normcl_tensor *weight, const normcl_tensor *bias,
    const normcl_tensor *running_mean, const normcl_tensor *running_var, int training, int32_t branches,
    int unbiased_variance, float momentum, int64_t *num_batches_tracked, float eps, const normcl_tensor *y,
    const normcl_switchable_norm_statistics *statistics, NORMCL_EVENT_ARGS);

int normcl_switchable_norm_backward(
    normcl_runtime *runtime, const normcl_tensor *dy, const normcl_tensor *x, const normcl_tensor *mean_logits,
    const normcl_tensor *var_logits, const normcl_tensor *weight, const normcl_tensor *running_mean,
    const normcl_tensor *running_var, int training, int32_t branches, int unbiased_variance, float eps,
    const normcl_switchable_norm_statistics *statistics, const normcl_tensor *dx, const normcl_tensor *dweight,
    const normcl_tensor *dbias, const normcl_tensor *d_mean_logits, const normcl_tensor *d_var_logits,
    NORMCL_EVENT_ARGS);

/* ---- Fused epilogues ---------------------------------------------------------------------
 * What a network does right around a norm, done in the norm's own pass (docs/C-API.md
 * "Fused epilogues", docs/SEMANTICS.md "Fused epilogues"), forward and backward:
 *
 *   LayerNorm, RMSNorm   h = (x + input_bias) + residual;
 *                        y = f(norm(h) * (weight + weight_offset) + bias)
 *   BatchNorm, Renorm    y = f(BN(x) + addend)                 (dz = dy * f'(a) in the backward)
 *   GroupNorm            y = f(GN(x))
 *
 * with f the activation. Each fused op has `_fused` functions beside its plain ones. The
 * plain functions are unchanged and are the `_fused` ones with every fused tensor NULL
 * and a NULL epilogue. In the `_fused` functions:
 *   - The fused tensors are ordinary arguments, checked and named like every other: the
 *     inputs (residual, input_bias, addend, grad_residual_sum, RMSNorm's bias) are
 *     optional, the outputs (residual_sum, dz, dinput_bias) are written when non-NULL.
 *   - The scalar options are in a normcl_epilogue, passed by pointer; NULL means no
 *     activation and no weight offset. The struct starts with its own size, so that a
 *     later version can add options to it without new functions: initialise it with
 *     NORMCL_EPILOGUE_INIT, then set the fields.
 * The backward of a fused forward takes the same fused inputs and epilogue as the
 * forward: it recomputes the activation's input (and h) from them and the saved
 * statistics rather than reading a stored copy. */

/* The activation f applied after the norm (PyTorch's CPU formulas; NaN and Inf propagate
 * as there): RELU max(a, 0) with NaN kept; SILU a * sigmoid(a); GELU a * Phi(a) (exact,
 * approximate="none"); GELU_TANH the tanh approximation (approximate="tanh"). Any other
 * value is NORMCL_INVALID_ARGUMENT. */
typedef enum normcl_activation {
    NORMCL_ACTIVATION_NONE = 0,
    NORMCL_ACTIVATION_RELU = 1,
    NORMCL_ACTIVATION_SILU = 2,
    NORMCL_ACTIVATION_GELU = 3,
    NORMCL_ACTIVATION_GELU_TANH = 4
} normcl_activation;

/* The scalar options of a `_fused` call.
 *   - struct_size: sizeof(normcl_epilogue) (NORMCL_EPILOGUE_INIT sets it). A size this
 *     library does not know is NORMCL_INVALID_ARGUMENT (smaller) or NORMCL_UNSUPPORTED
 *     (larger: a newer header's struct needs a newer library).
 *   - activation: a normcl_activation.
 *   - weight_offset: LayerNorm and RMSNorm: added to every weight before it scales (1 for
 *     Gemma's zero-centred weight, x * rstd * (1 + w)); finite; non-zero needs a weight.
 *     dweight is unchanged by it. Must be 0 for the other ops (NORMCL_UNSUPPORTED).
 *   - reserved: 0. */
typedef struct normcl_epilogue {
    uint32_t struct_size;
    int32_t activation;
    float weight_offset;
    uint32_t reserved;
} normcl_epilogue;

#define NORMCL_EPILOGUE_INIT {sizeof(normcl_epilogue), NORMCL_ACTIVATION_NONE, 0.0f, 0}

typedef char normcl_epilogue_layout_check_[
    (sizeof(normcl_epilogue) == 16 && offsetof(normcl_epilogue, activation) == 4 &&
     offsetof(normcl_epilogue, weight_offset) == 8) ? 1 : -1];

/* LayerNorm of h = (x + input_bias) + residual, with the epilogue. residual (may be NULL:
 * h = x) has x's shape and layout and x's dtype, or F32 under F16 x (the residual stream
 * kept in float32). input_bias (may be NULL; needs a residual) is F32 [normalized shape]:
 * the bias of the linear layer that produced x (Megatron's bias-dropout-add without the
 * dropout). h is formed in float32, its statistics taken from that, and written to
 * residual_sum (may be NULL; needs a residual) in the residual's dtype. save_mean and
 * save_invstd are h's. */
int normcl_layer_norm_forward_fused(
    normcl_runtime *runtime, const normcl_tensor *x, const normcl_tensor *residual, const normcl_tensor *input_bias,
    int32_t normalized_rank, const normcl_tensor *weight, const normcl_tensor *bias, float eps,
    const normcl_epilogue *epilogue, const normcl_tensor *y, const normcl_tensor *save_mean,
    const normcl_tensor *save_invstd, const normcl_tensor *residual_sum, NORMCL_EVENT_ARGS);

/* The backward of normcl_layer_norm_forward_fused: x, residual, input_bias, weight, bias
 * and epilogue as in the forward (bias is read only with an activation, whose input it
 * shifts).
 *   - residual_sum (may be NULL; needs the residual): the h the forward wrote; with x's
 *     dtype it is read instead of x and the residual (one tensor read instead of two).
 *   - grad_residual_sum (may be NULL; needs the residual): dL/dh from elsewhere (the next
 *     block's residual stream), in h's dtype, added to dx.
 *   - dx is the gradient of x and of the residual alike; dweight, dbias as in the plain
 *     backward, of g = dy * f'(a); dinput_bias (may be NULL; needs the input_bias): F32
 *     [normalized shape], the sum of dx over the rows. */
int normcl_layer_norm_backward_fused(
    normcl_runtime *runtime, const normcl_tensor *dy, const normcl_tensor *x, const normcl_tensor *residual,
    const normcl_tensor *input_bias, const normcl_tensor *residual_sum, int32_t normalized_rank,
    const normcl_tensor *weight, const normcl_tensor *bias, const normcl_tensor *save_mean,
    const normcl_tensor *save_invstd, const normcl_epilogue *epilogue, const normcl_tensor *grad_residual_sum,
    const normcl_tensor *dx, const normcl_tensor *dweight, const normcl_tensor *dbias,
    const normcl_tensor *dinput_bias, NORMCL_EVENT_ARGS);

/* RMSNorm of h = (x + input_bias) + residual, with the epilogue: y = f(h * rstd(h) *
 * (weight + weight_offset) + bias). bias [normalized shape] (may be NULL) is an offset
 * added after the scaling; residual, input_bias and residual_sum as in
 * normcl_layer_norm_forward_fused (vLLM's fused_add_rms_norm). eps may be
 * NORMCL_EPS_DEFAULT (x's dtype's epsilon). */
int normcl_rms_norm_forward_fused(
    normcl_runtime *runtime, const normcl_tensor *x, const normcl_tensor *residual, const normcl_tensor *input_bias,
    int32_t normalized_rank, const normcl_tensor *weight, const normcl_tensor *bias, float eps,
    const normcl_epilogue *epilogue, const normcl_tensor *y, const normcl_tensor *save_invrms,
    const normcl_tensor *residual_sum, NORMCL_EVENT_ARGS);

/* The backward of normcl_rms_norm_forward_fused; the arguments as in
 * normcl_layer_norm_backward_fused. dbias (sum over rows of g) needs the bias: without one
 * it is NORMCL_INVALID_ARGUMENT. */
int normcl_rms_norm_backward_fused(
    normcl_runtime *runtime, const normcl_tensor *dy, const normcl_tensor *x, const normcl_tensor *residual,
    const normcl_tensor *input_bias, const normcl_tensor *residual_sum, int32_t normalized_rank,
    const normcl_tensor *weight, const normcl_tensor *bias, const normcl_tensor *save_invrms,
    const normcl_epilogue *epilogue, const normcl_tensor *grad_residual_sum, const normcl_tensor *dx,
    const normcl_tensor *dweight, const normcl_tensor *dbias, const normcl_tensor *dinput_bias, NORMCL_EVENT_ARGS);

/* BatchNorm training with the epilogue: y = f(BN(x) + addend), the ResNet block's
 * relu(bn(conv) + shortcut). addend (may be NULL) has x's shape, layout and dtype. The
 * rest as in normcl_batch_norm_forward_training. */
int normcl_batch_norm_forward_training_fused(
    normcl_runtime *runtime, const normcl_tensor *x, const normcl_tensor *weight, const normcl_tensor *bias,
    const normcl_tensor *running_mean, const normcl_tensor *running_var, float momentum,
    int64_t *num_batches_tracked, float eps, const normcl_tensor *addend, const normcl_epilogue *epilogue,
    const normcl_tensor *y, const normcl_tensor *save_mean, const normcl_tensor *save_invstd, NORMCL_EVENT_ARGS);

/* BatchNorm inference with the epilogue: y = f(BN(x) + addend), the running statistics
 * required. */
int normcl_batch_norm_forward_inference_fused(
    normcl_runtime *runtime, const normcl_tensor *x, const normcl_tensor *weight, const normcl_tensor *bias,
    const normcl_tensor *running_mean, const normcl_tensor *running_var, float eps, const normcl_tensor *addend,
    const normcl_epilogue *epilogue, const normcl_tensor *y, NORMCL_EVENT_ARGS);

/* Batch Renorm's training forward with the epilogue: y = f(BatchRenorm(x) + addend). */
int normcl_batch_renorm_forward_fused(
    normcl_runtime *runtime, const normcl_tensor *x, const normcl_tensor *weight, const normcl_tensor *bias,
    const normcl_tensor *running_mean, const normcl_tensor *running_var, float rmax, float dmax, float momentum,
    int64_t *num_batches_tracked, float eps, const normcl_tensor *addend, const normcl_epilogue *epilogue,
    const normcl_tensor *y, const normcl_tensor *save_mean, const normcl_tensor *save_invstd,
    const normcl_tensor *renorm_r, const normcl_tensor *renorm_d, NORMCL_EVENT_ARGS);

/* The backward of a fused BatchNorm training forward: weight, bias, addend and epilogue as
 * in the forward (bias is read only with an activation). dy is taken through the
 * activation at a = BN(x) + addend, recomputed: g = dy * f'(a); dx, dweight, dbias are
 * the plain backward's of g, and dz (may be NULL; needs the addend) receives g, the
 * addend's gradient, in the addend's shape, layout and dtype. */
int normcl_batch_norm_backward_training_fused(
    normcl_runtime *runtime, const normcl_tensor *dy, const normcl_tensor *x, const normcl_tensor *weight,
    const normcl_tensor *bias, const normcl_tensor *save_mean, const normcl_tensor *save_invstd,
    const normcl_tensor *addend, const normcl_epilogue *epilogue, const normcl_tensor *dx,
    const normcl_tensor *dweight, const normcl_tensor *dbias, const normcl_tensor *dz, NORMCL_EVENT_ARGS);

/* The backward of a fused BatchNorm inference forward (the running statistics constant);
 * the fused arguments as in normcl_batch_norm_backward_training_fused. */
int normcl_batch_norm_backward_inference_fused(
    normcl_runtime *runtime, const normcl_tensor *dy, const normcl_tensor *x, const normcl_tensor *weight,
    const normcl_tensor *bias, const normcl_tensor *running_mean, const normcl_tensor *running_var, float eps,
    const normcl_tensor *addend, const normcl_epilogue *epilogue, const normcl_tensor *dx,
    const normcl_tensor *dweight, const normcl_tensor *dbias, const normcl_tensor *dz, NORMCL_EVENT_ARGS);

/* The backward of normcl_batch_renorm_forward_fused (r and d constant); the fused
 * arguments as in normcl_batch_norm_backward_training_fused. */
int normcl_batch_renorm_backward_fused(
    normcl_runtime *runtime, const normcl_tensor *dy, const normcl_tensor *x, const normcl_tensor *weight,
    const normcl_tensor *bias, const normcl_tensor *save_mean, const normcl_tensor *save_invstd,
    const normcl_tensor *renorm_r, const normcl_tensor *renorm_d, const normcl_tensor *addend,
    const normcl_epilogue *epilogue, const normcl_tensor *dx, const normcl_tensor *dweight,
    const normcl_tensor *dbias, const normcl_tensor *dz, NORMCL_EVENT_ARGS);

/* GroupNorm with the epilogue's activation: y = f(GN(x)) (the diffusion U-Net's
 * silu(group_norm(x))), in both layouts. */
int normcl_group_norm_forward_fused(
    normcl_runtime *runtime, const normcl_tensor *x, int32_t num_groups, const normcl_tensor *weight,
    const normcl_tensor *bias, float eps, const normcl_epilogue *epilogue, const normcl_tensor *y,
    const normcl_tensor *save_mean, const normcl_tensor *save_invstd, NORMCL_EVENT_ARGS);

/* The backward of normcl_group_norm_forward_fused: dy is taken through the activation at
 * a = x_hat * weight + bias (recomputed; bias is read only with an activation), then
 * GroupNorm's own backward. */
int normcl_group_norm_backward_fused(
    normcl_runtime *runtime, const normcl_tensor *dy, const normcl_tensor *x, int32_t num_groups,
    const normcl_tensor *weight, const normcl_tensor *bias, const normcl_tensor *save_mean,
    const normcl_tensor *save_invstd, const normcl_epilogue *epilogue, const normcl_tensor *dx,
    const normcl_tensor *dweight, const normcl_tensor *dbias, NORMCL_EVENT_ARGS);

#undef NORMCL_EVENT_ARGS

#ifdef __cplusplus
}
#endif

#endif /* NORMCL_H */
