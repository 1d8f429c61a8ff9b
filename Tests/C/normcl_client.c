/*
 * A C program with its own OpenCL context, queues and buffers that calls NormCL through
 * include/normcl.h (Tests/C/run.sh builds and runs it).
 *
 * On an in-order and an out-of-order queue: LayerNorm and BatchNorm (training with the
 * running statistics updated in place, inference) forward and backward, chained by the
 * events NormCL returns and checked against a double-precision reference below; the
 * fused epilogues (RMSNorm + residual with the sum returned, BatchNorm + addend + ReLU
 * with dz, GroupNorm + SiLU) forward and backward against the same; an empty input (the
 * marker event); then bad arguments, plain and fused: error codes and messages.
 * Prints one line per check group and exits non-zero on any failure.
 */
#include "normcl.h"

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int failures = 0;

#define CHECK(cond, ...)                                                                     \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            failures++;                                                                      \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                             \
            fprintf(stderr, __VA_ARGS__);                                                    \
            fputc('\n', stderr);                                                             \
        }                                                                                    \
    } while (0)

#define CL_OK(call)                                                                          \
    do {                                                                                     \
        cl_int status_ = (call);                                                             \
        if (status_ != CL_SUCCESS) {                                                         \
            fprintf(stderr, "FATAL %s:%d: %s = %d\n", __FILE__, __LINE__, #call, status_);     \
            exit(2);                                                                         \
        }                                                                                    \
    } while (0)

/* A NormCL call that must succeed: prints NormCL's message otherwise. */
#define NORMCL_OK(call)                                                                      \
    do {                                                                                     \
        int status_ = (call);                                                                \
        CHECK(status_ == NORMCL_SUCCESS, "%s = %d: %s", #call, status_, normcl_last_error_message()); \
    } while (0)

typedef struct {
    const char *name;
    cl_context context;
    cl_command_queue queue;
    cl_device_id device;
    normcl_runtime *runtime;
    size_t alignment; /* CL_DEVICE_MEM_BASE_ADDR_ALIGN in bytes */
} env;

/* ---- Helpers ------------------------------------------------------------------------ */

static unsigned long long rng_state = 12345;
static float uniform(void) { /* in [-1, 1) */
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((double)(rng_state >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}
static void fill_random(float *v, size_t n, float scale, float shift) {
    for (size_t i = 0; i < n; i++) v[i] = shift + scale * uniform();
}

static normcl_tensor tensor(cl_mem buffer, uint64_t byte_offset, int rank, const int64_t *shape) {
    normcl_tensor t;
    memset(&t, 0, sizeof t);
    t.buffer = buffer;
    t.byte_offset = byte_offset;
    t.rank = rank;
    for (int i = 0; i < rank; i++) t.shape[i] = shape[i];
    t.dtype = NORMCL_DTYPE_F32;
    t.layout = NORMCL_LAYOUT_CHANNELS_FIRST;
    return t;
}

static cl_mem buffer(env *e, size_t bytes) {
    cl_int status;
    cl_mem b = clCreateBuffer(e->context, CL_MEM_READ_WRITE, bytes, NULL, &status);
    CL_OK(status);
    return b;
}

/* Writes `n` floats at `byte_offset` without blocking; the write's event goes to *done. */
static void write_async(env *e, cl_mem b, size_t byte_offset, const float *v, size_t n, cl_event *done) {
    CL_OK(clEnqueueWriteBuffer(e->queue, b, CL_FALSE, byte_offset, n * sizeof(float), v, 0, NULL, done));
}

/* A buffer holding `v` (blocking write). */
static cl_mem upload(env *e, const float *v, size_t n) {
    cl_mem b = buffer(e, n * sizeof(float));
    CL_OK(clEnqueueWriteBuffer(e->queue, b, CL_TRUE, 0, n * sizeof(float), v, 0, NULL, NULL));
    return b;
}

/* A buffer of `n` random values (fill_random), which stay in `v` for the reference. */
static cl_mem random_upload(env *e, float *v, size_t n, float scale, float shift) {
    fill_random(v, n, scale, shift);
    return upload(e, v, n);
}

/* A buffer of NaNs, so that an element NormCL does not write fails the comparison. */
static cl_mem nans(env *e, size_t n) {
    float *v = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) v[i] = NAN;
    cl_mem b = upload(e, v, n);
    free(v);
    return b;
}

/* Reads `n` floats at `byte_offset` after `after` (which it releases). */
static void download(env *e, cl_mem b, size_t byte_offset, float *out, size_t n, cl_event after) {
    CL_OK(clEnqueueReadBuffer(e->queue, b, CL_TRUE, byte_offset, n * sizeof(float), out, after ? 1 : 0,
                              after ? &after : NULL, NULL));
    if (after) clReleaseEvent(after);
}

/* A buffer to read back: `n` floats into `values`. */
typedef struct {
    cl_mem buffer;
    float *values;
    size_t n;
} readback;

/* Waits for `done` (the last event of an op chain), reads each of `reads`, releases `done`. */
static void download_all(env *e, cl_event done, const readback *reads, size_t count) {
    CL_OK(clWaitForEvents(1, &done));
    for (size_t i = 0; i < count; i++) download(e, reads[i].buffer, 0, reads[i].values, reads[i].n, NULL);
    clReleaseEvent(done);
}

static int close_to(const env *e, const char *what, const float *got, const double *want, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (!(fabs((double)got[i] - want[i]) <= 1e-4 * (1.0 + fabs(want[i])))) {
            CHECK(0, "[%s] %s[%zu] = %.7g, expected %.7g", e->name, what, i, got[i], want[i]);
            return 0;
        }
    }
    return 1;
}

/* ---- Reference (double precision) ----------------------------------------------------- */

static void layer_norm_reference(const float *x, size_t rows, size_t d, const float *w, const float *b, double eps,
                                 double *y, double *mean, double *invstd) {
    for (size_t r = 0; r < rows; r++) {
        const float *row = x + r * d;
        double m = 0, v = 0;
        for (size_t i = 0; i < d; i++) m += row[i];
        m /= (double)d;
        for (size_t i = 0; i < d; i++) v += (row[i] - m) * (row[i] - m);
        v /= (double)d;
        mean[r] = m;
        invstd[r] = 1.0 / sqrt(v + eps);
        for (size_t i = 0; i < d; i++) y[r * d + i] = (row[i] - m) * invstd[r] * w[i] + b[i];
    }
}

/* With the device's saved statistics, as NormCL's backward takes them. */
static void layer_norm_backward_reference(const float *dy, const float *x, size_t rows, size_t d, const float *w,
                                          const float *mean, const float *invstd, double *dx, double *dw,
                                          double *db) {
    for (size_t i = 0; i < d; i++) dw[i] = db[i] = 0;
    for (size_t r = 0; r < rows; r++) {
        double sum_g = 0, sum_gx = 0;
        for (size_t i = 0; i < d; i++) {
            double xhat = (x[r * d + i] - (double)mean[r]) * invstd[r], g = (double)dy[r * d + i] * w[i];
            sum_g += g;
            sum_gx += g * xhat;
            dw[i] += dy[r * d + i] * xhat;
            db[i] += dy[r * d + i];
        }
        for (size_t i = 0; i < d; i++) {
            double xhat = (x[r * d + i] - (double)mean[r]) * invstd[r], g = (double)dy[r * d + i] * w[i];
            dx[r * d + i] = invstd[r] / (double)d * ((double)d * g - sum_g - xhat * sum_gx);
        }
    }
}

/* NCHW with M = H*W values per (n, c). */
static void batch_norm_reference(const float *x, size_t n, size_t c, size_t m, const float *w, const float *b,
                                 double eps, double momentum, double *y, double *mean, double *invstd,
                                 double *running_mean, double *running_var) {
    double count = (double)(n * m);
    for (size_t ch = 0; ch < c; ch++) {
        double s = 0, v = 0;
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < m; j++) s += x[(i * c + ch) * m + j];
        s /= count;
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < m; j++) v += (x[(i * c + ch) * m + j] - s) * (x[(i * c + ch) * m + j] - s);
        v /= count;
        mean[ch] = s;
        invstd[ch] = 1.0 / sqrt(v + eps);
        running_mean[ch] = (1 - momentum) * running_mean[ch] + momentum * s;
        running_var[ch] = (1 - momentum) * running_var[ch] + momentum * v * count / (count - 1);
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < m; j++) {
                size_t k = (i * c + ch) * m + j;
                y[k] = (x[k] - s) * invstd[ch] * w[ch] + b[ch];
            }
    }
}

