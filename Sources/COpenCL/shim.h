// Target OpenCL 3.0 headers so every entry point (clCreateCommandQueueWithProperties
// included) is declared; the library itself only calls what OpenCL 1.2 devices have.
#define CL_TARGET_OPENCL_VERSION 300
#include <CL/cl.h>
#include <CL/cl_ext.h>
