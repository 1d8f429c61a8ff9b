/* Runs the README's C example (the ```c block after "<!-- example: c-api -->", which
 * Tests/C/run.sh extracts to readme_example.inc) on buffers of its own, and checks y
 * against LayerNorm computed here. Exits non-zero on a failure. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "normcl.h"

static int fail(const char *message) {
    fprintf(stderr, "README example: %s\n", message);
    return 1;
}

/* The README's variables: the caller's OpenCL objects, x written, x_ready its event. */
static int example(cl_context context, cl_command_queue queue, cl_device_id device, cl_mem x, cl_mem y,
                   cl_event x_ready, cl_event *finished, normcl_runtime **kept) {
#include "readme_example.inc"
    *finished = done;
    *kept = runtime;
    return status;
}

int main(void) {
    cl_platform_id platform;
    cl_device_id device;
    cl_int err = clGetPlatformIDs(1, &platform, NULL);
    if (err != CL_SUCCESS || clGetDeviceIDs(platform, CL_DEVICE_TYPE_ALL, 1, &device, NULL) != CL_SUCCESS) {
        printf("no OpenCL device: skipped\n");
        return 0;
    }
    cl_context context = clCreateContext(NULL, 1, &device, NULL, NULL, &err);
    cl_command_queue queue = clCreateCommandQueueWithProperties(context, device, NULL, &err);
    float values[32], y[32];
    for (int i = 0; i < 32; i++) values[i] = (float)((i * 5) % 9);
    cl_mem x = clCreateBuffer(context, CL_MEM_READ_WRITE, sizeof values, NULL, &err);
    cl_mem yb = clCreateBuffer(context, CL_MEM_READ_WRITE, sizeof y, NULL, &err);
    cl_event x_ready, done;
    normcl_runtime *runtime;
    clEnqueueWriteBuffer(queue, x, CL_FALSE, 0, sizeof values, values, 0, NULL, &x_ready);
    if (example(context, queue, device, x, yb, x_ready, &done, &runtime) != NORMCL_SUCCESS) return 1;
    clEnqueueReadBuffer(queue, yb, CL_TRUE, 0, sizeof y, y, 1, &done, NULL);
    double worst = 0;
    for (int r = 0; r < 4; r++) {
        double mean = 0, var = 0;
        for (int j = 0; j < 8; j++) mean += values[r * 8 + j] / 8.0;
        for (int j = 0; j < 8; j++) var += (values[r * 8 + j] - mean) * (values[r * 8 + j] - mean) / 8.0;
        for (int j = 0; j < 8; j++) {
            double expected = (values[r * 8 + j] - mean) / sqrt(var + 1e-5);
            worst = fmax(worst, fabs(expected - y[r * 8 + j]));
        }
    }
    clReleaseEvent(done);
    clReleaseEvent(x_ready);
    normcl_runtime_release(runtime);
    clReleaseMemObject(x);
    clReleaseMemObject(yb);
    clReleaseCommandQueue(queue);
    clReleaseContext(context);
    printf("README C example: max |error| %.2g\n", worst);
    return worst < 1e-4 ? 0 : 1;
}