static void batch_norm_backward_reference(const float *dy, const float *x, size_t n, size_t c, size_t m,
                                          const float *w, const float *mean, const float *invstd, double *dx,
                                          double *dw, double *db) {
    double count = (double)(n * m);
    for (size_t ch = 0; ch < c; ch++) {
        double sum_dy = 0, sum_dy_xhat = 0;
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < m; j++) {
                size_t k = (i * c + ch) * m + j;
                sum_dy += dy[k];
                sum_dy_xhat += dy[k] * (x[k] - (double)mean[ch]) * invstd[ch];
            }
        dw[ch] = sum_dy_xhat;
        db[ch] = sum_dy;
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < m; j++) {
                size_t k = (i * c + ch) * m + j;
                double xhat = (x[k] - (double)mean[ch]) * invstd[ch];
                dx[k] = w[ch] * invstd[ch] / count * (count * dy[k] - sum_dy - xhat * sum_dy_xhat);
            }
    }
}

/* ---- LayerNorm ------------------------------------------------------------------------ */

/* x (4, 6, 10) normalised over (6, 10), x and y at a non-zero aligned offset in larger
 * buffers; forward after the caller's write event, backward after the forward's event. */
static void test_layer_norm(env *e) {
    enum { ROWS = 4, D = 60, N = ROWS * D };
    const int64_t shape[3] = {ROWS, 6, 10}, param_shape[2] = {6, 10}, stat_shape[1] = {ROWS};
    const float eps = 1e-5f;
    float x[N], dy[N], w[D], b[D];
    fill_random(x, N, 2.0f, 0.5f);
    fill_random(dy, N, 1.0f, 0.0f);
    fill_random(w, D, 0.5f, 1.0f);
    fill_random(b, D, 0.5f, 0.0f);

    /* In order: a sub-buffer at an aligned offset; out of order: 4 bytes past it, which
     * NormCL stages through a buffer of its own (same results). */
    size_t offset = 2 * e->alignment + (strcmp(e->name, "in-order") == 0 ? 0 : 4);
    cl_mem xb = buffer(e, offset + sizeof x), yb = nans(e, (offset + sizeof x) / sizeof(float));
    cl_event written;
    write_async(e, xb, offset, x, N, &written);
    cl_mem wb = upload(e, w, D), bb = upload(e, b, D), dyb = upload(e, dy, N);
    cl_mem mean_b = nans(e, ROWS), invstd_b = nans(e, ROWS);
    cl_mem dxb = nans(e, N), dwb = nans(e, D), dbb = nans(e, D);

    normcl_tensor xt = tensor(xb, offset, 3, shape), yt = tensor(yb, offset, 3, shape);
    normcl_tensor wt = tensor(wb, 0, 2, param_shape), bt = tensor(bb, 0, 2, param_shape);
    normcl_tensor mt = tensor(mean_b, 0, 1, stat_shape), it = tensor(invstd_b, 0, 1, stat_shape);
    normcl_tensor dyt = tensor(dyb, 0, 3, shape), dxt = tensor(dxb, 0, 3, shape);
    normcl_tensor dwt = tensor(dwb, 0, 2, param_shape), dbt = tensor(dbb, 0, 2, param_shape);

    cl_event forward = NULL, backward = NULL;
    NORMCL_OK(normcl_layer_norm_forward(e->runtime, &xt, 2, &wt, &bt, eps, &yt, &mt, &it, 1, &written, &forward));
    CHECK(forward != NULL, "[%s] layer_norm_forward returned no event", e->name);
    NORMCL_OK(normcl_layer_norm_backward(e->runtime, &dyt, &xt, 2, &wt, &mt, &it, &dxt, &dwt, &dbt, 1, &forward,
                                         &backward));
    CHECK(backward != NULL, "[%s] layer_norm_backward returned no event", e->name);
    clReleaseEvent(written);

    float y[N], mean[ROWS], invstd[ROWS], dx[N], dw[D], db[D];
    CL_OK(clRetainEvent(backward));
    CL_OK(clRetainEvent(backward));
    download(e, yb, offset, y, N, forward);
    download(e, mean_b, 0, mean, ROWS, NULL);
    download(e, invstd_b, 0, invstd, ROWS, NULL);
    download(e, dxb, 0, dx, N, backward);
    download(e, dwb, 0, dw, D, backward);
    download(e, dbb, 0, db, D, backward);

    double y_ref[N], mean_ref[ROWS], invstd_ref[ROWS], dx_ref[N], dw_ref[D], db_ref[D];
    layer_norm_reference(x, ROWS, D, w, b, eps, y_ref, mean_ref, invstd_ref);
    layer_norm_backward_reference(dy, x, ROWS, D, w, mean, invstd, dx_ref, dw_ref, db_ref);
    int ok = close_to(e, "layer_norm y", y, y_ref, N) & close_to(e, "layer_norm save_mean", mean, mean_ref, ROWS) &
             close_to(e, "layer_norm save_invstd", invstd, invstd_ref, ROWS) &
             close_to(e, "layer_norm dx", dx, dx_ref, N) & close_to(e, "layer_norm dweight", dw, dw_ref, D) &
             close_to(e, "layer_norm dbias", db, db_ref, D);

    /* dx only (the output mask): dweight and dbias stay untouched. */
    cl_mem dx2b = nans(e, N);
    normcl_tensor dx2t = tensor(dx2b, 0, 3, shape);
    cl_event only_dx = NULL;
    NORMCL_OK(normcl_layer_norm_backward(e->runtime, &dyt, &xt, 2, &wt, &mt, &it, &dx2t, NULL, NULL, 0, NULL,
                                         &only_dx));
    download(e, dx2b, 0, dx, N, only_dx);
    ok &= close_to(e, "layer_norm dx (mask dx)", dx, dx_ref, N);

    printf("%s: [%s] LayerNorm forward and backward (byte offset %zu, events chained)\n", ok ? "PASS" : "FAIL",
           e->name, offset);
    cl_mem all[] = {xb, yb, wb, bb, dyb, mean_b, invstd_b, dxb, dwb, dbb, dx2b};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) clReleaseMemObject(all[i]);
}

/* ---- BatchNorm ------------------------------------------------------------------------ */

/* x (4, 3, 5, 5): training forward with the running statistics updated in place and
 * num_batches_tracked counted, backward, then inference with the updated statistics. */
