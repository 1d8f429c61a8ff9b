import COpenCL
import Testing
@testable import NormCL

/// An OpenCL program of the caller's own, made with raw OpenCL calls as an application
/// would: its context, a queue (in order or out of order) and buffers, released on
/// deinit. The interop tests hand these to NormCL.
final class CallerOpenCL {
    let device: cl_device_id
    let context: cl_context
    let queue: cl_command_queue
    private var buffers: [cl_mem] = []

    init(device: OpenCLDevice, outOfOrder: Bool = false) throws {
        self.device = device.id
        var status: cl_int = CL_SUCCESS
        var id: cl_device_id? = device.id
        context = try #require(clCreateContext(nil, 1, &id, nil, nil, &status))
        try #require(status == CL_SUCCESS)
        var properties: [cl_queue_properties] = [
            cl_queue_properties(CL_QUEUE_PROPERTIES),
            outOfOrder ? cl_queue_properties(CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE) : 0, 0,
        ]
        queue = try #require(clCreateCommandQueueWithProperties(context, device.id, &properties, &status))
        try #require(status == CL_SUCCESS)
    }

    deinit {
        clFinish(queue)
        for buffer in buffers { clReleaseMemObject(buffer) }
        clReleaseCommandQueue(queue)
        clReleaseContext(context)
    }

    /// A buffer of `bytes` bytes, released with this object.
    func buffer(bytes: Int) throws -> cl_mem {
        var status: cl_int = CL_SUCCESS
        let memory = try #require(clCreateBuffer(context, cl_mem_flags(CL_MEM_READ_WRITE), bytes, nil, &status))
        try #require(status == CL_SUCCESS)
        buffers.append(memory)
        return memory
    }

    /// Writes `values` at `byteOffset` of `memory`, blocking.
    func write(_ values: [Float], to memory: cl_mem, byteOffset: Int = 0) throws {
        let status = values.withUnsafeBytes { bytes in
            clEnqueueWriteBuffer(queue, memory, cl_bool(CL_TRUE), byteOffset, bytes.count, bytes.baseAddress, 0, nil, nil)
        }
        #expect(status == CL_SUCCESS)
    }

    /// Reads `count` floats at `byteOffset` of `memory`, blocking.
    func read(_ memory: cl_mem, count: Int, byteOffset: Int = 0) throws -> [Float] {
        var values = [Float](repeating: .nan, count: count)
        let status = values.withUnsafeMutableBytes { bytes in
            clEnqueueReadBuffer(queue, memory, cl_bool(CL_TRUE), byteOffset, bytes.count, bytes.baseAddress, 0, nil, nil)
        }
        #expect(status == CL_SUCCESS)
        return values
    }

    /// The reference count OpenCL reports for the context (the adopted runtime's
    /// retain and release show in it).
    var contextReferenceCount: cl_uint {
        var count: cl_uint = 0
        clGetContextInfo(context, cl_context_info(CL_CONTEXT_REFERENCE_COUNT), MemoryLayout<cl_uint>.size, &count, nil)
        return count
    }
}

/// Whether `event` has not finished (queued, submitted or running).
func isPending(_ event: KernelEvent) -> Bool { CommandOrder.isPending(event.openCLEvent.handle) }