static void test_batch_norm(env *e) {
    enum { BN = 4, C = 3, M = 25, N = BN * C * M };
    const int64_t shape[4] = {BN, C, 5, 5}, channel_shape[1] = {C};
    const float eps = 1e-5f, momentum = 0.1f;
    float x[N], dy[N], w[C], b[C], rm[C] = {0.5f, -0.25f, 0.0f}, rv[C] = {1.0f, 2.0f, 0.5f};

    cl_mem xb = random_upload(e, x, N, 3.0f, -1.0f), dyb = random_upload(e, dy, N, 1.0f, 0.0f);
    cl_mem wb = random_upload(e, w, C, 0.5f, 1.0f), bb = random_upload(e, b, C, 0.5f, 0.0f);
    cl_mem yb = nans(e, N), rmb = upload(e, rm, C), rvb = upload(e, rv, C);
    cl_mem mean_b = nans(e, C), invstd_b = nans(e, C), dxb = nans(e, N), dwb = nans(e, C), dbb = nans(e, C);
    cl_mem y2b = nans(e, N);
    normcl_tensor xt = tensor(xb, 0, 4, shape), yt = tensor(yb, 0, 4, shape), dyt = tensor(dyb, 0, 4, shape);
    normcl_tensor wt = tensor(wb, 0, 1, channel_shape), bt = tensor(bb, 0, 1, channel_shape);
    normcl_tensor rmt = tensor(rmb, 0, 1, channel_shape), rvt = tensor(rvb, 0, 1, channel_shape);
    normcl_tensor mt = tensor(mean_b, 0, 1, channel_shape), it = tensor(invstd_b, 0, 1, channel_shape);
    normcl_tensor dxt = tensor(dxb, 0, 4, shape), dwt = tensor(dwb, 0, 1, channel_shape);
    normcl_tensor dbt = tensor(dbb, 0, 1, channel_shape), y2t = tensor(y2b, 0, 4, shape);

    int64_t tracked = 7;
    cl_event forward = NULL, backward = NULL, inference = NULL;
    NORMCL_OK(normcl_batch_norm_forward_training(e->runtime, &xt, &wt, &bt, &rmt, &rvt, momentum, &tracked, eps, &yt,
                                                 &mt, &it, 0, NULL, &forward));
    CHECK(tracked == 8, "[%s] num_batches_tracked = %lld, expected 8", e->name, (long long)tracked);
    NORMCL_OK(normcl_batch_norm_backward_training(e->runtime, &dyt, &xt, &wt, &mt, &it, &dxt, &dwt, &dbt, 1,
                                                  &forward, &backward));
    NORMCL_OK(normcl_batch_norm_forward_inference(e->runtime, &xt, &wt, &bt, &rmt, &rvt, eps, &y2t, 1, &backward,
                                                  &inference));

    float y[N], mean[C], invstd[C], rm_out[C], rv_out[C], dx[N], dw[C], db[C], y2[N];
    const readback reads[] = {{yb, y, N}, {mean_b, mean, C}, {invstd_b, invstd, C}, {rmb, rm_out, C}, {rvb, rv_out, C},
                              {dxb, dx, N}, {dwb, dw, C}, {dbb, db, C}, {y2b, y2, N}};
    download_all(e, inference, reads, sizeof reads / sizeof *reads);
    clReleaseEvent(forward);
    clReleaseEvent(backward);

    double y_ref[N], mean_ref[C], invstd_ref[C], rm_ref[C], rv_ref[C], dx_ref[N], dw_ref[C], db_ref[C], y2_ref[N];
    for (int c = 0; c < C; c++) rm_ref[c] = rm[c], rv_ref[c] = rv[c];
    batch_norm_reference(x, BN, C, M, w, b, eps, momentum, y_ref, mean_ref, invstd_ref, rm_ref, rv_ref);
    batch_norm_backward_reference(dy, x, BN, C, M, w, mean, invstd, dx_ref, dw_ref, db_ref);
    for (int i = 0; i < N; i++) {
        int c = (i / M) % C;
        y2_ref[i] = (x[i] - (double)rm_out[c]) / sqrt((double)rv_out[c] + eps) * w[c] + b[c];
    }
    int ok = close_to(e, "batch_norm y", y, y_ref, N) & close_to(e, "batch_norm save_mean", mean, mean_ref, C) &
             close_to(e, "batch_norm save_invstd", invstd, invstd_ref, C) &
             close_to(e, "batch_norm running_mean", rm_out, rm_ref, C) &
             close_to(e, "batch_norm running_var", rv_out, rv_ref, C) &
             close_to(e, "batch_norm dx", dx, dx_ref, N) & close_to(e, "batch_norm dweight", dw, dw_ref, C) &
             close_to(e, "batch_norm dbias", db, db_ref, C) & close_to(e, "batch_norm inference y", y2, y2_ref, N);
    printf("%s: [%s] BatchNorm training forward (running statistics in place), backward, inference\n",
           ok && tracked == 8 ? "PASS" : "FAIL", e->name);
    cl_mem all[] = {xb, yb, dyb, wb, bb, rmb, rvb, mean_b, invstd_b, dxb, dwb, dbb, y2b};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) clReleaseMemObject(all[i]);
}

/* ---- Empty input: a marker event after the wait list ---------------------------------- */

static void test_empty(env *e) {
    const int64_t shape[2] = {0, 8}, stat_shape[1] = {0};
    normcl_tensor xt = tensor(NULL, 0, 2, shape), yt = tensor(NULL, 0, 2, shape);
    normcl_tensor mt = tensor(NULL, 0, 1, stat_shape);
    cl_int status;
    cl_event gate = clCreateUserEvent(e->context, &status), done = NULL;
    CL_OK(status);
    NORMCL_OK(normcl_layer_norm_forward(e->runtime, &xt, 1, NULL, NULL, 1e-5f, &yt, &mt, NULL, 1, &gate, &done));
    cl_int state = CL_COMPLETE;
    if (done) clGetEventInfo(done, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof state, &state, NULL);
    int pending = done != NULL && state != CL_COMPLETE;
    CL_OK(clSetUserEventStatus(gate, CL_COMPLETE));
    if (done) CL_OK(clWaitForEvents(1, &done));
    CHECK(done != NULL, "[%s] empty input returned no event", e->name);
    CHECK(pending, "[%s] the empty input's marker completed before its wait list", e->name);
    printf("%s: [%s] empty input: a marker event that waits for the wait list\n", done && pending ? "PASS" : "FAIL",
           e->name);
    if (done) clReleaseEvent(done);
    clReleaseEvent(gate);
}

/* ---- Bad arguments ------------------------------------------------------------------- */

static int expect_error(env *e, const char *what, int status, int expected, const char *needle, cl_event event) {
    const char *message = normcl_last_error_message();
    int ok = status == expected && message != NULL && message[0] != '\0' && strstr(message, needle) != NULL &&
             event == NULL;
    if (getenv("NORMCL_CLIENT_VERBOSE")) printf("  [%s] %s: %d \"%s\"\n", e->name, what, status, message);
    CHECK(ok, "[%s] %s: status %d (expected %d), message \"%s\" (expected to mention \"%s\")%s", e->name, what,
          status, expected, message ? message : "(null)", needle, event ? ", and an event" : "");
    return ok;
}

static void test_errors(env *e) {
    const int64_t shape[2] = {4, 8}, param_shape[1] = {8}, stat_shape[1] = {4}, wrong[2] = {4, 7};
    cl_mem xb = nans(e, 32), yb = nans(e, 32), wb = nans(e, 8), sb = nans(e, 4);
    normcl_tensor x = tensor(xb, 0, 2, shape), y = tensor(yb, 0, 2, shape), w = tensor(wb, 0, 1, param_shape);
    normcl_tensor stats = tensor(sb, 0, 1, stat_shape), bad;
    normcl_runtime *runtime = NULL;
    cl_event event = NULL, null_event = NULL;
    int ok = 1, status;
    /* Each call must fail with `expected`, a message that mentions `needle`, and *event
     * (or *out) set to NULL: they start as garbage. */
#define EXPECT_OUT(what, call, expected, needle, out)                                        \
    do {                                                                                     \
        event = (cl_event)1;                                                                 \
        runtime = (normcl_runtime *)1;                                                       \
        status = (call);                                                                     \
        ok &= expect_error(e, what, status, expected, needle, (cl_event)(out));              \
    } while (0)
#define EXPECT(what, call, expected, needle) EXPECT_OUT(what, call, expected, needle, event)
#define LN(runtime, xp, rank, yp) \
    normcl_layer_norm_forward(runtime, xp, rank, &w, NULL, 1e-5f, yp, NULL, NULL, 0, NULL, &event)
#define BN(xp, rm, rv, momentum, tracked, save_mean) \
    normcl_batch_norm_forward_training(e->runtime, xp, NULL, NULL, rm, rv, momentum, tracked, 1e-5f, &y, save_mean, \
                                       NULL, 0, NULL, &event)

    EXPECT("NULL runtime", LN(NULL, &x, 1, &y), NORMCL_INVALID_ARGUMENT, "runtime");
    EXPECT("NULL x", LN(e->runtime, NULL, 1, &y), NORMCL_INVALID_ARGUMENT, "x");
    EXPECT("NULL y", LN(e->runtime, &x, 1, NULL), NORMCL_INVALID_ARGUMENT, "y");
    EXPECT("normalized_rank 3", LN(e->runtime, &x, 3, &y), NORMCL_INVALID_ARGUMENT, "normalized_rank");
    bad = tensor(yb, 0, 2, wrong);
    EXPECT("y of another shape", LN(e->runtime, &x, 1, &bad), NORMCL_SHAPE_MISMATCH, "'y' has shape [4, 7]");
    bad = x, bad.rank = 9;
    EXPECT("rank 9", LN(e->runtime, &bad, 1, &y), NORMCL_INVALID_SHAPE, "x.rank");
    bad = x, bad.shape[1] = -8;
    EXPECT("negative dim", LN(e->runtime, &bad, 1, &y), NORMCL_INVALID_SHAPE, "x.shape");
    bad = x, bad.dtype = 7;
    EXPECT("unknown dtype", LN(e->runtime, &bad, 1, &y), NORMCL_INVALID_ARGUMENT, "x.dtype");
    bad = x, bad.layout = 5;
    EXPECT("unknown layout", LN(e->runtime, &bad, 1, &y), NORMCL_INVALID_ARGUMENT, "x.layout");
    bad = x, bad.byte_offset = e->alignment;
    EXPECT("past the buffer's end", LN(e->runtime, &bad, 1, &y), NORMCL_INVALID_ARGUMENT, "past the end");
    bad = x, bad.byte_offset = 2, bad.shape[0] = 2;
    EXPECT("offset inside an element", LN(e->runtime, &bad, 1, &y), NORMCL_INVALID_ARGUMENT, "element");
    bad = x, bad.buffer = NULL;
    EXPECT("NULL x.buffer", LN(e->runtime, &bad, 1, &y), NORMCL_INVALID_ARGUMENT, "x.buffer");
    bad = x, bad.buffer = (cl_mem)e->queue; /* not a buffer */
    EXPECT("a queue as x.buffer", LN(e->runtime, &bad, 1, &y), NORMCL_INVALID_ARGUMENT, "x");
    EXPECT("y overlapping x", LN(e->runtime, &x, 1, &x), NORMCL_INVALID_ARGUMENT, "overlaps");
    EXPECT("NULL wait list with a count",
           normcl_layer_norm_forward(e->runtime, &x, 1, NULL, NULL, 1e-5f, &y, NULL, NULL, 2, NULL, &event),
           NORMCL_INVALID_ARGUMENT, "event_wait_list");
    EXPECT("NULL event in the wait list",
           normcl_layer_norm_forward(e->runtime, &x, 1, NULL, NULL, 1e-5f, &y, NULL, NULL, 1, &null_event, &event),
           NORMCL_INVALID_ARGUMENT, "event_wait_list[0]");
    EXPECT("negative eps",
           normcl_layer_norm_forward(e->runtime, &x, 1, NULL, NULL, -1.0f, &y, NULL, NULL, 0, NULL, &event),
           NORMCL_INVALID_ARGUMENT, "eps");
    EXPECT("save_mean of the wrong size", BN(&x, NULL, NULL, 0.1f, NULL, &stats), NORMCL_SHAPE_MISMATCH, "'save_mean'");
    EXPECT("running_mean without running_var", BN(&x, &w, NULL, 0.1f, NULL, NULL), NORMCL_INVALID_ARGUMENT,
           "running_var");
    EXPECT("cumulative momentum without num_batches_tracked", BN(&x, &w, &w, NORMCL_MOMENTUM_CUMULATIVE, NULL, NULL),
           NORMCL_INVALID_ARGUMENT, "num_batches_tracked");
    EXPECT("momentum 2", BN(&x, &w, &w, 2.0f, NULL, NULL), NORMCL_INVALID_ARGUMENT, "momentum");
    EXPECT("inference without running statistics",
           normcl_batch_norm_forward_inference(e->runtime, &x, NULL, NULL, NULL, NULL, 1e-5f, &y, 0, NULL, &event),
           NORMCL_INVALID_ARGUMENT, "running");
    EXPECT_OUT("runtime_create with NULL out", normcl_runtime_create(e->context, e->queue, e->device, NULL),
               NORMCL_INVALID_ARGUMENT, "out", NULL);
    EXPECT_OUT("runtime_create with a NULL queue", normcl_runtime_create(e->context, NULL, e->device, &runtime),
               NORMCL_INVALID_ARGUMENT, "queue", runtime);
    EXPECT_OUT("runtime_create with a queue of another context",
               normcl_runtime_create((cl_context)e->queue, e->queue, e->device, &runtime), NORMCL_OPENCL_ERROR,
               "CL_INVALID", runtime);
#undef BN
#undef LN
#undef EXPECT
#undef EXPECT_OUT
    /* The runtime still works after all that. */
    cl_event fine = NULL;
    NORMCL_OK(normcl_layer_norm_forward(e->runtime, &x, 1, &w, NULL, 1e-5f, &y, &stats, NULL, 0, NULL, &fine));
    if (fine) {
        CL_OK(clWaitForEvents(1, &fine));
        clReleaseEvent(fine);
    }
    printf("%s: [%s] bad arguments give error codes and messages\n", ok ? "PASS" : "FAIL", e->name);
    cl_mem all[] = {xb, yb, wb, sb};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) clReleaseMemObject(all[i]);
}

/* A released buffer: detected only if the driver's clGetMemObjectInfo detects it, which
 * reads freed memory, so it runs in a child process and a crash there is reported, not failed. */
static void test_released_buffer(env *e) {
    const int64_t shape[1] = {16};
    cl_mem xb = buffer(e, 64), yb = buffer(e, 64);
    clReleaseMemObject(xb);
    normcl_tensor x = tensor(xb, 0, 1, shape), y = tensor(yb, 0, 1, shape);
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        alarm(20);
        /* Quiet: a crash is the expected outcome on drivers that cannot tell. */
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) dup2(devnull, STDERR_FILENO);
        int status = normcl_layer_norm_forward(e->runtime, &x, 1, NULL, NULL, 1e-5f, &y, NULL, NULL, 0, NULL, NULL);
        _exit(status == NORMCL_INVALID_ARGUMENT && strstr(normcl_last_error_message(), "x") ? 0 : 1);
    }
    int status = 0;
    waitpid(child, &status, 0);
    clReleaseMemObject(yb);
    if (WIFEXITED(status)) {
        CHECK(WEXITSTATUS(status) == 0, "[%s] a released buffer was not reported as NORMCL_INVALID_ARGUMENT", e->name);
        printf("%s: [%s] a released buffer is NORMCL_INVALID_ARGUMENT\n", WEXITSTATUS(status) == 0 ? "PASS" : "FAIL",
               e->name);
    } else {
        printf("NOTE: [%s] a released buffer is not detectable on this driver (the probe died with signal %d)\n",
               e->name, WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    }
}

/* ---- Fused epilogues ------------------------------------------------------------------- */

static double gelu(double a) { return 0.5 * a * (1.0 + erf(a / sqrt(2.0))); }
static double gelu_gradient(double a) { return 0.5 * (1.0 + erf(a / sqrt(2.0))) + a * exp(-0.5 * a * a) / 2.5066282746310002; }
static double silu(double a) { return a / (1.0 + exp(-a)); }
static double silu_gradient(double a) {
    double s = 1.0 / (1.0 + exp(-a));
    return s * (1.0 + a * (1.0 - s));
}

/* A pre-norm transformer block's tail: h = (x + c) + residual, c the input bias, y =
 * gelu(rmsnorm(h) * (1 + w) + b) (Gemma's zero-centred weight, weight_offset 1) with h
 * returned; the backward from the stored h and from x and the residual, with dL/dh from
 * the next block added to dx, and dc. */
static void test_fused_rms_norm(env *e) {
    enum { ROWS = 6, D = 48, N = ROWS * D };
    const int64_t shape[2] = {ROWS, D}, param_shape[1] = {D}, stat_shape[1] = {ROWS};
    float x[N], r[N], dy[N], gs[N], w[D], b[D], c[D];
    cl_mem cb = random_upload(e, c, D, 0.5f, 0.0f), xb = random_upload(e, x, N, 1.5f, 0.2f);
    cl_mem rb = random_upload(e, r, N, 1.0f, 0.0f), dyb = random_upload(e, dy, N, 1.0f, 0.0f);
    cl_mem gsb = random_upload(e, gs, N, 1.0f, 0.0f), wb = random_upload(e, w, D, 0.3f, 0.0f);
    cl_mem bb = random_upload(e, b, D, 0.2f, 0.0f), yb = nans(e, N), hb = nans(e, N), sb = nans(e, ROWS);
    cl_mem dxb = nans(e, N), dwb = nans(e, D), dbb = nans(e, D), dx2b = nans(e, N), dcb = nans(e, D);
    normcl_tensor xt = tensor(xb, 0, 2, shape), rt = tensor(rb, 0, 2, shape), dyt = tensor(dyb, 0, 2, shape);
    normcl_tensor gst = tensor(gsb, 0, 2, shape), yt = tensor(yb, 0, 2, shape), ht = tensor(hb, 0, 2, shape);
    normcl_tensor wt = tensor(wb, 0, 1, param_shape), bt = tensor(bb, 0, 1, param_shape);
    normcl_tensor st = tensor(sb, 0, 1, stat_shape), dxt = tensor(dxb, 0, 2, shape), dx2t = tensor(dx2b, 0, 2, shape);
    normcl_tensor dwt = tensor(dwb, 0, 1, param_shape), dbt = tensor(dbb, 0, 1, param_shape);
    normcl_tensor ct = tensor(cb, 0, 1, param_shape), dct = tensor(dcb, 0, 1, param_shape);
    normcl_epilogue epilogue = NORMCL_EPILOGUE_INIT;
    epilogue.activation = NORMCL_ACTIVATION_GELU;
    epilogue.weight_offset = 1.0f;
    const float eps = 1e-6f;

    cl_event forward = NULL, backward = NULL, backward2 = NULL;
    NORMCL_OK(normcl_rms_norm_forward_fused(e->runtime, &xt, &rt, &ct, 1, &wt, &bt, eps, &epilogue, &yt, &st, &ht, 0,
                                            NULL, &forward));
    /* From the stored h (read instead of x, c and the residual), then from x, c and the residual. */
    NORMCL_OK(normcl_rms_norm_backward_fused(e->runtime, &dyt, &xt, &rt, &ct, &ht, 1, &wt, &bt, &st, &epilogue, &gst,
                                             &dxt, &dwt, &dbt, &dct, 1, &forward, &backward));
    NORMCL_OK(normcl_rms_norm_backward_fused(e->runtime, &dyt, &xt, &rt, &ct, NULL, 1, &wt, &bt, &st, &epilogue, &gst,
                                             &dx2t, NULL, NULL, NULL, 1, &backward, &backward2));
    float y[N], h[N], rstd[ROWS], dx[N], dw[D], db[D], dx2[N], dc[D];
    const readback reads[] = {{yb, y, N}, {hb, h, N}, {sb, rstd, ROWS}, {dxb, dx, N}, {dwb, dw, D}, {dbb, db, D},
                              {dcb, dc, D}, {dx2b, dx2, N}};
    download_all(e, backward2, reads, sizeof reads / sizeof *reads);
    clReleaseEvent(forward);
    clReleaseEvent(backward);

    double y_ref[N], h_ref[N], rstd_ref[ROWS], dx_ref[N], dw_ref[D], db_ref[D], dc_ref[D];
    for (size_t i = 0; i < D; i++) dw_ref[i] = db_ref[i] = dc_ref[i] = 0;
    for (size_t row = 0; row < ROWS; row++) {
        double squares = 0, sum_gx = 0, g[D];
        for (size_t i = 0; i < D; i++) {
            size_t k = row * D + i;
            h_ref[k] = ((double)x[k] + c[i]) + r[k];
            squares += h_ref[k] * h_ref[k];
        }
        rstd_ref[row] = 1.0 / sqrt(squares / D + eps);
        /* The backward from the device's saved rstd, as NormCL's takes it. */
        double s = rstd[row];
        for (size_t i = 0; i < D; i++) {
            size_t k = row * D + i;
            double gamma = 1.0 + w[i], a = h_ref[k] * rstd_ref[row] * gamma + b[i];
            y_ref[k] = gelu(a);
            double xhat = h_ref[k] * s, grad = dy[k] * gelu_gradient(xhat * gamma + b[i]);
            g[i] = grad * gamma;
            sum_gx += g[i] * xhat;
            dw_ref[i] += grad * xhat;
            db_ref[i] += grad;
        }
        for (size_t i = 0; i < D; i++) {
            size_t k = row * D + i;
            dx_ref[k] = s * (g[i] - h_ref[k] * s * sum_gx / D) + gs[k];
            dc_ref[i] += dx_ref[k];
        }
    }
    int ok = close_to(e, "fused rms_norm y", y, y_ref, N) & close_to(e, "fused rms_norm residual_sum", h, h_ref, N) &
             close_to(e, "fused rms_norm save_invrms", rstd, rstd_ref, ROWS) &
             close_to(e, "fused rms_norm dx", dx, dx_ref, N) & close_to(e, "fused rms_norm dweight", dw, dw_ref, D) &
             close_to(e, "fused rms_norm dbias", db, db_ref, D) & close_to(e, "fused rms_norm dinput_bias", dc, dc_ref, D) &
             close_to(e, "fused rms_norm dx (from x + residual)", dx2, dx_ref, N);
    printf("%s: [%s] RMSNorm + residual and input bias (residual_sum), weight offset, bias, GELU: forward and backward\n",
           ok ? "PASS" : "FAIL", e->name);
    cl_mem all[] = {xb, rb, dyb, gsb, wb, bb, yb, hb, sb, dxb, dwb, dbb, dx2b, cb, dcb};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) clReleaseMemObject(all[i]);
}

/* A ResNet block's tail: y = relu(BN(x) + z) in training (no running statistics), its
 * backward with dz. */
static void test_fused_batch_norm(env *e) {
    enum { BN = 3, C = 4, M = 12, N = BN * C * M };
    const int64_t shape[4] = {BN, C, 3, 4}, channel_shape[1] = {C};
    const float eps = 1e-5f;
    float x[N], z[N], dy[N], w[C], b[C];
    cl_mem xb = random_upload(e, x, N, 2.0f, 0.5f), zb = random_upload(e, z, N, 1.0f, 0.0f);
    cl_mem dyb = random_upload(e, dy, N, 1.0f, 0.0f), wb = random_upload(e, w, C, 0.5f, 1.0f);
    cl_mem bb = random_upload(e, b, C, 0.5f, 0.0f), yb = nans(e, N), mean_b = nans(e, C), invstd_b = nans(e, C);
    cl_mem dxb = nans(e, N), dwb = nans(e, C), dbb = nans(e, C), dzb = nans(e, N);
    normcl_tensor xt = tensor(xb, 0, 4, shape), zt = tensor(zb, 0, 4, shape), dyt = tensor(dyb, 0, 4, shape);
    normcl_tensor yt = tensor(yb, 0, 4, shape), dxt = tensor(dxb, 0, 4, shape), dzt = tensor(dzb, 0, 4, shape);
    normcl_tensor wt = tensor(wb, 0, 1, channel_shape), bt = tensor(bb, 0, 1, channel_shape);
    normcl_tensor mt = tensor(mean_b, 0, 1, channel_shape), it = tensor(invstd_b, 0, 1, channel_shape);
    normcl_tensor dwt = tensor(dwb, 0, 1, channel_shape), dbt = tensor(dbb, 0, 1, channel_shape);
    normcl_epilogue relu = NORMCL_EPILOGUE_INIT;
    relu.activation = NORMCL_ACTIVATION_RELU;

    cl_event forward = NULL, backward = NULL;
    NORMCL_OK(normcl_batch_norm_forward_training_fused(e->runtime, &xt, &wt, &bt, NULL, NULL, 0.1f, NULL, eps, &zt,
                                                       &relu, &yt, &mt, &it, 0, NULL, &forward));
    NORMCL_OK(normcl_batch_norm_backward_training_fused(e->runtime, &dyt, &xt, &wt, &bt, &mt, &it, &zt, &relu, &dxt,
                                                        &dwt, &dbt, &dzt, 1, &forward, &backward));
    float y[N], mean[C], invstd[C], dx[N], dw[C], db[C], dz[N], g[N];
    const readback reads[] = {{yb, y, N}, {mean_b, mean, C}, {invstd_b, invstd, C}, {dxb, dx, N}, {dwb, dw, C},
                              {dbb, db, C}, {dzb, dz, N}};
    download_all(e, backward, reads, sizeof reads / sizeof *reads);
    clReleaseEvent(forward);

    /* The forward's reference BN(x) (running statistics unused), then the epilogue. */
    double bn[N], mean_ref[C], invstd_ref[C], unused[2][C] = {{0}}, dx_ref[N], dw_ref[C], db_ref[C], y_ref[N], dz_ref[N];
    batch_norm_reference(x, BN, C, M, w, b, eps, 0.0, bn, mean_ref, invstd_ref, unused[0], unused[1]);
    for (int k = 0; k < N; k++) {
        int c = (k / M) % C;
        double a = (x[k] - (double)mean[c]) * invstd[c] * w[c] + b[c] + z[k]; /* the backward's, recomputed */
        y_ref[k] = bn[k] + z[k] < 0 ? 0 : bn[k] + z[k];
        g[k] = a > 0 ? dy[k] : 0.0f;
        dz_ref[k] = g[k];
    }
    batch_norm_backward_reference(g, x, BN, C, M, w, mean, invstd, dx_ref, dw_ref, db_ref);
    int ok = close_to(e, "fused batch_norm y", y, y_ref, N) & close_to(e, "fused batch_norm save_mean", mean, mean_ref, C) &
             close_to(e, "fused batch_norm save_invstd", invstd, invstd_ref, C) &
             close_to(e, "fused batch_norm dx", dx, dx_ref, N) & close_to(e, "fused batch_norm dweight", dw, dw_ref, C) &
             close_to(e, "fused batch_norm dbias", db, db_ref, C) & close_to(e, "fused batch_norm dz", dz, dz_ref, N);
    printf("%s: [%s] BatchNorm + addend + ReLU: training forward and backward with dz\n", ok ? "PASS" : "FAIL",
           e->name);
    cl_mem all[] = {xb, zb, dyb, wb, bb, yb, mean_b, invstd_b, dxb, dwb, dbb, dzb};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) clReleaseMemObject(all[i]);
}

/* The diffusion U-Net's silu(group_norm(x)), forward and backward. */
static void test_fused_group_norm(env *e) {
    enum { BN = 2, C = 6, G = 3, M = 10, K = C / G * M, N = BN * C * M };
    const int64_t shape[3] = {BN, C, M}, channel_shape[1] = {C}, stat_shape[2] = {BN, G};
    const float eps = 1e-5f;
    float x[N], dy[N], w[C], b[C];
    cl_mem xb = random_upload(e, x, N, 2.0f, -0.3f), dyb = random_upload(e, dy, N, 1.0f, 0.0f);
    cl_mem wb = random_upload(e, w, C, 0.5f, 1.0f), bb = random_upload(e, b, C, 0.5f, 0.0f);
    cl_mem yb = nans(e, N), mean_b = nans(e, BN * G), invstd_b = nans(e, BN * G), dxb = nans(e, N);
    cl_mem dwb = nans(e, C), dbb = nans(e, C);
    normcl_tensor xt = tensor(xb, 0, 3, shape), dyt = tensor(dyb, 0, 3, shape), yt = tensor(yb, 0, 3, shape);
    normcl_tensor wt = tensor(wb, 0, 1, channel_shape), bt = tensor(bb, 0, 1, channel_shape);
    normcl_tensor mt = tensor(mean_b, 0, 2, stat_shape), it = tensor(invstd_b, 0, 2, stat_shape);
    normcl_tensor dxt = tensor(dxb, 0, 3, shape), dwt = tensor(dwb, 0, 1, channel_shape);
    normcl_tensor dbt = tensor(dbb, 0, 1, channel_shape);
    normcl_epilogue epilogue = NORMCL_EPILOGUE_INIT;
    epilogue.activation = NORMCL_ACTIVATION_SILU;

    cl_event forward = NULL, backward = NULL;
    NORMCL_OK(normcl_group_norm_forward_fused(e->runtime, &xt, G, &wt, &bt, eps, &epilogue, &yt, &mt, &it, 0, NULL,
                                              &forward));
    NORMCL_OK(normcl_group_norm_backward_fused(e->runtime, &dyt, &xt, G, &wt, &bt, &mt, &it, &epilogue, &dxt, &dwt,
                                               &dbt, 1, &forward, &backward));
    float y[N], mean[BN * G], invstd[BN * G], dx[N], dw[C], db[C];
    const readback reads[] = {{yb, y, N}, {mean_b, mean, BN * G}, {invstd_b, invstd, BN * G}, {dxb, dx, N},
                              {dwb, dw, C}, {dbb, db, C}};
    download_all(e, backward, reads, sizeof reads / sizeof *reads);
    clReleaseEvent(forward);

    double y_ref[N], mean_ref[BN * G], invstd_ref[BN * G], dx_ref[N], dw_ref[C], db_ref[C];
    for (int c = 0; c < C; c++) dw_ref[c] = db_ref[c] = 0;
    for (int n = 0; n < BN; n++)
        for (int grp = 0; grp < G; grp++) {
            const int first = (n * C + grp * (C / G)) * M, s = n * G + grp; /* a group is K values in a row */
            double m = 0, v = 0, sum_g = 0, sum_gx = 0;
            for (int k = 0; k < K; k++) m += x[first + k];
            m /= K;
            for (int k = 0; k < K; k++) v += (x[first + k] - m) * (x[first + k] - m);
            mean_ref[s] = m;
            invstd_ref[s] = 1.0 / sqrt(v / K + eps);
            for (int k = 0; k < K; k++) {
                int c = grp * (C / G) + k / M;
                double xhat_ref = (x[first + k] - m) * invstd_ref[s];
                y_ref[first + k] = silu(xhat_ref * w[c] + b[c]);
                /* The backward from the device's saved statistics. */
                double xhat = (x[first + k] - (double)mean[s]) * invstd[s];
                double grad = dy[first + k] * silu_gradient(xhat * w[c] + b[c]);
                sum_g += grad * w[c];
                sum_gx += grad * w[c] * xhat;
                dw_ref[c] += grad * xhat;
                db_ref[c] += grad;
            }
            for (int k = 0; k < K; k++) {
                int c = grp * (C / G) + k / M;
                double xhat = (x[first + k] - (double)mean[s]) * invstd[s];
                double grad = dy[first + k] * silu_gradient(xhat * w[c] + b[c]);
                dx_ref[first + k] = invstd[s] / K * (K * grad * w[c] - sum_g - xhat * sum_gx);
            }
        }
    int ok = close_to(e, "fused group_norm y", y, y_ref, N) &
             close_to(e, "fused group_norm save_mean", mean, mean_ref, BN * G) &
             close_to(e, "fused group_norm save_invstd", invstd, invstd_ref, BN * G) &
             close_to(e, "fused group_norm dx", dx, dx_ref, N) & close_to(e, "fused group_norm dweight", dw, dw_ref, C) &
             close_to(e, "fused group_norm dbias", db, db_ref, C);
    printf("%s: [%s] GroupNorm + SiLU: forward and backward\n", ok ? "PASS" : "FAIL", e->name);
    cl_mem all[] = {xb, dyb, wb, bb, yb, mean_b, invstd_b, dxb, dwb, dbb};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) clReleaseMemObject(all[i]);
}

/* Whether every one of the `n` floats of `b` is still NaN (nothing written). */
static int untouched(env *e, cl_mem b, size_t n) {
    float *v = malloc(n * sizeof(float));
    download(e, b, 0, v, n, NULL);
    int all_nan = 1;
    for (size_t i = 0; i < n; i++) all_nan &= isnan(v[i]) != 0;
    free(v);
    return all_nan;
}

/* Bad fused arguments: typed errors, messages that name the argument, nothing written. */
static void test_fused_errors(env *e) {
    const int64_t shape[2] = {4, 8}, wrong[2] = {4, 7}, param_shape[1] = {8}, stat_shape[1] = {4};
    const int64_t nchw[4] = {2, 4, 2, 2}, channel_shape[1] = {4};
    cl_mem xb = upload(e, (float[32]){0.5f, -1, 2, 0.25f}, 32), rb = upload(e, (float[32]){1, 2}, 32);
    cl_mem yb = nans(e, 32), hb = nans(e, 32), sb = nans(e, 4), wb = upload(e, (float[8]){1, 1, 1, 1, 1, 1, 1, 1}, 8);
    cl_mem mb = nans(e, 4), ib = nans(e, 4);
    normcl_tensor x = tensor(xb, 0, 2, shape), r = tensor(rb, 0, 2, shape), y = tensor(yb, 0, 2, shape);
    normcl_tensor h = tensor(hb, 0, 2, shape), s = tensor(sb, 0, 1, stat_shape), w = tensor(wb, 0, 1, param_shape);
    normcl_tensor bad, xc = tensor(xb, 0, 4, nchw), yc = tensor(yb, 0, 4, nchw), zc = tensor(rb, 0, 4, nchw);
    normcl_tensor mc = tensor(mb, 0, 1, channel_shape), ic = tensor(ib, 0, 1, channel_shape);
    normcl_epilogue epilogue = NORMCL_EPILOGUE_INIT;
    cl_event event = NULL;
    int ok = 1, status;
#define EXPECT(what, call, expected, needle)                                                 \
    do {                                                                                     \
        event = (cl_event)1;                                                                 \
        status = (call);                                                                     \
        ok &= expect_error(e, what, status, expected, needle, event);                        \
    } while (0)
#define RMS(residual, epilogue_pointer) \
    normcl_rms_norm_forward_fused(e->runtime, &x, residual, NULL, 1, &w, NULL, 1e-5f, epilogue_pointer, &y, &s, &h, 0, \
                                  NULL, &event)
#define BNF(addend, epilogue_pointer) \
    normcl_batch_norm_forward_training_fused(e->runtime, &xc, NULL, NULL, NULL, NULL, 0.1f, NULL, 1e-5f, addend, \
                                             epilogue_pointer, &yc, &mc, &ic, 0, NULL, &event)

    epilogue.activation = 9;
    EXPECT("unknown activation", RMS(&r, &epilogue), NORMCL_INVALID_ARGUMENT, "epilogue.activation");
    EXPECT("unknown activation (BatchNorm)", BNF(&zc, &epilogue), NORMCL_INVALID_ARGUMENT, "epilogue.activation");
    epilogue.activation = NORMCL_ACTIVATION_RELU;
    epilogue.struct_size = 8;
    EXPECT("epilogue.struct_size too small", RMS(&r, &epilogue), NORMCL_INVALID_ARGUMENT, "struct_size");
    epilogue.struct_size = sizeof epilogue;
    epilogue.weight_offset = 1.0f;
    EXPECT("weight_offset on BatchNorm", BNF(&zc, &epilogue), NORMCL_UNSUPPORTED, "weight_offset");
    epilogue.weight_offset = 0.0f;
    bad = tensor(rb, 0, 2, wrong);
    EXPECT("residual of another shape", RMS(&bad, &epilogue), NORMCL_SHAPE_MISMATCH, "'residual' has shape [4, 7]");
    EXPECT("residual_sum without a residual", RMS(NULL, &epilogue), NORMCL_INVALID_ARGUMENT, "residual_sum");
    EXPECT("input_bias without a residual",
           normcl_rms_norm_forward_fused(e->runtime, &x, NULL, &w, 1, &w, NULL, 1e-5f, NULL, &y, &s, NULL, 0, NULL,
                                         &event),
           NORMCL_INVALID_ARGUMENT, "'input_bias'");
    bad = zc, bad.dtype = NORMCL_DTYPE_F16;
    EXPECT("addend of another dtype", BNF(&bad, &epilogue), NORMCL_UNSUPPORTED, "'addend'");
    bad = tensor(rb, 0, 4, (int64_t[4]){2, 4, 4, 1});
    EXPECT("addend of another shape", BNF(&bad, &epilogue), NORMCL_SHAPE_MISMATCH, "'addend'");
    EXPECT("dz without an addend",
           normcl_batch_norm_backward_training_fused(e->runtime, &xc, &xc, NULL, NULL, &mc, &ic, NULL, &epilogue,
                                                     &yc, NULL, NULL, &zc, 0, NULL, &event),
           NORMCL_INVALID_ARGUMENT, "dz");
    EXPECT("grad_residual_sum without a residual",
           normcl_rms_norm_backward_fused(e->runtime, &x, &x, NULL, NULL, NULL, 1, &w, NULL, &s, NULL, &r, &y, NULL, NULL,
                                          NULL, 0, NULL, &event),
           NORMCL_INVALID_ARGUMENT, "grad_residual_sum");
    EXPECT("RMSNorm dbias without a bias",
           normcl_rms_norm_backward_fused(e->runtime, &x, &x, NULL, NULL, NULL, 1, &w, NULL, &s, NULL, NULL, &y, NULL, &h,
                                          NULL, 0, NULL, &event),
           NORMCL_INVALID_ARGUMENT, "dbias");
    /* Every fused function is in the library and checks its runtime. */
    const int null_runtime[] = {
        normcl_layer_norm_forward_fused(NULL, &x, NULL, NULL, 1, NULL, NULL, 1e-5f, NULL, &y, NULL, NULL, NULL, 0, NULL,
                                        NULL),
        normcl_layer_norm_backward_fused(NULL, &x, &x, NULL, NULL, NULL, 1, NULL, NULL, &s, &s, NULL, NULL, &y, NULL,
                                         NULL, NULL, 0, NULL, NULL),
        normcl_rms_norm_forward_fused(NULL, &x, NULL, NULL, 1, NULL, NULL, 1e-5f, NULL, &y, NULL, NULL, 0, NULL, NULL),
        normcl_rms_norm_backward_fused(NULL, &x, &x, NULL, NULL, NULL, 1, NULL, NULL, &s, NULL, NULL, &y, NULL, NULL,
                                       NULL, 0, NULL, NULL),
        normcl_batch_norm_forward_training_fused(NULL, &xc, NULL, NULL, NULL, NULL, 0.1f, NULL, 1e-5f, NULL, NULL, &yc,
                                                 NULL, NULL, 0, NULL, NULL),
        normcl_batch_norm_forward_inference_fused(NULL, &xc, NULL, NULL, &mc, &ic, 1e-5f, NULL, NULL, &yc, 0, NULL,
                                                  NULL),
        normcl_batch_renorm_forward_fused(NULL, &xc, NULL, NULL, &mc, &ic, 2.0f, 1.0f, 0.1f, NULL, 1e-5f, NULL, NULL,
                                          &yc, NULL, NULL, NULL, NULL, 0, NULL, NULL),
        normcl_batch_norm_backward_training_fused(NULL, &xc, &xc, NULL, NULL, &mc, &ic, NULL, NULL, &yc, NULL, NULL,
                                                  NULL, 0, NULL, NULL),
        normcl_batch_norm_backward_inference_fused(NULL, &xc, &xc, NULL, NULL, &mc, &ic, 1e-5f, NULL, NULL, &yc, NULL,
                                                   NULL, NULL, 0, NULL, NULL),
        normcl_batch_renorm_backward_fused(NULL, &xc, &xc, NULL, NULL, &mc, &ic, &mc, &ic, NULL, NULL, &yc, NULL, NULL,
                                           NULL, 0, NULL, NULL),
        normcl_group_norm_forward_fused(NULL, &xc, 2, NULL, NULL, 1e-5f, NULL, &yc, NULL, NULL, 0, NULL, NULL),
        normcl_group_norm_backward_fused(NULL, &xc, &xc, 2, NULL, NULL, &mc, &ic, NULL, &yc, NULL, NULL, 0, NULL, NULL),
    };
    for (size_t i = 0; i < sizeof null_runtime / sizeof *null_runtime; i++)
        ok &= expect_error(e, "a fused function with a NULL runtime", null_runtime[i], NORMCL_INVALID_ARGUMENT,
                           "runtime", NULL);
#undef BNF
#undef RMS
#undef EXPECT
    int clean = untouched(e, yb, 32) && untouched(e, hb, 32) && untouched(e, sb, 4) && untouched(e, mb, 4) &&
                untouched(e, ib, 4);
    CHECK(clean, "[%s] a failed fused call wrote into an output", e->name);
    printf("%s: [%s] bad fused arguments give typed errors and write nothing\n", ok && clean ? "PASS" : "FAIL",
           e->name);
    cl_mem all[] = {xb, rb, yb, hb, sb, wb, mb, ib};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) clReleaseMemObject(all[i]);
}

/* ---- Main ---------------------------------------------------------------------------- */

static int setup(env *e, const char *name, cl_platform_id platform, cl_device_id device, cl_command_queue_properties props) {
    cl_int status;
    e->name = name;
    e->device = device;
    e->context = clCreateContext(NULL, 1, &device, NULL, NULL, &status);
    CL_OK(status);
    cl_queue_properties properties[] = {CL_QUEUE_PROPERTIES, props, 0};
    e->queue = clCreateCommandQueueWithProperties(e->context, device, props ? properties : NULL, &status);
    if (status != CL_SUCCESS) {
        printf("SKIP: [%s] the device has no such queue (%d)\n", name, status);
        clReleaseContext(e->context);
        return 0;
    }
    cl_uint bits = 0;
    CL_OK(clGetDeviceInfo(device, CL_DEVICE_MEM_BASE_ADDR_ALIGN, sizeof bits, &bits, NULL));
    e->alignment = bits / 8;
    (void)platform;
    NORMCL_OK(normcl_runtime_create(e->context, e->queue, device, &e->runtime));
    return e->runtime != NULL;
}

static void teardown(env *e) {
    NORMCL_OK(normcl_runtime_release(e->runtime));
    clReleaseCommandQueue(e->queue);
    clReleaseContext(e->context);
}

int main(void) {
    printf("NormCL %s, C API %d (header %d)\n", normcl_version(), normcl_api_version(), NORMCL_API_VERSION);
    CHECK(normcl_api_version() == NORMCL_API_VERSION, "the library's API version differs from the header's");
    CHECK(strcmp(normcl_last_error_message(), "") == 0, "a last error before any call");

    cl_platform_id platforms[8];
    cl_uint platform_count = 0;
    if (clGetPlatformIDs(8, platforms, &platform_count) != CL_SUCCESS || platform_count == 0) {
        printf("SKIP: no OpenCL platform\n");
        return 0;
    }
    cl_device_id device = NULL;
    cl_platform_id platform = NULL;
    for (cl_uint i = 0; i < platform_count && !device; i++)
        if (clGetDeviceIDs(platforms[i], CL_DEVICE_TYPE_ALL, 1, &device, NULL) == CL_SUCCESS) platform = platforms[i];
    if (!device) {
        printf("SKIP: no OpenCL device\n");
        return 0;
    }
    char device_name[256] = "";
    clGetDeviceInfo(device, CL_DEVICE_NAME, sizeof device_name, device_name, NULL);
    printf("device: %s\n", device_name);

    struct {
        const char *name;
        cl_command_queue_properties properties;
    } modes[] = {{"in-order", 0}, {"out-of-order", CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE}};
    for (size_t i = 0; i < sizeof modes / sizeof *modes; i++) {
        env e;
        memset(&e, 0, sizeof e);
        if (!setup(&e, modes[i].name, platform, device, modes[i].properties)) continue;
        test_layer_norm(&e);
        test_batch_norm(&e);
        test_fused_rms_norm(&e);
        test_fused_batch_norm(&e);
        test_fused_group_norm(&e);
        test_empty(&e);
        test_errors(&e);
        test_fused_errors(&e);
        if (i == 0) test_released_buffer(&e);
        teardown(&e);
    }
    printf("%s (%d failure%s)\n", failures ? "FAILED" : "ALL PASSED", failures, failures == 1 ? "" : "s");
    return failures ? 1 : 0;
}
